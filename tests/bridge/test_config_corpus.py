"""A corpus of bad configurations fed to ``oicp-bridge run`` and ``oicp-bridge check-config`` in process
(``bridge.cli.main``): each exits 1 with exactly one line per problem, names the environment variable a
bad value came from, and never lets an exception out (architecture review §4.3, issue 12 item 11)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from bridge.cli import main
from bridge.config import BridgeConfig, load_config, parse_listen
from bridge.errors import ConfigError

MAX_BATCH = "OICP_BRIDGE_PUSH__MAX_BATCH"
BASE = """
[store]
url = "sqlite:///{folder}/bridge.db"
[hubject]
url = "http://127.0.0.1:9/api/oicp"
[[operators]]
operator_id = "DE*OBD"
[ocpi.receiver]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
token = "admin"
"""


@dataclass
class Bad:
    name: str
    text: str  # appended to BASE (or the whole file when ``whole``)
    expected: list[str]  # one substring per expected problem line, in order
    env: dict[str, str] = field(default_factory=dict)
    whole: bool = False


CORPUS = [
    Bad(
        "listen without a port",
        '[ocpi.receiver]\nlisten = "localhost"\n',
        ["ocpi.receiver.listen: not HOST:PORT"],
        whole=False,
    ),
    Bad(
        "port out of range",
        "",
        [
            "admin.listen: port 70000",
        ],
        env={"OICP_BRIDGE_ADMIN__LISTEN": "127.0.0.1:70000"},
    ),
    Bad(
        "IPv6 without brackets",
        "",
        ["ocpi.receiver.listen: an IPv6 address goes in brackets"],
        env={"OICP_BRIDGE_OCPI__RECEIVER__LISTEN": "::1:8080"},
    ),
    Bad(
        "two bad [mapping] entries",
        '[mapping]\nCHARGING = "Busy"\nFOO = "skip"\n',
        ["mapping.CHARGING: 'Busy' is not one of", "mapping.FOO.[key]: 'FOO' is not an OCPI status"],
    ),
    Bad(
        "an operator twice",
        '[[operators]]\noperator_id = "DE*OBD"\n',
        ["operators: DE*OBD configured more than once"],
    ),
    Bad(
        "an OCPI party that is not one",
        '[[operators]]\noperator_id = "DE*ABC"\nocpi_parties = ["nonsense"]\n',
        ["operators.1.ocpi_parties"],
    ),
    Bad("an invalid OperatorID", '[[operators]]\noperator_id = "nonsense"\n', ["operators.1.operator_id"]),
    Bad(
        "a duration and an unknown key",
        '[push]\nflush_interval = "soon"\nflush_intervall = 1\n',
        ["push.flush_interval: not a duration", "push.flush_intervall: unknown key"],
    ),
    Bad("TOML syntax", "[push\n", ["cannot read it"]),
    Bad(
        "a value from the environment",
        "",
        [
            "push.max_batch: Input should be greater than or equal to 1 (from the environment: "
            + MAX_BATCH
            + ")"
        ],
        env={"OICP_BRIDGE_PUSH__MAX_BATCH": "0"},
    ),
    Bad(
        "a list from the environment that is not JSON",
        "",
        ['environment: error parsing value for field "operators"'],
        env={"OICP_BRIDGE_OPERATORS": "["},
    ),
    Bad(
        "no operators",
        BASE.replace('[[operators]]\noperator_id = "DE*OBD"\n', ""),
        ["operators: no [[operators]]"],
        whole=True,
    ),
    Bad(
        "store under a file",
        "",
        ["store.url: cannot create"],
        env={"OICP_BRIDGE_STORE__URL": "sqlite:///{folder}/a-file/x/bridge.db"},
    ),
    Bad(
        "store that is a folder",
        "",
        ["is a folder, not a database file"],
        env={"OICP_BRIDGE_STORE__URL": "sqlite:///{folder}"},
    ),
    Bad(
        "tls_cert without tls_key",
        '[ocpi.receiver]\nlisten = "127.0.0.1:0"\ntls_cert = "/x.pem"\n',
        ["ocpi.receiver: tls_cert and tls_key go together"],
    ),
    Bad(
        "a secret file that is missing",
        '[admin]\nlisten = "127.0.0.1:0"\ntoken = "file:/nonexistent/secret"\n',
        ["admin.token: cannot read secret file /nonexistent/secret"],
    ),
    Bad(
        "model errors and file checks together",
        '[hubject]\nurl = "https://hubject.example/api/oicp"\nclient_cert = "/nonexistent.pem"\n'
        'client_key = "/nonexistent.key"\n[mapping]\nBLOCKED = "busy"\n',
        ["mapping.BLOCKED", "hubject.client_cert: "],
    ),
    Bad(
        "a REST URL without /api/oicp",
        '[hubject]\nurl = "http://127.0.0.1:9/"\n',
        ["hubject.url: the OICP REST URL"],
    ),
]


def write(folder: Path, case: Bad) -> Path:
    # sections given twice are not valid TOML: the case's sections replace BASE's
    text = case.text if case.whole else merge_sections(BASE, case.text)
    path = folder / "bad.toml"
    path.write_text(text.format(folder=folder), encoding="utf-8")
    (folder / "a-file").write_text("not a folder", encoding="utf-8")
    return path


def merge_sections(base: str, extra: str) -> str:
    headers = {line for line in extra.splitlines() if line.startswith("[") and not line.startswith("[[")}
    kept, skipping = [], False
    for line in base.splitlines():
        if line.startswith("["):
            skipping = line in headers
        if not skipping:
            kept.append(line)
    return "\n".join(kept) + "\n" + extra


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("OICP_BRIDGE_"):
            monkeypatch.delenv(name)


@pytest.mark.parametrize("command", ["run", "check-config"])
@pytest.mark.parametrize("case", CORPUS, ids=[c.name for c in CORPUS])
def test_each_bad_configuration_exits_1_with_one_line_per_problem(
    case: Bad,
    command: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = write(tmp_path, case)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.format(folder=tmp_path))
    code = main([command, "--config", str(path)])  # an exception here fails the test
    captured = capsys.readouterr()
    lines = [line for line in (captured.out + captured.err).splitlines() if line.strip()]
    assert code == 1, lines
    assert "Traceback" not in captured.err
    assert len(lines) == len(case.expected), lines
    for line, expected in zip(lines, case.expected, strict=True):
        assert line.startswith(f"{path}: "), line
        assert expected in line
    assert not (tmp_path / "bridge.db").exists()  # a refused configuration changes nothing


def test_a_missing_file_given_with_config_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in ("run", "check-config", "status", "resync"):
        assert main([command, "--config", str(tmp_path / "missing.toml")]) == 1
        captured = capsys.readouterr()
        assert (captured.out + captured.err).strip().splitlines() == [
            f"{tmp_path / 'missing.toml'}: {tmp_path / 'missing.toml'}: no such configuration file"
        ]


def test_check_config_and_run_agree_on_a_good_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "good.toml"
    path.write_text(BASE.format(folder=tmp_path), encoding="utf-8")
    assert main(["check-config", "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert out.strip().endswith("OK (1 operator(s), protocol rest)")
    assert "warning: hubject.url: plain http" in out
    # the daemon's own loader passes it too (run itself is exercised by tests/bridge/test_daemon.py)
    from bridge.commands import checks

    config = load_config(path, checks=lambda c: checks.problems(c, 0.0))
    assert isinstance(config, BridgeConfig)


def test_the_environment_wins_over_the_file_and_the_file_over_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.toml"
    path.write_text(
        BASE.format(folder=tmp_path) + "[push]\nmax_batch = 7\nflush_interval = 3\n", encoding="utf-8"
    )
    monkeypatch.setenv("OICP_BRIDGE_PUSH__MAX_BATCH", "9")
    monkeypatch.setenv("OICP_BRIDGE_LOG__LEVEL", "debug")
    config = load_config(path)
    assert config.push.max_batch == 9
    assert config.push.flush_interval == 3.0
    assert config.push.max_retry_interval == 60.0
    assert config.log.level.value == "DEBUG"
    # a config built in code does not read the environment
    assert BridgeConfig().push.max_batch == 1000


def test_only_problem_lines_of_valid_sections_are_added_to_model_errors(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    # the store section is invalid: its file check must not add a second, confusing line
    path.write_text(BASE.format(folder=tmp_path).replace("sqlite:///", "mysql://"), encoding="utf-8")
    from bridge.commands import checks

    with pytest.raises(ConfigError) as raised:
        load_config(path, checks=lambda c: checks.problems(c, 0.0))
    assert raised.value.problems == ["store.url: use sqlite:///PATH or postgresql://user@host:port/database"]


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("0.0.0.0:0", ("0.0.0.0", 0)),
        ("[::1]:8081", ("::1", 8081)),
        (":8080", ("127.0.0.1", 8080)),
        (" localhost:65535 ", ("localhost", 65535)),
    ],
)
def test_listen_addresses(text: str, parsed: tuple[str, int]) -> None:
    assert parse_listen(text) == parsed


@pytest.mark.parametrize(
    "text", ["localhost", "8080", "host:", "host:port", "1.2.3.4:65536", "::1:80", "h:-1"]
)
def test_bad_listen_addresses(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|out of range|brackets"):
        parse_listen(text)
