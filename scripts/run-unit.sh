#!/bin/sh
# Runs one service unit (infra/units/units.ts) the same way in a container (the images'
# ENTRYPOINT) and on an EC2 instance (systemd ExecStart): creates the unit's
# directories, hands them and the secret files to the user the unit runs as, then
# replaces itself with the unit's command, so signals reach the service directly.
#
#   CDN_UNIT_DIR=/etc/cdn/redis CDN_UNIT_DIRS="data" CDN_RUN_AS=redis \
#     run-unit.sh /usr/bin/redis-server /etc/cdn/redis/redis.conf
#
# CDN_RUN_AS=root keeps root: nginx masters need it to bind and to read secrets,
# and drop their workers to the `user` in nginx.conf themselves.
set -eu

: "${CDN_UNIT_DIR:?run-unit: CDN_UNIT_DIR is not set}"
user="${CDN_RUN_AS:-root}"
secrets="${CDN_SECRETS_DIR:-/etc/cdn/secrets}"

mkdir -p "$CDN_UNIT_DIR"
cd "$CDN_UNIT_DIR"
for d in ${CDN_UNIT_DIRS:-}; do
  mkdir -p "$d"
done
# A unix socket left by a killed nginx (the edge's internal hop) would make the
# next start fail with "address in use"; nothing else can be listening on it now.
rm -f ./*.sock

# nginx units: nothing else rotates their logs (no cron in a container), so a
# loop started here runs logrotate with the unit's config every few minutes. It
# lives as long as the unit: the container or the systemd unit's cgroup ends it.
if [ -n "${CDN_LOGROTATE:-}" ]; then
  (
    while sleep "${CDN_LOGROTATE_EVERY:-300}"; do
      logrotate --state "$CDN_UNIT_DIR/logrotate.state" "$CDN_LOGROTATE" || true
    done
  ) &
fi

if [ "$user" = root ]; then
  exec "$@"
fi

for d in ${CDN_UNIT_DIRS:-}; do
  chown -R "$user:$user" "$d"
done
if [ -d "$secrets" ]; then
  # Only this unit's secrets are on its container or instance.
  chown -R "$user:$user" "$secrets"
  chmod 0700 "$secrets"
fi
exec setpriv --reuid="$user" --regid="$user" --init-groups -- "$@"
