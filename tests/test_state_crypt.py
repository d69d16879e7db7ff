"""firmware-config/storage: the key derivation of umps-state-crypt and a real LUKS2 volume.

Formatting runs cryptsetup on an image file (no device-mapper needed); opening the mapping
and mounting need a kernel with dm-crypt and are left to the unit.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.test_systemd_units import run_verify, verifiable_copy

STORAGE = Path(__file__).resolve().parents[1] / "firmware-config" / "storage"
SCRIPT = STORAGE / "umps-state-crypt"
OTP = "5a" * 16 + "c3" * 16


def run(*args: str, otp: str = OTP, **env: str) -> subprocess.CompletedProcess[bytes]:
    full = {**os.environ, "UMPS_OTP_KEY_CMD": f"echo {otp}", **env}
    return subprocess.run([str(SCRIPT), *args], capture_output=True, env=full, timeout=60)


def test_the_volume_key_is_hmac_of_the_otp_key_and_nothing_else() -> None:
    done = run("key")
    assert done.returncode == 0, done.stderr
    expected = hmac.new(bytes.fromhex(OTP), b"umps-agent state volume v1", hashlib.sha256).digest()
    assert done.stdout == expected
    other = run("key", otp="11" * 32)
    assert other.returncode == 0 and other.stdout != expected


@pytest.mark.parametrize(("otp", "fragment"), [("0" * 64, b"not programmed"), ("abc", b"64 hex digits")])
def test_no_key_from_an_unprogrammed_or_garbled_otp(otp: str, fragment: bytes) -> None:
    done = run("key", otp=otp)
    assert done.returncode == 1 and done.stdout == b"" and fragment in done.stderr


@pytest.mark.skipif(shutil.which("cryptsetup") is None, reason="cryptsetup is not installed (Debian: cryptsetup-bin)")
def test_format_makes_a_luks2_volume_that_only_the_derived_key_opens(tmp_path: Path) -> None:
    image = tmp_path / "state.luks"
    env = {"UMPS_STATE_SIZE": "32M", "UMPS_STATE_CIPHER": "aes-xts"}
    done = run("format", str(image), "--no-mkfs", **env)
    assert done.returncode == 0, done.stderr
    assert image.stat().st_mode & 0o777 == 0o600
    dump = subprocess.run(["cryptsetup", "luksDump", str(image)], capture_output=True, text=True, check=True).stdout
    assert "Version:       \t2" in dump and "umps-state" in dump and "pbkdf2" in dump and "aes-xts-plain64" in dump
    key = tmp_path / "key"
    key.write_bytes(run("key").stdout)
    opened = subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", str(key), str(image)],
                            capture_output=True)
    assert opened.returncode == 0, opened.stderr
    key.write_bytes(run("key", otp="11" * 32).stdout)
    wrong = subprocess.run(["cryptsetup", "open", "--test-passphrase", "--key-file", str(key), str(image)],
                           capture_output=True)
    assert wrong.returncode != 0
    # Never over an existing volume.
    again = run("format", str(image), "--no-mkfs", **env)
    assert again.returncode == 1 and b"already a LUKS volume" in again.stderr


def test_the_unlock_service_runs_before_the_agent_and_verifies(tmp_path: Path) -> None:
    unit = STORAGE / "umps-state-crypt.service"
    text = unit.read_text()
    assert "Before=umps-agent.service" in text and "RequiredBy=umps-agent.service" in text
    run_verify(verifiable_copy(unit, tmp_path, ["/usr/local/sbin/umps-state-crypt"]))


def test_the_script_passes_bash_syntax_and_shellcheck_when_present() -> None:
    subprocess.run(["bash", "-n", str(SCRIPT)], check=True)
    if shutil.which("shellcheck"):
        subprocess.run(["shellcheck", str(SCRIPT)], check=True)
