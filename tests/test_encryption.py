"""[storage] require_encrypted: how the agent tells an encrypted state directory, and its refusal."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from agent.adapters.encryption import EncryptionError, check_encrypted

ROOT = Path(__file__).resolve().parents[1]


def sysfs(root: Path, device: str, *, uuid: str | None = None, name: str = "", slaves: tuple[str, ...] = ()) -> None:
    """One block device in a sysfs-like tree: /sys/dev/block/M:m/{dm/uuid,dm/name,slaves/*/dev}."""
    node = root / "dev" / "block" / device
    node.mkdir(parents=True, exist_ok=True)
    if uuid is not None:
        (node / "dm").mkdir(exist_ok=True)
        (node / "dm" / "uuid").write_text(uuid + "\n")
        (node / "dm" / "name").write_text(name + "\n")
    for slave in slaves:
        link = node / "slaves" / f"dev-{slave}"
        link.mkdir(parents=True)
        (link / "dev").write_text(slave + "\n")


def mountinfo(path: Path, *mounts: tuple[str, str]) -> Path:
    lines = [f"{20 + i} 1 {dev} / {point} rw,relatime shared:1 - ext4 /dev/x rw" for i, (point, dev) in enumerate(mounts)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_luks_under_the_state_directory_is_recognised(tmp_path: Path) -> None:
    state = tmp_path / "var" / "lib" / "umps-agent"
    state.mkdir(parents=True)
    root = tmp_path / "sys"
    sysfs(root, "179:2")  # the SD card's root partition
    sysfs(root, "254:0", uuid="CRYPT-LUKS2-0123456789abcdef-umps_state", name="umps_state")
    info = mountinfo(tmp_path / "mountinfo", ("/", "179:2"), (str(state), "254:0"))
    assert check_encrypted(state, sys_root=root, mountinfo=info) == "dm-crypt (umps_state)"


def test_lvm_on_luks_is_recognised_through_the_slaves(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    sysfs(root, "254:1", uuid="LVM-abcdef", name="vg-state", slaves=("254:0",))
    sysfs(root, "254:0", uuid="CRYPT-LUKS2-feed-crypt", name="crypt")
    info = mountinfo(tmp_path / "mountinfo", ("/", "179:2"), (str(tmp_path), "254:1"))
    assert check_encrypted(tmp_path, sys_root=root, mountinfo=info) == "dm-crypt (crypt)"


def test_a_plain_partition_is_refused_with_the_way_out(tmp_path: Path) -> None:
    root = tmp_path / "sys"
    sysfs(root, "179:2")
    sysfs(root, "254:3", uuid="LVM-plain", name="vg-plain")  # device-mapper, but not dm-crypt
    info = mountinfo(tmp_path / "mountinfo", ("/", "179:2"), (str(tmp_path / "lvm"), "254:3"))
    (tmp_path / "lvm").mkdir()
    for path in (tmp_path, tmp_path / "lvm"):
        with pytest.raises(EncryptionError, match="is not encrypted.*firmware-config/storage/README.md"):
            check_encrypted(path, sys_root=root, mountinfo=info)


def test_the_agent_refuses_to_start_on_an_unencrypted_state_dir(tmp_path: Path) -> None:
    # The real agent process, the real kernel: this machine's temporary directory is not encrypted.
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[unit]
id = "KEN-T-09"
kind = "motorcycle"
[mqtt]
host = "127.0.0.1"
port = 1
[storage]
state_dir = "{tmp_path / 'state'}"
runtime_dir = "{tmp_path / 'run'}"
require_encrypted = true
[gpio]
factory = "mock"
[display]
kind = "none"
""")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("NOTIFY_SOCKET", None)
    done = subprocess.run([sys.executable, "-m", "agent", "run", "--config", str(config)], cwd=ROOT, env=env,
                          capture_output=True, timeout=60)
    assert done.returncode == 1, done.stderr.decode()
    assert b"require_encrypted is set" in done.stderr and b"is not encrypted" in done.stderr
    # Nothing about positions was written to the plain card.
    assert not any(p.name.startswith("outbox") for p in (tmp_path / "state").iterdir())


def test_only_the_local_file_may_turn_the_requirement_off() -> None:
    from agent.core.key_rules import KEY_RULES

    assert KEY_RULES["storage.require_encrypted"].remote == "never"
