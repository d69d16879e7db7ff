"""``umps-hil demo``: the agent in the emulated vehicle, its screens, and a prompt to play the shift.

Who it is for: a crew, a dispatcher or an admin trying the product on a laptop. The rig
(:class:`hil.engine.Rig`) stands the vehicle up: a private Mosquitto, the GNSS emulator
driving the Kénitra loop, the GPIO emulator, and the unmodified agent as a car (with its
touchscreen) or a motorcycle. The rider panel is drawn in memory and mirrored to a PNG
that :class:`PanelPage` serves live. The demo prints where everything is and a one-line
``mosquitto_pub`` to send a call, then reads commands on stdin (:class:`DemoPrompt`):

- the crew: ``accept`` and ``decline`` the call on screen, ``tap`` a panel button (only
  the buttons this vehicle has: a motorcycle has no ``busy``), ``hold emergency``, the siren;
- dispatch: ``call [P]`` (each call its own incident, ahead on the route:
  :mod:`hil.demo_calls`), ``cancel``, ``alarm ack`` and ``alarm clear``. The older bare
  ``ack`` and ``clear`` are still understood, with a word on the difference: ``alarm
  ack`` is dispatch acknowledging the crew's alarm, ``accept`` (the panel's ``ack``
  button) is the crew taking the call;
- the vehicle: tunnel, receiver unplugged, broker outage, dead zone, ignition, power.

``--signed`` runs a unit that checks signatures: the demo makes an admin key and a
dispatch key in its directory, lists them in the unit's ``[security] admin_keys`` and
``dispatch_keys``, signs its own calls and alarm answers, and prints the
``umps-agent admin sign`` / ``sign-cmd`` / ``sign-dispatch`` lines to sign by hand. Without
it the unit has no keys, and says in its results that it ignored a ``sig``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from agent import admin_tools
from agent.config import GpioConfig, PanelConfig
from hil.console import printer, stop_on_signals
from hil.demo_calls import CallPlanner
from hil.panel_page import PanelPage
from hil.scenario import Step

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
DECLINE_PIN = 9  # the panel's optional decline button, wired on the demo's emulated board
CALL_BUTTONS = ("ack", "decline", "emergency")


def vehicle_buttons(kind: str, status_buttons: dict[str, list[str]]) -> list[str]:
    """The panel buttons a vehicle of ``kind`` carries: its status buttons, then the call and alarm ones."""
    return [*status_buttons.get(kind, []), *CALL_BUTTONS]


def demo_help(kind: str, buttons: list[str]) -> str:
    """The prompt's commands for this vehicle (its own buttons only)."""
    first, *more = _wrap("a panel button: " + " ".join(buttons), 52)
    listing = "\n".join([f"  {'tap BUTTON':<28}{first}", *(f"  {'':<28}{line}" for line in more)])
    return f"""\
Commands (type one and press Enter):
 The crew ({'rider' if kind == 'motorcycle' else 'car crew'})
  accept                      accept the call on screen (the panel's ack button)
  decline                     decline the call on screen, before accepting it
                              (the panel's decline button)
{listing}
  hold emergency [SECONDS]    raise the alarm (default 2.5 s)
  siren on|off                the siren and lights
 Dispatch
  call [P]                    a new call, priority P = 1, 2 or 3 (default 1): each
                              one a different incident, ahead on the route
  cancel [ID]                 cancel call ID (default: the call on screen)
  alarm ack | alarm clear     acknowledge / clear the crew's alarm
 The {'motorcycle' if kind == 'motorcycle' else 'car'} and its surroundings
  tunnel [SECONDS]            fix lost (default 10 s)
  unplug [SECONDS]            receiver unplugged (default 5 s)
  outage [SECONDS]            the broker stops (default 15 s)
  deadzone [SECONDS]          the unit's own mobile link stalls while the broker and
                              dispatch stay up (default 20 s)
  ignition on|off             the ignition (parked: fewer reports)
  power_fail [HOLD_UP]        the hold-up supply warns, then gives out (default
                              2 s); the power comes back 5 s later
  power_cut [SECONDS]         power cut without warning, back after 5 s
  help | quit
"""


