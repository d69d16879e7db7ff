"""The ``umps-hil`` command: run scenarios, load a broker with a fleet, demo, bench emulators.

Subcommands:

``run SCENARIO...``  play scenarios (files, or names of the shipped ones; ``--all``)
                    against a fresh agent each; writes results.json, junit.xml,
                    report.html and each run's log under ``--out``
``list``            the shipped scenarios
``fleet``           N simulated units on one broker; broker-side throughput and
                    per-unit cadence
``demo``            broker + emulators + the agent as a car with its touchscreen;
                    a patrol with a call arriving; commands on stdin
``emulate``         just the emulators (GNSS on a pty/TCP/serial device, pigpio on a
                    port) for a unit on a bench

Exit codes: 0 all passed (or a clean stop), 1 a scenario failed or the rig
could not run, 2 bad usage or an invalid scenario file.
"""

from __future__ import annotations

import argparse
import json
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hil import agent_proc
from hil.broker import Broker, BrokerUnavailable
from hil.scenario import ACTIONS, ScenarioError, Step, load_scenario, shipped_scenarios

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

    fleet = sub.add_parser("fleet", help="many simulated units against one broker")
    fleet.add_argument("--units", type=int, default=100)
    fleet.add_argument("--duration", type=float, default=30.0, help="seconds of reporting")
    fleet.add_argument("--rate", type=float, default=1.0, help="reports per second per unit")
    fleet.add_argument("--broker", type=_broker_arg, help="HOST:PORT (default: start a Mosquitto of the rig's own)")
    fleet.add_argument("--json", type=Path, help="also write the figures to this file")

    demo = sub.add_parser("demo", help="the agent as a car in the emulated vehicle, with its touchscreen")
    demo.add_argument("--duration", type=float, help="end by itself after this many seconds")
    demo.add_argument("--ui-port", type=int, default=8080)
    demo.add_argument("--call-at", type=float, default=20.0, help="seconds until the demo call arrives")
    demo.add_argument("--agent-cmd", default=agent_proc.DEFAULT_AGENT_CMD)
    demo.add_argument("--workdir", type=Path, help="default: a fresh temporary directory")

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
    except BrokerUnavailable as exc:
        print(f"umps-hil: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_OK


def _printer(quiet: bool = False):
    lock = threading.Lock()

    def out(line: str) -> None:
        if not quiet:
            with lock:
                print(line, flush=True)

    return out


def _stop_on_signals() -> threading.Event:
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


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
    progress = _printer(args.quiet)
    stop = _stop_on_signals()
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
    stop = _stop_on_signals()
    broker = None
    if args.broker is None:
        broker = Broker(Path(tempfile.mkdtemp(prefix="umps-hil-fleet-")), extra_config="sys_interval 1").start()
        host, port = broker.address
        print(f"broker: mosquitto pid {broker.pid} on {host}:{port}", flush=True)
    else:
        host, port = args.broker
    try:
        report = run_fleet(host, port, units=args.units, duration_s=args.duration, rate_hz=args.rate,
                           sys_topics=broker is not None, progress=_printer(), stop=stop)
    finally:
        if broker is not None:
            broker.stop()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return EXIT_OK


# --------------------------------------------------------------- demo

DEMO_HELP = """\
Commands (type one and press Enter):
  press BUTTON | tap BUTTON   a panel button: available en_route on_scene busy
                              out_of_service ack emergency
  hold emergency [SECONDS]    raise the alarm (default 2.5 s)
  siren on|off                the lightbar
  call [P]                    a new dispatch call, priority 1-3 (default 1)
  cancel                      dispatch cancels the last call
  ack | clear                 dispatch acknowledges / clears the alarm
  tunnel [SECONDS]            fix lost (default 10 s)
  unplug [SECONDS]            receiver unplugged (default 5 s)
  outage [SECONDS]            broker stopped (default 15 s)
  deadzone [SECONDS]          the car's own link stalls (default 20 s)
  help | quit
"""


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from hil.engine import Rig, RigError, RigOptions

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="umps-hil-demo-"))
    out = _printer()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", args.ui_port))
    except OSError:
        print(f"umps-hil demo: port {args.ui_port} is taken; use --ui-port", file=sys.stderr)
        return EXIT_USAGE
    stop = _stop_on_signals()
    rig = Rig(RigOptions(workdir=workdir, unit_kind="car", agent_cmd=args.agent_cmd, ui_port=args.ui_port,
                         online_timeout_s=60.0, link_proxy=True), out, stop)
    try:
        rig.up()
    except (RigError, RuntimeError, OSError) as exc:
        print(f"umps-hil demo: {exc}", file=sys.stderr)
        rig.down()
        return EXIT_FAILED
    host, port = rig.broker_addr
    base = f"umps/{rig.opt.unit_id}"
    print(f"""
The emulated car {rig.opt.unit_id} is on patrol in Kénitra.

  Touchscreen:   http://127.0.0.1:{args.ui_port}/
  Broker:        {host}:{port}   (watch: mosquitto_sub -h {host} -p {port} -v -t '{base}/#')
  GNSS pty:      {rig.gnss_path}
  pigpio:        127.0.0.1:{rig.gpio.port if rig.gpio else '?'}
  Agent log:     {workdir / 'agent.log'}

Send a test call yourself, in one line:
  mosquitto_pub -h {host} -p {port} -q 1 -t {base}/call -m '{{"id":"C-DEMO-9","action":"new","priority":1,"nature":"Vol avec violence","address":"Marché central, Kénitra","created":"{time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}"}}'

A P1 call arrives by itself in {args.call_at:g} s. Ctrl-C to stop.
""" + DEMO_HELP, flush=True)
    state = {"calls": 0, "last_call": None}
    demo_call = threading.Timer(args.call_at, lambda: _demo_command(rig, "call 1", state, out))
    demo_call.daemon = True
    demo_call.start()
    threading.Thread(target=_demo_repl, args=(rig, state, out, stop), daemon=True).start()
    try:
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            if rig.agent and rig.agent.exit_code() is not None:
                print(f"the agent exited with {rig.agent.exit_code()}; see {workdir / 'agent.log'}", flush=True)
                return EXIT_FAILED
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.5)
    finally:
        demo_call.cancel()
        rig.messages_printed = False
        rig.down()
        print("demo stopped", flush=True)
    return EXIT_OK


