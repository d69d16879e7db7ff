"""The ``umps-agent`` command: the composition root.

Subcommands:

``run``                 run the agent (what systemd starts)
``status``              link state, backlog, counters of the running agent
``config check PATH``   validate a config file; every problem with its key path
``config show``         the effective config (file + remote changes), secrets hidden
``gnss decode PATH|-``  decode an NMEA capture offline, one JSON line per epoch
``gnss watch``          live fixes and counters from the receiver, for installers
``admin ...``           fleet admin and dispatch tools: keygen, pubkey, sign, sign-cmd, sign-dispatch
``imu ...``             the crash sensor: setup (root), calibrate, watch (agent/imu_tools.py)

Exit codes: 0 success, 1 runtime failure, 2 bad usage or invalid config.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from agent import __version__
from agent.config import DEFAULT_PATH, AgentConfig, ConfigError, ConfigFileError, Validate, load_config

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="umps-agent", description="On-board agent of a UMPS patrol unit.")
    parser.add_argument("--version", action="version", version=f"umps-agent {__version__}")
    config_opt = argparse.ArgumentParser(add_help=False)
    config_opt.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"config file (default {DEFAULT_PATH})")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    # status and config show look for the running agent when no --config is given.
    find_opt = argparse.ArgumentParser(add_help=False)
    find_opt.add_argument("--config", type=Path, help=f"config file (default: the running agent's, else {DEFAULT_PATH})")

    sub.add_parser("run", parents=[config_opt], help="run the agent")
    status = sub.add_parser("status", parents=[find_opt], help="show the running agent's state")
    status.add_argument("--json", action="store_true", help="print the raw JSON")

    config = sub.add_parser("config", help="check or show configuration")
    config_sub = config.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    check = config_sub.add_parser("check", help="validate a config file")
    check.add_argument("path", type=Path)
    config_sub.add_parser("show", parents=[find_opt], help="print the effective config, secrets hidden")

    gnss = sub.add_parser("gnss", help="GNSS receiver tools")
    gnss_sub = gnss.add_subparsers(dest="gnss_command", required=True, metavar="ACTION")
    decode = gnss_sub.add_parser("decode", help="decode an NMEA capture (PATH or - for stdin)")
    decode.add_argument("path")
    watch = gnss_sub.add_parser("watch", parents=[config_opt], help="show live fixes and counters")
    watch.add_argument("--port", help="device path or pyserial URL (default: [gnss] port)")
    watch.add_argument("--baudrate", type=int, help="default: [gnss] baudrate, else 9600")
    watch.add_argument("--force", action="store_true",
                       help="watch even while the running agent reads the same port (it may then report the "
                            "receiver lost to dispatch)")

    from agent import admin_tools, imu_tools, telemetry_tools

    imu = sub.add_parser("imu", help="the crash sensor: setup, calibrate, watch")
    imu_tools.register(imu.add_subparsers(dest="imu_command", required=True, metavar="ACTION"), config_opt)

    telemetry_tools.register(sub.add_parser("decode", help="telemetry payloads or captures (CBOR or JSON) as JSON reports"))
    admin = sub.add_parser("admin", help="fleet admin tools: signing keys, signed config pushes and commands")
    admin_tools.register(admin.add_subparsers(dest="admin_command", required=True, metavar="ACTION"))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler = {
        "run": cmd_run,
        "status": cmd_status,
        "config": cmd_config,
        "gnss": cmd_gnss,
        "admin": cmd_admin,
        "decode": cmd_decode,
        "imu": cmd_imu,
    }[args.command]
    try:
        return handler(args)
    except KeyboardInterrupt:
        return EXIT_OK
    except BrokenPipeError:
        # `umps-agent gnss decode x | head`: the reader left; not an error.
        sys.stderr.close()
        return EXIT_OK


# ------------------------------------------------------------------ helpers


def _in_process() -> Validate:
    """pydantic validation in this process: for the commands a person runs, never for ``run``."""
    from agent.config_validate import parse_config

    return parse_config


def _load(path: Path, validate: Validate | None = None) -> AgentConfig | None:
    validate = validate or _in_process()
    try:
        return load_config(path, validate)
    except ConfigError as exc:
        _print_problems(exc)
        return None


def _print_problems(exc: ConfigError) -> None:
    if isinstance(exc, ConfigFileError):  # missing or unreadable: say so, it is not a bad config
        print(f"{exc.source}: {exc.reason}", file=sys.stderr)
        return
    print(f"{exc.source}: invalid configuration", file=sys.stderr)
    for loc, msg in exc.problems:
        print(f"  {loc or '(file)'}: {msg}", file=sys.stderr)


# ----------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from agent import logsetup
    from agent.config_validate import parse_config
    from agent.runtime import run_agent

    config = _load(args.config, parse_config)
    if config is None:
        return EXIT_USAGE
    logsetup.configure(config.logging.level)
    return run_agent(config, args.config)


def cmd_config(args: argparse.Namespace) -> int:
    if args.config_command == "check":
        try:
            config = load_config(args.path, _in_process())
        except ConfigError as exc:
            _print_problems(exc)
            return EXIT_USAGE
        print(f"{args.path}: OK (unit {config.unit.id}, {config.unit.kind}, hash {config.digest()})")
        return EXIT_OK
    from agent.adapters.config_store import load_effective
    from agent.core.remote_config import current_message

    running = None if args.config else _running_config()
    path = args.config or (running[0] if running else DEFAULT_PATH)
    if args.config is None and not path.exists():
        print(f"no running agent found ({', '.join(map(str, _status_files()))} absent) and no {path}; "
              "give --config PATH", file=sys.stderr)
        return EXIT_USAGE
    if running is not None and not running[1]:
        print(f"warning: no agent is running: this is the config of the agent (pid {running[2].get('pid')}) that "
              f"wrote {running[3]} and stopped without removing it (a crash, kill -9 or a power cut); give "
              f"--config PATH for another file (the unit's own is {DEFAULT_PATH})", file=sys.stderr)
    try:
        effective = load_effective(path, _in_process())
    except ConfigError as exc:
        _print_problems(exc)
        return EXIT_USAGE
    for problem in effective.problems:
        print(f"note: {problem}", file=sys.stderr)
    from agent.adapters.secrets_version import peek

    body = {"source": effective.source, **current_message(effective.state, peek(effective.config.storage.state_dir))}
    print(json.dumps(body, indent=2, ensure_ascii=False))
    return EXIT_OK


def cmd_gnss(args: argparse.Namespace) -> int:
    from agent import gnss_tools

    if args.gnss_command == "decode":
        if args.path == "-":
            counters = gnss_tools.decode(sys.stdin.buffer, sys.stdout)
        else:
            try:
                src = open(args.path, "rb")
            except OSError as exc:
                print(f"umps-agent gnss decode: {args.path}: {exc.strerror}", file=sys.stderr)
                return EXIT_USAGE
            with src:
                counters = gnss_tools.decode(src, sys.stdout)
        print(f"# {gnss_tools.format_counters(counters)}", file=sys.stderr)
        if counters.sentences_ok + counters.bad_checksum + counters.unparsable == 0:
            where = "stdin" if args.path == "-" else args.path
            print(f"warning: no NMEA sentence at all in {where}: not a receiver capture, or recorded at the "
                  "wrong baud rate (binary noise)?", file=sys.stderr)
        return EXIT_OK
    port, baudrate = args.port, args.baudrate
    status_files = _status_files()
    if args.config.exists():
        config = _load(args.config)
        if config is None:
            return EXIT_USAGE
        port = port or config.gnss.port
        baudrate = baudrate or config.gnss.baudrate
        from agent.status_report import STATUS_FILE, runtime_dir

        status_files.insert(0, runtime_dir(config) / STATUS_FILE)
    elif port is None:
        print(f"umps-agent gnss watch: no --port and no config at {args.config}", file=sys.stderr)
        return EXIT_USAGE
    reader = gnss_tools.agent_reading(port, status_files)
    if reader is not None:
        pid, status_file = reader
        # Two readers of one serial port each get part of its bytes: the agent then sees a broken
        # receiver and tells dispatch "receiver": "lost" while the installer watches.
        what = (f"the running agent (pid {pid}, {status_file}) reads {port}: two readers of one serial port each "
                "get only part of its data, and the agent would tell dispatch the receiver is lost")
        if not args.force:
            print(f"umps-agent gnss watch: {what}.\n  The agent's own view of the receiver: umps-agent status (the "
                  "gnss line).\n  To watch the receiver itself, stop the agent first (sudo systemctl stop "
                  "umps-agent), or add --force to watch beside it anyway.", file=sys.stderr)
            return EXIT_FAILURE
        print(f"warning: {what}; watching anyway (--force)", file=sys.stderr)
    return gnss_tools.watch(port, baudrate or 9600, sys.stdout)


def _status_files() -> list[Path]:
    """Where a running agent keeps its status file: systemd's runtime directory, else the default."""
    import os

    from agent.config import StorageConfig
    from agent.status_report import STATUS_FILE

    dirs = [os.environ.get("RUNTIME_DIRECTORY"), str(StorageConfig().runtime_dir)]
    return [Path(d) / STATUS_FILE for d in dict.fromkeys(d for d in dirs if d)]


