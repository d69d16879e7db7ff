#!/usr/bin/env bash
# The part of `make test-arm64` that runs inside the arm64 root, under
# emulation (scripts/test-arm64.sh starts it with chroot; docs/platform.md).
#
#   1. install: scripts/install.sh as on a unit (live, as root, no systemd),
#      timed; then what it installed is checked: the command answers, each
#      compiled module is an aarch64 ELF file, lgpio imports, and what pip
#      took is compared with tests/data/arm64-wheels.json;
#   2. the test tools (the dev and hil extras) go into the same venv;
#   3. the test groups run one after the other, each in its own pytest run
#      with a JUnit file, and a summary ends the run: per group the counts
#      and the time, then what was not run here and why.
#
# ARM64_GROUPS chooses groups (default: all, in order); ARM64_TESTS runs a
# test selection (pytest arguments) instead, as the group "selection".
# ARM64_MODE=shell stops after the install with a shell.
set -uo pipefail

SRC=/build/umps-agent
VENV=/opt/umps-agent/venv
OUT=/build/results
mkdir -p "$OUT"
cd "$SRC" || exit 1
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120
export SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt PIP_CERT=/etc/ssl/certs/ca-certificates.crt

say() { printf 'arm64: %s\n' "$*"; }
SUMMARY=()
FAILED=0
add() { SUMMARY+=("$(printf '%-10s %s' "$1" "$2")"); }

# Groups: pytest arguments (files or file::test), in the order they run.
# core      pure rules and the things read once (config, messages, signing)
# adapters  one outside thing each: real ptys, a real Mosquitto, MockFactory pins,
#           Pillow for the panel, espeak-ng, the outbox's SQLite on disk
# e2e       the real agent process against the arm64 Mosquitto; the CLI; the installer
# rig       one shipped scenario of the rig, against the agent installed in /opt
declare -A GROUPS_TESTS=(
    [core]="tests/test_architecture.py tests/test_unit.py tests/test_unit_calls.py tests/test_unit_emergency.py
            tests/test_unit_power.py tests/test_unit_telemetry.py tests/test_status.py tests/test_dispatch.py
            tests/test_emergency.py tests/test_gnss_epochs.py tests/test_gnss_corpus.py tests/test_nmea_framing.py
            tests/test_messages.py tests/test_config.py tests/test_signing.py tests/test_signed_dispatch.py
            tests/test_telemetry_cbor.py tests/test_telemetry_schedule.py tests/test_geo.py tests/test_i18n.py
            tests/test_panel_states.py tests/test_panel_view.py tests/test_remote_config.py tests/test_time_source.py
            tests/test_indicators.py tests/test_outbox_codec.py tests/test_inbound_text.py tests/test_arm64_wheels.py"
    [adapters]="tests/test_gpio_adapter.py tests/test_lgpio_factory.py tests/test_serial_gnss.py tests/test_mqtt_link.py
            tests/test_outbox.py tests/test_uplink.py tests/test_panel_display.py tests/test_char_lcd.py
            tests/test_speech.py tests/test_clock.py tests/test_sdnotify.py tests/test_state_file.py
            tests/test_config_store.py tests/test_replay_store.py tests/test_remote_worker.py tests/test_power_inputs.py
            tests/test_output_guard.py tests/test_status_report.py tests/test_gpsd_url.py"
    [e2e]="tests/test_agent_e2e.py tests/test_cli_e2e.py tests/test_power_e2e.py tests/test_security_e2e.py
            tests/test_telemetry_cbor_e2e.py"
    [rig]="tests/test_hil_run.py::test_full_call_scenario tests/test_hil_gpio_emulator.py tests/test_hil_slowdown.py"
)
ORDER=(core adapters e2e rig)
if [ -n "${ARM64_TESTS:-}" ]; then
    GROUPS_TESTS[selection]=$ARM64_TESTS
    ORDER=(selection)
