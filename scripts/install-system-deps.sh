#!/usr/bin/env bash
# Install the system packages the test suite needs: Chromium (dashboard tests) and systemd's
# systemd-analyze (unit file checks). Debian/Ubuntu only; needs root or passwordless sudo.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

if [ "$(id -u)" -eq 0 ]; then
    run=()
elif command -v sudo >/dev/null 2>&1; then
    run=(sudo)
else
    echo "install-system-deps: need root to install ${missing[*]}; install them and run again" >&2
    exit 1
fi
echo "install-system-deps: installing ${missing[*]}" >&2
"${run[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${run[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
