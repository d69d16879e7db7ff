"""The agent's configuration: one TOML file, validated once into frozen models.

The file (default ``/etc/umps-agent/agent.toml``) has one table per part of
the agent. Every model forbids unknown keys, so a typo is an error with its
key path rather than a setting silently ignored. Validation happens once, at
start (and for each remote push, with the same models); after that the rest
of the agent reads typed, frozen attributes, never raw dicts.

``load_config`` raises :class:`ConfigError`, which carries every problem
found as ``(key path, message)`` pairs, so ``umps-agent config check`` can
print them all at once.
"""

from __future__ import annotations

import hashlib
import json
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from agent.core.signing import parse_public_keys

DEFAULT_PATH = Path("/etc/umps-agent/agent.toml")

STATUS_CODES = ("available", "en_route", "on_scene", "busy", "out_of_service")
StatusCode = Literal["available", "en_route", "on_scene", "busy", "out_of_service"]
Language = Literal["fr", "ar"]

# Unit ids become MQTT topic levels and client ids: no wildcards, no slashes.
UNIT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOPIC_LEVEL_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ------------------------------------------------------------------- unit


class UnitConfig(Section):
    id: Annotated[str, Field(pattern=UNIT_ID_PATTERN)]
    kind: Literal["motorcycle", "car"]
    name: str = ""  # a label for people, e.g. "Moto 12 – Kénitra centre"


# ------------------------------------------------------------------- gnss


class GnssConfig(Section):
    port: str = "/dev/serial0"  # device path or pyserial URL (socket://, loop://)
    baudrate: Annotated[int, Field(gt=0, le=4_000_000)] = 9600
    # No bytes for this long: the receiver is reported lost.
    silence_timeout_s: Annotated[float, Field(gt=0, le=60)] = 3.0
    # Cap of the back-off between attempts to reopen a vanished port.
    reopen_max_wait_s: Annotated[float, Field(gt=0, le=300)] = 5.0


# ------------------------------------------------------------------- mqtt


class BrokerAddress(Section):
    host: Annotated[str, Field(min_length=1)]
    port: Annotated[int, Field(gt=0, lt=65536)] = 1883


class TlsConfig(Section):
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Skip hostname verification (bench use only; never on a fleet).
    insecure: bool = False

    @model_validator(mode="after")
    def _pair(self) -> "TlsConfig":
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")
        return self


class MqttConfig(Section):
    host: Annotated[str, Field(min_length=1)] = "localhost"
    port: Annotated[int, Field(gt=0, lt=65536)] = 1883
    # Further brokers tried in turn when the first cannot be reached.
    failover: list[BrokerAddress] = []
    prefix: Annotated[str, Field(pattern=TOPIC_LEVEL_PATTERN)] = "umps"
    client_id: str | None = None  # default "umps-<unit id>" (keep it stable: the broker session is keyed on it)
    username: str | None = None
    password: SecretStr | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: Annotated[int, Field(ge=5, le=600)] = 30
    tls: TlsConfig = TlsConfig()
    reconnect_min_s: Annotated[float, Field(gt=0, le=60)] = 1.0
    reconnect_max_s: Annotated[float, Field(gt=0, le=600)] = 60.0
    # No PUBACK / PINGRESP for this long: the link is black-holed, reconnect.
    ack_timeout_s: Annotated[float, Field(gt=0, le=300)] = 15.0
    max_inflight: Annotated[int, Field(ge=1, le=1000)] = 20
    max_queued: Annotated[int, Field(ge=1, le=100_000)] = 1000

    @model_validator(mode="after")
    def _backoff(self) -> "MqttConfig":
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    @property
    def brokers(self) -> list[BrokerAddress]:
        return [BrokerAddress(host=self.host, port=self.port), *self.failover]


# ---------------------------------------------------------------- storage


class StorageConfig(Section):
    state_dir: Path = Path("/var/lib/umps-agent")
    # Live state for `umps-agent status` (a tmpfs: nothing here wears the SD card).
    runtime_dir: Path = Path("/run/umps-agent")
    # 48 h of 1 Hz reports; when full the oldest backlog telemetry goes first.
    max_backlog_reports: Annotated[int, Field(ge=100, le=10_000_000)] = 172_800
    # Telemetry is committed in batches (SD card wear); status and alarms at once.
    commit_interval_s: Annotated[float, Field(gt=0, le=300)] = 10.0


# -------------------------------------------------------------- telemetry


class TelemetryConfig(Section):
    rate_hz: Annotated[float, Field(gt=0, le=10)] = 1.0
    # Backlog drain ceiling, so old reports never starve live traffic.
    backlog_max_rate: Annotated[float, Field(gt=0, le=100_000)] = 5000.0


# ------------------------------------------------------------------- gpio


