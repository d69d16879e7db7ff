"""The unit files: systemd's own verifier and security score, and what they promise.

``systemd-analyze verify`` checks that a unit loads (every key known and
well-formed, executables present). The executables live on the vehicle
(/opt/umps-agent/venv/bin/umps-agent, /usr/bin/cage), so each unit is
verified from a temporary copy whose ExecStart points at a stand-in
executable; nothing else is changed. verify exits 0 even for unknown keys
(it only warns), so the test also fails on any diagnostic naming the file.

``systemd-analyze security --offline=yes`` scores the sandbox of the agent
unit from the file alone; the target is an exposure of 2.0 or lower.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
UNITS = REPO / "systemd"
AGENT_UNIT = UNITS / "umps-agent.service"
KIOSK_UNIT = UNITS / "umps-kiosk.service"
MAX_EXPOSURE = 2.0


def systemd_analyze() -> str:
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze not installed: `apt install systemd` (make test installs it as root)")
    return tool


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections -> key -> every value in order (systemd keys may repeat)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current = None
    text = path.read_text().replace("\\\n", " ")
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def verifiable_copy(unit: Path, tmp_path: Path, executables: list[str]) -> Path:
    """The unit with its executables replaced by one stand-in script."""
    stand_in = tmp_path / "stand-in"
    stand_in.write_text("#!/bin/sh\nexit 0\n")
    stand_in.chmod(0o755)
    text = unit.read_text()
    for exe in executables:
        assert exe in text, f"{exe} not in {unit.name}"
        text = text.replace(exe, str(stand_in))
    copy = tmp_path / unit.name
    copy.write_text(text)
    return copy


def run_verify(copy: Path) -> None:
    result = subprocess.run(
        [systemd_analyze(), "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    about_unit = [line for line in (result.stdout + result.stderr).splitlines() if copy.name in line]
    assert result.returncode == 0 and not about_unit, result.stdout + result.stderr


def test_agent_unit_passes_systemd_analyze_verify(tmp_path):
    run_verify(verifiable_copy(AGENT_UNIT, tmp_path, ["/opt/umps-agent/venv/bin/umps-agent"]))


def test_kiosk_unit_passes_systemd_analyze_verify(tmp_path):
    run_verify(verifiable_copy(KIOSK_UNIT, tmp_path, ["/usr/bin/cage"]))


def test_verify_catches_a_broken_unit(tmp_path):
    """The check above can fail: a misspelt key and a bad value are reported."""
    copy = verifiable_copy(AGENT_UNIT, tmp_path, ["/opt/umps-agent/venv/bin/umps-agent"])
    copy.write_text(copy.read_text().replace("NoNewPrivileges=yes", "NoNewPrivilege=yes"))
    with pytest.raises(AssertionError, match="Unknown key"):
        run_verify(copy)


def security_exposure(unit: Path) -> tuple[float, str]:
    tool = systemd_analyze()
    helptext = subprocess.run([tool, "--help"], capture_output=True, text=True).stdout
    if "--offline" not in helptext:
        pytest.skip("this systemd-analyze has no --offline (systemd < 250): cannot score a unit file")
    result = subprocess.run(
        [tool, "security", "--offline=yes", "--no-pager", str(unit)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", result.stdout)
    assert match, result.stdout
    return float(match.group(1)), result.stdout


def test_agent_unit_security_exposure_is_at_most_2(tmp_path):
    exposure, report = security_exposure(AGENT_UNIT)
    assert exposure <= MAX_EXPOSURE, report


def test_security_score_notices_a_weaker_sandbox(tmp_path):
    """The score is not a constant: dropping the hardening raises it."""
    weak = tmp_path / "umps-agent.service"
    kept = [
        line
        for line in AGENT_UNIT.read_text().splitlines()
        if not line.startswith(("Protect", "Private", "Restrict", "SystemCall", "Capability", "DevicePolicy"))
    ]
    weak.write_text("\n".join(kept) + "\n")
    exposure, _ = security_exposure(weak)
    strong, _ = security_exposure(AGENT_UNIT)
    assert exposure > strong + 2


def test_agent_unit_contract():
    unit = parse_unit(AGENT_UNIT)
    svc = unit["Service"]
    one = {key: values[-1] for key, values in svc.items()}
    assert one["Type"] == "notify"
    assert one["NotifyAccess"] == "main"
    assert one["Restart"] == "always"
    assert re.fullmatch(r"\d+s", one["WatchdogSec"]) and int(one["WatchdogSec"][:-1]) >= 10
    assert one["ExecStart"] == "/opt/umps-agent/venv/bin/umps-agent run --config /etc/umps-agent/agent.toml"
    assert one["StateDirectory"] == "umps-agent"
    assert one["ConfigurationDirectory"] == "umps-agent"
    assert one["User"] == "umps-agent"
    assert one["CapabilityBoundingSet"] == ""
    assert one["DevicePolicy"] == "closed"
    for key in ("NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectKernelTunables", "ProtectKernelModules"):
        assert one[key] == "yes", key
    assert one["ProtectSystem"] == "strict"
    assert set(one["RestrictAddressFamilies"].split()) == {"AF_UNIX", "AF_INET", "AF_INET6"}
    assert "@system-service" in svc["SystemCallFilter"]
    devices = {value.split()[0] for value in svc["DeviceAllow"]}
    assert devices == {
        "/dev/serial0", "/dev/ttyAMA0", "/dev/ttyS0", "/dev/gnss0",
        "char-ttyUSB", "char-ttyACM", "char-gpiochip", "/dev/i2c-1", "char-iio",
    }
    assert unit["Unit"]["StartLimitIntervalSec"] == ["0"]  # never give up restarting
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_kiosk_unit_contract():
    unit = parse_unit(KIOSK_UNIT)
    svc = {key: values[-1] for key, values in unit["Service"].items()}
    assert "umps-agent.service" in unit["Unit"]["After"]
    assert "umps-agent.service" in unit["Unit"]["Wants"]
    assert svc["Restart"] == "always"
    assert svc["User"] == "umps-kiosk"
    assert svc["TTYPath"] == "/dev/tty1"
    assert svc["PAMName"] == "umps-kiosk"
    assert (UNITS / "pam.d" / svc["PAMName"]).is_file()
    exec_start = svc["ExecStart"].split()
    assert exec_start[0] == "/usr/bin/cage"
    assert "/usr/bin/chromium" in exec_start and "--kiosk" in exec_start
    assert exec_start[-1] == "http://127.0.0.1:8080/"


def test_sysusers_snippet_creates_the_user_in_every_unit_group(tmp_path):
    tool = shutil.which("systemd-sysusers")
    if tool is None:
        pytest.skip("systemd-sysusers not installed")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", root / "etc" / name)
    conf = UNITS / "umps-agent.sysusers.conf"
    result = subprocess.run([tool, f"--root={root}", str(conf)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    passwd = (root / "etc/passwd").read_text()
    user = next(line for line in passwd.splitlines() if line.startswith("umps-agent:"))
    assert user.endswith(":/var/lib/umps-agent:/usr/sbin/nologin")
    members = {
        line.split(":")[0]
        for line in (root / "etc/group").read_text().splitlines()
        if "umps-agent" in line.split(":")[3].split(",")
    }
    wanted = set(parse_unit(AGENT_UNIT)["Service"]["SupplementaryGroups"][-1].split())
    assert wanted == {"dialout", "gpio", "i2c"}
    assert wanted <= members


def test_gnss_device_name_is_the_one_the_udev_rule_creates():
    rule = (REPO / "firmware-config/udev/99-umps-gnss.rules").read_text()
    assert 'SYMLINK+="gnss0"' in rule
    allowed = {v.split()[0] for v in parse_unit(AGENT_UNIT)["Service"]["DeviceAllow"]}
    assert "/dev/gnss0" in allowed


IMU_SETUP_UNIT = UNITS / "umps-imu-setup.service"


def test_imu_setup_unit_passes_systemd_analyze_verify(tmp_path):
    run_verify(verifiable_copy(IMU_SETUP_UNIT, tmp_path, ["/opt/umps-agent/venv/bin/umps-agent"]))


def test_imu_setup_runs_before_the_agent_which_may_read_the_buffer():
    setup = parse_unit(IMU_SETUP_UNIT)
    assert setup["Unit"]["Before"] == ["umps-agent.service"]
    assert setup["Service"]["Type"] == ["oneshot"]
    assert setup["Service"]["ExecStart"][0].split()[1:4] == ["imu", "setup", "--config"]
    agent = parse_unit(AGENT_UNIT)
    assert "char-iio r" in agent["Service"]["DeviceAllow"]  # read only: the settings are setup's
    assert agent["Service"]["ProtectKernelTunables"] == ["yes"]  # /sys stays read-only for the agent
    from tests.test_firmware_config import parse_rules

    rules = parse_rules((REPO / "firmware-config/udev/99-umps-imu.rules").read_text())
    wants = [value for r in rules for key, _, _, value in r.tokens if key == "ENV" and "umps-imu-setup" in value]
    assert wants == ["umps-imu-setup.service"]
