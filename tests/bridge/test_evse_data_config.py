"""The EVSE data configuration: ``[[operators]] push_evse_data`` / ``hotline_phone_number``,
``[operators.evse_data]``, ``[evse_data]`` and ``[resync] data_interval`` — every value validated, read
from real TOML files, and ``check-config`` naming each problem without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bridge.config import load_config
from bridge.errors import ConfigError
from bridge.evse_data import EvseDataSettings, RecordSettings, normalise_hotline
from oicp.evse_data import Accessibility, PaymentOption

OPERATOR = '[[operators]]\noperator_id = "DE*ABC"\noperator_name = "ABC Charging"\n'


def load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "bridge.toml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, require_file=True)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load(tmp_path, text)
    return caught.value.problems


def test_defaults_keep_status_only_and_a_weekly_data_full_load(tmp_path: Path) -> None:
    config = load_config(None)
    assert config.resync.data_interval == 7 * 86400
    assert config.evse_data == EvseDataSettings()
    path = tmp_path / "c.toml"
    path.write_text(OPERATOR + '[resync]\ndata_interval = "3d"\n', encoding="utf-8")
    loaded = load_config(path)
    assert loaded.operators[0].push_evse_data is False
    assert loaded.resync.data_interval == 3 * 86400


def test_push_evse_data_without_a_valid_hotline_is_a_configuration_error(tmp_path: Path) -> None:
    found = problems(tmp_path, OPERATOR + "push_evse_data = true\n")
    assert any(p.startswith("operators.0") and "hotline_phone_number" in p for p in found)
    found = problems(tmp_path, OPERATOR + 'push_evse_data = true\nhotline_phone_number = "call us"\n')
    assert any("operators.0.hotline_phone_number" in p and "'+' then 5 to 15 digits" in p for p in found)


def test_push_evse_data_needs_an_operator_name(tmp_path: Path) -> None:
    text = (
        '[[operators]]\noperator_id = "DE*ABC"\npush_evse_data = true\nhotline_phone_number = "+4930123456"\n'
    )
    assert any("operator_name" in p for p in problems(tmp_path, text))


def test_the_hotline_is_normalised(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        OPERATOR + 'push_evse_data = true\nhotline_phone_number = "0049 (30) 123-456/7"\n', "utf-8"
    )
    config = load_config(path)
    assert config.operators[0].hotline_phone_number == "+49301234567"
    assert normalise_hotline("+49 30 123 45") == "+493012345"
    with pytest.raises(ValueError, match="15 digits"):
        normalise_hotline("+49 30 1234 5678 9012 3")


def test_soap_with_evse_data_is_refused_clearly(tmp_path: Path) -> None:
    text = (
        '[hubject]\nprotocol = "soap"\n'
        + OPERATOR
        + 'push_evse_data = true\nhotline_phone_number = "+4930123456"\n'
    )
    found = problems(tmp_path, text)
    assert any('needs protocol = "rest"' in p and "DE*ABC" in p for p in found)


@pytest.mark.parametrize(
    ("line", "named"),
    [
        ('language = "English"', "evse_data.language"),
        ('station_name_template = "{street}"', "evse_data.station_name_template"),
        ('station_name_template = "{address"', "evse_data.station_name_template"),
        ('station_name_template = "{address:999999999}"', "evse_data.station_name_template"),
        ('station_name_template = "{address.upper}"', "evse_data.station_name_template"),
        ('calibration_law = "Maybe"', "evse_data.calibration_law"),
        ("authentication_modes = []", "evse_data.authentication_modes"),
        ('authentication_modes = ["Fingerprint"]', "evse_data.authentication_modes"),
        ('payment_options = ["No Payment", "Contract"]', "evse_data.payment_options"),
        ("payment_options = []", "evse_data.payment_options"),
        ('value_added_services = ["None"]', "evse_data.value_added_services"),
        ('value_added_services = ["Reservation"]', "evse_data.value_added_services"),
        ('accessibility = "Public"', "evse_data.accessibility"),
        (
            'accessibility_by_parking_type = { GARAGE = "Restricted access" }',
            "evse_data.accessibility_by_parking_type",
        ),
        ('dynamic_info = "yes"', "evse_data.dynamic_info"),
        ('time_zone = "Mars/Olympus"', "evse_data.time_zone"),
        ('charging_station_id_from = "serial"', "evse_data.charging_station_id_from"),
        ('address_split = "always"', "evse_data.address_split"),
        ('hub_operator_id = "hub"', "evse_data.hub_operator_id"),
        ('plugs = { GBT = "CHAdeMO" }', "evse_data.plugs"),
        ('plugs = { GBT_DC = "GB/T" }', "evse_data.plugs"),
        ("renewable_energy = 3", "evse_data.renewable_energy"),
        ("colour = 1", "evse_data.colour"),
    ],
)
def test_every_evse_data_value_is_validated(tmp_path: Path, line: str, named: str) -> None:
    found = problems(tmp_path, OPERATOR + "[evse_data]\n" + line + "\n")
    assert any(p.startswith(named) for p in found), found
    per_operator = problems(tmp_path, OPERATOR + "[operators.evse_data]\n" + line + "\n")
    assert any(p.startswith("operators.0." + named) for p in per_operator), per_operator


def test_operator_overrides_replace_only_the_keys_they_set(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        OPERATOR
        + 'push_evse_data = true\nhotline_phone_number = "+4930123456"\n'
        + '[operators.evse_data]\naccessibility = "Restricted access"\n'
        + '[evse_data]\nlanguage = "de"\npayment_options = ["Contract", "Direct"]\n'
        + 'accessibility = "Test Station"\n',
        encoding="utf-8",
    )
    config = load_config(path)
    operator = config.operators[0]
    assert operator.hotline_phone_number is not None
    settings = RecordSettings.of(operator.hotline_phone_number, config.evse_data, operator.evse_data)
    assert settings.data.accessibility is Accessibility.RESTRICTED_ACCESS
    assert settings.data.language == "de"
    assert settings.data.payment_options == (PaymentOption.CONTRACT, PaymentOption.DIRECT)


def test_check_config_names_each_problem_and_exits_1_without_a_traceback(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(
        OPERATOR
        + 'push_evse_data = true\n[evse_data]\nlanguage = "EN"\npayment_options = ["No Payment", "Direct"]\n',
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "check-config", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert any("evse_data.language" in line for line in lines)
    assert any("evse_data.payment_options" in line and "No Payment" in line for line in lines)
    assert any("hotline_phone_number" in line for line in lines)
