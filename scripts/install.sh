#!/usr/bin/env bash
# Install umps-agent on a vehicle unit, or into a staging root.
#
#   sudo make install                        # on the Raspberry Pi itself
#   make install DESTDIR=/tmp/stage          # staging root (image builds, tests)
#
# What it does, in order:
#   1. the system user `umps-agent` (groups dialout, gpio, i2c) via
#      systemd-sysusers (useradd as a fallback); skipped under DESTDIR, where
#      the installed sysusers.d file creates it at the image's first boot;
#   2. directories: /etc/umps-agent (0750), /var/lib/umps-agent (0750),
#      /opt/umps-agent;
#   3. a venv in /opt/umps-agent/venv with the agent from this checkout;
#   4. /etc/umps-agent/agent.toml from agent.example.toml, only if none exists;
#   5. unit files in /etc/systemd/system, and the vehicle's system config:
#      udev rule (/dev/gnss0), chrony refclocks, journald in RAM, i2c-dev;
#   6. with --boot-config only: the config.txt fragment and the serial console
#      removed from cmdline.txt (otherwise both are only documented);
#   7. only when DESTDIR is empty and systemd is running (PID 1):
#      daemon-reload, udev reload, chrony/journald restart, `enable`.
#
# Every file it installs is listed in /opt/umps-agent/install-manifest, which
# scripts/uninstall.sh reads; what it skipped or kept is in INSTALL-NOTES.
# With DESTDIR set nothing outside DESTDIR is touched.
#
# Environment:
#   DESTDIR                   staging root (default: empty = this machine)
#   PYTHON                    interpreter for the venv (default /usr/bin/python3)
#   UMPS_VENV_ARGS            `python -m venv` options
#                             (default --system-site-packages, so Raspberry Pi
#                             OS's python3-lgpio, built for its liblgpio, is used)
#   UMPS_PIP_ARGS             extra pip options (offline: --no-index --find-links DIR)
#   UMPS_EXTRAS               package extras, e.g. "pi" (default: none)
#   UMPS_INSTALL_SKIP_VENV=1  do not create the venv (tests of the rest)
#   UMPS_EXAMPLE_CONFIG       example config to copy (default: agent.example.toml)
#   UMPS_BOOT_DIR             boot partition for --boot-config
#                             (default /boot/firmware, or /boot if absent)
set -euo pipefail

