#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ one after the other, each for a given time (default 60 s):
#   scripts/fuzz.sh [--seconds N] [target...]     (targets: key config names rows durations)
#
# cargo-fuzz (libFuzzer) needs nightly features: on a stable toolchain it is run with
# RUSTC_BOOTSTRAP=1. It is installed with `cargo install` when missing. Each target starts from
# its committed seeds in fuzz/corpus/<target>/ and grows a working corpus in
# target/fuzz/corpus/<target>/, so the committed one stays small; a crash is written to
# fuzz/artifacts/<target>/ and stops the run with exit 1. To keep a new input as a seed, copy it
# into fuzz/corpus/<target>/ (tests/fuzz_corpus.rs runs every seed on stable Rust).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
targets=()
while (($#)); do
    case "$1" in
        --seconds) seconds="$2"; shift 2 ;;
        --seconds=*) seconds="${1#*=}"; shift ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "unknown option $1" >&2; exit 2 ;;
        *) targets+=("$1"); shift ;;
    esac
done
if ((${#targets[@]} == 0)); then
    targets=(key config names rows durations)
fi

if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

export RUSTC_BOOTSTRAP=1
# No sanitizer: the code under test is safe Rust, and without one a run makes several times
# the executions. Debug assertions and overflow checks stay on (cargo-fuzz's default).
fuzz=(cargo fuzz run --sanitizer none --target-dir target/fuzz)
for target in "${targets[@]}"; do
    work="target/fuzz/corpus/$target"
    mkdir -p "$work"
    echo "fuzzing $target for ${seconds}s" >&2
    "${fuzz[@]}" "$target" "$work" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
done
