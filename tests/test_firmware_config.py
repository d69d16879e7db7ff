"""firmware-config/: each file checked by its own tool where one exists.

- udev rule: ``udevadm verify`` (systemd >= 253). Debian 12 ships systemd
  252, which has no such command; there the test says so and skips, and the
  rule is checked by the structural lint and the matching model below,
  which evaluate it the way udev does (fnmatch patterns, GOTO/LABEL,
  link_priority) against the USB receivers it is meant for and some it is not.
- chrony: ``chronyd -p -f FILE`` parses a configuration and exits non-zero on
  any error (a broken copy proves it).
- journald: keys checked against the key table compiled into the installed
  systemd-journald binary.
- config.txt, cmdline, modules: structure and the settings the vehicle needs.
"""

from __future__ import annotations

import configparser
import fnmatch
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FW = REPO / "firmware-config"
RULES = FW / "udev" / "99-umps-gnss.rules"
CHRONY_VARIANTS = [FW / "chrony" / "umps-gnss.conf", FW / "chrony" / "umps-gnss-gpsd.conf"]

# ------------------------------------------------------------------- udev

MATCH_OPS = {"==", "!="}
ASSIGN_OPS = {"=", "+=", "-=", ":="}
MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM", "SUBSYSTEMS",
              "DRIVER", "DRIVERS", "TAG", "TAGS", "TEST", "PROGRAM", "RESULT", "CONST"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "TAG", "SECLABEL", "RUN", "LABEL", "GOTO",
               "IMPORT", "OPTIONS", "WAIT_FOR", "SYSCTL"}
