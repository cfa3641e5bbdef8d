#!/usr/bin/env bash
# The README's test command: system packages the tests need, every binary
# (the end-to-end tests run the real isthmus, isthmus-gateway and
# isthmus-proxy), then every test. Extra arguments go to `cargo test`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
cargo build --workspace --bins
cargo test --workspace "$@"
