#!/usr/bin/env bash
# `make test-arm64`: install the agent into a Debian Bookworm arm64 root and
# run the tests there, under QEMU user emulation (docs/platform.md).
#
#   scripts/test-arm64.sh              build the root if needed, install, test
#   scripts/test-arm64.sh --build-only build (or find) the cached root and stop
#   scripts/test-arm64.sh --shell      install, then a shell in the arm64 root
#   scripts/test-arm64.sh TEST...      install, then only these tests (pytest
#                                      arguments: files, file::test, -k EXPR)
#
# How it works:
#   1. Host check: root, mmdebstrap, qemu-user-static and binfmt_misc with
#      qemu-aarch64 registered (flag F, so the emulator works inside a
#      chroot). Whatever is missing is named with the command that fixes it.
#   2. The root: `mmdebstrap --arch=arm64` of Bookworm from this machine's
#      Debian mirror with the packages a unit runs (ARM64_PACKAGES below),
#      cached in $ARM64_CACHE/bookworm-<key>/root, the key a hash of the
#      suite, the mirrors and the package list: a changed list builds a new
#      root, an unchanged one is reused (the build is the slow part).
#   3. Each run starts from that root unchanged: a private mount namespace
#      puts an overlay over it (writes go to a directory removed at the
#      end), with /proc, /dev (and /dev/pts for the tests' ptys), /sys and a
#      fresh /run and /tmp. The checkout's files (git's view of the work
#      tree: committed and changed files, not the ignored ones) are copied
#      to /build/umps-agent.
#   4. scripts/arm64-inside.sh runs in the root under chroot: it installs
#      the agent with scripts/install.sh exactly as on a unit (live, as
#      root, systemd not running), checks what was installed, then runs the
#      test groups and prints the summary. Logs and JUnit files land in
#      test-artifacts/arm64/.
#
# Environment:
#   ARM64_CACHE    where roots and pip's download cache are kept
#                  (default /var/cache/umps-agent/arm64)
#   ARM64_MIRROR   Debian mirror (default: the first one in this machine's
#                  apt sources, else http://deb.debian.org/debian)
#   ARM64_GROUPS   test groups to run (default: all; see arm64-inside.sh)
#   ARM64_TESTS    a test selection instead of the groups (as TEST... above)
#   ARM64_NICE     niceness of the heavy steps (default 19: the machine is shared)
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${ARM64_CACHE:-/var/cache/umps-agent/arm64}
NICE=${ARM64_NICE:-19}
SUITE=bookworm
MODE=test
TESTS=${ARM64_TESTS:-}
case "${1:-}" in
    "") ;;
    --build-only) MODE=build ;;
    --shell) MODE=shell ;;
    -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
    --) shift; TESTS="$*" ;;
    -k|tests/*) TESTS="$*" ;;
    *) echo "test-arm64: unknown option '$1' (a test selection starts with tests/ or -k)" >&2; exit 2 ;;
esac

# What a unit runs (Raspberry Pi OS Lite has these or gets them from the
# installer's documentation), plus what the tests start: Mosquitto as the
# broker, espeak-ng for speech, chrony and udev for the system config tests.
# Chromium is left out: see the summary's "not run here" list.
ARM64_PACKAGES=(
    ca-certificates python3 python3-venv
    systemd udev chrony util-linux cryptsetup-bin passwd procps
    mosquitto mosquitto-clients fonts-dejavu-core espeak-ng
)

say() { printf 'test-arm64: %s\n' "$*"; }
die() { printf 'test-arm64: %s\n' "$*" >&2; exit 1; }

# --------------------------------------------------------------- 1. host
host_check() {
    local missing=() fix=()
    [ "$(id -u)" = 0 ] || die "needs root (it builds a root with mmdebstrap and mounts inside it): sudo make test-arm64"
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if ((${#missing[@]})); then
        fix+=("apt-get install -y --no-install-recommends ${missing[*]}")
    fi
    if [ "$(uname -m)" != aarch64 ]; then
        if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
            fix+=("mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc")
        fi
        local entry=/proc/sys/fs/binfmt_misc/qemu-aarch64
        if [ ! -e "$entry" ] || ! grep -qx enabled "$entry"; then
            fix+=("update-binfmts --enable qemu-aarch64")
        elif ! grep -q '^flags: .*F' "$entry"; then
            fix+=("update-binfmts --disable qemu-aarch64 && update-binfmts --enable qemu-aarch64  # flag F: the emulator opened at registration, usable in a chroot")
        fi
    fi
    if ((${#fix[@]})); then
        say "this machine cannot run arm64 programs yet. Once, as root:"
        printf '    %s\n' "${fix[@]}" >&2
        say "then run make test-arm64 again (docs/platform.md, \"One-time set-up\")."
        exit 1
    fi
}

# Mirrors: the ones this machine's apt uses, so the root comes from where
# the host's packages come from.
host_mirror() {
    local uri
    uri=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list 2>/dev/null \
        | grep -oE 'https?://[^ ]+/debian/?( |$)' | head -n1 | tr -d ' ')
    printf '%s\n' "${uri:-http://deb.debian.org/debian}"
}

# ---------------------------------------------------------------- 2. root
MIRROR=${ARM64_MIRROR:-$(host_mirror)}
MIRROR=${MIRROR%/}
SECURITY=${MIRROR%/debian}/debian-security
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY $SUITE-security main")
KEY=$(printf '%s\n' "$SUITE" "${SOURCES[@]}" "${ARM64_PACKAGES[@]}" | sha256sum | cut -c1-12)
ROOTDIR=$CACHE/$SUITE-$KEY
ROOT=$ROOTDIR/root
RESULTS=$SRC/test-artifacts/arm64  # logs and JUnit files of the last run

build_root() {
    if [ -e "$ROOT/.umps-root-complete" ]; then
        say "arm64 root: $ROOT (cached; built in $(cat "$ROOTDIR/build-seconds" 2>/dev/null || echo '?') s)"
        return 0
    fi
    mkdir -p "$ROOTDIR"
    rm -rf "$ROOT.partial"
    say "building the arm64 root (Debian $SUITE from $MIRROR) in $ROOT; about 10-20 minutes under emulation"
    local start=$SECONDS
    local sources=()
    local line
    for line in "${SOURCES[@]}"; do sources+=("$line"); done
    nice -n "$NICE" mmdebstrap --quiet --mode=root --arch=arm64 --variant=minbase \
        --include="$(IFS=,; echo "${ARM64_PACKAGES[*]}")" \
        --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
        --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
        "$SUITE" "$ROOT.partial" "${sources[@]}" \
        || die "mmdebstrap failed (the partial root is $ROOT.partial; remove it and rerun)"
    echo $((SECONDS - start)) >"$ROOTDIR/build-seconds"
    printf '%s\n' "${ARM64_PACKAGES[@]}" >"$ROOTDIR/packages"
    touch "$ROOT.partial/.umps-root-complete"
    mv "$ROOT.partial" "$ROOT"
    say "arm64 root built in $(cat "$ROOTDIR/build-seconds") s"
}

# ------------------------------------------------------------ 3. the run
# Runs in a private mount namespace (unshare -m): every mount below goes
# away with it, whatever happens.
IN_NAMESPACE=$(cat <<'EOF'
set -euo pipefail
mkdir -p "$RUN/up" "$RUN/work" "$RUN/merged"
mount -t overlay overlay -o "lowerdir=$ROOT,upperdir=$RUN/up,workdir=$RUN/work" "$RUN/merged"
M=$RUN/merged
mount -t proc proc "$M/proc"
mount --rbind /dev "$M/dev"
mount --make-rslave "$M/dev"
mount --rbind /sys "$M/sys"
mount --make-rslave "$M/sys"
mount -t tmpfs -o mode=0755 tmpfs "$M/run"
mount -t tmpfs -o mode=1777 tmpfs "$M/tmp"
mkdir -p "$M/root/.cache/pip" "$M/build/umps-agent" "$M/build/results"
mount --bind "$CACHE/pip-cache" "$M/root/.cache/pip"
mount --bind "$RESULTS" "$M/build/results"
# Name resolution and the certificate authorities this machine's network
# needs to reach PyPI (a site that inspects TLS adds its own).
cp -L /etc/resolv.conf "$M/etc/resolv.conf"
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$M/etc/ssl/certs/ca-certificates.crt"
(cd "$SRC" && git ls-files -z --cached --others --exclude-standard | xargs -0 -r cp --parents -t "$M/build/umps-agent" 2>/dev/null || true)
exec nice -n "$NICE" chroot "$M" /usr/bin/env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root LANG=C.UTF-8 TERM="${TERM:-dumb}" ARM64_GROUPS="${ARM64_GROUPS:-}" ARM64_TESTS="$TESTS" ARM64_MODE="$MODE" \
    ARM64_ROOT_SECONDS="$ROOT_SECONDS" ARM64_HOST_LOOP_S="$HOST_LOOP_S" ARM64_PY_LOOP="$PY_LOOP" \
    /bin/bash /build/umps-agent/scripts/arm64-inside.sh
EOF
)

# The same pure-Python loop is timed here and in the root: the ratio is how
# much slower the emulated CPU is than this machine's, for reading the times.
PY_LOOP='import time; t = time.perf_counter(); sum(i * i for i in range(2_000_000)); print(f"{time.perf_counter() - t:.2f}")'
python_loop_seconds() { python3 -c "$PY_LOOP" 2>/dev/null || echo '?'; }

run_in_root() {
    mkdir -p "$CACHE/pip-cache" "$CACHE/runs"
    local run
    run=$(mktemp -d "$CACHE/runs/run.XXXXXX")
    local status=0
    rm -rf "$RESULTS" && mkdir -p "$RESULTS"
    ROOT=$ROOT RUN=$run SRC=$SRC TESTS=$TESTS CACHE=$CACHE NICE=$NICE MODE=$MODE RESULTS=$RESULTS PY_LOOP=$PY_LOOP \
        ROOT_SECONDS="$(cat "$ROOTDIR/build-seconds" 2>/dev/null || echo '?')" HOST_LOOP_S="$(python_loop_seconds)" \
        unshare --mount --propagation private bash -c "$IN_NAMESPACE" || status=$?
    rm -rf "$run"
    return "$status"
}

main() {
    host_check
    build_root
    [ "$MODE" = build ] && return 0
    if [ ! -d "$SRC/.git" ] && [ ! -f "$SRC/.git" ]; then
        die "$SRC is not a git checkout (the files to copy are git's list)"
    fi
    run_in_root
}

# One call at the very end: bash has read the whole file before anything runs,
# so editing it during a run does not change the run.
main; exit
