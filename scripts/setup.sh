#!/usr/bin/env bash
# Installs what the CDN needs on Debian 12 / Ubuntu and builds it. Idempotent: it
# installs only missing Debian packages and reinstalls npm packages only when the
# lockfile changed. Used by the README, CI, the Dockerfiles and cloud-init alike.
#
#   ./scripts/setup.sh            # Debian packages + npm ci + build
#   ./scripts/setup.sh --system   # Debian packages only (images, cloud-init)
set -euo pipefail

cd "$(dirname "$0")/.."

# The one list of Debian packages (infra/units.ts PACKAGES names the same ones per role).
PACKAGES=(
  nginx libnginx-mod-http-lua libnginx-mod-http-ndk
  lua-resty-core lua-resty-lrucache lua-nginx-redis lua-cjson
  redis-server prometheus
  wrk lua-check curl ca-certificates
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "setup: run as root or install sudo" >&2; exit 1
  fi
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  # Services are started by the CDN itself, never by the package's init scripts.
  export DEBIAN_FRONTEND=noninteractive
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "setup: Debian packages present"
fi

if [ "${1:-}" = "--system" ]; then
  exit 0
fi

if ! command -v node >/dev/null 2>&1; then
  echo "setup: Node.js 20 or newer is required (https://nodejs.org or your distribution's nodejs package)" >&2
  exit 1
fi

stamp=node_modules/.setup-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: npm ci"
  npm ci --no-audit --no-fund
  echo "$want" > "$stamp"
else
  echo "setup: node_modules up to date"
  npm run --silent build
fi
echo "setup: done"
