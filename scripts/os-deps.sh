#!/usr/bin/env bash
# Install the Debian packages `make demo` or `make test` needs, when missing.
#
#   scripts/os-deps.sh demo   what the demo needs: a venv, Mosquitto (the rig's own broker),
#                             its clients (the lines the demo prints), the panel's font
#   scripts/os-deps.sh test   that, and what the tests check against: Chromium, espeak-ng,
#                             systemd and udev tools, chrony, util-linux, cryptsetup
#
# As root (or with password-less sudo) it runs apt-get; otherwise it prints the line to run.
# Two packages change the host's services: mosquitto starts and enables a system-wide broker,
# and chrony replaces systemd-timesyncd as the time daemon. Those are installed only after a
# "yes": asked on a terminal, or given with OS_DEPS_YES=1. Without a terminal (CI), `test`
# installs them (a CI machine is the tests' own); `demo` prints the line and stops.
# A system broker this script installed is stopped and disabled again: the demo and the
# tests start their own on a free port.
#
# For tests of this script: OS_DEPS_ROOT prefixes the files it looks for, OS_DEPS_INTERACTIVE
# (0 or 1) overrides whether stdin is a terminal.
set -euo pipefail

purpose=${1:-test}
case "$purpose" in
  demo|test) ;;
  *) echo "usage: $0 demo|test" >&2; exit 2 ;;
esac
root=${OS_DEPS_ROOT:-}

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# Debian splits venv (and its pip) out of python3.
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# mosquitto lives in /usr/sbin, which is not on every user's PATH. The package also ships
# mosquitto_passwd, which hashes the rig's password files.
have mosquitto || [[ -x $root/usr/sbin/mosquitto ]] || need+=(mosquitto)
have mosquitto_pub || need+=(mosquitto-clients)
[[ -f $root/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
if [[ $purpose == test ]]; then
  have chromium || need+=(chromium)
  have espeak-ng || need+=(espeak-ng)
  have systemd-analyze || need+=(systemd)
  have udevadm || need+=(udev)
  have chronyd || [[ -x $root/usr/sbin/chronyd ]] || need+=(chrony)
  have unshare || need+=(util-linux)
  # The encrypted state volume's script (firmware-config/storage) is tested on a LUKS2 image.
  have cryptsetup || [[ -x $root/usr/sbin/cryptsetup ]] || [[ -x $root/sbin/cryptsetup ]] || need+=(cryptsetup-bin)
fi

((${#need[@]})) || exit 0

# What each service-changing package does to the host, said before it is installed.
declare -A changes=(
  [mosquitto]="starts and enables a system-wide MQTT broker on port 1883 (stopped and disabled again here)"
  [chrony]="replaces systemd-timesyncd as this machine's time daemon"
)
asked=()
for pkg in "${need[@]}"; do [[ -n ${changes[$pkg]:-} ]] && asked+=("$pkg"); done

if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif have sudo && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "make $purpose needs these Debian packages: ${need[*]}" >&2
  for pkg in "${asked[@]}"; do echo "  note: $pkg ${changes[$pkg]}" >&2; done
  echo "Install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi

if ((${#asked[@]})) && [[ ${OS_DEPS_YES:-0} != 1 ]]; then
  interactive=${OS_DEPS_INTERACTIVE:-}
  if [[ -z $interactive ]]; then [[ -t 0 ]] && interactive=1 || interactive=0; fi
  echo "make $purpose needs these Debian packages: ${need[*]}" >&2
  for pkg in "${asked[@]}"; do echo "  $pkg ${changes[$pkg]}" >&2; done
  if [[ $interactive == 1 ]]; then
    printf 'Install them now? [y/N] ' >&2
    read -r answer || answer=
    if [[ ! $answer =~ ^[Yy] ]]; then
      echo "Nothing installed. Install them yourself with: sudo apt-get install -y ${need[*]}" >&2
      exit 1
    fi
  elif [[ $purpose == demo ]]; then
    echo "Nothing installed. Install them with: sudo apt-get install -y ${need[*]}" >&2
    echo "(or let make do it: OS_DEPS_YES=1 make demo)" >&2
    exit 1
  fi
fi

echo "Installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || echo "apt-get update failed; trying the install anyway" >&2
# systemd is not started by the install in a container; the tests only need its tools.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system-wide broker where it can; the demo and the tests never use it.
for pkg in "${need[@]}"; do
  [[ $pkg == mosquitto ]] && { "${sudo[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true; }
done
exit 0
