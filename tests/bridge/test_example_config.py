"""config/example.toml documents every configuration key and is itself a valid configuration."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from pydantic import BaseModel

from bridge.config import BridgeConfig

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "example.toml"


def keys_of(model: type[BaseModel], prefix: str = "") -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        nested = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            keys |= keys_of(nested[0], f"{prefix}{name}.")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_key_is_documented_in_the_example() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    written = set()
    section = ""
    for line in text.splitlines():
        stripped = line.lstrip("# ").strip()
        if header := re.fullmatch(r"\[\[?([a-z_.]+)\]\]?", stripped):
            section = header[1] + "."
        elif key := re.match(r"([a-z0-9_]+) = ", stripped):
            written.add(section + key[1])
        elif re.match(r"([A-Z]+) = ", stripped):
            written.add(section.rstrip("."))
    assert keys_of(BridgeConfig) - written == set()


def test_the_example_is_a_valid_configuration(tmp_path: Path) -> None:
    data = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    for path in ("/run/secrets/ocpi-token-abc", "/run/secrets/ocpi-source-token"):
        assert path in EXAMPLE.read_text(encoding="utf-8")
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    data["ocpi"]["receiver"]["tokens"][0]["token"] = f"file:{secret}"
    data["ocpi"]["sources"][0]["token"] = f"file:{secret}"
    data["admin"]["token"] = f"file:{secret}"
    config = BridgeConfig(**data)
    assert config.push.flush_interval == 1.0
    assert config.resync.interval == 86400.0
    assert config.ocpi.receiver.tokens[0].token.get_secret_value() == "s3cret"
    assert str(config.operators[0].operator_id) == "DE*ABC"