def _demo_repl(rig, state: dict, out, stop: threading.Event) -> None:
    for line in sys.stdin:
        line = line.strip()
        if line in ("quit", "exit", "q"):
            stop.set()
            return
        if line:
            _demo_command(rig, line, state, out)


def _demo_command(rig, line: str, state: dict, out) -> None:
    words = shlex.split(line)
    cmd, rest = words[0], words[1:]

    def num(default: float) -> float:
        return float(rest[-1]) if rest and rest[-1].replace(".", "", 1).isdigit() else default

    steps: list[tuple[str, dict]] = []
    if cmd in ("press", "tap") and rest:
        steps.append(("tap", {"button": rest[0], "ms": 200.0}))
    elif cmd == "hold" and rest:
        steps.append(("hold", {"button": rest[0], "seconds": num(2.5)}))
    elif cmd == "siren" and rest:
        steps.append(("siren", {"on": rest[0] == "on"}))
    elif cmd == "call":
        state["calls"] += 1
        call_id = f"C-DEMO-{state['calls']:04d}"
        state["last_call"] = call_id
        prio = int(num(1)) if rest else 1
        steps.append(("call", {**ACTIONS["call"][1], "call_id": call_id, "priority": prio if prio in (1, 2, 3) else 1,
                               "nature": "Rixe sur la voie publique", "address": "Marché central, Kénitra",
                               "location": {"lat": 34.2595, "lon": -6.5830},
                               "details": "Deux individus, l'un armé d'un couteau."}))
    elif cmd == "cancel" and state["last_call"]:
        steps.append(("call_cancel", {"call_id": state["last_call"], "reason": "Résolu par une autre unité"}))
    elif cmd == "ack":
        steps.append(("alarm_ack", {"alarm_id": None}))
    elif cmd == "clear":
        steps.append(("alarm_clear", {"alarm_id": None}))
    elif cmd == "tunnel":
        steps.append(("gnss_fault", {"fault": "tunnel", "duration_s": num(10.0), "ratio": 1.0}))
    elif cmd == "unplug":
        steps.append(("unplug", {"duration_s": num(5.0)}))
    elif cmd == "outage":
        seconds = num(15.0)
        steps.append(("broker_stop", {}))
        threading.Timer(seconds, lambda: _demo_step(rig, "broker_start", {}, out)).start()
    elif cmd == "deadzone":
        seconds = num(20.0)
        steps.append(("link_down", {"mode": "blackhole"}))
        threading.Timer(seconds, lambda: _demo_step(rig, "link_up", {}, out)).start()
    else:
        print(DEMO_HELP, flush=True)
        return
    for action, a in steps:
        _demo_step(rig, action, a, out)


def _demo_step(rig, action: str, args: dict, out) -> None:
    try:
        detail = rig.perform(Step(0, action, 0.0, action, args))
        out(f"[{rig.now():6.2f} s] {detail}")
    except Exception as exc:  # a typo at the demo prompt must not end the demo
        out(f"cannot: {exc}")


# ------------------------------------------------------------ emulate


def cmd_emulate(args: argparse.Namespace) -> int:
    from hil.gnss_emulator import GnssEmulator
    from hil.gpio_emulator import PigpioEmulator

    stop = _stop_on_signals()
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
