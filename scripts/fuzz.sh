#!/usr/bin/env bash
# `make fuzz`: fuzzes `taskrun run`'s input parser (the cargo-fuzz target in fuzz/) for
# FUZZ_SECONDS, 300 by default. It starts from the seed corpus in fuzz/corpus/input and keeps
# what it learns in fuzz/work/input (gitignored) for the next run; a crash lands in
# fuzz/artifacts/input and fails the run.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root/fuzz"

target=input
seconds="${FUZZ_SECONDS:-300}"

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  log "installing cargo-fuzz $CARGO_FUZZ_VERSION"
  cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# cargo-fuzz asks rustc for nightly-only flags (-Zsanitizer=address and the coverage passes);
# RUSTC_BOOTSTRAP lets the stable toolchain take them, and stable ships the ASan runtime.
export RUSTC_BOOTSTRAP=1
log "building the fuzz target $target (release, instrumented: the first build takes a while)"
cargo fuzz build "$target"
mkdir -p "work/$target"
log "fuzzing $target for ${seconds}s"
cargo fuzz run "$target" "work/$target" "corpus/$target" -- \
  -max_total_time="$seconds" -dict=input.dict
