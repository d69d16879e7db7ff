"""The agent's configuration: one TOML file, validated once into frozen dataclasses.

The file (default ``/etc/umps-agent/agent.toml``) has one table per part of
the agent. Every section forbids unknown keys, so a typo is an error with its
key path rather than a setting silently ignored. Validation happens once, at
start (and for each remote push, with the same schema); after that the rest
of the agent reads typed, frozen attributes, never raw dicts.

The schema is plain frozen dataclasses with their rules in ``Annotated``
metadata (``annotated_types`` bounds, and :class:`Pattern` and :class:`Check`
below); pydantic does the validating, in :mod:`agent.config_validate`
(``agent.config_validate.parse_config``): at start, for ``umps-agent config
check``, and for each remote push on the agent's remote-request worker thread.
This module imports neither pydantic nor the core: the caller passes the
validation to ``load_config``, so the layers run one way (config below
config_validate, both below the core).

``load_config`` raises :class:`ConfigError`, which carries every problem
found as ``(key path, message)`` pairs, so ``umps-agent config check`` can
print them all at once.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Protocol, get_args

from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen

from agent.problems import ProblemsError


DEFAULT_PATH = Path("/etc/umps-agent/agent.toml")

# The unit status codes, defined here once: the config names them (buttons, default
# status) and the core's status rules, the views and the GPIO adapter take them from here.
StatusCode = Literal["available", "en_route", "on_scene", "busy", "out_of_service"]
STATUS_CODES: tuple[str, ...] = get_args(StatusCode)
Language = Literal["fr", "ar"]

# Unit ids become MQTT topic levels and client ids: no wildcards, no slashes.
UNIT_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
TOPIC_LEVEL_PATTERN = r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$"
# What each pattern wants, in words: `config check` says this, never the regular expression.
PATTERN_WORDS = {
    UNIT_ID_PATTERN: "1 to 64 characters: letters (A-Z, a-z), digits, '_', '.' or '-', starting with a letter or "
                     "a digit; no spaces, accents, '/', '+' or '#' (it becomes an MQTT topic level)",
    TOPIC_LEVEL_PATTERN: "letters (A-Z, a-z), digits, '_', '.' or '-', with a single '/' between levels; no spaces, "
                         "accents, '+' or '#', and no '/' at the start or the end (e.g. \"umps\" or \"police/kenitra\")",
}


# ------------------------------------------------------- schema metadata
# pydantic reads ``__get_pydantic_core_schema__`` on Annotated metadata and on
# types; the import of pydantic_core inside runs only where validation runs.


@dataclass(frozen=True)
class Pattern:
    """Annotated metadata: the string must match ``regex``."""

    regex: str

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        return {**handler(source), "pattern": self.regex}


@dataclass(frozen=True)
class Check:
    """Annotated metadata: ``func(value)`` returns the value, or raises ValueError."""

    func: Callable[[Any], Any]

    def __get_pydantic_core_schema__(self, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(self.func, handler(source))


class Secret:
    """A password: its value only through :meth:`get_secret_value`, ``***`` in reprs and logs."""

    __slots__ = ("_value",)

    def __init__(self, value: str):
        self._value = value

    def get_secret_value(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: Any) -> Any:
        from pydantic_core import core_schema

        return core_schema.no_info_after_validator_function(cls, core_schema.str_schema())


FORBID_EXTRA = {"extra": "forbid"}  # pydantic's config for a stdlib dataclass


def section(cls: type) -> type:
    """A config table: a frozen dataclass that refuses unknown keys."""
    cls.__pydantic_config__ = FORBID_EXTRA  # type: ignore[attr-defined]
    return dataclass(frozen=True)(cls)


# ------------------------------------------------------------------- unit


@section
class UnitConfig:
    id: Annotated[str, Pattern(UNIT_ID_PATTERN)]
    kind: Literal["motorcycle", "car"]
    name: str = ""  # a label for people, e.g. "Moto 12 – Kénitra centre"


# ------------------------------------------------------------------- gnss


# The rates a UART and every GNSS receiver's configuration tool offer; anything else is a typo.
STANDARD_BAUD_RATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)


def _baudrate(value: int) -> int:
    if value not in STANDARD_BAUD_RATES:
        raise ValueError(f"{value} is not a standard baud rate; use one of "
                         f"{', '.join(map(str, STANDARD_BAUD_RATES))} (receivers ship at 9600 or 38400)")
    return value


@section
class GnssConfig:
    port: str = "/dev/serial0"  # device path or pyserial URL (socket://, loop://)
    baudrate: Annotated[int, Check(_baudrate)] = 9600
    # No bytes for this long: the receiver is reported lost.
    silence_timeout_s: Annotated[float, Gt(0), Le(60)] = 3.0
    # Cap of the back-off between attempts to reopen a vanished port.
    reopen_max_wait_s: Annotated[float, Gt(0), Le(300)] = 5.0


# ------------------------------------------------------------------- mqtt


@section
class BrokerAddress:
    host: Annotated[str, MinLen(1)]
    port: Annotated[int, Gt(0), Lt(65536)] = 1883


@section
class TlsConfig:
    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    # Skip hostname verification (bench use only; never on a fleet).
    insecure: bool = False

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("cert_file and key_file go together")


@section
class MqttConfig:
    host: Annotated[str, MinLen(1)] = "localhost"
    port: Annotated[int, Gt(0), Lt(65536)] = 1883
    # Further brokers tried in turn when the first cannot be reached.
    failover: list[BrokerAddress] = field(default_factory=list)
    prefix: Annotated[str, Pattern(TOPIC_LEVEL_PATTERN)] = "umps"
    client_id: str | None = None  # default "umps-<unit id>" (keep it stable: the broker session is keyed on it)
    username: str | None = None
    password: Secret | None = None
    protocol: Literal["5", "3.1.1"] = "5"
    keepalive_s: Annotated[int, Ge(5), Le(600)] = 30
    tls: TlsConfig = field(default_factory=TlsConfig)
    reconnect_min_s: Annotated[float, Gt(0), Le(60)] = 1.0
    reconnect_max_s: Annotated[float, Gt(0), Le(600)] = 60.0
    # No PUBACK / PINGRESP for this long: the link is black-holed, reconnect.
    ack_timeout_s: Annotated[float, Gt(0), Le(300)] = 15.0
    max_inflight: Annotated[int, Ge(1), Le(1000)] = 20
    max_queued: Annotated[int, Ge(1), Le(100_000)] = 1000

    def __post_init__(self) -> None:
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")

    @property
    def brokers(self) -> list[BrokerAddress]:
        return [BrokerAddress(host=self.host, port=self.port), *self.failover]


# ---------------------------------------------------------------- storage


@section
class StorageConfig:
    state_dir: Path = Path("/var/lib/umps-agent")
    # Live state for `umps-agent status` (a tmpfs: nothing here wears the SD card).
    runtime_dir: Path = Path("/run/umps-agent")
    # 48 h of 1 Hz reports; when full the oldest backlog telemetry goes first.
    max_backlog_reports: Annotated[int, Ge(100), Le(10_000_000)] = 172_800
    # Telemetry is committed in batches (SD card wear); status and alarms at once.
    commit_interval_s: Annotated[float, Gt(0), Le(300)] = 10.0
    # Refuse to start unless state_dir sits on an encrypted file system (LUKS/dm-crypt or
    # fscrypt; see firmware-config/storage/README.md). Only the local file may set it.
    require_encrypted: bool = False


# -------------------------------------------------------------- telemetry


@section
class TelemetryConfig:
    rate_hz: Annotated[float, Gt(0), Le(10)] = 1.0
    # Backlog drain ceiling, so old reports never starve live traffic.
    backlog_max_rate: Annotated[float, Gt(0), Le(100_000)] = 5000.0
    # "cbor": compact reports and batched backlog (docs/mqtt-api.md); "json" for integrations that read JSON.
    encoding: Literal["json", "cbor"] = "json"


# ------------------------------------------------------------------ power


@section
class PowerConfig:
    """The vehicle's power: ignition sense and the hold-up supply's warning (firmware-config/power.md).

    A pin left unset is not wired: without ``ignition_pin`` the unit counts as
    driving (ignition on) all the time; without ``power_fail_pin`` a cut loses
    up to a batch of reports (and the next run declares them in ``seq_gap``).
    """

    ignition_pin: Annotated[int, Ge(0), Le(53)] | None = None  # BCM numbering
    # An opto-isolated ignition sense pulls the line low when the ignition is on.
    ignition_active_high: bool = False
    ignition_debounce_s: Annotated[float, Ge(0), Le(10)] = 0.5  # cranking dips the 12 V
    power_fail_pin: Annotated[int, Ge(0), Le(53)] | None = None
    power_fail_active_high: bool = False  # most hold-up boards pull the line low on a cut
    power_fail_debounce_s: Annotated[float, Ge(0), Le(1)] = 0.01
    # Ignition off this long: the agent stops cleanly and the unit powers off.
    shutdown_after_s: Annotated[float, Ge(0), Le(86_400)] = 900.0
    # Telemetry rate while parked (ignition off, status available or out_of_service).
    parked_rate_hz: Annotated[float, Gt(0), Le(10)] = 1 / 60
    # Run after a power-fail or ignition-off stop; empty: the agent just exits.
    poweroff_command: str = "systemctl poweroff"

    def __post_init__(self) -> None:
        if self.ignition_pin is not None and self.ignition_pin == self.power_fail_pin:
            raise ValueError(f"pin {self.ignition_pin} used by both ignition_pin and power_fail_pin")


# ------------------------------------------------------------------- gpio


@section
class InputPin:
    pin: Annotated[int, Ge(0), Le(53)]  # BCM numbering
    pull_up: bool | None = True  # None: floating, needs active_high
    active_high: bool | None = None  # only with pull_up = None
    bounce_s: Annotated[float, Ge(0), Le(1)] = 0.02

    def __post_init__(self) -> None:
        if self.pull_up is None and self.active_high is None:
            raise ValueError("a floating input (pull_up unset) needs active_high")
        if self.pull_up is not None and self.active_high is not None:
            raise ValueError("active_high only applies when pull_up is unset")


@section
class OutputPin:
    pin: Annotated[int, Ge(0), Le(53)]
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


INPUT_NAMES = (*STATUS_CODES, "ack", "decline", "cleared", "emergency", "siren", "silent_emergency")
OUTPUT_NAMES = ("status_red", "status_green", "status_blue", "link", "gnss", "call", "alarm", "buzzer")


def _known(kind: str, names: tuple[str, ...]) -> Check:
    def check(value: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(value) - set(names))
        if unknown:
            raise ValueError(f"unknown {kind}(s) {unknown}; known: {list(names)}")
        return value

    return Check(check)


@section
class GpioConfig:
    # lgpio on the vehicle; mock in unit tests; pigpio for the rig (remote pins).
    factory: Literal["lgpio", "rpigpio", "native", "pigpio", "mock"] = "lgpio"
    pigpio_host: str = "127.0.0.1"
    pigpio_port: Annotated[int, Gt(0), Lt(65536)] = 8888
    inputs: Annotated[dict[str, InputPin], _known("input", INPUT_NAMES)] = field(default_factory=_default_inputs)
    outputs: Annotated[dict[str, OutputPin], _known("output", OUTPUT_NAMES)] = field(default_factory=_default_outputs)

    def __post_init__(self) -> None:
        seen: dict[int, str] = {}
        for name, spec in [*self.inputs.items(), *self.outputs.items()]:
            if spec.pin in seen:
                raise ValueError(f"pin {spec.pin} used by both {seen[spec.pin]!r} and {name!r}")
            seen[spec.pin] = name


# ------------------------------------------------------------------ panel


@section
class PatternConfig:
    """A blink/beep pattern: alternating on/off durations in seconds, from on."""

    steps: Annotated[list[Annotated[float, Gt(0), Le(10)]], MinLen(1), MaxLen(32)]
    repeat: Annotated[int, Ge(0), Le(1000)] = 1  # 0: until replaced


@dataclass(frozen=True, slots=True)
class PatternSpec:
    steps: tuple[float, ...]
    repeat: int = 1


# The built-in patterns (the defaults of ``[panel] patterns``, which overrides them
# by name); the indicator rules (agent.core.indicators) play them.
DEFAULT_PATTERNS: dict[str, PatternSpec] = {
    "call_p1": PatternSpec((0.15, 0.1, 0.15, 0.1, 0.15, 0.6), repeat=0),
    "call_p2": PatternSpec((0.3, 0.2, 0.3, 1.2), repeat=0),
    "call_p3": PatternSpec((0.5, 2.0), repeat=3),
    "accepted": PatternSpec((0.08,), repeat=1),
    "refused": PatternSpec((0.6,), repeat=1),
    "emergency_pending": PatternSpec((0.1, 0.1), repeat=0),
    "emergency_active": PatternSpec((0.5, 0.5), repeat=0),
    "emergency_acknowledged": PatternSpec((0.05, 1.95), repeat=0),
    "link_offline": PatternSpec((1.0, 1.0), repeat=0),
    "gnss_no_fix": PatternSpec((0.2, 0.8), repeat=0),
}


def _known_patterns(value: dict[str, PatternConfig]) -> dict[str, PatternConfig]:
    unknown = sorted(set(value) - set(DEFAULT_PATTERNS))
    if unknown:
        raise ValueError(f"unknown pattern(s) {unknown}; known: {sorted(DEFAULT_PATTERNS)}")
    return value


def _available_everywhere(value: dict[str, list[str]]) -> dict[str, list[str]]:
    for kind, codes in value.items():
        if "available" not in codes:
            raise ValueError(f"{kind}: the 'available' button is needed to end a call")
        if len(set(codes)) != len(codes):
            raise ValueError(f"{kind}: a status is listed twice")
    return value


def _default_status_buttons() -> dict[str, list[str]]:
    return {"motorcycle": ["available", "en_route", "on_scene", "out_of_service"], "car": list(STATUS_CODES)}


@section
class PanelConfig:
    # Which status buttons a vehicle of each kind carries.
    status_buttons: Annotated[dict[Literal["motorcycle", "car"], list[StatusCode]], Check(_available_everywhere)] = \
        field(default_factory=_default_status_buttons)
    default_status: StatusCode = "available"
    emergency_hold_s: Annotated[float, Ge(0.5), Le(10)] = 2.0
    emergency_cancel_s: Annotated[float, Ge(0), Le(60)] = 5.0
    # A call already older than this when it reaches the unit is flagged stale on the screens
    # and in its "received" (judged on trusted time only); 0: never flagged.
    stale_call_after_s: Annotated[float, Ge(0), Le(30 * 86400)] = 3600.0
    language: Language = "fr"
    # Overrides of the status labels, per language: {"fr": {"busy": "Occupé"}}.
    labels: dict[Language, dict[StatusCode, Annotated[str, MinLen(1), MaxLen(40)]]] = field(default_factory=dict)
    # Overrides of the LED/buzzer patterns by name; the rest keep their defaults.
    patterns: Annotated[dict[str, PatternConfig], Check(_known_patterns)] = field(default_factory=dict)
    # The silent emergency (docs/crash-detection.md): "emergency+ack" (ack pressed while emergency is
    # held), "input" (the hidden [gpio] inputs.silent_emergency switch held emergency_hold_s), "none".
    silent_gesture: Literal["none", "emergency+ack", "input"] = "none"


# --------------------------------------------------------------- displays


@section
class UiConfig:
    """The car's touchscreen: a local web page shown by Chromium in kiosk mode."""

    enabled: bool | None = None  # None: on for cars, off for motorcycles
    host: str = "127.0.0.1"  # loopback unless deliberately opened
    http_port: Annotated[int, Gt(0), Lt(65536)] = 8080
    language: Language = "fr"
    theme: Literal["auto", "day", "night"] = "auto"
    sound: bool = True


