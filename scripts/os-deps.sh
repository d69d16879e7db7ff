#!/usr/bin/env bash
# Install the Debian packages the tests and the demo need, when missing.
# As root (or with passwordless sudo) it runs apt-get; otherwise it says what to install.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1; }
# Debian splits venv (and its pip) out of python3.
python3 -c 'import ensurepip, venv' 2>/dev/null || need+=(python3-venv)
# mosquitto lives in /usr/sbin, which is not on every user's PATH.
# The package also ships mosquitto_passwd, which hashes the rig's password files.
have mosquitto && have mosquitto_passwd || [[ -x /usr/sbin/mosquitto && -x /usr/bin/mosquitto_passwd ]] \
    || need+=(mosquitto)
# mosquitto_pub and mosquitto_sub: what the demo and the docs tell people to type.
have mosquitto_pub || need+=(mosquitto-clients)
have chromium || need+=(chromium)
[[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ]] || need+=(fonts-dejavu-core)
have espeak-ng || need+=(espeak-ng)
have systemd-analyze || need+=(systemd)
have udevadm || need+=(udev)
have chronyd || need+=(chrony)
have unshare || need+=(util-linux)
# The encrypted state volume's script (firmware-config/storage) is tested on a LUKS2 image.
have cryptsetup || [[ -x /usr/sbin/cryptsetup ]] || [[ -x /sbin/cryptsetup ]] || need+=(cryptsetup-bin)

((${#need[@]})) || exit 0

if [[ $(id -u) -eq 0 ]]; then
  sudo=()
elif have sudo && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "Missing Debian packages: ${need[*]}" >&2
  echo "Install them with: sudo apt-get install -y ${need[*]}" >&2
  exit 1
fi
echo "Installing Debian packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq || echo "apt-get update failed; trying the install anyway" >&2
# systemd is not started by the install in a container; the tests only need its tools.
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
# The package starts a system-wide broker where it can; the tests never use it.
"${sudo[@]}" systemctl disable --now mosquitto >/dev/null 2>&1 || true