class InputPin(Section):
    pin: Annotated[int, Field(ge=0, le=53)]  # BCM numbering
    pull_up: bool | None = True  # None: floating, needs active_high
    active_high: bool | None = None  # only with pull_up = None
    bounce_s: Annotated[float, Field(ge=0, le=1)] = 0.02

    @model_validator(mode="after")
    def _levels(self) -> "InputPin":
        if self.pull_up is None and self.active_high is None:
            raise ValueError("a floating input (pull_up unset) needs active_high")
        if self.pull_up is not None and self.active_high is not None:
            raise ValueError("active_high only applies when pull_up is unset")
        return self


class OutputPin(Section):
    pin: Annotated[int, Field(ge=0, le=53)]
    active_high: bool = True


def _default_inputs() -> dict[str, InputPin]:
    pins = {
        "available": 5, "en_route": 6, "on_scene": 13, "busy": 19, "out_of_service": 26,
        "ack": 16, "emergency": 20, "siren": 21,
    }
    return {name: InputPin(pin=pin) for name, pin in pins.items()}


def _default_outputs() -> dict[str, OutputPin]:
    pins = {
        "status_red": 17, "status_green": 27, "status_blue": 22,
        "link": 23, "gnss": 24, "call": 25, "alarm": 12, "buzzer": 18,
    }
    return {name: OutputPin(pin=pin) for name, pin in pins.items()}


INPUT_NAMES = (*STATUS_CODES, "ack", "decline", "cleared", "emergency", "siren")
OUTPUT_NAMES = ("status_red", "status_green", "status_blue", "link", "gnss", "call", "alarm", "buzzer")


class GpioConfig(Section):
    # lgpio on the vehicle; mock in unit tests; pigpio for the rig (remote pins).
    factory: Literal["lgpio", "rpigpio", "native", "pigpio", "mock"] = "lgpio"
    pigpio_host: str = "127.0.0.1"
    pigpio_port: Annotated[int, Field(gt=0, lt=65536)] = 8888
    inputs: dict[str, InputPin] = Field(default_factory=_default_inputs)
    outputs: dict[str, OutputPin] = Field(default_factory=_default_outputs)

    @field_validator("inputs")
    @classmethod
    def _known_inputs(cls, value: dict[str, InputPin]) -> dict[str, InputPin]:
        unknown = sorted(set(value) - set(INPUT_NAMES))
        if unknown:
            raise ValueError(f"unknown input(s) {unknown}; known: {list(INPUT_NAMES)}")
        return value

    @field_validator("outputs")
    @classmethod
    def _known_outputs(cls, value: dict[str, OutputPin]) -> dict[str, OutputPin]:
        unknown = sorted(set(value) - set(OUTPUT_NAMES))
        if unknown:
            raise ValueError(f"unknown output(s) {unknown}; known: {list(OUTPUT_NAMES)}")
        return value

    @model_validator(mode="after")
    def _distinct_pins(self) -> "GpioConfig":
        seen: dict[int, str] = {}
        for name, spec in [*self.inputs.items(), *self.outputs.items()]:
            if spec.pin in seen:
                raise ValueError(f"pin {spec.pin} used by both {seen[spec.pin]!r} and {name!r}")
            seen[spec.pin] = name
        return self


# ------------------------------------------------------------------ panel


class PatternConfig(Section):
    """A blink/beep pattern: alternating on/off durations in seconds, from on."""

    steps: Annotated[list[Annotated[float, Field(gt=0, le=10)]], Field(min_length=1, max_length=32)]
    repeat: Annotated[int, Field(ge=0, le=1000)] = 1  # 0: until replaced


def _known_patterns(value: dict[str, PatternConfig]) -> dict[str, PatternConfig]:
    # The pattern names and their defaults live with the indicator rules.
    from agent.core.indicators import DEFAULT_PATTERNS

    unknown = sorted(set(value) - set(DEFAULT_PATTERNS))
    if unknown:
        raise ValueError(f"unknown pattern(s) {unknown}; known: {sorted(DEFAULT_PATTERNS)}")
    return value


class PanelConfig(Section):
    # Which status buttons a vehicle of each kind carries.
    status_buttons: dict[Literal["motorcycle", "car"], list[StatusCode]] = {
        "motorcycle": ["available", "en_route", "on_scene", "out_of_service"],
        "car": list(STATUS_CODES),
    }
    default_status: StatusCode = "available"
    emergency_hold_s: Annotated[float, Field(ge=0.5, le=10)] = 2.0
    emergency_cancel_s: Annotated[float, Field(ge=0, le=60)] = 5.0
    language: Language = "fr"
    # Overrides of the status labels, per language: {"fr": {"busy": "Occupé"}}.
    labels: dict[Language, dict[StatusCode, Annotated[str, Field(min_length=1, max_length=40)]]] = {}
    # Overrides of the LED/buzzer patterns by name; the rest keep their defaults.
    patterns: dict[str, PatternConfig] = {}

    @field_validator("patterns")
    @classmethod
    def _patterns_known(cls, value: dict[str, PatternConfig]) -> dict[str, PatternConfig]:
        return _known_patterns(value)

    @field_validator("status_buttons")
    @classmethod
    def _available_everywhere(cls, value: dict[str, list[str]]) -> dict[str, list[str]]:
        for kind, codes in value.items():
            if "available" not in codes:
                raise ValueError(f"{kind}: the 'available' button is needed to end a call")
            if len(set(codes)) != len(codes):
                raise ValueError(f"{kind}: a status is listed twice")
        return value


