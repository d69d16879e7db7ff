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
import shlex
import signal
import socket
import sys
import threading
import time
from pathlib import Path

from hil import agent_proc
from hil.broker import Broker, BrokerUnavailable
from hil.fleet_wire import TooManySockets
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
    if args.regions:
        return _fleet_regions(args)
    if args.cut:
        print("umps-hil fleet: --cut needs --regions", file=sys.stderr)
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
                           sys_topics=broker is not None, progress=_printer(), stop=stop, encoding=args.encoding,
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
    stop = _stop_on_signals()
    try:
        topology.start()
        print(f"brokers: central on {topology.central.port}, regions on "
              f"{', '.join(str(r.broker.port) for r in topology.region_list)} (bridged over TLS)", flush=True)
        report = run_regions(topology, per_region=per_region, duration_s=args.duration, rate_hz=args.rate,
                             encoding=args.encoding, cut=cut, progress=_printer(), stop=stop,
                             generator=args.generator)
    finally:
        topology.stop()
    print(report.text())
    if args.json:
        args.json.write_text(json.dumps(report.to_json(), indent=2))
    return EXIT_OK if all(level.missing == 0 for level in report.levels) else EXIT_FAILED


# --------------------------------------------------------------- demo

DEMO_HELP = """\
Commands (type one and press Enter):
  press BUTTON | tap BUTTON   a panel button: available en_route on_scene busy
                              out_of_service ack emergency
  hold emergency [SECONDS]    raise the alarm (default 2.5 s)
  siren on|off                the lightbar
  call [P]                    a new dispatch call, priority P = 1, 2 or 3 (default 1)
  cancel [ID]                 dispatch cancels call ID (default: the call on screen)
  ack | clear                 dispatch acknowledges / clears the alarm
  tunnel [SECONDS]            fix lost (default 10 s)
  unplug [SECONDS]            receiver unplugged (default 5 s)
  outage [SECONDS]            broker stopped (default 15 s)
  deadzone [SECONDS]          the car's own link stalls (default 20 s)
  ignition on|off             the vehicle's ignition (parked: fewer reports)
  power_fail [HOLD_UP]        the hold-up supply warns, then gives out (default
                              2 s); the power comes back 5 s later
  power_cut [SECONDS]         power cut without warning, back after 5 s
  help | quit
"""


def cmd_demo(args: argparse.Namespace) -> int:
    import tempfile

    from hil.engine import Rig, RigError, RigOptions

    own_workdir = args.workdir is None  # ours to remove on the way out
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="umps-hil-demo-"))).resolve()
    out = _printer()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", args.ui_port))
    except OSError:
        print(f"umps-hil demo: port {args.ui_port} is taken; use --ui-port", file=sys.stderr)
        return EXIT_USAGE
    stop = _stop_on_signals()
    panel_png = workdir / "panel.png"
    unit_id = "KEN-M-07" if args.kind == "motorcycle" else "KEN-C-01"
    # The rider panel is drawn in memory (no OLED here) and mirrored to a PNG the panel page shows.
    overrides = {"display": {"kind": "dummy", "mirror_png": str(panel_png)}}
    rig = Rig(RigOptions(workdir=workdir, unit_id=unit_id, unit_kind=args.kind, agent_cmd=args.agent_cmd,
                         ui_port=args.ui_port, online_timeout_s=60.0, link_proxy=True, agent_overrides=overrides),
              out, stop)
    panel_page = None
    failed = False
    try:
        rig.up()
        panel_page = PanelPage(panel_png, unit_id, port=args.ui_port + 1 if args.panel_port is None else args.panel_port)
    except (RigError, RuntimeError, OSError) as exc:
        print(f"umps-hil demo: {exc}", file=sys.stderr)
        rig.down()
        _remove_workdir(workdir, own_workdir, failed=True)
        return EXIT_FAILED
    host, port = rig.broker_addr
    base = f"umps/{rig.opt.unit_id}"
    vehicle = "motorcycle" if args.kind == "motorcycle" else "car"
    screen = (f"  Touchscreen:   http://127.0.0.1:{args.ui_port}/\n" if args.kind == "car" else "")
    # The created time is taken when the line is run, so the call is fresh whenever it is sent.
    call_json = ('{"id":"C-DEMO-9","action":"new","priority":1,"nature":"Vol avec violence",'
                 '"address":"Marché central, Kénitra","location":{"lat":34.2595,"lon":-6.5830},'
                 '"created":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"}')
    print(f"""
The emulated {vehicle} {rig.opt.unit_id} is on patrol in Kénitra.

{screen}  Rider panel:   {panel_page.url}   (the 128×64 display, live)
  Broker:        {host}:{port}   (watch: mosquitto_sub -h {host} -p {port} -v -t '{base}/#')
  GNSS pty:      {rig.gnss_path}
  pigpio:        127.0.0.1:{rig.gpio.port if rig.gpio else '?'}
  Agent log:     {workdir / 'agent.log'}

Send a test call yourself, in one line:
  mosquitto_pub -h {host} -p {port} -q 1 -t {base}/call -m '{call_json}'

A P1 call arrives by itself in {args.call_at:g} s. Ctrl-C to stop.
""" + DEMO_HELP, flush=True)
    state = {"calls": 0, "open": []}
    demo_call = threading.Timer(args.call_at, lambda: _demo_command(rig, "call 1", state, out))
    demo_call.daemon = True
    demo_call.start()
    threading.Thread(target=_demo_repl, args=(rig, state, out, stop), daemon=True).start()
    try:
        deadline = time.monotonic() + args.duration if args.duration else None
        while not stop.is_set():
            if rig.agent and rig.agent.exit_code() is not None and not rig.power_off:
                print(f"the agent exited with {rig.agent.exit_code()}; see {workdir / 'agent.log'}", flush=True)
                failed = True
                return EXIT_FAILED
            if deadline is not None and time.monotonic() >= deadline:
                break
            stop.wait(0.5)
    finally:
        demo_call.cancel()
        rig.messages_printed = False
        rig.down()
        if panel_page is not None:
            panel_page.close()
        _remove_workdir(workdir, own_workdir, failed)
        print("demo stopped", flush=True)
    return EXIT_OK


