"""The bridge's configuration: one TOML file, every key overridable from the environment.

Names are fixed in docs/contract.md; ``config/example.toml`` documents every key. Environment variables
are ``OICP_BRIDGE_<SECTION>__<KEY>`` (``OICP_BRIDGE_HUBJECT__URL``) and win over the file. Durations are
numbers of seconds or strings such as ``"250ms"``, ``"30s"``, ``"24h"``. Secrets are ``SecretStr`` (never
printed) and may be given as ``file:/path`` to read them from a file.

Everything a model can know is validated here, at load (listen addresses, ``[mapping]`` entries, duplicate
operators, ranges): a ``BridgeConfig`` that exists is one the daemon can start with, and every command reads
it through ``load_config``, so ``check-config`` and ``run`` cannot disagree. Adding a key is adding a field
(with a validator if its type does not say everything).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ByteSize,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from bridge.errors import ConfigError
from bridge.evse_data.settings import EvseDataSettings, normalise_hotline
from bridge.mapping import Withdrawal, parse_overrides
from bridge.observation import OcpiEvseStatus
from bridge.ownership import PartyRef
from oicp import QA_URL, ClientSettings
from oicp.ids import OperatorID
from oicp.models import EvseStatus

ENV_PREFIX = "OICP_BRIDGE_"
CONFIG_ENV = "OICP_BRIDGE_CONFIG"
DEFAULT_CONFIG = Path("oicp-bridge.toml")
DEFAULT_MAX_BODY_SIZE = 32_000_000

_DURATION = re.compile(r"^\s*(?P<value>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {None: 1.0, "ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(value: Any) -> Any:
    """``"250ms"`` → 0.25, ``"30s"`` → 30.0, ``"24h"`` → 86400.0, numbers as seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value)
        if not match:
            raise ValueError(f"not a duration: {value!r} (use seconds, or e.g. '250ms', '30s', '5m', '24h')")
        return float(match["value"]) * _UNIT_SECONDS[match["unit"]]
    return value


def read_secret(value: Any) -> Any:
    """``file:/run/secrets/x`` → the file's content (stripped); anything else unchanged."""
    if isinstance(value, str) and value.startswith("file:"):
        path = Path(value.removeprefix("file:"))
        try:
            return path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from exc
    return value