def _wrap(words: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in words.split():
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return lines + [line]


def demo_overrides(panel_png: Path) -> dict[str, Any]:
    """The demo unit's config beside the rig's: the panel mirrored to a PNG, a decline button wired."""
    inputs = {name: {"pin": spec.pin} for name, spec in GpioConfig().inputs.items()}
    inputs["decline"] = {"pin": DECLINE_PIN}
    return {"display": {"kind": "dummy", "mirror_png": str(panel_png)}, "gpio": {"inputs": inputs}}


def umps_agent_command() -> str:
    """How to run ``umps-agent`` from the user's shell: on the PATH, else beside this interpreter."""
    found = shutil.which("umps-agent")
    if found:
        return "umps-agent"
    beside = Path(sys.executable).parent / "umps-agent"
    return str(beside) if beside.exists() else f"{sys.executable} -m agent"


def _key(path: Path) -> Any:
    if not path.exists():
        admin_tools.generate_key(path)
    return admin_tools.load_private_key(path)


# ---------------------------------------------------------------- the demo


def cmd_demo(args: argparse.Namespace) -> int:
    from hil.engine import Rig, RigError, RigOptions

    own_workdir = args.workdir is None  # ours to remove on the way out
    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="umps-hil-demo-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    out = printer()
    try:
        with socket.socket() as s:
            s.bind(("127.0.0.1", args.ui_port))
    except OSError:
        print(f"umps-hil demo: port {args.ui_port} is taken; use --ui-port", file=sys.stderr)
        return EXIT_USAGE
    stop = stop_on_signals()
    panel_png = workdir / "panel.png"
    unit_id = "KEN-M-07" if args.kind == "motorcycle" else "KEN-C-01"
    keys = {"admin": workdir / "admin.key", "dispatch": workdir / "dispatch.key"} if args.signed else {}
    rig = Rig(RigOptions(workdir=workdir, unit_id=unit_id, unit_kind=args.kind, agent_cmd=args.agent_cmd,
                         ui_port=args.ui_port, online_timeout_s=60.0, link_proxy=True,
                         agent_overrides=demo_overrides(panel_png),
                         admin_key=_key(keys["admin"]) if keys else None,
                         signed_dispatch=bool(keys), dispatch_key=keys.get("dispatch")),
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
    assert rig.config is not None
    if keys and rig.tap is not None:
        # A unit judges a signed message's expiry on trusted time: its GNSS's, until a clock sync.
        out("waiting for the unit's first GNSS fix, its trusted time for signed messages")
        rig.tap.wait_for(lambda ms: any(m.topic == "status" and b'"time_source":"system_unsynced"' not in m.payload
                                        and b'"time_source"' in m.payload for m in ms), 30)
    buttons = vehicle_buttons(args.kind, rig.config.panel.status_buttons)
    print(banner(rig, args, panel_page.url, workdir, keys) + demo_help(args.kind, buttons), flush=True)
    prompt = DemoPrompt(rig, out, kind=args.kind, buttons=buttons)
    demo_call = threading.Timer(args.call_at, lambda: prompt.run("call 1"))
    demo_call.daemon = True
    demo_call.start()
    threading.Thread(target=prompt.read, args=(sys.stdin, stop), daemon=True).start()
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
        panel_page.close()
        _remove_workdir(workdir, own_workdir, failed)
        print("demo stopped", flush=True)
    return EXIT_OK


def banner(rig: Any, args: argparse.Namespace, panel_url: str, workdir: Path, keys: dict[str, Path]) -> str:
    host, port = rig.broker_addr
    unit = rig.opt.unit_id
    base = f"umps/{unit}"
    pub = f"mosquitto_pub -h {host} -p {port} -q 1"
    umps = umps_agent_command()
    vehicle = "motorcycle" if args.kind == "motorcycle" else "car"
    screen = f"  Touchscreen:   http://127.0.0.1:{args.ui_port}/\n" if args.kind == "car" else ""
    # The created time is taken when the line is run, so the call is fresh whenever it is sent.
    call_json = ('{"id":"C-DEMO-9","action":"new","priority":1,"nature":"Vol avec violence",'
                 '"address":"Marché central, Kénitra","location":{"lat":34.2595,"lon":-6.5830},'
                 '"created":"\'"$(date -u +%Y-%m-%dT%H:%M:%SZ)"\'"}')
    watch = f"mosquitto_sub -h {host} -p {port} -v"
    text = f"""
The emulated {vehicle} {unit} is on patrol in Kénitra.

{screen}  Rider panel:   {panel_url}   (the 128×64 display, live)
  Broker:        {host}:{port}   (watch everything: {watch} -t '{base}/#')
  GNSS pty:      {rig.gnss_path}
  pigpio:        127.0.0.1:{rig.gpio.port if rig.gpio else '?'}
  Agent log:     {workdir / 'agent.log'}
"""
    if keys:
        admin, dispatch = (shlex.quote(str(keys["admin"])), shlex.quote(str(keys["dispatch"])))
        text += f"""
Signed: the unit takes only signed calls and alarm answers (dispatch key) and signed
config pushes and commands (admin key). The demo signs its own calls with the dispatch key.
  Admin key:     {keys['admin']}
  Dispatch key:  {keys['dispatch']}

Send a signed call yourself, in one line (watch the answer: {watch} -t '{base}/call/#'):
  echo '{call_json}' | {umps} admin sign-dispatch --key {dispatch} --unit {unit} call - | {pub} -t {base}/call -s
Acknowledge, then clear, the crew's alarm as dispatch, named by the id of its alarm message:
  ALARM=$({watch.replace(' -v', '')} -t {base}/alarm -C 1 -W 10 | python3 -c 'import json, sys; print(json.load(sys.stdin)["id"])')
  {umps} admin sign-dispatch --key {dispatch} --unit {unit} alarm/ack --alarm-id "$ALARM" | {pub} -t {base}/alarm/ack -s
  {umps} admin sign-dispatch --key {dispatch} --unit {unit} alarm/clear --alarm-id "$ALARM" | {pub} -t {base}/alarm/clear -s
A signed command and a signed config push, as a fleet admin (watch: {watch} -t '{base}/+/result'):
  {umps} admin sign-cmd --key {admin} --unit {unit} report_position | {pub} -t {base}/cmd -s
  printf '[telemetry]\\nrate_hz = 2\\n' > /tmp/push.toml && {umps} admin sign --key {admin} --unit {unit} --version 1 /tmp/push.toml | {pub} -t {base}/config/set -s
  (each push needs a higher --version than the last one the unit accepted)
"""
    else:
        text += f"""
Send a test call yourself, in one line (watch the answer: {watch} -t '{base}/call/#'):
  {pub} -t {base}/call -m '{call_json}'

The unit has no keys: it takes unsigned calls, pushes and commands, and a result says in
"warnings" when it ignored a "sig". `umps-hil demo --signed` runs a unit that checks them.
"""
    return text + (f"More lines for a dispatcher or an admin: docs/recipes.md.\n"
                   f"\nA P1 call arrives by itself in {args.call_at:g} s. Ctrl-C or quit to stop.\n\n")


def _remove_workdir(workdir: Path, own: bool, failed: bool) -> None:
    """Remove the demo's temporary directory; kept when the user named it or the agent failed (its log)."""
    if own and not failed:
        shutil.rmtree(workdir, ignore_errors=True)
    elif own:
        print(f"kept {workdir} for its agent.log", flush=True)


# -------------------------------------------------------------- the prompt

# Older words of the prompt: still understood, with what they are now.
RENAMED = {
    "ack": ("alarm ack", "`ack` alone is dispatch acknowledging the crew's alarm, now written `alarm ack`; "
                         "to accept the call on screen, type `accept`"),
    "clear": ("alarm clear", "`clear` alone is dispatch clearing the crew's alarm, now written `alarm clear`; "
                             "the crew ends a call with `tap available`"),
}


class DemoPrompt:
    """The demo's commands: each line becomes one or more rig steps."""

    def __init__(self, rig: Any, out: Callable[[str], None], *, kind: str = "car", buttons: list[str] | None = None,
                 planner: CallPlanner | None = None):
        self.rig = rig
        self.out = out
        self.kind = kind
        config = getattr(rig, "config", None)
        status_buttons = config.panel.status_buttons if config is not None else PanelConfig().status_buttons
        self.buttons = buttons if buttons is not None else vehicle_buttons(kind, status_buttons)
        gnss = getattr(rig, "gnss", None)
        route = gnss.source.route if gnss is not None and hasattr(gnss.source, "route") else None
        self.planner = planner or (CallPlanner(route) if route is not None else None)
        self.open: dict[str, str] = {}  # call id -> address, of the calls dispatch has not cancelled
        self._lock = threading.Lock()

    def read(self, stream: Any, stop: threading.Event) -> None:
        for line in stream:
            line = line.strip()
            if line in ("quit", "exit", "q"):
                stop.set()
                return
            if line:
                self.run(line)

    def say(self, text: str) -> None:
        print(text, flush=True)

    def run(self, line: str) -> None:
        with self._lock:  # the timed call and the prompt never interleave
            self._run(line)

    def _run(self, line: str) -> None:
        try:
            words = shlex.split(line)
        except ValueError as exc:
            self.say(f"cannot read {line!r}: {exc}")
            return
        if not words:
            return
        cmd, rest = words[0], words[1:]
        if cmd in RENAMED and not rest:
            new, note = RENAMED[cmd]
            self.say(f"({note})")
            cmd, rest = new.split()[0], new.split()[1:]
        steps = self._steps(cmd, rest, line)
        for action, args in steps or ():
            self.step(action, args)

    def _steps(self, cmd: str, rest: list[str], line: str) -> list[tuple[str, dict]] | None:
        def num(default: float) -> float:
            return float(rest[-1]) if rest and rest[-1].replace(".", "", 1).isdigit() else default

        match cmd:
            case "accept":
                return [("tap", {"button": "ack", "ms": 200.0})]
            case "decline":
                return [("tap", {"button": "decline", "ms": 200.0})]
            case "tap" | "press" if rest:
                if rest[0] not in self.buttons and rest[0] != "siren":
                    vehicle = "motorcycle" if self.kind == "motorcycle" else "car"
                    self.say(f"a {vehicle} has no {rest[0]!r} button; its buttons: {' '.join(self.buttons)}")
                    return None
                return [("tap", {"button": rest[0], "ms": 200.0})]
            case "hold" if rest:
                return [("hold", {"button": rest[0], "seconds": num(2.5)})]
            case "siren" if rest and rest[0] in ("on", "off"):
                return [("siren", {"on": rest[0] == "on"})]
            case "call":
                return self._call(rest)
            case "cancel":
                call_id = rest[0] if rest else self.call_on_screen() or next(reversed(self.open), None)
                if call_id is None:
                    self.say("cancel: no call on screen; name one: cancel ID")
                    return None
                self.open.pop(call_id, None)
                return [("call_cancel", {"call_id": call_id, "reason": "Résolu par une autre unité"})]
            case "alarm" if rest and rest[0] in ("ack", "clear"):
                return [(f"alarm_{rest[0]}", {"alarm_id": None})]
            case "tunnel":
                return [("gnss_fault", {"fault": "tunnel", "duration_s": num(10.0), "ratio": 1.0})]
            case "unplug":
                return [("unplug", {"duration_s": num(5.0)})]
            case "outage":
                self.later(num(15.0), "broker_start")
                return [("broker_stop", {})]
            case "deadzone":
                self.later(num(20.0), "link_up")
                return [("link_down", {"mode": "blackhole"})]
            case "ignition" if rest and rest[0] in ("on", "off"):
                return [("ignition", {"on": rest[0] == "on"})]
            case "power_fail":
                return [("power_fail", {"hold_up_s": num(2.0), "off_s": 5.0})]
            case "power_cut":
                return [("power_cut", {"off_s": num(5.0)})]
            case "help" | "?":
                self.say(demo_help(self.kind, self.buttons))
                return None
            case "tap" | "press" | "hold" | "siren" | "alarm" | "ignition":
                self.say(f"{cmd}: which one? type help for the list")
                return None
        self.say(f"unknown command {line!r}; type help for the list")
        return None

    def _call(self, rest: list[str]) -> list[tuple[str, dict]] | None:
        if len(rest) > 1 or (rest and rest[0] not in ("1", "2", "3")):
            self.say(f"call: the priority is 1, 2 or 3, not {' '.join(rest)!r}")
            return None
        priority = int(rest[0]) if rest else 1
        if self.planner is None:
            self.say("call: no route to place a call on")
            return None
        call = self.planner.next_call(self.route_time(), priority, set(self.open.values()))
        self.open[call.call_id] = call.address
        self.out(f"dispatch: {call.call_id} P{priority} {call.nature}, {call.address}: {call.distance_m:.0f} m away, "
                 f"about {call.eta_s:.0f} s ahead on the patrol's route")
        return [("call", call.step_args())]

    def route_time(self) -> float:
        gnss = self.rig.gnss
        return float(getattr(gnss.source, "offset_s", 0.0)) + gnss.elapsed

    def later(self, seconds: float, action: str) -> None:
        timer = threading.Timer(seconds, lambda: self.step(action, {}))
        timer.daemon = True
        timer.start()

    def step(self, action: str, args: dict) -> None:
        try:
            detail = self.rig.perform(Step(0, action, 0.0, action, args))
            self.out(f"[{self.rig.now():6.2f} s] {detail}")
        except Exception as exc:  # a typo at the demo prompt must not end the demo
            self.out(f"cannot: {exc}")

    def call_on_screen(self) -> str | None:
        """The call the unit shows, from its newest status message (``call.id``), if any."""
        tap = getattr(self.rig, "tap", None)
        if tap is None:
            return None
        for msg in reversed(tap.snapshot()):
            if msg.topic == "status" or msg.topic.endswith("/status"):
                try:
                    call = json.loads(msg.payload).get("call")
                except (ValueError, AttributeError):
                    return None
                return call.get("id") if isinstance(call, dict) else None
        return None
