#!/usr/bin/env bash
# Installs the system packages the tests drive, from Debian's packages:
#   chromium, chromium-driver   the web UI's tests run a real headless browser
#   prometheus                  promtool checks every component's /metrics
#   etcd-server, etcd-client    the cluster-state backend the multi-agent tests
#                               run, and etcdctl (compaction in the tests)
#   protobuf-compiler,          etcd's gRPC client (etcd-client) compiles etcd's
#   libprotobuf-dev             .proto files at build time: protoc and its
#                               well-known types
#   bind9-dnsutils              dig queries the agent's DNS interface
#   haproxy                     a comparison peer of the benchmark
#                               (cargo run --release -p isthmus-bench -- run)
# Skips what is already installed; uses sudo when not root. Safe to rerun.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
command -v etcd >/dev/null 2>&1 || missing+=(etcd-server)
command -v etcdctl >/dev/null 2>&1 || missing+=(etcd-client)
command -v protoc >/dev/null 2>&1 || missing+=(protobuf-compiler)
[ -f /usr/include/google/protobuf/descriptor.proto ] || missing+=(libprotobuf-dev)
command -v dig >/dev/null 2>&1 || missing+=(bind9-dnsutils)
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing+=(haproxy)
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: chromium, chromedriver, promtool, etcd, etcdctl, protoc, dig and haproxy are installed"
  exit 0
fi

sudo=()
if [ "$(id -u)" -ne 0 ]; then sudo=(sudo); fi
echo "setup: installing ${missing[*]} (apt-get)"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
# --no-install-recommends keeps it to what the tests use; the prometheus
# package's server is not started by the tests (only promtool is run).
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
