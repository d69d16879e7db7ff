"""scripts/install.sh and uninstall.sh, run for real into staging roots.

Most tests install into ``DESTDIR=<tmp>`` with the venv step skipped
(``UMPS_INSTALL_SKIP_VENV=1``); one builds the real venv offline from the
checkout with Debian's python3 and its system site packages. The last test
runs a *live* install (no DESTDIR: user creation, ownership) inside a
private mount namespace whose /etc, /opt and /var are overlays on temporary
directories, so the machine running the tests is not changed; it needs root
and overlayfs, and is skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
INSTALL = REPO / "scripts" / "install.sh"
UNINSTALL = REPO / "scripts" / "uninstall.sh"
MINIMAL_EXAMPLE = '[unit]\nid = "demo-unit"\nkind = "motorcycle"\n'


@pytest.fixture
def example_config(tmp_path) -> Path:
    shipped = REPO / "agent.example.toml"
    if shipped.is_file():
        return shipped
    path = tmp_path / "agent.example.toml"  # the lead's file is not in this branch yet
    path.write_text(MINIMAL_EXAMPLE)
    return path


@pytest.fixture
def stage(tmp_path) -> Path:
    root = tmp_path / "stage"
    root.mkdir()
    return root


def run(script: Path, *args: str, destdir: Path | None, example: Path | None = None, **env: str):
    environ = {key: value for key, value in os.environ.items() if not key.startswith("UMPS_")}
    environ.pop("DESTDIR", None)
    if destdir is not None:
        environ["DESTDIR"] = str(destdir)
    if example is not None:
        environ["UMPS_EXAMPLE_CONFIG"] = str(example)
    environ.setdefault("UMPS_INSTALL_SKIP_VENV", "1")
    environ.update(env)
    return subprocess.run(["bash", str(script), *args], env=environ, capture_output=True, text=True, timeout=120)


def install(stage: Path, example: Path, *args: str, **env: str):
    result = run(INSTALL, *args, destdir=stage, example=example, **env)
    assert result.returncode == 0, result.stdout + result.stderr
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def manifest(stage: Path) -> list[tuple[str, str]]:
    text = (stage / "opt/umps-agent/install-manifest").read_text()
    return [tuple(line.split(" ", 1)) for line in text.splitlines()]


SYSTEM_FILES = {
    "etc/systemd/system/umps-agent.service": REPO / "systemd/umps-agent.service",
    "etc/sysusers.d/umps-agent.conf": REPO / "systemd/umps-agent.sysusers.conf",
    "etc/udev/rules.d/99-umps-gnss.rules": REPO / "firmware-config/udev/99-umps-gnss.rules",
    "etc/udev/rules.d/99-umps-imu.rules": REPO / "firmware-config/udev/99-umps-imu.rules",
    "etc/systemd/system/umps-imu-setup.service": REPO / "systemd/umps-imu-setup.service",
    "etc/chrony/conf.d/umps-gnss.conf": REPO / "firmware-config/chrony/umps-gnss.conf",
    "etc/systemd/system/chrony.service.d/umps-gnss.conf": REPO / "firmware-config/chrony/chrony.service.d/umps-gnss.conf",
    "etc/systemd/journald.conf.d/umps-agent.conf": REPO / "firmware-config/journald/umps-agent.conf",
    "etc/modules-load.d/umps-agent.conf": REPO / "firmware-config/modules-load/umps-agent.conf",
    "etc/polkit-1/rules.d/50-umps-agent-poweroff.rules": REPO / "firmware-config/polkit/50-umps-agent-poweroff.rules",
}


def test_staging_install_puts_every_file_in_place_with_its_mode(stage, example_config):
    host_had = {p: Path(p).exists() for p in ("/etc/umps-agent", "/opt/umps-agent", "/var/lib/umps-agent")}
    result = install(stage, example_config)

    for rel, source in SYSTEM_FILES.items():
        path = stage / rel
        assert path.read_bytes() == source.read_bytes(), rel
        assert mode(path) == 0o644, rel
    assert mode(stage / "etc/umps-agent") == 0o750
    assert mode(stage / "etc/umps-agent/agent.toml") == 0o640
    assert (stage / "etc/umps-agent/agent.toml").read_bytes() == example_config.read_bytes()
    assert mode(stage / "var/lib/umps-agent") == 0o750
    assert (stage / "opt/umps-agent/share/firmware-config/README.md").is_file()
    unit_text = (stage / "etc/systemd/system/umps-agent.service").read_text()
    doc = unit_text.split("Documentation=file://", 1)[1].split()[0]
    assert (stage / doc.lstrip("/")).is_file(), doc  # the unit's Documentation= resolves
    # Cars only, on request:
    assert not (stage / "etc/systemd/system/umps-kiosk.service").exists()
    assert not (stage / "etc/pam.d").exists()
    # What was skipped is recorded and said.
    notes = (stage / "opt/umps-agent/INSTALL-NOTES").read_text()
    assert "users: not created in the staging root" in notes
    assert "venv: skipped" in notes
    assert "systemd: daemon-reload/enable skipped (staging root)" in notes
    assert "users: not created" in result.stdout
    # Every installed file is in the manifest, and nothing outside DESTDIR appeared.
    files = {path for kind, path in manifest(stage) if kind == "f"}
    assert {"/" + rel for rel in SYSTEM_FILES} <= files
    for path in files:
        assert (stage / path.lstrip("/")).is_file(), path
    assert {p: Path(p).exists() for p in host_had} == host_had


def test_second_install_keeps_the_configuration_and_tightens_modes(stage, example_config):
    install(stage, example_config)
    config = stage / "etc/umps-agent/agent.toml"
    config.write_text('[unit]\nid = "moto-07"\nkind = "motorcycle"\n')
    (stage / "etc/umps-agent").chmod(0o777)
    (stage / "var/lib/umps-agent").chmod(0o777)

    result = install(stage, example_config)
    assert config.read_text() == '[unit]\nid = "moto-07"\nkind = "motorcycle"\n'
    assert "kept the existing /etc/umps-agent/agent.toml" in result.stdout
    assert mode(stage / "etc/umps-agent") == 0o750
    assert mode(stage / "var/lib/umps-agent") == 0o750


def test_uninstall_removes_what_install_put_and_keeps_config_and_state(stage, example_config):
    install(stage, example_config, "--kiosk")
    (stage / "var/lib/umps-agent/outbox.sqlite").write_bytes(b"undelivered reports")
    installed = [path for kind, path in manifest(stage) if kind == "f"]
    assert "/etc/systemd/system/umps-kiosk.service" in installed

    result = run(UNINSTALL, destdir=stage)
    assert result.returncode == 0, result.stderr
    for path in installed:
        assert not (stage / path.lstrip("/")).exists(), path
    assert not (stage / "opt").exists()  # created by install, now empty: removed
    assert not (stage / "etc/systemd").exists()
    assert (stage / "etc/umps-agent/agent.toml").is_file()
    assert (stage / "var/lib/umps-agent/outbox.sqlite").read_bytes() == b"undelivered reports"
    assert "kept /etc/umps-agent and /var/lib/umps-agent" in result.stdout

    install(stage, example_config)
    result = run(UNINSTALL, "--purge", destdir=stage)
    assert result.returncode == 0, result.stderr
    assert not (stage / "etc/umps-agent").exists()
    assert not (stage / "var/lib/umps-agent").exists()


def test_uninstall_leaves_directories_it_did_not_create(stage, example_config):
    (stage / "etc/systemd/system").mkdir(parents=True)
    (stage / "etc/systemd/system/other.service").write_text("[Service]\nExecStart=/bin/true\n")
    install(stage, example_config)
    assert run(UNINSTALL, destdir=stage).returncode == 0
    assert (stage / "etc/systemd/system/other.service").is_file()
    assert not (stage / "etc/systemd/system/umps-agent.service").exists()


def test_kiosk_and_gpsd_variants(stage, example_config):
    install(stage, example_config, "--kiosk", "--gpsd")
    assert (stage / "etc/systemd/system/umps-kiosk.service").read_bytes() == (
        REPO / "systemd/umps-kiosk.service"
    ).read_bytes()
    assert (stage / "etc/pam.d/umps-kiosk").is_file()
    assert (stage / "etc/sysusers.d/umps-kiosk.conf").is_file()
    chrony = (stage / "etc/chrony/conf.d/umps-gnss.conf").read_text()
    assert chrony == (REPO / "firmware-config/chrony/umps-gnss-gpsd.conf").read_text()
    assert not (stage / "etc/systemd/system/chrony.service.d").exists()  # no SOCK socket to hand over
    assert (stage / "etc/default/gpsd").read_text() == (REPO / "firmware-config/gpsd/gpsd.default").read_text()


def test_boot_config_is_changed_only_on_request_and_restored(stage, example_config):
    boot = stage / "boot/firmware"
    boot.mkdir(parents=True)
    config_txt = "# board defaults\ndtparam=audio=on\ncamera_auto_detect=1\n\n[all]\narm_boost=1\n"
    cmdline = "console=serial0,115200 console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
    (boot / "config.txt").write_text(config_txt)
    (boot / "cmdline.txt").write_text(cmdline)

    install(stage, example_config)  # no flag: untouched
    assert (boot / "config.txt").read_text() == config_txt
    assert (boot / "cmdline.txt").read_text() == cmdline

    install(stage, example_config, "--boot-config")
    install(stage, example_config, "--boot-config")  # twice: still one block
    patched = (boot / "config.txt").read_text()
    assert patched.startswith(config_txt)
    assert patched.count("# >>> umps-agent") == 1
    assert (REPO / "firmware-config/config.txt").read_text() in patched
    assert (boot / "cmdline.txt").read_text() == (
        "console=tty1 root=PARTUUID=5e3da3da-02 rootfstype=ext4 fsck.repair=yes rootwait\n"
    )

    assert run(UNINSTALL, destdir=stage).returncode == 0
    assert (boot / "config.txt").read_text() == config_txt
    assert (boot / "cmdline.txt").read_text() == cmdline
    assert sorted(p.name for p in boot.iterdir()) == ["cmdline.txt", "config.txt"]


def test_boot_config_without_boot_files_is_a_clear_error(stage, example_config):
    result = run(INSTALL, "--boot-config", destdir=stage, example=example_config)
    assert result.returncode == 1
    assert "no config.txt/cmdline.txt" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "code", "message"),
    [
        (["--frobnicate"], {}, 2, "unknown option '--frobnicate'"),
        ([], {"DESTDIR": "relative/dir"}, 2, "DESTDIR must be an absolute path"),
        ([], {"UMPS_EXAMPLE_CONFIG": "/nonexistent/agent.example.toml"}, 1, "example configuration not found"),
    ],
)
def test_bad_invocations_fail_clearly(stage, example_config, args, env, code, message):
    env = {"UMPS_EXAMPLE_CONFIG": str(example_config), **env}
    destdir = None if "DESTDIR" in env else stage
    result = run(INSTALL, *args, destdir=destdir, **env)
    assert result.returncode == code
    assert message in result.stderr


def test_uninstall_without_install_says_so(stage):
    result = run(UNINSTALL, destdir=stage)
    assert result.returncode == 1
    assert "not installed" in result.stderr


def debian_python_can_build_offline() -> str | None:
    python = "/usr/bin/python3"
    if not Path(python).exists():
        return "no /usr/bin/python3"
    probe = subprocess.run([python, "-c", "import ensurepip, setuptools, venv"], capture_output=True)
    if probe.returncode != 0:
        return "/usr/bin/python3 lacks venv/ensurepip/setuptools (python3-venv, python3-setuptools)"
    return None


def test_venv_is_built_from_the_checkout_and_points_at_opt(stage, example_config):
    reason = debian_python_can_build_offline()
    if reason:
        pytest.skip(reason)
    checkout_before = sorted(p.name for p in REPO.iterdir())
    install(
        stage,
        example_config,
        UMPS_INSTALL_SKIP_VENV="0",
        PYTHON="/usr/bin/python3",
        # Offline: the agent only (its dependencies are the unit's business),
        # built with the system setuptools.
        UMPS_PIP_ARGS="--no-deps --no-index --no-build-isolation",
    )
    venv = stage / "opt/umps-agent/venv"
    script = venv / "bin/umps-agent"
    assert script.read_text().splitlines()[0] == "#!/opt/umps-agent/venv/bin/python3"
    assert str(stage) not in (venv / "pyvenv.cfg").read_text()
    probe = subprocess.run(
        [str(venv / "bin/python"), "-c", "import agent.adapters.sdnotify as m, agent.logsetup; print(m.__file__)"],
        capture_output=True, text=True, cwd="/", timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(venv / "lib"))
    assert ("D", "/opt/umps-agent/venv") in manifest(stage)
    # The checkout was not used as a build directory (no build/, *.egg-info).
    assert sorted(p.name for p in REPO.iterdir()) == checkout_before


LIVE_SCRIPT = r"""
set -eu
for d in etc opt var; do
    mkdir -p "$OV/$d-up" "$OV/$d-work"
    mount -t overlay overlay -o "lowerdir=/$d,upperdir=$OV/$d-up,workdir=$OV/$d-work" "/$d"