def parse_listen(value: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` → ("127.0.0.1", 8080); ``"[::1]:8080"`` → ("::1", 8080); ``":8080"`` → loopback.

    Port 0 is allowed (the system picks a free port: tests, and the demo). Raises ValueError with the fix.
    """
    text = value.strip()
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"not HOST:PORT: {value!r} (e.g. '127.0.0.1:8080', '0.0.0.0:8080' or '[::1]:8080')")
    number = int(port)
    if number > 65535:
        raise ValueError(f"port {number} in {value!r} is out of range (0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"an IPv6 address goes in brackets: '[{host}]:{port}'")
    return host or "127.0.0.1", number


def _check_listen(value: str) -> str:
    parse_listen(value)
    return value.strip()


def _check_ocpi_status(key: str) -> str:
    try:
        OcpiEvseStatus(key.strip().upper())
    except ValueError:
        statuses = ", ".join(s.value for s in OcpiEvseStatus)
        raise ValueError(f"{key!r} is not an OCPI status (one of {statuses})") from None
    return key


MAPPING_TARGETS = (*(s.value for s in EvseStatus), *(w.value for w in Withdrawal))


def _check_mapping_target(value: str) -> str:
    if value.strip().lower() not in {target.lower() for target in MAPPING_TARGETS}:
        raise ValueError(f"{value!r} is not one of {', '.join(MAPPING_TARGETS)}")
    return value


Duration = Annotated[float, BeforeValidator(parse_duration), Field(ge=0)]
Secret = Annotated[SecretStr, BeforeValidator(read_secret)]
# HOST:PORT, checked at load (a bad one used to surface as a traceback at bind time)
ListenAddress = Annotated[str, AfterValidator(_check_listen)]
MappingKey = Annotated[str, AfterValidator(_check_ocpi_status)]
MappingTarget = Annotated[str, AfterValidator(_check_mapping_target)]


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


class StoreConfig(Section):
    """``url``: ``sqlite:///PATH`` (embedded, one process) or ``postgresql://user@host:port/db`` (any number
    of replicas share it); ``lease``: how long a silent replica keeps an operator's or source's leadership
    (contract "Several replicas"; docs/deploy.md says what it trades)."""

    url: str = "sqlite:///oicp-bridge.db"
    lease: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 10.0

    @field_validator("url")
    @classmethod
    def _known_engine(cls, url: str) -> str:
        url = url.strip()
        if url.startswith("sqlite:///"):
            if not url.removeprefix("sqlite:///"):
                raise ValueError("sqlite:/// needs a file path, e.g. sqlite:///var/lib/oicp-bridge/bridge.db")
            return url
        if url.startswith(POSTGRES_SCHEMES):
            # never the URL itself in a message: it may hold a password
            parts = urlsplit(url)
            try:
                parts.port  # noqa: B018 - reading it validates it
            except ValueError:
                raise ValueError("the port in the postgresql:// URL is not a number in 1-65535") from None
            if not parts.path.strip("/"):
                raise ValueError("the postgresql:// URL names no database (postgresql://user@host:5432/DB)")
            return url
        raise ValueError("use sqlite:///PATH or postgresql://user@host:port/database")

    @property
    def is_postgres(self) -> bool:
        return self.url.startswith(POSTGRES_SCHEMES)

    @property
    def sqlite_path(self) -> Path:
        return Path(self.url.removeprefix("sqlite:///"))

    @property
    def display_url(self) -> str:
        """The URL as it may be shown or logged: a password replaced by ``***``."""
        return redact_url(self.url)


def redact_url(url: str) -> str:
    """``url`` with the password of its user part (``user:password@``) replaced by ``***``."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class Protocol(StrEnum):
    REST = "rest"
    SOAP = "soap"


class HubjectConfig(Section):
    url: str = QA_URL
    protocol: Protocol = Protocol.REST
    client_cert: Path | None = None
    client_key: Path | None = None
    key_password: Secret | None = None
    ca_cert: Path | None = None
    connect_timeout: Duration = 10.0
    timeout: Duration = 30.0


def _party_list(value: Any) -> Any:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list):
        return [PartyRef.parse(v) if isinstance(v, str) else v for v in value]
    return value


class OperatorConfig(Section):
    operator_id: OperatorID
    operator_name: str | None = Field(default=None, max_length=100)
    # the OCPI parties ("CC/PID") allowed to publish this operator's EVSEs; None: the party the OperatorID
    # names (DE*ABC -> DE/ABC). bridge.ownership
    ocpi_parties: Annotated[list[PartyRef] | None, BeforeValidator(_party_list)] = None
    # EVSE data (docs/evse-data.md): off by default, as when the data is uploaded by other means
    push_evse_data: bool = False
    hotline_phone_number: str | None = None
    evse_data: EvseDataSettings | None = None  # [operators.evse_data]: overrides of [evse_data]

    @field_validator("hotline_phone_number")
    @classmethod
    def _hotline(cls, value: str | None) -> str | None:
        return None if value is None else normalise_hotline(value)

    @model_validator(mode="after")
    def _data_needs(self) -> OperatorConfig:
        # OICP 2.3 EvseDataRecord: HotlinePhoneNumber is mandatory and OCPI has no such field;
        # eRoamingPushEvseData: OperatorName is mandatory (optional only for status)
        if self.push_evse_data and self.hotline_phone_number is None:
            raise ValueError('push_evse_data = true needs hotline_phone_number (e.g. "+49 30 1234567")')
        if self.push_evse_data and not self.operator_name:
            raise ValueError("push_evse_data = true needs operator_name (mandatory in eRoamingPushEvseData)")
        return self


class TokenConfig(Section):
    """A pre-shared OCPI token (the CPO's credentials token for us), bound to one party."""

    token: Secret
    country_code: str = Field(pattern=r"^[A-Z]{2}$")
    party_id: str = Field(pattern=r"^[A-Z0-9]{3}$")


class ReceiverConfig(Section):
    listen: ListenAddress = "127.0.0.1:8080"
    public_url: str | None = None  # how CPOs reach us; default http://{listen}
    tokens: list[TokenConfig] = Field(default_factory=list)
    # the bridge's own OCPI identity, sent in its credentials objects
    country_code: str = Field(default="ZZ", pattern=r"^[A-Z]{2}$")
    party_id: str = Field(default="OIB", pattern=r"^[A-Z0-9]{3}$")
    # optional TLS on the receiver's own listener (PEM files); without them it serves plain HTTP, for
    # deployments where a reverse proxy terminates TLS
    tls_cert: Path | None = None
    tls_key: Path | None = None
    # The largest request body taken (after gzip decompression). A Location PUT carries every EVSE of the
    # Location, roughly 1 kB each: the default takes a 10 000-EVSE Location with room to spare.
    max_body_size: Annotated[ByteSize, Field(gt=0)] = ByteSize(DEFAULT_MAX_BODY_SIZE)
    # A connection that has not sent a complete request head this long after it opened (or after its
    # last answer) is closed: idle keep-alive connections and half-sent requests must not pile up.
    idle_timeout: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 15.0
    # The longest the receiver waits for one request's body.
    body_timeout: Annotated[float, BeforeValidator(parse_duration), Field(gt=0)] = 30.0
    # Open connections at most; the bridge lowers it further to stay below its file-descriptor limit.
    max_connections: int = Field(default=1000, ge=1)
    # POST/PUT /credentials makes the bridge fetch the URL the CPO names: loopback, link-local and
    # private addresses are refused unless this is true (a CPO backend on the same host or network).
    allow_local_credentials_urls: bool = False

    @model_validator(mode="after")
    def _tls_pair(self) -> ReceiverConfig:
        if (self.tls_cert is None) != (self.tls_key is None):
            raise ValueError("tls_cert and tls_key go together: set both or neither")
        return self

    @property
    def scheme(self) -> str:
        return "https" if self.tls_cert is not None else "http"

    @property
    def base_url(self) -> str:
        return (self.public_url or f"{self.scheme}://{self.listen}").rstrip("/")


class SourceConfig(Section):
    """A CPO's OCPI Locations sender that the bridge polls."""

    versions_url: str
    token: Secret
    poll_interval: Duration = 60.0
    country_code: str | None = Field(default=None, pattern=r"^[A-Z]{2}$")
    party_id: str | None = Field(default=None, pattern=r"^[A-Z0-9]{3}$")


class OcpiConfig(Section):
    receiver: ReceiverConfig = Field(default_factory=ReceiverConfig)
    sources: list[SourceConfig] = Field(default_factory=list)
    stale_after: Duration = 900.0  # a feed silent this long is shown stale (bridge.feeds); 0 = off


class PushConfig(Section):
    flush_interval: Duration = 1.0
    max_batch: int = Field(default=1000, ge=1, le=10_000)
    max_retry_interval: Duration = 60.0
    max_calls_per_minute: int = Field(default=2000, ge=1)
    shutdown_timeout: Duration = 20.0
    retry_budget: Duration = 300.0
    include_unpublished: bool = False  # push EVSEs of OCPI publish=false locations too


class ResyncConfig(Section):
    interval: Duration = 86400.0  # 0 = off
    # the first fullLoad waits until no new EVSE arrived for this long (and every sender was polled in full)
    first_fullload_quiet: Duration = 30.0
    data_interval: Duration = 7 * 86400.0  # EVSE data fullLoad, weekly as Hubject advises; 0 = off
    max_shrink: float = Field(default=0.2, ge=0.0, le=1.0)


class AdminConfig(Section):
    listen: ListenAddress = "127.0.0.1:8081"
    token: Secret | None = None


class LogLevel(StrEnum):
    DEBUG = "DEBUG"
    INFO = "INFO"
    WARNING = "WARNING"
    ERROR = "ERROR"


class LogFormat(StrEnum):
    AUTO = "auto"  # JSON unless stdout is a terminal
    JSON = "json"
    CONSOLE = "console"


class LogConfig(Section):
    """``oicp-bridge run --log-level/--log-format`` override these."""

    level: Annotated[LogLevel, BeforeValidator(lambda v: v.upper() if isinstance(v, str) else v)] = (
        LogLevel.INFO
    )
    format: LogFormat = LogFormat.AUTO


class BridgeConfig(BaseSettings):
    """The whole configuration. Build with ``load_config``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True, toml_file=None
    )

    store: StoreConfig = Field(default_factory=StoreConfig)
    hubject: HubjectConfig = Field(default_factory=HubjectConfig)
    operators: list[OperatorConfig] = Field(default_factory=list)
    ocpi: OcpiConfig = Field(default_factory=OcpiConfig)
    push: PushConfig = Field(default_factory=PushConfig)
    resync: ResyncConfig = Field(default_factory=ResyncConfig)
    # each entry checked on its own, so every bad entry gets its own line
    mapping: dict[MappingKey, MappingTarget] = Field(default_factory=dict)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    log: LogConfig = Field(default_factory=LogConfig)

    @field_validator("mapping")
    @classmethod
    def _mapping_table(cls, mapping: dict[str, str]) -> dict[str, str]:
        parse_overrides(mapping)  # the very function Bridge.build uses: what loads here, builds there
        return mapping

    @field_validator("operators")
    @classmethod
    def _distinct_operators(cls, operators: list[OperatorConfig]) -> list[OperatorConfig]:
        ids = [str(o.operator_id) for o in operators]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:  # two lanes for one operator would push it in parallel, which OICP forbids
            raise ValueError(f"{', '.join(twice)} configured more than once")
        return operators

    evse_data: EvseDataSettings = Field(default_factory=EvseDataSettings)

    @model_validator(mode="after")
    def _data_needs_rest(self) -> BridgeConfig:
        pushing = [str(o.operator_id) for o in self.operators if o.push_evse_data]
        if pushing and self.hubject.protocol is Protocol.SOAP:
            raise ValueError(
                f'push_evse_data = true ({", ".join(pushing)}) needs protocol = "rest": this release '
                "pushes EVSE data over OICP 2.3 REST only; with SOAP (OICP 2.2) it is status only"
            )
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only what is passed in: ``load_config`` reads the file and the environment itself (it needs the
        # raw values to check what is left when one section is invalid), and a config built in code
        # (tests, the demo) does not depend on the environment it runs in.
        return (init_settings,)

    def client_settings(self) -> ClientSettings:
        hubject = self.hubject
        return ClientSettings(
            url=hubject.url,
            client_cert=hubject.client_cert,
            client_key=hubject.client_key,
            key_password=hubject.key_password,
            ca_cert=hubject.ca_cert,
            connect_timeout=hubject.connect_timeout,
            timeout=hubject.timeout,
            max_calls_per_minute=self.push.max_calls_per_minute,
            max_retry_interval=self.push.max_retry_interval,
            retry_budget=self.push.retry_budget,
        )


def config_path(explicit: Path | None) -> Path:
    """``--config``, else ``$OICP_BRIDGE_CONFIG``, else ``./oicp-bridge.toml``."""
    if explicit is not None:
        return explicit
    from_env = os.environ.get(CONFIG_ENV)
    return Path(from_env) if from_env else DEFAULT_CONFIG


Checks = Callable[["BridgeConfig"], list[str]]


def read_sources(path: Path | None) -> dict[str, Any]:
    """The raw values: the TOML file's, with the environment's merged over them (the environment wins)."""
    values: dict[str, Any] = {}
    if path is not None:
        try:
            values = TomlConfigSettingsSource(BridgeConfig, toml_file=path)()
        except (OSError, ValueError) as exc:  # TOML syntax errors are ValueErrors (tomllib.TOMLDecodeError)
            raise ConfigError([f"cannot read it: {exc}"]) from exc
    try:
        environment = EnvSettingsSource(BridgeConfig)()
    except SettingsError as exc:  # a value that is not valid JSON for a list or a table
        raise ConfigError([f"environment: {exc}"]) from exc
    return _merge(values, environment)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(
    path: Path | None, *, require_file: bool = False, checks: Checks | None = None
) -> BridgeConfig:
    """Read the TOML file (if it exists) and the environment; raise ConfigError listing every problem.

    ``checks(config)`` adds what a model cannot know (certificate files, a writable store folder), as
    ``"section.key: message"`` lines. When some sections are invalid, the checks still run on the rest
    (the invalid sections at their defaults, their lines dropped): one run reports every problem.
    """
    if path is not None and not path.exists():
        if require_file:
            raise ConfigError([f"{path}: no such configuration file"])
        path = None
    raw = read_sources(path)
    problems: list[str] = []
    failed: set[str] = set()
    config: BridgeConfig | None
    try:
        config = BridgeConfig(**raw)
    except ValidationError as exc:
        problems = [_describe(error, os.environ) for error in exc.errors()]
        failed = {str(error["loc"][0]) for error in exc.errors() if error["loc"]}
        try:
            config = BridgeConfig(**{key: value for key, value in raw.items() if key not in failed})
        except ValidationError:  # a rule across sections failed: nothing sound is left to check
            config = None
    if checks is not None and config is not None:
        sections = ((re.split(r"[.:\[ ]", line, maxsplit=1)[0], line) for line in checks(config))
        problems += [line for section, line in sections if section not in failed]
    if problems:
        raise ConfigError(problems)
    assert config is not None
    return config


def env_variable(location: tuple[Any, ...], environ: Mapping[str, str]) -> str | None:
    """The environment variable a value at ``location`` came from, if one is set: the longest prefix of
    the location's keys (``OICP_BRIDGE_OCPI__RECEIVER__LISTEN``, or ``OICP_BRIDGE_OPERATORS`` for a list)."""
    keys: list[str] = []
    for part in location:
        if not isinstance(part, str):
            break
        keys.append(part)
    set_names = {name.upper() for name in environ}
    for end in range(len(keys), 0, -1):
        name = ENV_PREFIX + "__".join(keys[:end]).upper()
        if name in set_names:
            return name
    return None


def _describe(error: Any, environ: Mapping[str, str]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key (check the spelling against config/example.toml)"
    source = env_variable(tuple(error["loc"]), environ)
    line = f"{location}: {message}" if location else message
    return line + (f" (from the environment: {source})" if source else "")
