"""The ``umps-hil`` command: run scenarios, load a broker with a fleet, demo, bench emulators.

Subcommands:

``run SCENARIO...``  play scenarios (files, or names of the shipped ones; ``--all``)
                    against a fresh agent each; writes results.json, junit.xml,
                    report.html and each run's log under ``--out``
``list``            the shipped scenarios
``fleet``           N simulated units on one broker; broker-side throughput and
                    per-unit cadence
``demo``            broker + emulators + the agent as a car (touchscreen) or a
                    motorcycle, with a live picture of the rider panel; a patrol
                    with a call arriving; commands on stdin
``emulate``         just the emulators (GNSS on a pty/TCP/serial device, pigpio on a
                    port) for a unit on a bench

Exit codes: 0 all passed (or a clean stop), 1 a scenario failed or the rig
could not run, 2 bad usage or an invalid scenario file.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hil import agent_proc
from hil.broker import Broker, BrokerUnavailable
from hil.console import printer, stop_on_signals
from hil.fleet_wire import TooManySockets
from hil.scenario import ScenarioError, load_scenario, shipped_scenarios

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DEFAULT_OUT = Path("hil-results")


def _broker_arg(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    return host, int(port)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="umps-hil", description="Hardware-in-the-loop rig for the umps-agent.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run scenarios against the agent")
    run.add_argument("scenarios", nargs="*", help="scenario files or shipped names (see `umps-hil list`)")
    run.add_argument("--all", action="store_true", help="every shipped scenario")
    run.add_argument("--profile", choices=("short", "long", "any"), default="any",
                     help="with --all: only scenarios of this profile")
    run.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"results directory (default {DEFAULT_OUT})")
    run.add_argument("--agent-cmd", default=agent_proc.DEFAULT_AGENT_CMD,
                     help="command starting the agent; {config} is the generated file, {python} this interpreter "
                          f"(default {agent_proc.DEFAULT_AGENT_CMD!r})")
    run.add_argument("--broker", type=_broker_arg, help="use this broker (HOST:PORT) instead of starting one; "
                     "broker outage steps then fail")
    run.add_argument("--speed", type=float, default=1.0,
                     help="compress each scenario's timeline by this factor (latency limits unchanged)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    bench = run.add_argument_group("bench mode (a real unit; needs --broker)")
    bench.add_argument("--unit-config", type=Path, help="the real unit's agent TOML (its pins, unit id, prefix); "
                       "the rig then starts no agent")
    bench.add_argument("--bench-gpio", type=_broker_arg, metavar="HOST:PORT",
                       help="pigpiod of the rig's second Pi, wired pin to pin to the unit")
    bench.add_argument("--gnss-serial", metavar="DEVICE", help="serial device carrying NMEA to the unit's UART")
    bench.add_argument("--gnss-baudrate", type=int, default=9600)
    bench.add_argument("--dispatch-key", type=Path, metavar="KEYFILE",
                       help="when the unit has [security] dispatch_keys: the private key the rig's dispatcher signs with")

    sub.add_parser("list", help="list the shipped scenarios")

    fleet = sub.add_parser("fleet", help="many simulated units against one broker, or regional brokers bridged "
                                         "to a central one (--regions)")
    fleet.add_argument("--units", type=int, default=100, help="units in all (spread over the regions)")
    fleet.add_argument("--regions", type=int, default=0,
                       help="N regional brokers bridged to a central one (the shipped fleet/ configuration); "
                            "figures per level")
    fleet.add_argument("--encoding", choices=("json", "cbor"), default="json", help="telemetry encoding")
    fleet.add_argument("--cut", metavar="REGION:AT:SECONDS",
                       help="with --regions: cut region REGION's bridge (1-based) AT seconds in, for SECONDS")
    fleet.add_argument("--duration", type=float, default=30.0, help="seconds of reporting")
    fleet.add_argument("--rate", type=float, default=1.0, help="reports per second per unit")
    fleet.add_argument("--broker", type=_broker_arg, help="HOST:PORT (default: start a Mosquitto of the rig's own)")
    fleet.add_argument("--generator", choices=("wire", "paho"), default="wire",
                       help="simulated units and subscribers: plain sockets on one selector per process (wire, "
                            "light enough for thousands of units) or a paho client each (paho)")
    fleet.add_argument("--json", type=Path, help="also write the figures to this file")

    demo = sub.add_parser("demo", help="the agent in the emulated vehicle, with its screens")
    demo.add_argument("--kind", choices=("car", "motorcycle"), default="car",
                      help="the vehicle (default car); both show the rider panel's picture")
    demo.add_argument("--duration", type=float, help="end by itself after this many seconds")
    demo.add_argument("--ui-port", type=int, default=8080)
    demo.add_argument("--panel-port", type=int, help="the rider panel page (default: the --ui-port + 1)")
    demo.add_argument("--call-at", type=float, default=20.0, help="seconds until the demo call arrives")
    demo.add_argument("--agent-cmd", default=agent_proc.DEFAULT_AGENT_CMD)
    demo.add_argument("--workdir", type=Path, help="default: a fresh temporary directory")
    demo.add_argument("--signed", action="store_true",
                      help="a unit that checks signatures: the demo makes an admin and a dispatch key, lists them "
                           "in the unit's [security], signs its own calls, and prints how to sign by hand")

    emu = sub.add_parser("emulate", help="just the emulators, for a unit on a bench")
    emu.add_argument("--pty", type=Path, default=Path("/tmp/umps-hil-gnss"), help="symlink to the GNSS pty")
    emu.add_argument("--tcp", type=int, help="also serve NMEA on this TCP port (pyserial socket://)")
    emu.add_argument("--serial", help="also write NMEA to this serial device (USB-serial adapter to the unit's UART)")
    emu.add_argument("--baudrate", type=int, default=9600)
    emu.add_argument("--rate", type=int, default=1, choices=(1, 5, 10))
    emu.add_argument("--pigpio-port", type=int, default=8888)
    emu.add_argument("--duration", type=float, help="end by itself after this many seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {"run": cmd_run, "list": cmd_list, "fleet": cmd_fleet, "demo": cmd_demo, "emulate": cmd_emulate}
    try:
        return handler[args.command](args)
    except (BrokerUnavailable, TooManySockets) as exc:
        print(f"umps-hil: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


# ---------------------------------------------------------------- run


def cmd_list(args: argparse.Namespace) -> int:
    for path in shipped_scenarios():
        s = load_scenario(path)
        print(f"{s.name:<18} {s.profile:<6} {s.duration_s:5.0f} s  {s.description}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from hil.engine import run_scenario
    from hil.report import text_table, write_all

    names = list(args.scenarios)
    if args.all:
        names += [str(p) for p in shipped_scenarios()]
    if not names:
        print("umps-hil run: name at least one scenario, or --all (see `umps-hil list`)", file=sys.stderr)
        return EXIT_USAGE
    if args.speed <= 0:
        print("umps-hil run: --speed must be > 0", file=sys.stderr)
        return EXIT_USAGE
    scenarios = []
    for name in names:
        try:
            s = load_scenario(name)
        except ScenarioError as exc:
            print(exc, file=sys.stderr)
            return EXIT_USAGE
        if args.all and args.profile != "any" and s.profile != args.profile and name not in args.scenarios:
            continue
        scenarios.append(s.scaled(args.speed))
    bench = {}
    if args.unit_config is not None:
        if args.broker is None:
            print("umps-hil run: --unit-config (a real unit) needs --broker, the broker the unit uses", file=sys.stderr)
            return EXIT_USAGE
        bench = {"unit_config": args.unit_config, "bench_gpio": args.bench_gpio, "gnss_serial": args.gnss_serial,
                 "gnss_baudrate": args.gnss_baudrate, "dispatch_key": args.dispatch_key}
    progress = printer(args.quiet)
    stop = stop_on_signals()
    results = []
    for s in scenarios:
        if stop.is_set():
            break
        progress(f"\n=== {s.name}: {s.description} ({s.duration_s:g} s)")
        results.append(run_scenario(s, workdir=args.out / s.name, agent_cmd=args.agent_cmd, broker=args.broker,
                                    progress=progress, stop=stop, **bench))
    paths = write_all(results, args.out)
    print(text_table(results))
    print(f"\nresults: {paths['json']}\njunit:   {paths['junit']}\nreport:  {paths['html']}")
    return EXIT_OK if results and all(r.passed for r in results) and len(results) == len(scenarios) else EXIT_FAILED


# -------------------------------------------------------------- fleet


def cmd_fleet(args: argparse.Namespace) -> int:
    import tempfile

    from hil.fleet import run_fleet

    if args.units < 1 or args.duration <= 0 or args.rate <= 0:
        print("umps-hil fleet: --units, --duration and --rate must be positive", file=sys.stderr)
        return EXIT_USAGE
    if args.regions:
        return _fleet_regions(args)
    if args.cut:
        print("umps-hil fleet: --cut needs --regions", file=sys.stderr)
        return EXIT_USAGE
    stop = stop_on_signals()
    broker = None
    if args.broker is None:
        broker = Broker(Path(tempfile.mkdtemp(prefix="umps-hil-fleet-")), extra_config="sys_interval 1").start()
        host, port = broker.address
        print(f"broker: mosquitto pid {broker.pid} on {host}:{port}", flush=True)
    else:
        host, port = args.broker
    try:
        report = run_fleet(host, port, units=args.units, duration_s=args.duration, rate_hz=args.rate,
                           sys_topics=broker is not None, progress=printer(), stop=stop, encoding=args.encoding,
                           generator=args.generator)
    finally:
        if broker is not None:
            broker.stop()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return EXIT_OK


def _fleet_regions(args: argparse.Namespace) -> int:
    import tempfile

    from hil.fleet_regions import Cut, run_regions, unit_ids
    from hil.regions import Topology

    if args.regions < 1 or args.broker is not None or args.units < args.regions:
        print("umps-hil fleet: --regions N needs N >= 1, at least N units, and no --broker (it starts its own)",
              file=sys.stderr)
        return EXIT_USAGE
    cut = None
    if args.cut:
        try:
            region, at, length = args.cut.split(":")
            cut = Cut(int(region) - 1, float(at), float(length))
        except ValueError:
            print("umps-hil fleet: --cut is REGION:AT:SECONDS, e.g. 1:10:60", file=sys.stderr)
            return EXIT_USAGE
        if not 0 <= cut.region < args.regions:
            print(f"umps-hil fleet: --cut region must be 1..{args.regions}", file=sys.stderr)
            return EXIT_USAGE
    per_region = args.units // args.regions
    ids = [u for region in unit_ids(args.regions, per_region) for u in region]
    topology = Topology(Path(tempfile.mkdtemp(prefix="umps-hil-regions-")), regions=args.regions, units=ids)
    stop = stop_on_signals()
    try:
        topology.start()
        print(f"brokers: central on {topology.central.port}, regions on "
              f"{', '.join(str(r.broker.port) for r in topology.region_list)} (bridged over TLS)", flush=True)
        report = run_regions(topology, per_region=per_region, duration_s=args.duration, rate_hz=args.rate,
                             encoding=args.encoding, cut=cut, progress=printer(), stop=stop,
                             generator=args.generator)
    finally:
        topology.stop()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return EXIT_OK if all(level.missing == 0 for level in report.levels) else EXIT_FAILED


# --------------------------------------------------------------- demo


def cmd_demo(args: argparse.Namespace) -> int:
    from hil.demo import cmd_demo as run_demo

    return run_demo(args)


# ------------------------------------------------------------ emulate


def cmd_emulate(args: argparse.Namespace) -> int:
    from hil.gnss_emulator import GnssEmulator
    from hil.gpio_emulator import PigpioEmulator

    stop = stop_on_signals()
    gnss = GnssEmulator(rate_hz=args.rate, talker="GN")
    pty = gnss.serve_pty(args.pty)
    tcp = gnss.serve_tcp("127.0.0.1", args.tcp or 0) if (args.tcp is not None or args.serial) else None
    from agent.config import GpioConfig

    # The agent's default buttons are pulled up (config.txt does it on the unit); so here.
    pulls = {spec.pin: "up" for spec in GpioConfig().inputs.values() if spec.pull_up}
    gpio = PigpioEmulator(port=args.pigpio_port, boot_pulls=pulls)
    forwarder = None
    try:
        gpio.start()
        gnss.start()
        if args.serial:
            from hil.bench import SerialForwarder

            forwarder = SerialForwarder(tcp, args.serial, args.baudrate).start()  # type: ignore[arg-type]
        print(f"GNSS:   NMEA at {args.rate} Hz on {pty}" + (f" and socket://127.0.0.1:{tcp}" if tcp else ""))
        if args.serial:
            print(f"        and out of {args.serial} at {args.baudrate} baud")
        print(f"pigpio: 127.0.0.1:{gpio.port}  ([gpio] factory = \"pigpio\", pigpio_port = {gpio.port})")
        print("Ctrl-C to stop.", flush=True)
        stop.wait(args.duration)
    finally:
        if forwarder is not None:
            forwarder.stop()
        gnss.stop()
        gpio.stop()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
