"""scripts/os-deps.sh, which `make demo` and `make test` run first: what each installs, and when it asks.

The script runs for real, with bash, on a PATH of stand-ins: ``apt-get``, ``systemctl`` and
``id`` write down what they were asked, and no other tool is present unless a test puts it
there (``OS_DEPS_ROOT`` points the file checks at an empty directory).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "os-deps.sh"
BASH = shutil.which("bash") or "/bin/bash"
SERVICES = {"mosquitto", "chrony"}  # packages that change the host's services
DEMO = {"python3-venv", "mosquitto", "mosquitto-clients", "fonts-dejavu-core"}
TEST_ONLY = {"chromium", "espeak-ng", "systemd", "udev", "chrony", "util-linux", "cryptsetup-bin"}


def run(tmp: Path, purpose: str, *, uid: int = 0, have: tuple[str, ...] = (), answer: str | None = None,
        env: dict[str, str] | None = None) -> tuple[subprocess.CompletedProcess, list[list[str]]]:
    """Run the script; (the process, the commands the stand-ins were asked to run)."""
    bin_dir, log = tmp / f"bin-{purpose}-{uid}-{answer}-{len(have)}", tmp / "calls.log"
    bin_dir.mkdir()
    log.write_text("")
    for name in ("apt-get", "systemctl"):
        stub = bin_dir / name
        stub.write_text(f'#!{BASH}\necho "{name} $*" >> {log}\n')
        stub.chmod(0o755)
    (bin_dir / "id").write_text(f"#!{BASH}\necho {uid}\n")
    (bin_dir / "id").chmod(0o755)
    for tool in have:
        if tool == "python3":
            (bin_dir / "python3").symlink_to(sys.executable)
        else:
            (bin_dir / tool).write_text(f"#!{BASH}\nexit 0\n")
            (bin_dir / tool).chmod(0o755)
    (tmp / "empty").mkdir(exist_ok=True)
    full = {"PATH": str(bin_dir), "OS_DEPS_ROOT": str(tmp / "empty"), "HOME": str(tmp),
            "OS_DEPS_INTERACTIVE": "0" if answer is None else "1", **(env or {})}
    done = subprocess.run([BASH, str(SCRIPT), purpose], env=full, input=answer or "", capture_output=True, text=True,
                          timeout=60)
    return done, [line.split() for line in log.read_text().splitlines()]


def installed(calls: list[list[str]]) -> set[str]:
    return {word for call in calls if call[:2] == ["apt-get", "install"] for word in call[2:] if not word.startswith("-")}


def test_make_demo_never_changes_the_hosts_services_without_a_yes(tmp_path):
    done, calls = run(tmp_path, "demo")
    assert done.returncode == 1 and installed(calls) == set() and not any(c[0] == "systemctl" for c in calls)
    assert "system-wide MQTT broker" in done.stderr and "OS_DEPS_YES=1" in done.stderr, done.stderr
    # Only what the demo needs is named: not chrony (it would replace systemd-timesyncd), not cryptsetup.
    assert not any(pkg in done.stderr for pkg in ("chrony", "cryptsetup-bin", "chromium", "espeak-ng"))
    done, calls = run(tmp_path, "demo", answer="n\n")
    assert done.returncode == 1 and installed(calls) == set() and "Install them now?" in done.stdout + done.stderr
    done, calls = run(tmp_path, "demo", answer="y\n")
    assert done.returncode == 0, done.stderr
    assert installed(calls) == DEMO
    assert ["systemctl", "disable", "--now", "mosquitto"] in calls  # the host's broker, stopped again


def test_make_demo_installs_what_changes_no_service_without_asking(tmp_path):
    done, calls = run(tmp_path, "demo", have=("python3", "mosquitto", "mosquitto_pub"))
    assert done.returncode == 0, done.stderr
    assert installed(calls) == {"fonts-dejavu-core"} and not any(c[0] == "systemctl" for c in calls)


def test_make_test_installs_everything_the_tests_need_on_ci(tmp_path):
    # CI: root, no terminal, a fresh machine.
    done, calls = run(tmp_path, "test")
    assert done.returncode == 0, done.stderr
    assert installed(calls) == DEMO | TEST_ONLY
    # On a terminal, the service-changing ones wait for a yes there too.
    done, calls = run(tmp_path, "test", answer="no\n")
    assert done.returncode == 1 and installed(calls) == set()
    assert "systemd-timesyncd" in done.stderr


def test_without_root_it_says_what_to_run(tmp_path):
    done, calls = run(tmp_path, "demo", uid=1000)
    assert done.returncode == 1 and calls == []
    assert "sudo apt-get install -y" in done.stderr and "mosquitto" in done.stderr
    assert run(tmp_path, "nonsense")[0].returncode == 2
    assert set(DEMO) & SERVICES == {"mosquitto"} and os.access(SCRIPT, os.X_OK)
