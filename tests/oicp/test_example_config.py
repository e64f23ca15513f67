"""config/example.toml stays loadable: its [hubject] section is valid client settings."""

from __future__ import annotations

import tomllib
from pathlib import Path

from oicp.client import QA_URL, ClientSettings

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"


def test_example_hubject_section_is_valid_client_settings_and_defaults_to_qa() -> None:
    section = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))["hubject"]
    settings = ClientSettings.model_validate(section)
    assert settings.url == QA_URL
    assert settings.client_cert is not None
    assert ClientSettings().url == QA_URL