done
# Hide a running systemd so the script cannot reach the real one.
if [ -d /run/systemd ]; then mount -t tmpfs tmpfs /run/systemd; fi
# The shadow-utils path: a PATH with every command but systemd-sysusers.
if [ "$HIDE_SYSUSERS" = 1 ]; then
    mkdir -p "$OV/bin"
    for d in /bin /sbin /usr/bin /usr/sbin /usr/local/bin /usr/local/sbin; do
        [ -d "$d" ] && ln -sf "$d"/* "$OV/bin/"
    done
    rm "$OV/bin/systemd-sysusers"
    export PATH="$OV/bin"
fi
bash "$REPO/scripts/install.sh" --no-enable
echo "GROUPS $(id -nG umps-agent)"
echo "ETC $(stat -c '%U:%G %a' /etc/umps-agent)"
echo "CONF $(stat -c '%U:%G %a' /etc/umps-agent/agent.toml)"
echo "STATE $(stat -c '%U:%G %a' /var/lib/umps-agent)"
bash "$REPO/scripts/uninstall.sh" --purge
getent passwd umps-agent >/dev/null && echo "USER still there" || echo "USER gone"
test -e /etc/umps-agent && echo "CONFIG still there" || echo "CONFIG gone"
"""


@pytest.mark.parametrize("tool", ["systemd-sysusers", "useradd"])
def test_live_install_in_a_private_mount_namespace(tmp_path, example_config, tool):
    if os.geteuid() != 0:
        pytest.skip("a live install needs root")
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) not installed")
    probe = subprocess.run(
        [unshare, "-m", "--propagation", "private", "sh", "-c",
         f"mkdir -p {tmp_path}/p/u {tmp_path}/p/w && mount -t overlay overlay "
         f"-o lowerdir=/etc,upperdir={tmp_path}/p/u,workdir={tmp_path}/p/w /etc"],
        capture_output=True, text=True,
    )
    if probe.returncode != 0:
        pytest.skip(f"no private mount namespace with overlayfs here: {probe.stderr.strip()}")
    def host_state():
        user = subprocess.run(["getent", "passwd", "umps-agent"], capture_output=True, text=True).stdout
        return user, Path("/etc/sysusers.d/umps-agent.conf").exists(), Path("/etc/umps-agent").exists()

    before = host_state()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("UMPS_") and k != "DESTDIR"}
    environ.update(OV=str(tmp_path / "ov"), REPO=str(REPO), UMPS_INSTALL_SKIP_VENV="1",
                   UMPS_EXAMPLE_CONFIG=str(example_config), HIDE_SYSUSERS=str(int(tool == "useradd")))
    result = subprocess.run(
        [unshare, "-m", "--propagation", "private", "bash", "-c", LIVE_SCRIPT],
        env=environ, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = dict(line.split(" ", 1) for line in result.stdout.splitlines() if line.split(" ", 1)[0].isupper() and " " in line)
    assert {"dialout", "gpio", "i2c"} <= set(out["GROUPS"].split())
    assert out["ETC"] == "root:umps-agent 750"
    assert out["CONF"] == "root:umps-agent 640"
    assert out["STATE"] == "umps-agent:umps-agent 750"
    assert out["USER"] == "gone"
    # systemd-sysusers announces what it creates; useradd is silent.
    assert ("Creating user 'umps-agent'" in result.stderr) == (tool == "systemd-sysusers")
    assert out["CONFIG"] == "gone"
    assert "systemd: daemon-reload/enable skipped (systemd is not PID 1)" in result.stdout
    # The machine itself was not changed.
    assert host_state() == before