def _running_config() -> tuple[Path, bool, dict, Path] | None:
    """The config file named by an agent's status file: (config, whether that agent still runs,
    the report, the status file); a live agent's first. None when no status file names one."""
    from agent.status_report import agent_alive

    found = []
    for path in _status_files():
        try:
            data = json.loads(path.read_text())
            config = data.get("config")
        except (OSError, ValueError, AttributeError):
            continue
        if isinstance(config, str) and config:
            found.append((Path(config), agent_alive(data) is not False, data, path))
    return max(found, key=lambda f: f[1], default=None)


def cmd_status(args: argparse.Namespace) -> int:
    from agent.status_report import STATUS_FILE, runtime_dir

    if args.config is None:
        # No --config: the running agent's status file, wherever the default config says or not.
        candidates = _status_files()
        if DEFAULT_PATH.exists():
            config = _load(DEFAULT_PATH)
            if config is None:
                return EXIT_USAGE
            candidates.insert(0, runtime_dir(config) / STATUS_FILE)
        path = next((c for c in candidates if c.exists()), candidates[0])
    else:
        config = _load(args.config)
        if config is None:
            return EXIT_USAGE
        path = runtime_dir(config) / STATUS_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        print(f"the agent is not running (no {path})", file=sys.stderr)
        return EXIT_FAILURE
    except (OSError, ValueError) as exc:
        print(f"cannot read {path}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    from agent.status_report import agent_alive

    age = time.time() - data.get("written", 0)
    alive = agent_alive(data)
    # One verdict for both forms: a script reading --json learns what a person reads.
    healthy = alive is not False and age < STALE_AFTER_S
    if alive is False:
        print(f"the agent is not running: {path} is the last report of the agent (pid {data.get('pid')}) that "
              f"wrote it {age:.0f} s ago and stopped without removing it (a crash, kill -9 or a power cut)",
              file=sys.stderr)
    elif not healthy:
        print(f"the agent (pid {data.get('pid')}) has not updated {path} for {age:.0f} s: it may be stuck "
              "(under systemd, its watchdog restarts it)", file=sys.stderr)
    if args.json:
        print(json.dumps(data, indent=2, ensure_ascii=False))
    else:
        print(format_status(data, age, alive))
    return EXIT_OK if healthy else EXIT_FAILURE


STALE_AFTER_S = 10.0  # the agent rewrites its status file every second


def format_status(data: dict, age: float, alive: bool | None = None) -> str:
    link = data.get("link", {})
    gnss = data.get("gnss", {})
    outbox = data.get("outbox", {})
    if alive is False:
        state = f"  NOT RUNNING: the last report of a stopped agent, {age:.0f} s old"
    else:
        state = "" if age < STALE_AFTER_S else f"  STALE: last update {age:.0f} s ago"
    lines = [
        f"unit        {data.get('unit')}  (agent {data.get('version')}, pid {data.get('pid')}, "
        f"up {data.get('uptime_s', 0):.0f} s)" + state,
        f"link        {'online to ' + str(link.get('broker')) if link.get('online') else 'OFFLINE'}"
        f"  (connects {link.get('connects', 0)}, drops {link.get('drops', 0)})",
        f"outbox      live {outbox.get('live', 0)}  backlog {outbox.get('backlog', 0)}  "
        f"status {outbox.get('status', 0)}  emergency {outbox.get('emergency', 0)}  dropped {outbox.get('dropped', 0)}",
        f"gnss        {gnss.get('state')}  mode {gnss.get('mode')}  age {gnss.get('age')}  "
        f"ok {gnss.get('sentences_ok', 0)}  bad checksum {gnss.get('bad_checksum', 0)}  unparsable {gnss.get('unparsable', 0)}",
        f"unit state  status {data.get('status')}  siren {'on' if data.get('siren') else 'off'}  "
        f"emergency {data.get('emergency')}  call {data.get('call') or '-'}",
        f"telemetry   seq {data.get('seq')}  config version {data.get('config_version')}",
        "power       " + (f"ignition {data['ignition']}" + ("  PARKED (reduced report rate)" if data.get("parked") else "")
                          if data.get("ignition") else "no ignition line"),
    ]
    storage = data.get("storage")
    if storage:
        lines.append("storage     " + ("durable" if storage.get("durable") else
                                       f"NOT DURABLE: {storage.get('reason')} (kept in memory meanwhile)"))
    outputs = data.get("outputs") or {}
    if outputs:
        lines.append("outputs     " + "  ".join(
            f"{name} {o.get('state')}" + (f" ({o.get('failures')} failed: {o.get('last_error')})" if o.get("failures") else "")
            for name, o in outputs.items()))
    return "\n".join(lines)


def cmd_admin(args: argparse.Namespace) -> int:
    from agent import admin_tools

    return admin_tools.run(args)


def cmd_imu(args: argparse.Namespace) -> int:
    from agent import imu_tools

    config = _load(args.config)
    if config is None:
        return EXIT_USAGE
    return imu_tools.run(args, config)


def cmd_decode(args: argparse.Namespace) -> int:
    from agent import telemetry_tools

    return telemetry_tools.run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
