#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for a bounded time each.
#
#   scripts/fuzz.sh                  every target, 30 s each
#   scripts/fuzz.sh -t 300           every target, 5 minutes each
#   scripts/fuzz.sh sni duration     only these targets
#   FUZZ_SECONDS=120 scripts/fuzz.sh
#
# Needs a nightly toolchain and cargo-fuzz (libFuzzer's sanitizer
# instrumentation is nightly-only). Without them it says what to install and
# exits 0: stable CI never depends on it. Extra libFuzzer flags can be given
# in FUZZ_ARGS (e.g. FUZZ_ARGS="-max_len=4096"). Findings land in
# fuzz/artifacts/<target>/, the growing corpus in fuzz/corpus/<target>/
# (both git-ignored); fuzz/seeds/<target>/ is the checked-in starting corpus.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${FUZZ_SECONDS:-30}"
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    -t|--seconds) seconds="$2"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    -*) echo "fuzz.sh: unknown flag $1" >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
case "$seconds" in
  ''|*[!0-9]*) echo "fuzz.sh: seconds must be a whole number, not '$seconds'" >&2; exit 2 ;;
esac

missing=()
if ! command -v rustup >/dev/null 2>&1 || ! rustup run nightly rustc --version >/dev/null 2>&1; then
  missing+=("a nightly toolchain: rustup toolchain install nightly")
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
  missing+=("cargo-fuzz: cargo install cargo-fuzz")
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "fuzz.sh: not fuzzing: it needs"
  for m in "${missing[@]}"; do echo "  - $m"; done
  echo "then run scripts/fuzz.sh again. (On stable, 'cargo test --manifest-path fuzz/Cargo.toml'"
  echo "replays the seed corpus through the same entry points.)"
  exit 0
fi

if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo +nightly fuzz list --fuzz-dir fuzz)
fi

failed=()
for target in "${targets[@]}"; do
  echo "=== fuzz target $target: ${seconds}s"
  mkdir -p "fuzz/corpus/$target"
  seeds=()
  if [ -d "fuzz/seeds/$target" ]; then seeds=("fuzz/seeds/$target"); fi
  # shellcheck disable=SC2086 # FUZZ_ARGS is a list of flags
  if ! cargo +nightly fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
      -max_total_time="$seconds" ${FUZZ_ARGS:-}; then
    failed+=("$target")
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/)"
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} target(s) ran ${seconds}s each without a finding"
