"""Is the state directory encrypted at rest? (``[storage] require_encrypted``)

The unit keeps its position history, calls and remote config in
``[storage] state_dir`` on the SD card of a vehicle that can be stolen.
``firmware-config/storage/`` ships how to encrypt it (LUKS2 on a partition
or a file, or fscrypt on ext4). With ``require_encrypted = true`` the agent
refuses to start when the directory is not on one of them; this module says
which it is, from what the kernel reports:

- **fscrypt**: the directory has an encryption policy
  (``FS_IOC_GET_ENCRYPTION_POLICY_EX``; ``ENODATA`` means none);
- **dm-crypt / LUKS**: the block device of the file system that holds the
  directory (``/proc/self/mountinfo``) is a device-mapper device whose uuid
  starts with ``CRYPT-`` (what ``cryptsetup`` sets), itself or any device
  under it (LVM on LUKS).

``sys_root`` and ``mountinfo`` are injectable so the device walk is tested
on a built tree.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from pathlib import Path

# _IOWR('f', 22, __u8[9]): struct fscrypt_get_policy_ex_arg { __u64 policy_size; policy }.
FS_IOC_GET_ENCRYPTION_POLICY_EX = 0xC0096616
_POLICY_EX_BUF = 8 + 24  # size header + the largest policy (v2)


class EncryptionError(RuntimeError):
    """The state directory is not encrypted while the config requires it."""


def check_encrypted(path: str | Path, *, sys_root: str | Path = "/sys",
                    mountinfo: str | Path = "/proc/self/mountinfo") -> str:
    """How ``path`` is encrypted ("fscrypt", "dm-crypt (dm-0)"), or raise :class:`EncryptionError`."""
    path = Path(path).resolve()
    if _fscrypt(path):
        return "fscrypt"
    device = _backing_device(path, Path(mountinfo))
    if device is not None:
        crypt = _crypt_device(Path(sys_root), device)
        if crypt is not None:
            return f"dm-crypt ({crypt})"
    where = f"device {device[0]}:{device[1]}" if device else "an unknown device"
    raise EncryptionError(
        f"[storage] require_encrypted is set but {path} is not encrypted (not fscrypt, and {where} "
        "is not dm-crypt/LUKS); see firmware-config/storage/README.md"
    )


def _fscrypt(path: Path) -> bool:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return False
    try:
        buf = bytearray(struct.pack("=Q", _POLICY_EX_BUF - 8) + bytes(_POLICY_EX_BUF - 8))
        fcntl.ioctl(fd, FS_IOC_GET_ENCRYPTION_POLICY_EX, buf)
        return True
    except OSError as exc:
        if exc.errno not in (errno.ENODATA, errno.ENOTTY, errno.EOPNOTSUPP, errno.EINVAL, errno.ENOENT):
            raise EncryptionError(f"cannot read the encryption policy of {path}: {exc}") from None
        return False
    finally:
        os.close(fd)


def _backing_device(path: Path, mountinfo: Path) -> tuple[int, int] | None:
    """``(major, minor)`` of the file system holding ``path``: the longest mount point above it."""
    try:
        lines = mountinfo.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    best: tuple[int, tuple[int, int]] | None = None
    text = str(path)
    for line in lines:
        fields = line.split()
        if len(fields) < 5:
            continue
        mount_point = fields[4].replace("\\040", " ")
        if text == mount_point or text.startswith(mount_point.rstrip("/") + "/"):
            major, _, minor = fields[2].partition(":")
            if major.isdigit() and minor.isdigit() and (best is None or len(mount_point) > best[0]):
                best = (len(mount_point), (int(major), int(minor)))
    return best[1] if best else None


def _crypt_device(sys_root: Path, device: tuple[int, int], depth: int = 0) -> str | None:
    """The name of a dm-crypt device at or under ``device`` in sysfs, if any."""
    if depth > 8:
        return None
    node = sys_root / "dev" / "block" / f"{device[0]}:{device[1]}"
    try:
        uuid = (node / "dm" / "uuid").read_text().strip()
    except OSError:
        uuid = ""
    if uuid.startswith("CRYPT-"):
        try:
            return (node / "dm" / "name").read_text().strip() or node.name
        except OSError:
            return node.name
    try:
        slaves = list((node / "slaves").iterdir())
    except OSError:
        return None
    for slave in slaves:
        try:
            major, _, minor = (slave / "dev").read_text().strip().partition(":")
            found = _crypt_device(sys_root, (int(major), int(minor)), depth + 1)
        except (OSError, ValueError):
            continue
        if found:
            return found
    return None
