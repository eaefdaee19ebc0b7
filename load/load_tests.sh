#!/usr/bin/env bash
# A storefront load test with wrk against a native stack on this machine:
# seeds the catalogue through the origin API, runs load/load_tests.lua through the
# balancer for a bounded time while a background loop publishes a tag purge every
# PURGE_EVERY seconds, then prints wrk's summary, the hit ratio the clients saw and
# what the purge loop did.
#
#   npm start                                   # in another terminal (or cdn local up --detach)
#   load/load_tests.sh [--state-dir .cdn] [--duration 30s] [--connections 16] [--threads 2]
#
# Targets 127.0.0.1/localhost only; bounded: --duration is capped at 600s.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$ROOT/.cdn"
DURATION="30s"
CONNECTIONS=16
THREADS=2
PURGE_EVERY="${PURGE_EVERY:-2}"
export CDN_LOAD_PREFIX="${CDN_LOAD_PREFIX:-shop}"
export CDN_LOAD_IMAGES="${CDN_LOAD_IMAGES:-200}"
export CDN_LOAD_BUNDLES="${CDN_LOAD_BUNDLES:-50}"

while [ $# -gt 0 ]; do
  case "$1" in
    --state-dir) STATE_DIR="$2"; shift 2 ;;
    --duration) DURATION="$2"; shift 2 ;;
    --connections) CONNECTIONS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "load_tests.sh: unknown option $1" >&2; exit 2 ;;
  esac
done

command -v wrk >/dev/null || { echo "load_tests.sh: wrk is not installed (./scripts/setup.sh installs it)" >&2; exit 1; }
seconds="${DURATION%s}"
case "$seconds" in (*[!0-9]*|'') echo "load_tests.sh: --duration expects seconds, like 30s" >&2; exit 2 ;; esac
[ "$seconds" -le 600 ] || { echo "load_tests.sh: --duration is capped at 600s" >&2; exit 2; }

status="$("$ROOT/bin/cdn" local status --json --state-dir "$STATE_DIR")" || { echo "load_tests.sh: no stack in $STATE_DIR; start one with npm start or cdn local up --detach" >&2; exit 1; }
field() { node -e 'const s=JSON.parse(require("fs").readFileSync(0,"utf8")); process.stdout.write(String(s[process.argv[1]]))' "$1" <<<"$status"; }
BALANCER="$(field balancer)"
ORIGIN="$(field origin)"
TOKEN="$(cat "$(field adminTokenFile)")"

for url in "$BALANCER" "$ORIGIN"; do
  case "$url" in
    http://127.0.0.1:*|http://localhost:*) ;;
    *) echo "load_tests.sh: refusing to load $url: only 127.0.0.1 here (use load/k6 for staged stacks)" >&2; exit 1 ;;
  esac
done

echo "seeding $CDN_LOAD_IMAGES images and $CDN_LOAD_BUNDLES bundles on $ORIGIN"
seed() { # kind index bytes tag
  head -c "$3" /dev/zero | tr '\0' 'x' | curl -fsS -o /dev/null -X PUT \
    -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/octet-stream' \
    -H 'Cache-Control: public, max-age=86400' -H "Surrogate-Key: $4" \
    --data-binary @- "$ORIGIN/v1/assets/$CDN_LOAD_PREFIX/$1"
}
for ((i = 0; i < CDN_LOAD_IMAGES; i++)); do seed "products/p-$i.jpg" "$i" $((2048 + (i * 7919 % 46) * 1024)) "product-$i"; done
for ((i = 0; i < CDN_LOAD_BUNDLES; i++)); do seed "bundles/b-$i.js" "$i" $((16384 + (i * 104729 % 80) * 1024)) "bundle-$i"; done

purges=0
purge_loop() {
  local n=0
  while true; do
    sleep "$PURGE_EVERY"
    # popular products get purged most (a price change during the sale)
    local tag="product-$((RANDOM % 10))"
    code="$(curl -s -o /dev/null -w '%{http_code}' -X POST -H "Authorization: Bearer $TOKEN" \
      -H 'Content-Type: application/json' -d "{\"tags\":[\"$tag\"]}" "$ORIGIN/v1/purge")"
    n=$((n + 1))
    echo "purge $n $tag -> $code" >>"$PURGE_LOG"
  done
}
PURGE_LOG="$(mktemp)"
purge_loop &
PURGER=$!
trap 'kill "$PURGER" 2>/dev/null || true; rm -f "$PURGE_LOG"' EXIT

echo "wrk -t$THREADS -c$CONNECTIONS -d$DURATION -s load/load_tests.lua $BALANCER (purge every ${PURGE_EVERY}s)"
wrk "-t$THREADS" "-c$CONNECTIONS" "-d$DURATION" --latency --timeout 10s -s "$ROOT/load/load_tests.lua" "$BALANCER"
kill "$PURGER" 2>/dev/null || true
wait "$PURGER" 2>/dev/null || true
purges="$(wc -l <"$PURGE_LOG")"
accepted="$(grep -c -- '-> 202$' "$PURGE_LOG" || true)"
echo "purges during the run: $purges sent, $accepted accepted (202)"