@section
class DisplayConfig:
    """The rider's panel display (OLED over I2C)."""

    kind: Literal["auto", "none", "ssd1306", "sh1106", "hd44780", "dummy"] = "auto"
    i2c_port: Annotated[int, Ge(0), Le(10)] = 1
    i2c_address: Annotated[int, Ge(0x03), Le(0x77)] = 0x3C
    width: Annotated[int, Ge(32), Le(256)] = 128
    height: Annotated[int, Ge(16), Le(128)] = 64
    rotate: Literal[0, 1, 2, 3] = 0
    speech: bool = False  # spoken read-out of new calls (espeak-ng)
    # Also write every frame to this PNG file (atomically): a live picture of what the rider
    # sees, for the demo and the bench. Empty: no copy.
    mirror_png: str = ""


# -------------------------------------------------------------------- imu

Axis = Literal["+x", "-x", "+y", "-y", "+z", "-z"]


@section
class ImuConfig:
    """The crash sensor (firmware-config/imu.md) and the rules that read it (docs/crash-detection.md).

    Every threshold is explained, with the case it is set against, in the docs; the defaults
    are the published ones (2 g with 25 km/h before the impact, 4 g for 20 ms, a roll past
    60 degrees held).
    """

    enabled: bool = False  # a unit without the sensor leaves it off
    # The IIO device: its `name` (mpu6050, mpu9250...), "iio:deviceN", or "auto" (the first known chip).
    device: Annotated[str, MinLen(1)] = "auto"
    sysfs_dir: Path = Path("/sys/bus/iio/devices")
    dev_dir: Path = Path("/dev")
    rate_hz: Annotated[int, Ge(100), Le(1000)] = 100  # two samples in a 20 ms impact at least
    wake_hz: Annotated[float, Ge(1), Le(50)] = 10.0  # reads a second: impact to alarm within ~1/wake_hz
    # How the board sits when no calibration is stored (umps-agent imu calibrate): its axes
    # pointing forward and up. A car's calibration keeps forward_axis (a car cannot lean).
    forward_axis: Axis = "+x"
    up_axis: Axis = "+z"
    # Severe, at once: an impact along the vehicle (forward or sideways) of impact_g with at
    # least impact_min_speed_kmh before it, or of hard_impact_g in any direction; each held
    # impact_hold_ms (a pothole's or a kerb's spike is shorter).
    impact_g: Annotated[float, Ge(1.0), Le(16)] = 2.0
    impact_min_speed_kmh: Annotated[float, Ge(5), Le(200)] = 25.0
    hard_impact_g: Annotated[float, Ge(2.0), Le(16)] = 4.0
    impact_hold_ms: Annotated[int, Ge(10), Le(200)] = 20
    # On its side: tilted past roll_limit_deg for roll_hold_s; then still for still_s. Severe
    # after impact_min_speed_kmh, minor below it.
    roll_limit_deg: Annotated[float, Ge(30), Le(90)] = 60.0
    roll_hold_s: Annotated[float, Ge(0.2), Le(10)] = 1.0
    still_s: Annotated[float, Ge(0.5), Le(30)] = 2.0
    still_g: Annotated[float, Gt(0), Le(0.5)] = 0.05  # "no motion": accelerometer within this of its mean
    still_dps: Annotated[float, Gt(0), Le(50)] = 5.0  # and the gyroscope below this
    # Parked: ignition off, or slower than 3 km/h (or no GNSS and no motion) for this long.
    parked_after_s: Annotated[float, Ge(5), Le(3600)] = 30.0
    crash_cancel_s: Annotated[float, Ge(5), Le(120)] = 25.0  # the pre-alarm's cancel window
    minor_prompt_s: Annotated[float, Ge(3), Le(60)] = 10.0  # the minor prompt's
    man_down_s: Annotated[float, Ge(0), Le(600)] = 30.0  # down and still this long after a fall: alarm; 0: off
    trace_before_s: Annotated[float, Ge(5), Le(30)] = 15.0  # the crash trace around the impact
    trace_after_s: Annotated[float, Ge(5), Le(30)] = 15.0

    def __post_init__(self) -> None:
        if self.forward_axis[1] == self.up_axis[1]:
            raise ValueError(f"forward_axis {self.forward_axis} and up_axis {self.up_axis} must be different axes")
        if self.hard_impact_g < self.impact_g:
            raise ValueError(f"hard_impact_g ({self.hard_impact_g}) must not be below impact_g ({self.impact_g})")
        if self.man_down_s and self.man_down_s < self.still_s:
            raise ValueError(f"man_down_s ({self.man_down_s}) must be 0 (off) or at least still_s ({self.still_s})")


