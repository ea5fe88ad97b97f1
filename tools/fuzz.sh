#!/usr/bin/env bash
# Runs neuralign's cargo-fuzz targets (docs/fuzzing.md): builds them, replays the seeds and
# the corpus found so far, then fuzzes each target for SECONDS (default 30).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# FUZZ_BUILD_FLAGS: flags for `cargo fuzz build`/`run` (default: address sanitizer, release
# with debug assertions, cargo-fuzz's defaults). Needs cargo-fuzz; runs on the default
# toolchain with RUSTC_BOOTSTRAP=1, since the sanitizer flags are nightly-only and CI machines
# have one stable toolchain and cannot fetch another (nightly works the same).
# A crash exits non-zero and leaves the input under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(transcript_message transcript_sequence xdf_read edf_read brainvision_read)
read -r -a build_flags <<<"${FUZZ_BUILD_FLAGS:-}"

export RUSTC_BOOTSTRAP=1
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: cargo-fuzz is missing; install it: cargo install cargo-fuzz --locked" >&2
  exit 1
fi
# cargo-fuzz has no --locked: check that fuzz/Cargo.lock needs no change first.
cargo metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

cargo fuzz build "${build_flags[@]}"

dict_for() {
  case $1 in
    xdf_read) echo fuzz/xdf.dict ;;
    edf_read) echo fuzz/edf.dict ;;
    brainvision_read) echo fuzz/brainvision.dict ;;
    *) echo fuzz/transcript.dict ;;
  esac
}

for t in "${targets[@]}"; do
  # New inputs go to the first directory; the seeds and the crashes kept as regression
  # tests (tests/data/fuzz) are only read.
  corpora=("fuzz/corpus/$t")
  for d in "fuzz/seeds/$t" "tests/data/fuzz/$t"; do
    if [ -d "$d" ]; then corpora+=("$d"); fi
  done
  mkdir -p "fuzz/corpus/$t"
  echo "--- fuzz $t for ${seconds}s"
  # Limits: 10 s per input (a hang), 256 MB per allocation and 2 GB in all (a lying length).
  cargo fuzz run "${build_flags[@]}" "$t" "${corpora[@]}" -- \
    -dict="$(dict_for "$t")" -max_total_time="$seconds" -timeout=10 \
    -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
    awk '!/^#[0-9]+[[:space:]]+(NEW|REDUCE)/ && !/^\tNEW_FUNC/ && !/^".*" # Uses: [0-9]+$/'
done