usage() {
    cat <<'EOF'
usage: scripts/install.sh [--kiosk] [--gpsd] [--boot-config] [--no-enable]
  --kiosk        also install the car touchscreen (umps-kiosk.service, its user, PAM file)
  --gpsd         chrony takes GNSS time through gpsd (the agent reads gpsd://)
                 instead of from the agent's own samples
  --boot-config  append firmware-config/config.txt to the boot config.txt and
                 remove the serial console from cmdline.txt (reboot needed)
  --no-enable    install the units but do not enable them
Environment: DESTDIR, PYTHON, UMPS_VENV_ARGS, UMPS_PIP_ARGS, UMPS_EXTRAS,
UMPS_INSTALL_SKIP_VENV, UMPS_EXAMPLE_CONFIG, UMPS_BOOT_DIR (see the script's header).
EOF
}

KIOSK=0 GPSD=0 BOOT_CONFIG=0 ENABLE=1
while [ $# -gt 0 ]; do
    case "$1" in
        --kiosk) KIOSK=1 ;;
        --gpsd) GPSD=1 ;;
        --boot-config) BOOT_CONFIG=1 ;;
        --no-enable) ENABLE=0 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install.sh: unknown option '$1'" >&2; usage >&2; exit 2 ;;
    esac
    shift
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
ROOT=${DESTDIR:-}
ROOT=${ROOT%/}
if [ -n "${DESTDIR:-}" ]; then
    case "$DESTDIR" in /*) ;; *) echo "install.sh: DESTDIR must be an absolute path, got '$DESTDIR'" >&2; exit 2 ;; esac
fi
PYTHON=${PYTHON:-/usr/bin/python3}
APP=/opt/umps-agent
VENV=$APP/venv
SHARE=$APP/share
ETC=/etc/umps-agent
STATE=/var/lib/umps-agent
MANIFEST_REL=$APP/install-manifest
NOTES_REL=$APP/INSTALL-NOTES
EXAMPLE=${UMPS_EXAMPLE_CONFIG:-$SRC/agent.example.toml}

# Live install: this machine, as root. Systemd steps additionally need
# systemd running as PID 1 (not in a container or a chroot).
LIVE=0
[ -z "$ROOT" ] && LIVE=1
SYSTEMD_RUNNING=0
[ "$LIVE" = 1 ] && [ -d /run/systemd/system ] && SYSTEMD_RUNNING=1

if [ "$LIVE" = 1 ] && [ "$(id -u)" != 0 ]; then
    echo "install.sh: installing on this machine needs root (sudo make install)," >&2
    echo "            or set DESTDIR=/some/dir to install into a staging root." >&2
    exit 1
fi
if [ ! -f "$EXAMPLE" ]; then
    echo "install.sh: example configuration not found: $EXAMPLE" >&2
    exit 1
fi

say() { printf 'install: %s\n' "$*"; }

MANIFEST_TMP=$(mktemp)
NOTES_TMP=$(mktemp)
BUILD_TMP=""
cleanup() { rm -f "$MANIFEST_TMP" "$NOTES_TMP"; [ -n "$BUILD_TMP" ] && rm -rf "$BUILD_TMP"; return 0; }
trap cleanup EXIT

note() { printf '%s\n' "$*" >>"$NOTES_TMP"; say "$*"; }

# Directories this run creates (recorded, so uninstall can remove them when
# empty) versus ones that existed before (left alone).
ensure_dir() { # path mode: create (parents first) and record; existing dirs are not touched
    local path=$1 mode=$2
    [ -d "$ROOT$path" ] && return 0
    local parent
    parent=$(dirname "$path")
    [ "$parent" != "$path" ] && ensure_dir "$parent" 0755
    mkdir -m "$mode" "$ROOT$path"
    printf 'd %s\n' "$path" >>"$MANIFEST_TMP"
}

put() { # source dest mode: install one file and record it
    local src=$1 dest=$2 mode=$3
    ensure_dir "$(dirname "$dest")" 0755
    install -m "$mode" "$src" "$ROOT$dest"
    printf 'f %s\n' "$dest" >>"$MANIFEST_TMP"
}

have_group() { getent group "$1" >/dev/null 2>&1; }

# ------------------------------------------------------------------ 1. users
create_users() {
    local conf
    for conf in "$@"; do
        if command -v systemd-sysusers >/dev/null 2>&1; then
            systemd-sysusers "$conf"
        else
            fallback_users "$conf"
        fi
    done
}

fallback_users() { # a sysusers.d file: apply its u and m lines with shadow-utils
    local type name rest
    while read -r type name rest; do
        case "$type" in
            u)
                if ! getent passwd "$name" >/dev/null; then
                    local home
                    home=$(printf '%s\n' "$rest" | awk -F'"' '{print $3}' | awk '{print $1}')
                    useradd --system --user-group --no-create-home --home-dir "$home" \
                        --shell /usr/sbin/nologin "$name"
                fi ;;
            m)
                local group=${rest%% *}
                have_group "$group" || groupadd --system "$group"
                usermod -a -G "$group" "$name" ;;
        esac
    done < <(grep -E '^[um][[:space:]]' "$1")
}

# ------------------------------------------------------------------ 3. venv
build_venv() {
    local target=$ROOT$VENV spec
    say "creating venv $VENV with $PYTHON"
    rm -rf "$target"
    # shellcheck disable=SC2086 # word splitting of the option lists is intended
    "$PYTHON" -m venv ${UMPS_VENV_ARGS---system-site-packages} "$target"
    # Build from a copy: pip would otherwise leave root-owned build/ and
    # *.egg-info directories in the checkout.
    BUILD_TMP=$(mktemp -d)
    cp -r "$SRC/pyproject.toml" "$SRC/agent" "$BUILD_TMP/"
    for extra in hil README.md LICENSE; do
        [ -e "$SRC/$extra" ] && cp -r "$SRC/$extra" "$BUILD_TMP/"
    done
    find "$BUILD_TMP" -name __pycache__ -prune -exec rm -rf {} +
    spec=$BUILD_TMP
    [ -n "${UMPS_EXTRAS:-}" ] && spec="$BUILD_TMP[$UMPS_EXTRAS]"
    # shellcheck disable=SC2086
    "$target/bin/pip" install --disable-pip-version-check --no-cache-dir ${UMPS_PIP_ARGS:-} "$spec"
    if [ -n "$ROOT" ]; then
        # Scripts and activate files name the venv by its path: make them
        # name the final one (/opt/umps-agent/venv), not the staging copy.
        grep -rlIF "$target" "$target/bin" "$target/pyvenv.cfg" 2>/dev/null | while read -r f; do
            sed -i "s|$target|$VENV|g" "$f"
        done
        # Byte code records its source path (tracebacks show it): compile
        # again as if from /opt, because the sandboxed agent cannot write
        # there to fix it at run time.
        "$PYTHON" -m compileall -q -f -j 0 -s "$ROOT" -p / "$target/lib" >/dev/null
    fi
    printf 'D %s\n' "$VENV" >>"$MANIFEST_TMP"
}

# ------------------------------------------------------------ 6. boot config
boot_dir() {
    if [ -n "${UMPS_BOOT_DIR:-}" ]; then printf '%s\n' "$ROOT$UMPS_BOOT_DIR"
    elif [ -f "$ROOT/boot/firmware/config.txt" ]; then printf '%s\n' "$ROOT/boot/firmware"
    else printf '%s\n' "$ROOT/boot"
    fi
}

# Remove every serial console from the kernel command line (one line).
strip_serial_console() {
    sed -E -e 's/(^|[[:space:]])console=(serial[0-9]+|ttyAMA[0-9]+|ttyS[0-9]+)(,[0-9a-zA-Z]+)?//g' -e 's/^[[:space:]]+//'
}

patch_boot_config() {
    local boot config cmdline
    boot=$(boot_dir)
    config=$boot/config.txt
    cmdline=$boot/cmdline.txt
    if [ ! -f "$config" ] || [ ! -f "$cmdline" ]; then
        echo "install.sh: --boot-config: no config.txt/cmdline.txt in $boot (set UMPS_BOOT_DIR)" >&2
        exit 1
    fi
    if grep -q '^# >>> umps-agent' "$config"; then
        note "boot: $config already has the umps-agent block (left as is)"
    else
        cp -p "$config" "$config.umps-agent.bak"
        {
            printf '\n# >>> umps-agent (scripts/install.sh --boot-config; removed by uninstall.sh)\n'
            cat "$SRC/firmware-config/config.txt"
            printf '# <<< umps-agent\n'
        } >>"$config"
        note "boot: appended firmware-config/config.txt to $config (reboot to apply; backup .umps-agent.bak)"
    fi
    if grep -Eq 'console=(serial|ttyAMA|ttyS)[0-9]+' "$cmdline"; then
        [ -f "$cmdline.umps-agent.bak" ] || cp -p "$cmdline" "$cmdline.umps-agent.bak"
        local patched
        patched=$(strip_serial_console <"$cmdline")
        printf '%s\n' "$patched" >"$cmdline"
        note "boot: removed the serial console from $cmdline (backup .umps-agent.bak)"
    else
        note "boot: $cmdline has no serial console (left as is)"
    fi
    if [ "$SYSTEMD_RUNNING" = 1 ] && systemctl list-unit-files hciuart.service >/dev/null 2>&1; then
        systemctl disable hciuart.service || true
        note "boot: disabled hciuart.service (Bluetooth is off: dtoverlay=disable-bt)"
    fi
}

# ==================================================================== main
say "installing umps-agent from $SRC into ${ROOT:-/}"

# 1. users (sysusers.d files first: they are the source of truth)
put "$SRC/systemd/umps-agent.sysusers.conf" /etc/sysusers.d/umps-agent.conf 0644
[ "$KIOSK" = 1 ] && put "$SRC/systemd/umps-kiosk.sysusers.conf" /etc/sysusers.d/umps-kiosk.conf 0644
if [ "$LIVE" = 1 ]; then
    users=("$ROOT/etc/sysusers.d/umps-agent.conf")
    [ "$KIOSK" = 1 ] && users+=("$ROOT/etc/sysusers.d/umps-kiosk.conf")
    create_users "${users[@]}"
    note "users: umps-agent exists, groups: $(id -nG umps-agent)"
else
    note "users: not created in the staging root $ROOT; /etc/sysusers.d/umps-agent.conf creates them at first boot (or run systemd-sysusers on the unit)"
fi

# 2. directories
ensure_dir "$APP" 0755
# Configuration and state are not recorded in the manifest: uninstall keeps
# them unless --purge. 0750 also when they existed (a reinstall must not
# leave them open).
for dir in "$ETC" "$STATE"; do
    ensure_dir "$(dirname "$dir")" 0755
    [ -d "$ROOT$dir" ] || mkdir "$ROOT$dir"
    chmod 0750 "$ROOT$dir"
done
if [ "$LIVE" = 1 ]; then
    chown root:umps-agent "$ETC"
    chown umps-agent:umps-agent "$STATE"
else
    note "ownership: $ETC and $STATE keep the installing user's owner in the staging root; systemd sets $STATE's owner (StateDirectory=) at the first start"
fi

# 3. venv
if [ "${UMPS_INSTALL_SKIP_VENV:-0}" = 1 ]; then
    note "venv: skipped (UMPS_INSTALL_SKIP_VENV=1)"
else
    build_venv
fi

# 4. configuration: the example for reference, the real one only if absent
put "$EXAMPLE" "$SHARE/agent.example.toml" 0644
if [ -e "$ROOT$ETC/agent.toml" ]; then
    note "config: kept the existing $ETC/agent.toml"
else
    install -m 0640 "$EXAMPLE" "$ROOT$ETC/agent.toml"
    [ "$LIVE" = 1 ] && chgrp umps-agent "$ROOT$ETC/agent.toml"
    note "config: installed the example as $ETC/agent.toml: set [unit] id and [mqtt] before starting"
fi

# Reference copies on the unit (the units' Documentation= points here).
for f in "$SRC"/firmware-config/README.md "$SRC"/firmware-config/config.txt "$SRC"/firmware-config/cmdline.txt.md \
         "$SRC"/firmware-config/imu.md; do
    [ -f "$f" ] && put "$f" "$SHARE/firmware-config/$(basename "$f")" 0644
done
[ -f "$SRC/systemd/README.md" ] && put "$SRC/systemd/README.md" "$SHARE/systemd/README.md" 0644

# 5. units and system configuration
put "$SRC/systemd/umps-agent.service" /etc/systemd/system/umps-agent.service 0644
if [ "$KIOSK" = 1 ]; then
    put "$SRC/systemd/umps-kiosk.service" /etc/systemd/system/umps-kiosk.service 0644
    put "$SRC/systemd/pam.d/umps-kiosk" /etc/pam.d/umps-kiosk 0644
    for tool in /usr/bin/cage /usr/bin/chromium; do
        [ -x "$ROOT$tool" ] || note "kiosk: $tool is missing: apt install cage chromium"
    done
fi
put "$SRC/firmware-config/udev/99-umps-gnss.rules" /etc/udev/rules.d/99-umps-gnss.rules 0644
put "$SRC/firmware-config/udev/99-umps-imu.rules" /etc/udev/rules.d/99-umps-imu.rules 0644
put "$SRC/systemd/umps-imu-setup.service" /etc/systemd/system/umps-imu-setup.service 0644
put "$SRC/firmware-config/journald/umps-agent.conf" /etc/systemd/journald.conf.d/umps-agent.conf 0644
put "$SRC/firmware-config/modules-load/umps-agent.conf" /etc/modules-load.d/umps-agent.conf 0644
put "$SRC/firmware-config/polkit/50-umps-agent-poweroff.rules" /etc/polkit-1/rules.d/50-umps-agent-poweroff.rules 0644
if [ "$GPSD" = 1 ]; then
    put "$SRC/firmware-config/chrony/umps-gnss-gpsd.conf" /etc/chrony/conf.d/umps-gnss.conf 0644
    if [ -e "$ROOT/etc/default/gpsd" ]; then
        note "gpsd: kept the existing /etc/default/gpsd; compare with firmware-config/gpsd/gpsd.default"
    else
        put "$SRC/firmware-config/gpsd/gpsd.default" /etc/default/gpsd 0644
    fi
    note "gpsd: set [gnss] port = \"gpsd://127.0.0.1:2947\" in $ETC/agent.toml"
else
    put "$SRC/firmware-config/chrony/umps-gnss.conf" /etc/chrony/conf.d/umps-gnss.conf 0644
    put "$SRC/firmware-config/chrony/chrony.service.d/umps-gnss.conf" \
        /etc/systemd/system/chrony.service.d/umps-gnss.conf 0644
fi

# 6. boot configuration, only on request
if [ "$BOOT_CONFIG" = 1 ]; then
    patch_boot_config
else
    note "boot: config.txt and cmdline.txt not changed; see $SHARE/firmware-config/README.md (or use --boot-config)"
fi

# Record before activation, so a failed systemctl still leaves an uninstallable tree.
install -m 0644 "$MANIFEST_TMP" "$ROOT$MANIFEST_REL"
printf 'f %s\n' "$MANIFEST_REL" "$NOTES_REL" >>"$ROOT$MANIFEST_REL"

# 7. activation: only on a running system
if [ "$SYSTEMD_RUNNING" = 1 ]; then
    systemctl daemon-reload
    udevadm control --reload || true
    udevadm trigger --subsystem-match=tty --action=add || true
    udevadm trigger --subsystem-match=iio --action=add || true
    modprobe i2c-dev 2>/dev/null || true
    systemctl try-restart chrony.service || true
    systemctl try-restart systemd-journald.service || true
    if [ "$ENABLE" = 1 ]; then
        systemctl enable umps-agent.service
        # An upgrade restarts a running agent; a first install waits for
        # the configuration to be filled in.
        systemctl try-restart umps-agent.service || true
        if [ "$KIOSK" = 1 ]; then
            systemctl enable umps-kiosk.service
            systemctl set-default graphical.target
        fi
        note "systemd: units enabled; start with: systemctl start umps-agent"
    else
        note "systemd: units installed, not enabled (--no-enable)"
    fi
else
    note "systemd: daemon-reload/enable skipped ($([ "$LIVE" = 1 ] && echo "systemd is not PID 1" || echo "staging root"))"
fi

install -m 0644 "$NOTES_TMP" "$ROOT$NOTES_REL"
say "done; notes in $NOTES_REL"