# --------------------------------------------------------------- security


def public_key_bytes(text: str) -> bytes:
    """The 32 raw bytes of an Ed25519 public key as the config lists it (standard base64).

    The text form is the config's; :mod:`agent.core.signing` makes the key from these bytes.
    """
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return raw


def check_public_keys(texts: list[str], name: str = "admin_keys") -> list[str]:
    """``texts`` when every one is a key; ``ValueError`` naming the first bad one by its index."""
    for index, text in enumerate(texts):
        try:
            public_key_bytes(text)
        except ValueError as exc:
            raise ValueError(f"{name}[{index}]: {exc}") from None
    return texts


def _keys_parse(value: list[str]) -> list[str]:
    return check_public_keys(value, "admin_keys")


def _dispatch_keys_parse(value: list[str]) -> list[str]:
    return check_public_keys(value, "dispatch_keys")


@section
class SecurityConfig:
    # Admin Ed25519 public keys (base64 of the 32 raw bytes). When any is
    # listed, every config push and remote command must be signed by one.
    admin_keys: Annotated[list[str], Check(_keys_parse)] = field(default_factory=list)
    # Dispatch Ed25519 public keys. When any is listed, every call, alarm/ack and
    # alarm/clear must be signed by one (see docs/mqtt-api.md, "Signed dispatch").
    dispatch_keys: Annotated[list[str], Check(_dispatch_keys_parse)] = field(default_factory=list)
    # A broker or TLS change that cannot connect within this time is rolled back.
    rollback_timeout_s: Annotated[float, Ge(10), Le(3600)] = 120.0