fi
# Tests that failed in the emulated run on a deadline, not on what they check:
# the emulated CPU is about 10 times slower than the host's (the "speed" line),
# and these wait a fixed time for something a Pi does in a fraction of it. They
# are deselected here, named in the summary, and run by make test on x86; the
# figures they bound are measured on a Pi by python -m bench.pi (docs/platform.md).
UNDER_EMULATION=(
    "tests/test_mqtt_link.py::test_a_stall_is_seen_within_the_keepalive_when_reports_go_out|paho's own keepalive fires before the agent's stall detection at this speed"
    "tests/test_uplink.py::test_reports_go_live_with_contiguous_seq_and_status_is_retained|20 reports a second: at this speed some age into the backlog before they go out"
    "tests/test_uplink.py::test_live_reports_never_wait_behind_the_backlog|a 60 s wait for the whole backlog"
    "tests/test_uplink.py::test_backlog_rate_limit_and_flush_now|a 10 s wait for the flushed backlog"
    "tests/test_uplink.py::test_disk_full_state_dir_keeps_live_reports_going|a 10 s wait for 40 live reports"
    "tests/test_agent_e2e.py::test_emergency_is_held_then_cleared_by_dispatch_only|pytest's 120 s limit for an agent's start, alarm and stop"
    "tests/test_agent_e2e.py::test_status_command_and_gnss_unplug|pytest's 120 s limit"
    "tests/test_cli_e2e.py::test_sign_dispatch_makes_messages_a_unit_with_dispatch_keys_accepts|the agent does not come online within the 45 s the test gives it"
    "tests/test_cli_e2e.py::test_gnss_watch_shows_live_fixes_from_the_receiver_until_interrupted|interrupted before its first fix is printed"
    "tests/test_cli_e2e.py::test_admin_tools_sign_what_a_running_unit_accepts_and_status_shows_it|pytest's 120 s limit"
    "tests/test_power_e2e.py::test_a_cut_after_the_power_fail_warning_with_the_link_down_loses_nothing|the agent does not come online within 45 s"
    "tests/test_security_e2e.py::test_dispatch_is_authenticated_and_replays_stay_refused_across_a_restart|a 10 s wait for the alarm after a restart"
)
DESELECT=()
for line in "${UNDER_EMULATION[@]}"; do DESELECT+=(--deselect "${line%%|*}"); done
# Not run here, with the reason (shown in the summary).
NOT_HERE=(
    "tests marked browser|Chromium is not in the root (a large download for a timing-bound check that emulation would distort); make test runs them on x86, and the kiosk's frame time needs the Pi's GPU (docs/platform.md)"
    "tests marked slow|soak and load runs: hours under emulation (make test-all on x86, make bench on a Pi)"
    "tests/test_install.py|the installer ran for real above (step install); its staging tests are x86 checks, and its live test meets the user that install created"
)
grouped_files=$(printf '%s\n' ${GROUPS_TESTS[*]} | sed 's/::.*//' | sort -u)
others=()
for f in tests/test_*.py; do
    grep -qx "$f" <<<"$grouped_files" || [[ " ${NOT_HERE[*]}" == *" $f|"* ]] || others+=("${f#tests/}")
