"""The vehicle's pin factory, gpiozero's lgpio one, where the lgpio library is installed.

lgpio is in the ``pi`` extra, which the installer puts on a unit and ``make test-arm64``
into the arm64 root; the development venv does not have it, so these tests skip there
and run in the arm64 root (``docs/platform.md``). Without a Raspberry Pi no GPIO chip
exists: what is checked is that the library loads on the machine's own architecture,
that the factory then fails with a clear error instead of a hang or a crash, and that
the library gets the writable directory it needs in the agent's sandbox. Pins
themselves are gpiozero's MockFactory's business (``tests/test_gpio_adapter.py``).

Each test runs the library in a child process: ``import lgpio`` starts a thread, makes a
FIFO in its working directory and changes the process's current directory to it.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

try:  # find it without importing it (see the docstring)
    import importlib.util

    HAVE_LGPIO = importlib.util.find_spec("lgpio") is not None
except ValueError:
    HAVE_LGPIO = False

pytestmark = pytest.mark.skipif(not HAVE_LGPIO, reason="lgpio is not installed (the pi extra; make test-arm64 runs it)")

ELF_MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x28: "armv7l"}


def child(code: str, *, cwd: Path, env: dict[str, str] | None = None, user: int | None = None):
    environ = {k: v for k, v in os.environ.items() if k != "LG_WD"}
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), environ.get("PYTHONPATH")]))
    environ.update(env or {})
    command = [sys.executable, "-c", code]
    if user is not None:
        command = [shutil.which("setpriv"), f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, cwd=cwd, env=environ, capture_output=True, text=True, timeout=120)


def test_the_library_is_built_for_this_machine(tmp_path):
    result = child("import _lgpio, lgpio; print(_lgpio.__file__); print(lgpio.__file__)",
                   cwd=tmp_path, env={"LG_WD": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    extension = Path(result.stdout.splitlines()[0])
    header = extension.read_bytes()[:20]
    assert header[:4] == b"\x7fELF"
    machine = ELF_MACHINES.get(int.from_bytes(header[18:20], "little"))
    assert machine == platform.machine(), f"{extension} is built for {machine}, this is {platform.machine()}"


@pytest.mark.skipif(any(Path("/dev").glob("gpiochip*")), reason="this machine has a GPIO chip")
def test_without_a_gpio_chip_the_factory_fails_with_a_clear_error(tmp_path):
    code = (
        "import lgpio\n"
        "from agent.adapters.gpio import PinFactoryError, make_pin_factory\n"
        "from agent.config import GpioConfig\n"
        "try:\n"
        "    lgpio.gpiochip_open(0)\n"
        "except lgpio.error as exc:\n"
        "    print('CHIP', exc)\n"
        "try:\n"
        "    make_pin_factory(GpioConfig(factory='lgpio'))\n"
        "except PinFactoryError as exc:\n"
        "    print('FACTORY', exc)\n"
    )
    result = child(code, cwd=tmp_path, env={"LG_WD": str(tmp_path)})
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines())
    assert "gpiochip" in lines["CHIP"]
    # gpiozero first asks which board this is (not a Raspberry Pi here), then opens the chip.
    assert lines["FACTORY"].startswith("gpio factory 'lgpio' could not start: "), lines["FACTORY"]


def test_the_library_needs_a_writable_directory_and_the_service_gives_it_one():
    """In the agent's sandbox the current directory is read-only: LG_WD must name another."""
    unit = (REPO / "systemd" / "umps-agent.service").read_text().splitlines()
    assert "Environment=LG_WD=/tmp" in unit and "PrivateTmp=yes" in unit

    user = None
    if os.geteuid() == 0:  # root writes anywhere: be an ordinary user, as the agent is
        if shutil.which("setpriv") is None:
            pytest.skip("setpriv (util-linux) is needed to drop root")
        user = 65534
    # Not pytest's tmp_path: its parents are closed to other users.
    base = Path(tempfile.mkdtemp(prefix="lgpio-wd-"))
    try:
        base.chmod(0o755)
        read_only = base / "read-only"
        read_only.mkdir()
        read_only.chmod(0o555)
        writable = base / "writable"
        writable.mkdir()
        writable.chmod(0o777)

        refused = child("import lgpio", cwd=read_only, user=user)
        assert refused.returncode != 0
        assert ".lgd-nfy" in refused.stderr
        accepted = child("import lgpio, os; print(os.getcwd())", cwd=read_only,
                         env={"LG_WD": str(writable)}, user=user)
        assert accepted.returncode == 0, accepted.stderr
        assert accepted.stdout.strip() == str(writable)  # the library moved the process there
    finally:
        shutil.rmtree(base, ignore_errors=True)