@section
class LoggingConfig:
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"


# ------------------------------------------------------------------- root


@section
class AgentConfig:
    unit: UnitConfig
    gnss: GnssConfig = field(default_factory=GnssConfig)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    storage: StorageConfig = field(default_factory=StorageConfig)
    telemetry: TelemetryConfig = field(default_factory=TelemetryConfig)
    gpio: GpioConfig = field(default_factory=GpioConfig)
    power: PowerConfig = field(default_factory=PowerConfig)
    panel: PanelConfig = field(default_factory=PanelConfig)
    ui: UiConfig = field(default_factory=UiConfig)
    display: DisplayConfig = field(default_factory=DisplayConfig)
    security: SecurityConfig = field(default_factory=SecurityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    imu: ImuConfig = field(default_factory=ImuConfig)

    def __post_init__(self) -> None:
        panel_pins = {spec.pin: name for name, spec in [*self.gpio.inputs.items(), *self.gpio.outputs.items()]}
        for key in ("ignition_pin", "power_fail_pin"):
            pin = getattr(self.power, key)
            if pin is not None and pin in panel_pins:
                raise ValueError(f"power.{key} {pin} is also gpio {panel_pins[pin]!r}")
        if self.panel.silent_gesture == "input" and "silent_emergency" not in self.gpio.inputs:
            raise ValueError('panel.silent_gesture "input" needs a pin: [gpio] inputs.silent_emergency')

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

    def plain(self) -> dict[str, Any]:
        """The config as JSON data, secrets in clear (never publish this)."""
        return _plain(self, "clear")

    def redacted(self) -> dict[str, Any]:
        """The effective config as plain JSON data, every :class:`Secret` replaced by ``"***"``."""
        return _plain(self, "mask")

    def digest(self) -> str:
        """A short stable hash of the effective config *without its secrets*.

        Published as ``config_hash`` (``online``) and ``hash`` (``config/current``),
        where dispatch and admin roles read it next to the redacted config: a hash
        that covered the MQTT password would let them test password guesses
        offline. Every :class:`Secret` is left out (not masked: its presence
        would say nothing a reader cannot see in the redacted config anyway), so
        changing only a secret leaves the hash as it was. Key files are named by
        their path; their contents are never read into the config.
        """
        blob = json.dumps(_plain(self, "omit"), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


    def secrets(self) -> dict[str, str]:
        """Every :class:`Secret` in force by key path (``{"mqtt.password": ...}``); never publish this."""
        found: dict[str, str] = {}
        _collect_secrets(self, "", found)
        return found


def _collect_secrets(value: Any, path: str, found: dict[str, str]) -> None:
    if isinstance(value, Secret):
        found[path] = value.get_secret_value()
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _collect_secrets(getattr(value, f.name), f"{path}.{f.name}" if path else f.name, found)
    elif isinstance(value, dict):
        for key, item in value.items():
            _collect_secrets(item, f"{path}.{key}" if path else str(key), found)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _collect_secrets(item, f"{path}[{index}]", found)


_OMIT = object()


def _is_secret_field(f: dataclasses.Field) -> bool:
    # "Secret | None": whether a password is set at all is left out of the hash too.
    return f.type is Secret or bool(re.search(r"\bSecret\b", str(f.type)))


def _plain(value: Any, secrets: Literal["clear", "mask", "omit"]) -> Any:
    if dataclasses.is_dataclass(value):
        fields = [f for f in dataclasses.fields(value) if not (secrets == "omit" and _is_secret_field(f))]
        items = ((f.name, _plain(getattr(value, f.name), secrets)) for f in fields)
        return {name: item for name, item in items if item is not _OMIT}
    if isinstance(value, dict):
        items = ((str(key), _plain(item, secrets)) for key, item in value.items())
        return {key: item for key, item in items if item is not _OMIT}
    if isinstance(value, (list, tuple)):
        return [item for item in (_plain(v, secrets) for v in value) if item is not _OMIT]
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, Secret):
        return {"clear": value.get_secret_value(), "mask": "***", "omit": _OMIT}[secrets]
    return value


# ------------------------------------------------------------------ loading


class ConfigError(ProblemsError):
    """The configuration is unusable; ``problems`` lists ``(key path, message)``."""


class ConfigFileError(ConfigError):
    """The file itself cannot be read (missing, unreadable): not a judgement on its content."""

    def __init__(self, source: str, reason: str):
        super().__init__(source, [("", reason)])
        self.reason = reason


def error_location(loc: tuple[Any, ...]) -> str:
    """``('gpio', 'inputs', 'ack', 'pin')`` -> ``gpio.inputs.ack.pin``."""
    return ".".join(str(part) for part in loc if not _is_pydantic_tag(part))


def _is_pydantic_tag(part: Any) -> bool:
    # pydantic inserts validator names ("function-after[...]") into some paths.
    return isinstance(part, str) and bool(re.match(r"^[a-z-]+\[.*\]$", part))


class Validate(Protocol):
    """Validates config data into an :class:`AgentConfig`; raises :class:`ConfigError`.

    ``strict``: JSON types only (remote pushes: ``"5"`` is not a port).
    """

    def __call__(self, data: dict[str, Any], source: str = ..., *, strict: bool = ...) -> AgentConfig: ...


def load_config(path: str | Path, validate: Validate) -> AgentConfig:
    """The TOML file at ``path``, validated by ``validate`` (``agent.config_validate.parse_config``)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ConfigFileError(str(path), "no such file") from None
    except OSError as exc:
        raise ConfigFileError(str(path), f"cannot read: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(str(path), [("", f"not UTF-8: {exc}")]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), [("", f"TOML syntax: {toml_syntax_message(raw.decode('utf-8'), exc)}")]) from None
    # TOML has types, as JSON has: "8883" in quotes is a string, not a port.
    return validate(data, str(path), strict=True)


_AT = re.compile(r"\s*\((?:at line (\d+), column (\d+)|at end of document)\)$")


def toml_syntax_message(text: str, exc: tomllib.TOMLDecodeError) -> str:
    """tomllib's error in an installer's words: where, and what to do about an unclosed string.

    tomllib reports a string left open on its line as "Illegal character '\\n'" (a basic
    string may not hold a line break), and an open multi-line one only at the end of the file.
    """
    message = str(exc)
    where = _AT.search(message)
    what = message[: where.start()] if where else message
    line = int(where.group(1)) if where and where.group(1) else None
    lines = text.splitlines()
    if what in ("Illegal character '\\n'", "Illegal character '\\r'") and line is not None:
        quote = _opening_quote(lines[line - 1] if line <= len(lines) else "")
        return (f"line {line}: unterminated string: the {quote} opened on this line is not closed before its end "
                f"(close it with {quote} on the same line; text over several lines goes between {quote * 3})"
                + _quoted(lines, line))
    if what in ("Unterminated string", 'Expected "\'"'):
        start = _last_open_line(lines)
        where_text = f"line {start}: " if start else ""
        return (f"{where_text}unterminated string: a quote opened here is never closed before the end of the file"
                + (_quoted(lines, start) if start else ""))
    if line is not None:
        return f"line {line}, column {where.group(2)}: {what}" + _quoted(lines, line)  # type: ignore[union-attr]
    return message


def _opening_quote(line: str) -> str:
    """The quote character of the string left open on ``line`` (TOML's basic ``"`` unless a ``'`` opens it)."""
    body = line.split("=", 1)[-1].lstrip()
    return "'" if body.startswith("'") else '"'


def _last_open_line(lines: list[str]) -> int | None:
    """The last line with an odd number of quotes of one kind: where a string was opened and left."""
    for number in range(len(lines), 0, -1):
        if lines[number - 1].count('"') % 2 or lines[number - 1].count("'") % 2:
            return number
    return None


def _quoted(lines: list[str], line: int) -> str:
    return f"; the line reads: {lines[line - 1].strip()}" if 0 < line <= len(lines) else ""
