"""``umps-agent imu setup`` and ``calibrate`` against the rig's emulated IIO device.

The emulator (hil/imu_emulator.py) is the sysfs tree and buffer device of an MPU-6050 in a
temporary directory, mounted at an angle; the commands run in this process as on a unit.
"""

from __future__ import annotations

import json
import math

import pytest

from agent import cli
from agent.core.imu_frames import Mounting, lean_deg
from hil.imu_emulator import ImuEmulator

from tests.test_crash_detect import _rotation


@pytest.fixture
def emulator(tmp_path):
    emu = ImuEmulator(tmp_path / "imu", mounting=_rotation(30, 40, -20), background="still").start()
    yield emu
    emu.stop()


def write_config(tmp_path, emu, kind="motorcycle"):
    path = tmp_path / "agent.toml"
    path.write_text(f'[unit]\nid = "T-1"\nkind = "{kind}"\n[storage]\nstate_dir = "{tmp_path / "state"}"\n'
                    f'[imu]\nenabled = true\nsysfs_dir = "{emu.sysfs_dir}"\ndev_dir = "{emu.dev_dir}"\n')
    return path


def test_setup_gives_the_device_what_detection_needs(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator)
    assert cli.main(["imu", "setup", "--config", str(config)]) == 0
    d = emulator.device
    assert (d / "sampling_frequency").read_text().strip() == "100"
    assert (d / "in_accel_scale").read_text().strip() == "0.004785"
    assert (d / "current_timestamp_clock").read_text().strip() == "monotonic"
    assert (d / "buffer" / "watermark").read_text().strip() == "10"
    assert (d / "buffer" / "enable").read_text().strip() == "1"
    assert (d / "scan_elements" / "in_temp_en").read_text().strip() == "0"
    out = capsys.readouterr().out
    assert "mpu6050" in out and "±16.0 g" in out and "24-byte records" in out


def test_calibrate_in_two_steps_learns_the_mounting(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator)
    emulator.hold(lean_deg=-12.0)  # on its side stand
    assert cli.main(["imu", "calibrate", "--config", str(config), "--step", "level", "--seconds", "0.6"]) == 0
    assert "--step upright" in capsys.readouterr().out
    emulator.hold(lean_deg=0.0)
    assert cli.main(["imu", "calibrate", "--config", str(config), "--step", "upright", "--seconds", "0.6"]) == 0
    stored = Mounting.restore(json.loads((tmp_path / "state" / "imu-mounting.json").read_text()))
    for got, want in ((stored.x, emulator.mounting.x), (stored.z, emulator.mounting.z)):
        assert math.degrees(math.acos(min(1.0, sum(g * w for g, w in zip(got, want))))) < 2.0
    # The board, turned 30/40/-20 degrees, now reads a 20 degree lean as 20 degrees.
    emulator.hold(lean_deg=20.0)
    from agent.adapters import iio
    from agent.imu_tools import read_samples

    device, settings, fd, _ = iio.open_device(emulator.sysfs_dir, emulator.dev_dir, "auto", rate_hz=100, wake_hz=10)
    try:
        samples = read_samples(fd, iio.Decoder(settings), 0.5)
    finally:
        import os

        os.close(fd)
    mean = tuple(sum(s[i] for s in samples) / len(samples) for i in (1, 2, 3))
    assert abs(lean_deg(stored.to_vehicle(mean)) - 20.0) < 1.5


def test_calibrate_refuses_a_moving_vehicle_and_says_why(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator)
    emulator.ride()
    assert cli.main(["imu", "calibrate", "--config", str(config), "--step", "level", "--seconds", "0.5"]) == 1
    assert "keep the vehicle still" in capsys.readouterr().err


def test_a_missing_device_is_a_clear_failure(tmp_path, emulator, capsys):
    config = write_config(tmp_path, emulator)
    emulator.unplug()
    assert cli.main(["imu", "setup", "--config", str(config)]) == 1
    assert "no IIO device" in capsys.readouterr().err
