#!/bin/sh
# Entry point of the eugpt service in docker-compose.yml. It settles three
# things the compose file cannot, then runs the image's command:
#   1. the config file: EUGPT_CONFIG_FILE when set (a file of config/ or
#      deploy/config/), else the one matching the profiles that are on,
#      found by asking the compose network's DNS for their services;
#   2. the admin token: EUGPT_ADMIN_TOKEN when set, else the one kept in
#      $EUGPT_DATA_DIR/admin-token, else a new one, written there and
#      printed once;
#   3. the proxy to trust: with the proxy profile on and EUGPT_TRUST_PROXY
#      unset, the proxy container's own address (and nothing else).
set -eu

# The repository's root: / in the container, where config/ and deploy/ are mounted.
root=$(cd "$(dirname "$0")/../.." && pwd)
root=${root%/}

has() { getent hosts "$1" >/dev/null 2>&1; }

if [ -n "${EUGPT_CONFIG_FILE:-}" ]; then
  case "$EUGPT_CONFIG_FILE" in
    /*) EUGPT_CONFIG=$EUGPT_CONFIG_FILE ;;
    *) if [ -f "$root/config/$EUGPT_CONFIG_FILE" ]; then EUGPT_CONFIG=$root/config/$EUGPT_CONFIG_FILE; else EUGPT_CONFIG=$root/deploy/config/$EUGPT_CONFIG_FILE; fi ;;
  esac
else
  name=host-ollama
  if has ollama; then name=ollama; fi
  if has searxng; then name=$name-search; fi
  EUGPT_CONFIG=$root/deploy/config/$name.yaml
fi
export EUGPT_CONFIG
echo "eugpt: config file $EUGPT_CONFIG"

if [ -z "${EUGPT_ADMIN_TOKEN:-}" ]; then
  file=${EUGPT_DATA_DIR:-/data}/admin-token
  if [ ! -s "$file" ]; then
    umask 077
    node -e "process.stdout.write(require('node:crypto').randomBytes(32).toString('hex'))" > "$file.tmp"
    mv "$file.tmp" "$file"
    echo "eugpt: generated the admin token (shown this once; it is kept in the eugpt-data volume, $file):"
    echo "eugpt: EUGPT_ADMIN_TOKEN=$(cat "$file")"
  else
    echo "eugpt: admin token read from $file (docker compose exec eugpt cat $file)"
  fi
  EUGPT_ADMIN_TOKEN=$(cat "$file")
  export EUGPT_ADMIN_TOKEN
fi

if [ -z "${EUGPT_TRUST_PROXY:-}" ] && has caddy; then
  EUGPT_TRUST_PROXY=$(getent hosts caddy | awk '{ print $1 }' | paste -sd, -)
  export EUGPT_TRUST_PROXY
  echo "eugpt: trusting X-Forwarded-For from the proxy at $EUGPT_TRUST_PROXY"
fi

exec "$@"