def _remove_workdir(workdir: Path, own: bool, failed: bool) -> None:
    """Remove the demo's temporary directory; kept when the user named it or the agent failed (its log)."""
    import shutil

    if own and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    elif own:
        print(f"kept {workdir} for its agent.log", flush=True)


PANEL_PAGE = """<!doctype html>
<html lang="fr"><head><meta charset="utf-8"><title>{unit} – panneau du motard</title>
<style>
body {{ margin: 0; background: #202428; color: #ddd; font-family: sans-serif; display: flex;
       flex-direction: column; align-items: center; justify-content: center; height: 100vh; gap: 12px; }}
img {{ width: 512px; height: 256px; image-rendering: pixelated; border: 12px solid #000; border-radius: 6px;
      background: #000; }}
</style></head>
<body><img id="panel" alt="panel display" src="/panel.png">
<div>{unit} · 128×64, as the rider sees it · refreshed live</div>
<script>
const img = document.getElementById("panel");
setInterval(() => {{ const next = new Image(); next.onload = () => {{ img.src = next.src; }};
                     next.src = "/panel.png?" + Date.now(); }}, 300);
</script></body></html>
"""


class PanelPage:
    """A local page showing the rider panel's picture (the agent mirrors each frame to ``png``)."""

    def __init__(self, png: Path, unit: str, host: str = "127.0.0.1", port: int = 0):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        page = PANEL_PAGE.format(unit=unit).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (the http.server name)
                path = self.path.split("?")[0]
                if path == "/":
                    body, ctype = page, "text/html; charset=utf-8"
                elif path == "/panel.png":
                    try:
                        body, ctype = png.read_bytes(), "image/png"
                    except OSError:
                        self.send_error(404, "no frame yet")
                        return
                else:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Cache-Control", "no-store")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer((host, port), Handler)
        self.url = f"http://{host}:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, name="panel-page", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def _demo_repl(rig, state: dict, out, stop: threading.Event) -> None:
    for line in sys.stdin:
        line = line.strip()
        if line in ("quit", "exit", "q"):
            stop.set()
            return
        if line:
            _demo_command(rig, line, state, out)


def _demo_command(rig, line: str, state: dict, out) -> None:
    try:
        words = shlex.split(line)
    except ValueError as exc:
        print(f"cannot read {line!r}: {exc}", flush=True)
        return
    if not words:
        return
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
        if len(rest) > 1 or (rest and rest[0] not in ("1", "2", "3")):
            print(f"call: the priority is 1, 2 or 3, not {' '.join(rest)!r}", flush=True)
            return
        prio = int(rest[0]) if rest else 1
        state["calls"] += 1
        call_id = f"C-DEMO-{state['calls']:04d}"
        state["open"].append(call_id)
        steps.append(("call", {**ACTIONS["call"][1], "call_id": call_id, "priority": prio,
                               "nature": "Rixe sur la voie publique", "address": "Marché central, Kénitra",
                               "location": {"lat": 34.2595, "lon": -6.5830},
                               "details": "Deux individus, l'un armé d'un couteau."}))
    elif cmd == "cancel":
        call_id = rest[0] if rest else _call_on_screen(rig) or (state["open"][-1] if state["open"] else None)
        if call_id is None:
            print("cancel: no call on screen; name one: cancel ID", flush=True)
            return
        if call_id in state["open"]:
            state["open"].remove(call_id)
        steps.append(("call_cancel", {"call_id": call_id, "reason": "Résolu par une autre unité"}))
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
    elif cmd == "ignition" and rest and rest[0] in ("on", "off"):
        steps.append(("ignition", {"on": rest[0] == "on"}))
    elif cmd == "power_fail":
        steps.append(("power_fail", {"hold_up_s": num(2.0), "off_s": 5.0}))
    elif cmd == "power_cut":
        steps.append(("power_cut", {"off_s": num(5.0)}))
    elif cmd in ("press", "tap", "hold", "siren"):
        print(f"{cmd}: which one? type help for the list", flush=True)
        return
    elif cmd in ("help", "?"):
        print(DEMO_HELP, flush=True)
        return
    else:
        print(f"unknown command {line!r}; type help for the list", flush=True)
        return
    for action, a in steps:
        _demo_step(rig, action, a, out)


def _call_on_screen(rig) -> str | None:
    """The call the unit shows, from its newest retained status message (``call.id``), if any."""
    tap = getattr(rig, "tap", None)
    if tap is None:
        return None
    for msg in reversed(tap.snapshot()):
        if msg.topic.endswith("/status"):
            try:
                call = json.loads(msg.payload).get("call")
            except (ValueError, AttributeError):
                return None
            return call.get("id") if isinstance(call, dict) else None
    return None


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
