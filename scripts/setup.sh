#!/usr/bin/env bash
# Installs what the CDN needs on Debian 12 / Ubuntu and builds it. Idempotent: it
# installs only missing Debian packages and reinstalls npm packages only when the
# lockfile changed. Used by the README, CI, the Dockerfiles and cloud-init alike.
#
#   ./scripts/setup.sh            # Debian packages + npm ci + build
#   ./scripts/setup.sh --system   # Debian packages only (images, cloud-init)
#   ./scripts/setup.sh --system --role edge   # only what one role runs (images, cloud-init)
#   ./scripts/setup.sh --docker   # also what `npm run test:docker` needs (CI): the Docker
#                                 # engine (docker.io) and debootstrap (its base images)
#   ./scripts/setup.sh --bench    # also Varnish, the peer `npm run bench:edge` measures
set -euo pipefail

cd "$(dirname "$0")/.."

# The one list of Debian packages (infra/units/units.ts PACKAGES names the same ones per role;
# infra/targets/docker/dockerfiles.test.ts checks that both agree).
PACKAGES=(
  nginx libnginx-mod-http-lua libnginx-mod-http-ndk
  lua-resty-core lua-resty-lrucache lua-nginx-redis lua-cjson logrotate
  redis-server openssl prometheus
  wrk lua-check curl ca-certificates
  strace
  chromium
  gnupg
)

# Per role, for images and instances that run one service. curl and ca-certificates
# serve health checks and HTTPS downloads in every role.
ROLE_COMMON="curl ca-certificates"
role_packages() {
  case "$1" in
    edge) echo "nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache lua-nginx-redis lua-cjson logrotate" ;;
    balancer) echo "nginx libnginx-mod-http-lua libnginx-mod-http-ndk lua-resty-core lua-resty-lrucache lua-cjson logrotate" ;;
    redis) echo "redis-server" ;;
    prometheus) echo "prometheus" ;;
    origin) echo "" ;;
    *) echo "setup: unknown role $1 (edge, balancer, redis, prometheus, origin)" >&2; return 1 ;;
  esac
}

# What `npm run test:docker` (test/docker/) needs on the machine it runs on: a Docker
# engine and debootstrap, which makes the Debian base images from Debian's archive.
DOCKER_PACKAGES="docker.io debootstrap"
# What `npm run bench:edge` compares the edge with (it runs varnishd itself; the package's
# service is never started, see policy-rc.d below).
BENCH_PACKAGES="varnish"

SYSTEM_ONLY=0
DOCKER=0
BENCH=0
ROLES=()
while [ "$#" -gt 0 ]; do
  case "$1" in
    --system) SYSTEM_ONLY=1 ;;
    --docker) DOCKER=1 ;;
    --bench) BENCH=1 ;;
    --role) shift; IFS=',' read -r -a more <<< "${1:?setup: --role needs a role}"; ROLES+=("${more[@]}") ;;
    *) echo "setup: unknown argument $1 (use --system, --role ROLE, --docker, --bench)" >&2; exit 2 ;;
  esac
  shift
done
if [ "${#ROLES[@]}" -gt 0 ]; then
  # shellcheck disable=SC2207 # package names contain no spaces
  PACKAGES=($ROLE_COMMON)
  for r in "${ROLES[@]}"; do
    list=$(role_packages "$r") || exit 2
    # shellcheck disable=SC2206
    PACKAGES+=($list)
  done
fi
if [ "$DOCKER" -eq 1 ]; then
  # shellcheck disable=SC2206
  PACKAGES+=($DOCKER_PACKAGES)
fi
if [ "$BENCH" -eq 1 ]; then
  # shellcheck disable=SC2206
  PACKAGES+=($BENCH_PACKAGES)
fi

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

if [ "$SYSTEM_ONLY" -eq 1 ]; then
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