ATTR_KEYS = {"ATTR", "ATTRS", "ENV", "SYSCTL", "TEST", "IMPORT", "RUN", "SECLABEL", "CONST"}
TOKEN = re.compile(r'\s*([A-Z_]+)(?:\{([^}]+)\})?\s*(==|!=|\+=|-=|:=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


@dataclass
class Rule:
    lineno: int
    tokens: list[tuple[str, str | None, str, str]] = field(default_factory=list)


def parse_rules(text: str) -> list[Rule]:
    """Parse a rules file strictly; raise ValueError naming the bad line."""
    rules = []
    for lineno, raw in enumerate(text.replace("\\\n", "").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        rule, pos = Rule(lineno), 0
        while pos < len(line):
            m = TOKEN.match(line, pos)
            if not m:
                raise ValueError(f"line {lineno}: cannot parse at {line[pos:]!r}")
            key, attr, op, value = m.groups()
            if attr is not None and key not in ATTR_KEYS:
                raise ValueError(f"line {lineno}: {key} takes no {{attribute}}")
            if key not in MATCH_KEYS | ASSIGN_KEYS | ATTR_KEYS:
                raise ValueError(f"line {lineno}: unknown key {key}")
            if op in MATCH_OPS and key not in MATCH_KEYS | ATTR_KEYS:
                raise ValueError(f"line {lineno}: {key} cannot be matched")
            if op in ASSIGN_OPS and key not in ASSIGN_KEYS | {"ENV", "ATTR", "SYSCTL", "IMPORT", "RUN", "SECLABEL"}:
                raise ValueError(f"line {lineno}: {key} cannot be assigned (did you mean ==?)")
            rule.tokens.append((key, attr, op, value))
            pos = m.end()
        rules.append(rule)
    labels = {v for r in rules for k, _, _, v in r.tokens if k == "LABEL"}
    for r in rules:
        for k, _, _, v in r.tokens:
            if k == "GOTO" and v not in labels:
                raise ValueError(f"line {r.lineno}: GOTO {v!r} has no LABEL")
    return rules


@dataclass
class Device:
    """A tty device as udev sees it: its own keys and its USB parent's attributes."""

    kernel: str
    vendor: str | None = None
    product: str | None = None
    subsystem: str = "tty"
    action: str = "add"

    def value(self, key: str, attr: str | None, env: dict[str, str]) -> list[str]:
        if key == "ENV":
            return [env.get(attr or "", "")]  # unset compares as empty, as in udev
        if key == "ACTION":
            return [self.action]
        if key == "SUBSYSTEM":
            return [self.subsystem]
        if key == "KERNEL":
            return [self.kernel]
        if key == "SUBSYSTEMS":
            return [self.subsystem] + (["usb"] if self.vendor else [])
        if key == "ATTRS" and self.vendor:
            return {"idVendor": [self.vendor], "idProduct": [self.product]}.get(attr or "", [])
        return []


def apply_rules(rules: list[Rule], dev: Device) -> dict[str, object]:
    """Evaluate the rules on a device as udev does; return the result."""
    out: dict[str, object] = {"symlinks": [], "env": {}, "link_priority": 0}
    goto = None
    for rule in rules:
        if goto is not None:
            if any(k == "LABEL" and v == goto for k, _, _, v in rule.tokens):
                goto = None
            continue
        matched = True
        for key, attr, op, value in rule.tokens:
            if op in MATCH_OPS:
                patterns = value.split("|")
                hit = any(fnmatch.fnmatchcase(v, p) for v in dev.value(key, attr, out["env"]) for p in patterns)
                if hit != (op == "=="):
                    matched = False
                    break
        if not matched:
            continue
        for key, attr, op, value in rule.tokens:
            if op not in ASSIGN_OPS:
                continue
            if key == "SYMLINK":
                out["symlinks"].append(value)
            elif key in ("GROUP", "MODE"):
                out[key] = value
            elif key == "ENV":
                out["env"][attr] = value
            elif key == "OPTIONS" and value.startswith("link_priority="):
                out["link_priority"] = int(value.split("=", 1)[1])
            elif key == "GOTO":
                goto = value
    return out


def test_udevadm_verify_accepts_the_rule():
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        pytest.skip("udevadm not installed")
    probe = subprocess.run([udevadm, "verify", "--help"], capture_output=True, text=True)
    if probe.returncode != 0:
        version = subprocess.run([udevadm, "--version"], capture_output=True, text=True).stdout.strip()
        pytest.skip(
            f"udevadm {version} has no `verify` (added in systemd 253); "
            "the rule is checked by test_udev_rule_structure and test_udev_rule_matches_* instead"
        )
    result = subprocess.run([udevadm, "verify", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_udev_rule_structure():
    rules = parse_rules(RULES.read_text())
    device_rules = [r for r in rules if any(k == "SYMLINK" for k, *_ in r.tokens)]
    assert len(device_rules) >= 9
    for rule in device_rules:
        assigned = {k: v for k, _, op, v in rule.tokens if op in ASSIGN_OPS}
        assert assigned["SYMLINK"] == "gnss0", rule.lineno
        assert assigned["GROUP"] == "dialout", rule.lineno
        assert assigned["MODE"] == "0660", rule.lineno
        for key, attr, _, value in rule.tokens:
            if key == "ATTRS":
                assert attr in {"idVendor", "idProduct"}
                assert re.fullmatch(r"[0-9a-f\[\]\-]{4,9}", value), (rule.lineno, value)


def test_udev_lint_catches_mistakes():
    with pytest.raises(ValueError, match="cannot be assigned"):
        parse_rules('KERNEL=="ttyACM0", SUBSYSTEM="tty"\n')
    with pytest.raises(ValueError, match="no LABEL"):
        parse_rules('SUBSYSTEM!="tty", GOTO="nowhere"\n')
    with pytest.raises(ValueError, match="cannot parse"):
        parse_rules('KERNEL=="ttyACM0" SYMLINK+="gnss0"x\n')


@pytest.mark.parametrize(
    ("kernel", "vendor", "product", "priority"),
    [
        ("ttyACM0", "1546", "01a8", 10),  # u-blox M8, native USB
        ("ttyACM1", "1546", "01a9", 10),  # u-blox M9/F9
        ("ttyUSB0", "067b", "2303", 10),  # Prolific PL2303 GPS mouse
        ("ttyUSB0", "10c4", "ea60", 10),  # CP2102 receiver board
        ("ttyUSB3", "0403", "6015", 10),  # FTDI FT231X
        ("ttyACM2", "2341", "0043", -10),  # unknown CDC-ACM device: generic rule
    ],
)
def test_udev_rule_matches_receivers(kernel, vendor, product, priority):
    result = apply_rules(parse_rules(RULES.read_text()), Device(kernel, vendor, product))
    assert result["symlinks"] == ["gnss0"]
    assert result["GROUP"] == "dialout" and result["MODE"] == "0660"
    assert result["env"]["ID_MM_DEVICE_IGNORE"] == "1"
    assert result["link_priority"] == priority


@pytest.mark.parametrize(
    "device",
    [
        Device("ttyUSB0", "1a86", "7523"),  # CH340 bridge: not in the list
        Device("ttyAMA0"),  # on-board UART: /dev/serial0, not gnss0
        Device("ttyACM0", "1546", "01a8", action="remove"),
        Device("hidraw0", "1546", "01a8", subsystem="hidraw"),
    ],
)
def test_udev_rule_matches_nothing_else(device):
    assert apply_rules(parse_rules(RULES.read_text()), device)["symlinks"] == []


# ----------------------------------------------------------------- chrony


def chronyd() -> str:
    tool = shutil.which("chronyd")
    if tool is None:
        pytest.skip("chronyd not installed (Debian package chrony)")
    return tool


@pytest.mark.parametrize("conf", CHRONY_VARIANTS, ids=lambda p: p.name)
def test_chronyd_parses_the_config(conf):
    result = subprocess.run([chronyd(), "-p", "-f", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    parsed = result.stdout.splitlines()
    assert any(line.startswith("refclock PPS /dev/pps0 ") and " lock NMEA" in line for line in parsed)
    nmea = [line for line in parsed if line.startswith("refclock ") and " refid NMEA" in line]
    assert len(nmea) == 1, parsed


def test_chronyd_parse_check_can_fail(tmp_path):
    broken = tmp_path / "broken.conf"
    broken.write_text(CHRONY_VARIANTS[0].read_text().replace(" lock NMEA", " lok NMEA"))
    assert subprocess.run([chronyd(), "-p", "-f", str(broken)], capture_output=True).returncode != 0


def test_sock_socket_drop_in_names_the_socket_of_the_config():
    conf = CHRONY_VARIANTS[0].read_text()
    sock = re.search(r"^refclock SOCK (\S+)", conf, re.M).group(1)
    drop_in = (FW / "chrony" / "chrony.service.d" / "umps-gnss.conf").read_text()
    command = re.search(r"^ExecStartPost=-\+(.*)$", drop_in, re.M).group(1)
    assert shlex.split(command)[:2] == ["/bin/sh", "-c"]
    assert f"chgrp umps-agent {sock}" in command and f"chmod 0660 {sock}" in command
    from agent.adapters.chrony_sock import DEFAULT_PATH

    assert DEFAULT_PATH == sock


# ---------------------------------------------------------------- journald


def journald_keys() -> set[str]:
    """[Journal] keys known to the installed systemd-journald (its gperf table)."""
    for path in ("/lib/systemd/systemd-journald", "/usr/lib/systemd/systemd-journald"):
        if Path(path).exists():
            keys = set(re.findall(rb"Journal\.([A-Za-z]+)\x00", Path(path).read_bytes()))
            if keys:
                return {k.decode() for k in keys}
    pytest.skip("systemd-journald not installed: cannot read its key table")


SIZE = re.compile(r"(\d+)([KMG]?)")


def test_journald_dropin_keys_exist_and_keep_logs_in_ram():
    parser = configparser.ConfigParser(strict=True)
    parser.optionxform = str  # keys are case-sensitive
    parser.read(FW / "journald" / "umps-agent.conf")
    assert parser.sections() == ["Journal"]
    journal = parser["Journal"]
    unknown = set(journal) - journald_keys()
    assert not unknown, f"unknown journald keys: {unknown}"
    assert journal["Storage"] == "volatile"
    assert journal["ForwardToSyslog"] == "no"
    sizes = {}
    for key in ("RuntimeMaxUse", "RuntimeMaxFileSize", "RuntimeKeepFree"):
        m = SIZE.fullmatch(journal[key])
        assert m, (key, journal[key])
        sizes[key] = int(m.group(1)) * {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}[m.group(2)]
    assert sizes["RuntimeMaxUse"] <= 64 * 2**20  # a cap that fits a Pi's RAM
    assert sizes["RuntimeMaxFileSize"] <= sizes["RuntimeMaxUse"]


# --------------------------------------------------- boot and kernel config


def test_config_txt_fragment_enables_what_the_unit_needs():
    lines = [
        line.strip()
        for line in (FW / "config.txt").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    for line in lines:
        assert re.fullmatch(r"\[(all|pi[0-9a-z]+)\]|[a-z_0-9]+=[\w,=.\-]+", line), line
    assert "enable_uart=1" in lines
    assert "dtparam=i2c_arm=on" in lines
    assert "dtoverlay=disable-bt" in lines and not any("miniuart-bt" in line for line in lines)
    pps = [line for line in lines if line.startswith("dtoverlay=pps-gpio")]
    assert len(pps) == 1
    pin = int(re.fullmatch(r"dtoverlay=pps-gpio,gpiopin=(\d+)", pps[0]).group(1))
    assert 0 <= pin <= 27 and pin not in {2, 3, 14, 15}  # not on the I2C or UART pins
    assert lines[-1] == "[all]"  # later lines of the board's file apply to all models again


def test_config_txt_loads_the_crash_sensor_on_a_free_interrupt_pin():
    from agent.config import AgentConfig, UnitConfig

    lines = [line.strip() for line in (FW / "config.txt").read_text().splitlines()
             if line.strip().startswith("dtoverlay=i2c-sensor")]
    assert len(lines) == 1
    # The overlay's IMU parameters are mpu6050 and mpu9250 (inv_mpu6050 IIO driver); the driver needs INT.
    m = re.fullmatch(r"dtoverlay=i2c-sensor,(mpu6050|mpu9250),int_pin=(\d+)(,addr=0x6[89])?", lines[0])
    assert m, lines[0]
    pin = int(m.group(2))
    pps = int(re.search(r"dtoverlay=pps-gpio,gpiopin=(\d+)", (FW / "config.txt").read_text()).group(1))
    defaults = AgentConfig(unit=UnitConfig(id="x", kind="motorcycle"))
    taken = {2, 3, 14, 15, pps, 4, 7}  # I2C, UART, PPS, and the [power] example pins
    taken |= {spec.pin for spec in [*defaults.gpio.inputs.values(), *defaults.gpio.outputs.values()]}
    assert pin not in taken
    doc = (FW / "imu.md").read_text()
    assert lines[0] in doc and f"GPIO{pin}" in doc  # the wiring page says the same
    assert f"GPIO{pin}" in (FW / "README.md").read_text()


def test_cmdline_doc_says_how_to_free_the_serial_console():
    doc = (FW / "cmdline.txt.md").read_text()
    assert "console=serial0,115200" in doc
    assert "/boot/firmware/cmdline.txt" in doc


def test_i2c_dev_module_is_loaded():
    modules = [
        line.strip()
        for line in (FW / "modules-load" / "umps-agent.conf").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert modules == ["i2c-dev"]


def test_readme_covers_every_file():
    readme = (FW / "README.md").read_text()
    assert "mosquitto/" in readme
    for path in FW.rglob("*"):
        if path.is_file() and "mosquitto" not in path.parts and path.name != "README.md":
            assert str(path.relative_to(FW)) in readme, f"README.md does not explain {path.relative_to(FW)}"
