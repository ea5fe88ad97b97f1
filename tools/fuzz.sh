#!/usr/bin/env bash
# Runs neuralign's libFuzzer targets (docs/fuzzing.md): builds them, replays the seeds and
# the corpus found so far, then fuzzes each target for SECONDS (default 30).
#
#   tools/fuzz.sh [SECONDS] [TARGET...]
#
# The build is cargo-fuzz's (`cargo fuzz build`: address sanitizer, sanitizer coverage,
# release with debug assertions and overflow checks) done with plain cargo, so nothing has
# to be installed first (cargo-fuzz works on the same targets: `cargo fuzz run TARGET`). It
# runs on the default toolchain with RUSTC_BOOTSTRAP=1: the sanitizer flags are
# nightly-only, and CI machines have one stable toolchain and cannot fetch another.
# A crash exits non-zero and leaves the input under fuzz/artifacts/TARGET/.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-30}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(transcript_message transcript_sequence xdf_read edf_read brainvision_read wav_read)

host=$(rustc -vV | sed -n 's/^host: //p')
# cargo-fuzz 0.13's flags. `--target` keeps them off build scripts and proc macros.
export RUSTC_BOOTSTRAP=1
export RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares -Cllvm-args=-sanitizer-coverage-stack-depth \
-Cllvm-args=-simplifycfg-branch-fold-threshold=0 --cfg fuzzing -Zsanitizer=address \
-Cdebug-assertions -Coverflow-checks -Ccodegen-units=1"
unset CARGO_TARGET_DIR   # the fuzz workspace keeps its own (fuzz/target)
cargo build --locked --release --manifest-path fuzz/Cargo.toml --target "$host" \
  $(printf -- '--bin %s ' "${targets[@]}")

dict_for() {
  case $1 in
    xdf_read) echo fuzz/xdf.dict ;;
    edf_read) echo fuzz/edf.dict ;;
    brainvision_read) echo fuzz/brainvision.dict ;;
    wav_read) echo fuzz/wav.dict ;;
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
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  echo "--- fuzz $t for ${seconds}s"
  # Limits: 10 s per input (a hang), 256 MB per allocation and 2 GB in all (a lying length).
  "fuzz/target/$host/release/$t" -artifact_prefix="fuzz/artifacts/$t/" \
    -dict="$(dict_for "$t")" -max_total_time="$seconds" -timeout=10 \
    -malloc_limit_mb=256 -rss_limit_mb=2048 -print_final_stats=1 "${corpora[@]}" 2>&1 |
    awk '!/^#[0-9]+[[:space:]]+(NEW|REDUCE)/ && !/^\tNEW_FUNC/ && !/^".*" # Uses: [0-9]+$/'
done
