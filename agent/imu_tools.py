"""``umps-agent imu ...``: the crash sensor for installers (firmware-config/imu.md).

``setup``
    As root, once the IIO device exists (``umps-imu-setup.service``, started by udev): write the
    settings detection needs (rate, ±16 g, ±2000 °/s, channels, monotonic time stamps, buffer
    length, watermark, buffer on), then let the agent's group read the buffer's device. Prints
    what the device reads back; exit 1 when it cannot give what detection needs.
``calibrate [--step level|upright] [--seconds S]``
    With the agent stopped (one reader at a time): two still positions on level ground (a
    motorcycle on its side stand, then held upright; a car parked, once), two seconds of
    samples each, then the mounting is stored in ``[storage] state_dir`` (``imu-mounting.json``)
    where the agent reads it at start. ``--step`` takes one position and keeps it until the other
    comes, for a script.
``watch``
    Live tilt, lean, pitch and peak acceleration in the vehicle's frame, once a second, with the
    stored mounting (or the configured axes).

Exit codes as the other commands: 0, 1 (the sensor failed), 2 (usage or configuration).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from agent.adapters import iio
from agent.core.imu_frames import (
    CalibrationError, Mounting, Vec, calibrate, lean_deg, norm, pitch_deg, tilt_deg,
)

if TYPE_CHECKING:
    from agent.config import AgentConfig

MOUNTING_FILE = "imu-mounting.json"
PENDING_FILE = "imu-calibration-steps.json"  # a --step position waiting for the other
STILL_G = 0.03  # a position whose readings spread more than this is not still
EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def register(sub: argparse._SubParsersAction, config_opt: argparse.ArgumentParser) -> None:
    sub.add_parser("setup", parents=[config_opt], help="as root: set the IIO device up for detection")
    cal = sub.add_parser("calibrate", parents=[config_opt], help="learn how the sensor is mounted (agent stopped)")
    cal.add_argument("--step", choices=("level", "upright"), help="take one position only (for a script)")
    cal.add_argument("--seconds", type=float, default=2.0, help="averaged per position (default 2)")
    sub.add_parser("watch", parents=[config_opt], help="live tilt, lean and pitch (agent stopped)")


def mounting_path(config: AgentConfig) -> Path:
    return Path(config.storage.state_dir) / MOUNTING_FILE


def load_mounting(config: AgentConfig) -> tuple[Mounting, str | None]:
    """The stored calibration, else the configured axes; and a problem to report, if any."""
    path = mounting_path(config)
    fallback = Mounting.from_axes(config.imu.forward_axis, config.imu.up_axis)
    try:
        return Mounting.restore(json.loads(path.read_text())), None
    except FileNotFoundError:
        return fallback, None
    except (OSError, ValueError) as exc:
        return fallback, f"{path}: {exc}; using [imu] forward_axis and up_axis"


def run(args: argparse.Namespace, config: AgentConfig, out=None, ask: Callable[[str], str] = input) -> int:
    out = out or sys.stdout
    imu = config.imu
    try:
        if args.imu_command == "setup":
            return _setup(config, out)
        device, settings, fd, _ = iio.open_device(imu.sysfs_dir, imu.dev_dir, imu.device, rate_hz=imu.rate_hz,
                                                  wake_hz=imu.wake_hz)
    except iio.IioError as exc:
        print(f"umps-agent imu: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        decoder = iio.Decoder(settings, iio.clock_offset(settings.clock))
        if args.imu_command == "watch":
            return _watch(config, fd, decoder, out)
        return _calibrate(config, args, fd, decoder, out, ask)
    finally:
        os.close(fd)


def _setup(config: AgentConfig, out) -> int:
    imu = config.imu
    device = iio.find_device(imu.sysfs_dir, imu.dev_dir, imu.device)
    not_written = iio.setup(device, rate_hz=imu.rate_hz, wake_hz=imu.wake_hz)
    for item in not_written:
        print(f"umps-agent imu setup: could not write {item} (run as root)", file=sys.stderr)
    settings = iio.read_settings(device)
    _share(device.dev)
    print(f"{device.name} ({device.sysfs.name}): {settings.rate_hz:g} Hz, ±{settings.range_g:.1f} g, "
          f"gyroscope {'±%.0f °/s' % (settings.gyro_scale * 32768) if settings.gyro_scale else 'none'}, "
          f"time stamps {settings.clock}, {settings.layout.size}-byte records; buffer on", file=out)
    return EXIT_OK if not not_written else EXIT_FAILURE


def _share(dev: Path) -> None:
    """Give the buffer's device to the agent's group, read-only, when that group exists (root only)."""
    import grp

    try:
        gid = grp.getgrnam("umps-agent").gr_gid
        os.chown(dev, -1, gid)
        os.chmod(dev, 0o640)
    except (KeyError, OSError):
        pass  # no such group (a laptop, the rig), or not root: udev's rule does the same


def read_samples(fd: int, decoder: iio.Decoder, seconds: float) -> list[tuple[float, ...]]:
    """The samples of the next ``seconds`` (those already waiting are stale: dropped first)."""
    _drain(fd)
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    out: list[tuple[float, ...]] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        if poller.poll(max(1, int(left * 1000))):
            try:
                out += decoder.feed(os.read(fd, 65536))
            except BlockingIOError:
                continue
    return out


def _drain(fd: int) -> None:
    while True:
        try:
            if not os.read(fd, 65536):
                return
        except BlockingIOError:
            return


def _mean_still(samples: list[tuple[float, ...]], what: str) -> Vec:
    if len(samples) < 10:
        raise CalibrationError(f"{what}: only {len(samples)} samples arrived; is the sensor running?")
    mean = tuple(sum(s[i] for s in samples) / len(samples) for i in (1, 2, 3))
    spread = max(math.sqrt(sum((s[i + 1] - mean[i]) ** 2 for s in samples) / len(samples)) for i in range(3))
    if spread > STILL_G:
        raise CalibrationError(f"{what}: the readings move ({spread:.3f} g): keep the vehicle still and try again")
    return mean  # type: ignore[return-value]


def _calibrate(config: AgentConfig, args: argparse.Namespace, fd: int, decoder: iio.Decoder, out, ask) -> int:
    state = Path(config.storage.state_dir)
    pending_path = state / PENDING_FILE
    try:
        pending = json.loads(pending_path.read_text())
    except (OSError, ValueError):
        pending = {}
    car = config.unit.kind == "car"
    steps = [args.step] if args.step else (["level"] if car else ["level", "upright"])
    prompts = {"level": "the motorcycle on its side stand, on level ground" if not car else "the car parked on level ground",
               "upright": "the motorcycle held upright (vertical), on level ground"}
    try:
        for step in steps:
            if not args.step:
                ask(f"{step}: {prompts[step]}, engine off; press Enter, then keep it still for {args.seconds:g} s ")
            pending[step] = list(_mean_still(read_samples(fd, decoder, args.seconds), step))
            print(f"{step}: {norm(tuple(pending[step])):.3f} g read", file=out)  # type: ignore[arg-type]
        if car:
            pending.setdefault("upright", pending.get("level"))
        if "level" not in pending or "upright" not in pending:
            state.mkdir(parents=True, exist_ok=True)
            pending_path.write_text(json.dumps(pending))
            missing = "upright" if "upright" not in pending else "level"
            print(f"kept; now run: umps-agent imu calibrate --step {missing}", file=out)
            return EXIT_OK
        mounting = calibrate(tuple(pending["level"]), tuple(pending["upright"]), kind=config.unit.kind,  # type: ignore[arg-type]
                             forward_axis=config.imu.forward_axis)
    except CalibrationError as exc:
        print(f"umps-agent imu calibrate: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    from agent.adapters.config_store import write_atomic

    state.mkdir(parents=True, exist_ok=True)
    write_atomic(mounting_path(config), (json.dumps(mounting.snapshot(), indent=2) + "\n").encode())
    pending_path.unlink(missing_ok=True)
    upright = mounting.to_vehicle(tuple(pending["upright"]))  # type: ignore[arg-type]
    print(f"stored in {mounting_path(config)}: upright now reads lean {lean_deg(upright):+.1f}°, "
          f"pitch {pitch_deg(upright):+.1f}°; restart the agent to use it", file=out)
    return EXIT_OK


def _watch(config: AgentConfig, fd: int, decoder: iio.Decoder, out) -> int:
    mounting, problem = load_mounting(config)
    if problem:
        print(f"note: {problem}", file=sys.stderr)
    print(f"mounting from {mounting.source}; Ctrl-C to stop", file=out)
    while True:
        samples = read_samples(fd, decoder, 1.0)
        if not samples:
            print("no samples for 1 s", file=out)
            continue
        vehicle = [mounting.to_vehicle((s[1], s[2], s[3])) for s in samples]
        mean = tuple(sum(v[i] for v in vehicle) / len(vehicle) for i in range(3))
        peak = max(norm(v) for v in vehicle)
        print(f"tilt {tilt_deg(mean):5.1f}°  lean {lean_deg(mean):+6.1f}°  pitch {pitch_deg(mean):+6.1f}°  "
              f"|a| peak {peak:5.2f} g  ({len(samples)} samples)", file=out, flush=True)