done
((${#others[@]})) && NOT_HERE+=("${#others[@]} other test files (${others[*]})|not in a group: the groups are what fits in 45 minutes here; make test runs every file on x86")

# ------------------------------------------------------------------ 1. install
say "$(uname -m), $(. /etc/os-release && echo "$PRETTY_NAME"), $(python3 --version)"
[ "$(uname -m)" = aarch64 ] || { say "not an arm64 root: stop"; exit 1; }
loop_s=$(python3 -c "${ARM64_PY_LOOP:-print('?')}")
EMULATION="the same Python loop: ${loop_s} s here, ${ARM64_HOST_LOOP_S:-?} s on the host"
# The rig's deadlines (coming online, a scenario's "within" bounds) stretch by how much
# slower this CPU is than the host's, measured just now, rounded up, at least 2; never
# what the rig checks (hil/slowdown.py). 10 when the loop could not be timed.
UMPS_RIG_SLOWDOWN=$(python3 -c "import math,sys
try: print(max(2, math.ceil(float(sys.argv[1]) / float(sys.argv[2]))))
except (ValueError, ZeroDivisionError): print(10)" "$loop_s" "${ARM64_HOST_LOOP_S:-?}")
export UMPS_RIG_SLOWDOWN
EMULATION="$EMULATION; the rig's deadlines times $UMPS_RIG_SLOWDOWN (UMPS_RIG_SLOWDOWN)"
start=$SECONDS
# As on a unit: root, systemd not running (no /run/systemd/system), the default extras.
if bash scripts/install.sh --no-enable >"$OUT/install.log" 2>&1; then
    install_s=$((SECONDS - start))
    add install "ok in ${install_s} s (scripts/install.sh, venv with the pi extra, wheels only)"
else
    install_s=$((SECONDS - start))
    tail -n 30 "$OUT/install.log"
    add install "FAILED after ${install_s} s (see above)"
    FAILED=1
fi
grep -E '^install: (gpio|users|systemd):' "$OUT/install.log" | sed 's/^/    /'

if [ "$FAILED" = 0 ]; then
    # The installed command, run as a unit runs it (cwd /, no checkout around).
    code=0
    (cd / && "$VENV/bin/umps-agent" config check /etc/umps-agent/agent.toml) >"$OUT/config-check.log" 2>&1 || code=$?
    if [ "$code" = 0 ] || [ "$code" = 2 ]; then  # 2: the example still needs its unit id filled in
        add command "umps-agent config check of the installed example: exit $code, $(head -n1 "$OUT/config-check.log")"
    else
        add command "FAILED: umps-agent config check: exit $code, $(tail -n1 "$OUT/config-check.log")"
        FAILED=1
    fi
    # Every compiled module pip installed is an aarch64 ELF file.
    report=$(cd / && "$VENV/bin/python" - <<'PY'
import pathlib, sys
site = next(pathlib.Path("/opt/umps-agent/venv/lib").glob("python3*/site-packages"))
machines = {}
for so in site.rglob("*.so*"):
    head = so.read_bytes()[:20]
    if head[:4] == b"\x7fELF":
        machines.setdefault(int.from_bytes(head[18:20], "little"), []).append(so.relative_to(site).parts[0])
others = {m: v for m, v in machines.items() if m != 0xB7}
print(f"{len(machines.get(0xB7, []))} compiled modules, all aarch64" if not others else f"NOT aarch64: {others}")
sys.exit(1 if others else 0)
PY
) && add binaries "$report" || { add binaries "FAILED: $report"; FAILED=1; }
    # What pip took, against the recorded answer: every package of the unit's tree
    # (from its requirements, through each package's own) is installed, in a release
    # its recorded requirement admits. Another release than the recorded one is shown:
    # the record says what PyPI offered when it was refreshed.
    compare=$("$VENV/bin/python" - <<'PY'
import json, re, subprocess, sys
from pip._vendor.packaging.requirements import Requirement
record = json.load(open("tests/data/arm64-wheels.json"))
packages = record["packages"]
norm = lambda name: re.sub(r"[-_.]+", "-", name).lower()
listed = json.loads(subprocess.run([sys.executable, "-m", "pip", "list", "--format=json"], capture_output=True, text=True).stdout)
installed = {norm(p["name"]): p["version"] for p in listed}
todo = [t for group, texts in record["requirements"].items() if group != "build-system" for t in texts]
needed = {}
while todo:
    req = Requirement(todo.pop())
    name = norm(req.name)
    needed.setdefault(name, []).append(req.specifier)
    if len(needed[name]) == 1:
        todo += packages[name]["requires"]
missing = sorted(n for n in needed if n not in installed)
refused = sorted(f"{n} {installed[n]}" for n, specs in needed.items()
                 if n in installed and not all(installed[n] in s for s in specs))
differ = sorted(f"{n} {installed[n]} (record {packages[n]['version']})" for n in needed
                if n in installed and installed[n] != packages[n]["version"])
print(f"{len(needed) - len(missing)} of {len(needed)} packages of the unit's tree installed"
      + (f"; MISSING: {', '.join(missing)}" if missing else "")
      + (f"; OUTSIDE their range: {', '.join(refused)}" if refused else "")
      + (f"; other releases than recorded: {', '.join(differ)}" if differ else "; the releases recorded"))
sys.exit(1 if missing or refused else 0)
PY
) && add wheels "$compare" || { add wheels "FAILED: $compare"; FAILED=1; }
fi

if [ "${ARM64_MODE:-test}" = shell ]; then
    say "installed; a shell in the arm64 root (exit to leave; nothing is kept)"
    bash -i
    exit 0
fi

# ------------------------------------------------------------- 2. test tools
if [ "$FAILED" = 0 ]; then
    start=$SECONDS
    if "$VENV/bin/pip" install -q --no-compile --only-binary=:all: -e "$SRC[dev,hil]" >"$OUT/test-tools.log" 2>&1; then
        add tools "dev and hil extras installed in $((SECONDS - start)) s"
    else
        tail -n 20 "$OUT/test-tools.log"
        add tools "FAILED to install the dev and hil extras"
        FAILED=1
    fi
fi

# ------------------------------------------------------------------- 3. tests
run_group() {
    local group=$1 start=$SECONDS status=0
    # shellcheck disable=SC2086 # the list is word-split on purpose
    timeout --kill-after=30 1800 "$VENV/bin/python" -m pytest -q -p no:cacheprovider -m "not browser" \
        --junitxml="$OUT/$group.xml" -o junit_family=xunit2 "${DESELECT[@]}" ${GROUPS_TESTS[$group]} >"$OUT/$group.log" 2>&1 || status=$?
    local took=$((SECONDS - start)) counts
    counts=$(grep -E '^(=+ )?[0-9]+ (passed|failed|error)' "$OUT/$group.log" | tail -n1 | sed -E 's/^=+ //; s/ =+$//')
    if [ "$status" = 0 ]; then
        add "$group" "${counts:-no result line} (${took} s)"
    else
        grep -E '^(FAILED|ERROR) ' "$OUT/$group.log" | head -n 20 | sed 's/^/    /'
        add "$group" "FAILED: ${counts:-exit $status} (${took} s)"
        FAILED=1
    fi
}

if [ "$FAILED" = 0 ]; then
    wanted_text=${ARM64_GROUPS:-${ORDER[*]}}
    [ -n "${ARM64_TESTS:-}" ] && wanted_text=selection
    read -r -a wanted <<<"$wanted_text"
    for group in "${wanted[@]}"; do
        [ -n "${GROUPS_TESTS[$group]:-}" ] || { add "$group" "FAILED: no such group (${ORDER[*]})"; FAILED=1; continue; }
        say "running $group"
        run_group "$group"
    done
fi

# ----------------------------------------------------------------- summary
echo
echo "==================== make test-arm64: summary ===================="
printf '%-10s %s\n' root "Debian $(cat /etc/debian_version) arm64 under QEMU user emulation (built in ${ARM64_ROOT_SECONDS:-?} s, cached)"
printf '%-10s %s\n' speed "$EMULATION"
printf '%s\n' "${SUMMARY[@]}"
echo "not run here:"
for line in "${NOT_HERE[@]}"; do printf '  - %s: %s\n' "${line%%|*}" "${line#*|}"; done
echo "deselected here, deadline-bound under emulation (make test runs them on x86):"
for line in "${UNDER_EMULATION[@]}"; do printf '  - %s: %s\n' "${line%%|*}" "${line#*|}"; done
echo "=================================================================="
[ "$FAILED" = 0 ] && echo "arm64: PASSED" || echo "arm64: FAILED"
exit "$FAILED"
