#!/usr/bin/env bash
# Remove what scripts/install.sh installed (same DESTDIR rules).
#
#   sudo make uninstall                 # keeps /etc/umps-agent and /var/lib/umps-agent
#   sudo make uninstall UNINSTALL_FLAGS=--purge   # also config, state and the users
#
# It reads /opt/umps-agent/install-manifest: `f PATH` files and `D PATH` trees
# are removed, `d PATH` directories the install created are removed when
# empty. The configuration (unit id, broker credentials) and the state
# (outbox, unit status) are kept unless --purge: uninstalling to reinstall
# must not lose undelivered reports. Boot files are restored only where the
# install changed them and nobody has edited them since.
set -euo pipefail

PURGE=0
while [ $# -gt 0 ]; do
    case "$1" in
        --purge) PURGE=1 ;;
        -h|--help) echo "usage: scripts/uninstall.sh [--purge]"; exit 0 ;;
        *) echo "uninstall.sh: unknown option '$1'" >&2; exit 2 ;;
    esac
    shift
done

ROOT=${DESTDIR:-}
ROOT=${ROOT%/}
if [ -n "${DESTDIR:-}" ]; then
    case "$DESTDIR" in /*) ;; *) echo "uninstall.sh: DESTDIR must be an absolute path, got '$DESTDIR'" >&2; exit 2 ;; esac
fi
APP=/opt/umps-agent
MANIFEST=$ROOT$APP/install-manifest
LIVE=0
[ -z "$ROOT" ] && LIVE=1
SYSTEMD_RUNNING=0
[ "$LIVE" = 1 ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1

if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: needs root (sudo make uninstall), or DESTDIR=/some/dir" >&2
    exit 1
fi
if [ ! -f "$MANIFEST" ]; then
    echo "uninstall.sh: no $MANIFEST: umps-agent is not installed in ${ROOT:-/}" >&2
    exit 1
fi

say() { printf 'uninstall: %s\n' "$*"; }

if [ "$SYSTEMD_RUNNING" = 1 ]; then
    # One at a time: an unknown unit (no kiosk on a motorcycle) fails the call.
    for unit in umps-kiosk.service umps-agent.service; do
        systemctl disable --now "$unit" 2>/dev/null || true
    done
fi

# Boot files: undo --boot-config where it is still exactly what it wrote.
restore_boot() {
    local boot
    for boot in "$ROOT/boot/firmware" "$ROOT/boot" ${UMPS_BOOT_DIR:+"$ROOT$UMPS_BOOT_DIR"}; do
        local config=$boot/config.txt cmdline=$boot/cmdline.txt
        if [ -f "$config" ] && grep -q '^# >>> umps-agent' "$config"; then
            # Drop the marked block and the blank line install put before it.
            awk '
                /^# >>> umps-agent/ { skip = 1; held = 0; next }
                /^# <<< umps-agent/ { skip = 0; next }
                skip { next }
                { if (held) { print ""; held = 0 } if ($0 == "") held = 1; else print }
                END { if (held) print "" }
            ' "$config" >"$config.umps-tmp"
            cat "$config.umps-tmp" >"$config" && rm -f "$config.umps-tmp"
            rm -f "$config.umps-agent.bak"
            say "removed the umps-agent block from $config"
        fi
        if [ -f "$cmdline.umps-agent.bak" ]; then
            local expected
            expected=$(sed -E -e 's/(^|[[:space:]])console=(serial[0-9]+|ttyAMA[0-9]+|ttyS[0-9]+)(,[0-9a-zA-Z]+)?//g' -e 's/^[[:space:]]+//' "$cmdline.umps-agent.bak")
            if [ "$(cat "$cmdline")" = "$expected" ]; then
                cat "$cmdline.umps-agent.bak" >"$cmdline" && rm -f "$cmdline.umps-agent.bak"
                say "restored the serial console in $cmdline"
            else
                say "$cmdline was edited after install: left as is (original in $cmdline.umps-agent.bak)"
            fi
        fi
    done
}
restore_boot

# Files and trees, then the directories the install created, deepest first.
dirs=()
while read -r kind path; do
    [ -n "$path" ] || continue
    case "$path" in /*) ;; *) echo "uninstall.sh: bad manifest line '$kind $path'" >&2; exit 1 ;; esac
    case "$kind" in
        f) rm -f "$ROOT$path" ;;
        D) rm -rf "$ROOT$path" ;;
        d) dirs+=("$path") ;;
    esac
done <"$MANIFEST"

if [ "$PURGE" = 1 ]; then
    rm -rf "$ROOT/etc/umps-agent" "$ROOT/var/lib/umps-agent"
    say "purged /etc/umps-agent and /var/lib/umps-agent"
    if [ "$LIVE" = 1 ]; then
        for user in umps-kiosk umps-agent; do
            if getent passwd "$user" >/dev/null; then
                userdel "$user" && say "removed user $user"
            fi
            getent group "$user" >/dev/null && groupdel "$user" || true
        done
    fi
else
    say "kept /etc/umps-agent and /var/lib/umps-agent (configuration, outbox); --purge removes them"
fi

# Longest path first, so children go before their parents.
if [ ${#dirs[@]} -gt 0 ]; then
    printf '%s\n' "${dirs[@]}" | awk '{ print length($0) "\t" $0 }' | sort -rn | cut -f2- |
        while read -r path; do
            rmdir "$ROOT$path" 2>/dev/null || true
        done
fi

if [ "$SYSTEMD_RUNNING" = 1 ]; then
    systemctl daemon-reload
    udevadm control --reload || true
    systemctl try-restart chrony.service || true
fi
say "done"
