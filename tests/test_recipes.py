"""docs/recipes.md, run as written: every shell block, against a real broker and a real agent.

The recipes are what a dispatcher or a fleet admin copies and pastes, so they are run here
word for word by bash, with only the settings block's broker and unit changed. The blocks run
in the document's order. A ``# Terminal 1`` block is a watch: it runs in the background until
the next watch, and its first line (a retained topic of the unit) says it is listening. A
``# Terminal 2`` block, or any other, runs to its end. Each ``text`` block shows lines the
last watch must print: the same topic, the same members (``ts`` and ``time_source``
included), and the same values where they do not change from run to run.

The unsigned part runs against a unit without keys; from the "Units that check signatures"
heading on, against a unit whose ``[security]`` lists the public keys the recipe's own
``umps-agent admin keygen`` lines printed. Before a watch on ``alarm`` the crew raises the
alarm, as the recipe's prose says, by holding the emergency button.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil.engine import Rig, RigOptions
from hil.scenario import Step
from tests.support.broker import mosquitto_path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "recipes.md"
UNIT = "KEN-M-07"
SIGNED_HEADING = "## Units that check signatures"
# Members whose value in an example is the value every run gives.
STABLE = ("response", "ok", "version", "command", "state", "active", "action", "restart_required", "errors")


def blocks(text: str) -> list[tuple[str, str, bool]]:
    """(language, body, signed part) of each fenced block, in order."""
    out = []
    for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.M | re.S):
        out.append((match.group(1), match.group(2), match.start() > text.index(SIGNED_HEADING)))
    return out


class Watch:
    """A ``# Terminal 1`` block running in the background; its output kept line by line."""

    def __init__(self, script: str, cwd: Path, env: dict[str, str]):
        self.proc = subprocess.Popen(["bash", "-c", script], cwd=cwd, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    def mark(self) -> int:
        with self.cond:
            return len(self.lines)

    def wait(self, predicate, timeout: float, what: str, start: int = 0) -> str:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the watch never printed {what}; it printed:\n" + "\n".join(self.lines))
                self.cond.wait(left)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)  # the watch's own session: bash and its mosquitto_sub
        self.proc.wait(10)


def expected_matches(example: str, line: str, sent: str) -> bool:
    """Whether the watch's ``line`` is the example's: topic, members, and the values that do not vary."""
    topic, _, body = example.partition(" ")
    got_topic, _, got_body = line.partition(" ")
    if got_topic != topic:
        return False
    want = json.loads(body)
    try:
        got = json.loads(got_body)
    except ValueError:
        return False
    if set(want) != set(got) or any(set(v) != set(got[k] or {}) for k, v in want.items() if isinstance(v, dict)):
        return False
    checked = [k for k in STABLE if k in want]
    if "id" in want and isinstance(want["id"], str) and want["id"] in sent:
        checked.append("id")  # an id the recipe itself sends
    if "call" in want and want["call"] is None:
        checked.append("call")
    return all(want[k] == got[k] for k in checked)


def test_every_recipe_runs_as_written_against_a_unit(tmp_path, request):
    mosquitto_path()  # skip, not fail, without Mosquitto
    for tool in ("mosquitto_pub", "mosquitto_sub"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (Debian package mosquitto-clients)")
    text = DOC.read_text(encoding="utf-8")
    found = blocks(text)
    (lang, settings, _), rest = found[0], found[1:]
    assert lang == "sh" and re.search(r"^BROKER=", settings, re.M) and re.search(rf"^UNIT={UNIT}$", settings, re.M)
    desk = tmp_path / "desk"  # where the dispatcher's and the admin's shells are
    desk.mkdir()
    env = {**os.environ, "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    env.pop("RUNTIME_DIRECTORY", None)
    state: dict = {"rig": None, "signed": None, "watch": None, "sent": "", "keys": {}, "mark": 0}

    def unit(signed: bool) -> Rig:
        if state["rig"] is not None and state["signed"] == signed:
            return state["rig"]
        if state["rig"] is not None:
            state["rig"].down()
        security = {"admin_keys": [state["keys"]["admin.key"]],
                    "dispatch_keys": [state["keys"]["dispatch.key"]]} if signed else {}
        overrides = {"panel": {"emergency_hold_s": 1.0, "emergency_cancel_s": 1.0}, "security": security}
        rig = Rig(RigOptions(workdir=tmp_path / ("signed" if signed else "unsigned"), unit_id=UNIT,
                             unit_kind="motorcycle", agent_overrides=overrides))
        state.update(rig=rig.up(), signed=signed)
        # A unit that checks signatures judges a call's expiry on trusted time: its GNSS's.
        assert rig.tap is not None and rig.tap.wait_for(
            lambda ms: any(m.topic == "status" and b'"time_source":"gnss"' in m.payload for m in ms), 30)
        return rig

    def shell(block: str) -> str:
        host, port = state["rig"].broker_addr if state["rig"] is not None else ("127.0.0.1", 1)
        ours = re.sub(r"^BROKER=.*$", f'BROKER="-h {host} -p {port}"', settings, flags=re.M)
        return ours + "\n" + block

    def cleanup() -> None:
        if state["watch"] is not None:
            state["watch"].stop()
        if state["rig"] is not None:
            state["rig"].down()

    request.addfinalizer(cleanup)
    for lang, body, signed in rest:
        if lang == "text":
            watch = state["watch"]
            assert watch is not None, f"an example with no watch before it:\n{body}"
            for example in body.strip().splitlines():  # printed after the last send
                watch.wait(lambda line: expected_matches(example, line, state["sent"]), 30, example, state["mark"])
            continue
        assert lang == "sh", lang
        if "admin keygen" in body:
            done = subprocess.run(["bash", "-c", shell(body)], cwd=desk, env=env, capture_output=True, text=True,
                                  timeout=60)
            assert done.returncode == 0, done.stderr
            names = re.findall(r"admin keygen (\S+)", body)
            state["keys"].update(zip(names, done.stdout.split()))
            continue
        rig = unit(signed)
        if body.startswith("# Terminal 1"):
            if state["watch"] is not None:
                state["watch"].stop()
            if '"$T/alarm"' in body:  # the crew raises the alarm the recipe answers
                assert rig.tap is not None
                mark = rig.tap.mark()
                rig.perform(Step(0, "hold", 0.0, "hold", {"button": "emergency", "seconds": 1.5}))
                assert rig.tap.wait_message(lambda m: m.topic == "alarm" and b'"active":true' in m.payload, 15, mark)
            state["watch"] = watch = Watch(shell(body), desk, env)
            watch.wait(lambda line: line.startswith(f"umps/{UNIT}/"), 15, "the retained line it starts with")
            continue
        state["sent"] += body
        if state["watch"] is not None:
            state["mark"] = state["watch"].mark()
        done = subprocess.run(["bash", "-c", shell(body)], cwd=desk, env=env, capture_output=True, text=True,
                              timeout=60)
        assert done.returncode == 0, f"{body}\n{done.stderr}"