# --------------------------------------------------------------- displays


class UiConfig(Section):
    """The car's touchscreen: a local web page shown by Chromium in kiosk mode."""

    enabled: bool | None = None  # None: on for cars, off for motorcycles
    host: str = "127.0.0.1"  # loopback unless deliberately opened
    http_port: Annotated[int, Field(gt=0, lt=65536)] = 8080
    language: Language = "fr"
    theme: Literal["auto", "day", "night"] = "auto"
    sound: bool = True


class DisplayConfig(Section):
    """The rider's panel display (OLED over I2C)."""

    kind: Literal["auto", "none", "ssd1306", "sh1106", "hd44780", "dummy"] = "auto"
    i2c_port: Annotated[int, Field(ge=0, le=10)] = 1
    i2c_address: Annotated[int, Field(ge=0x03, le=0x77)] = 0x3C
    width: Annotated[int, Field(ge=32, le=256)] = 128
    height: Annotated[int, Field(ge=16, le=128)] = 64
    rotate: Literal[0, 1, 2, 3] = 0
    speech: bool = False  # spoken read-out of new calls (espeak-ng)


# --------------------------------------------------------------- security


class SecurityConfig(Section):
    # Admin Ed25519 public keys (base64 of the 32 raw bytes). When any is
    # listed, every config push and remote command must be signed by one.
    admin_keys: list[str] = []
    # A broker or TLS change that cannot connect within this time is rolled back.
    rollback_timeout_s: Annotated[float, Field(ge=10, le=3600)] = 120.0

    @field_validator("admin_keys")
    @classmethod
    def _keys_parse(cls, value: list[str]) -> list[str]:
        if value:
            parse_public_keys(value)  # ValueError names the bad key by its index
        return value


class LoggingConfig(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


# ------------------------------------------------------------------- root


class AgentConfig(Section):
    unit: UnitConfig
    gnss: GnssConfig = GnssConfig()
    mqtt: MqttConfig = MqttConfig()
    storage: StorageConfig = StorageConfig()
    telemetry: TelemetryConfig = TelemetryConfig()
    gpio: GpioConfig = GpioConfig()
    panel: PanelConfig = PanelConfig()
    ui: UiConfig = UiConfig()
    display: DisplayConfig = DisplayConfig()
    security: SecurityConfig = SecurityConfig()
    logging: LoggingConfig = LoggingConfig()

    @property
    def ui_enabled(self) -> bool:
        return self.ui.enabled if self.ui.enabled is not None else self.unit.kind == "car"

    @property
    def display_kind(self) -> str:
        if self.display.kind != "auto":
            return self.display.kind
        return "ssd1306" if self.unit.kind == "motorcycle" else "none"

    @property
    def status_buttons(self) -> list[str]:
        return list(self.panel.status_buttons.get(self.unit.kind, STATUS_CODES))

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain JSON data, secrets replaced by ``"***"``."""
        data = self.model_dump(mode="json")
        if self.mqtt.password is not None:
            data["mqtt"]["password"] = "***"
        return data

    def digest(self) -> str:
        """A short stable hash of the effective config (secrets included, not shown)."""
        data = self.model_dump(mode="json")
        if self.mqtt.password is not None:
            data["mqtt"]["password"] = self.mqtt.password.get_secret_value()
        blob = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


# ------------------------------------------------------------------ loading


class ConfigError(Exception):
    """The configuration is unusable; ``problems`` lists ``(key path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {loc or '<file>'}: {msg}" for loc, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


def error_location(loc: tuple[Any, ...]) -> str:
    """``('gpio', 'inputs', 'ack', 'pin')`` -> ``gpio.inputs.ack.pin``."""
    return ".".join(str(part) for part in loc if not _is_pydantic_tag(part))


def _is_pydantic_tag(part: Any) -> bool:
    # pydantic inserts validator names ("function-after[...]") into some paths.
    return isinstance(part, str) and bool(re.match(r"^[a-z-]+\[.*\]$", part))


def validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    problems = []
    for err in exc.errors(include_url=False):
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif msg.startswith("Value error, "):
            msg = msg.removeprefix("Value error, ")
        problems.append((error_location(err["loc"]), msg))
    return problems


def parse_config(data: dict[str, Any], source: str = "<config>") -> AgentConfig:
    try:
        return AgentConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, validation_problems(exc)) from None


def load_config(path: str | Path) -> AgentConfig:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(str(path), [("", f"cannot read: {exc.strerror or exc}")]) from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [("", f"not UTF-8: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"TOML syntax: {exc}")]) from None
    return parse_config(data, str(path))
