#!/usr/bin/env bash
# Fast feedback without any daemon: formatting, clippy, the docs (rustdoc warnings denied), a
# lint of scripts/ by shellcheck, then the unit and middle-tier tests (pure logic, the
# in-memory Docker fake, the scripted API server). `check.sh static` stops before the tests.
set -euo pipefail
# shellcheck source=lib.sh
source "$(dirname "$0")/lib.sh"
cd "$repo_root"

if ! command -v shellcheck >/dev/null 2>&1; then
  [[ $(id -u) == 0 ]] || die "the checks need shellcheck (Debian's shellcheck) and installing it needs root"
  log "installing Debian's shellcheck"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >/dev/null
fi

cargo fmt --check
cargo clippy --all-targets --quiet -- -D warnings
RUSTDOCFLAGS="-D warnings" cargo doc --no-deps --document-private-items --quiet
shellcheck -x scripts/*.sh
[[ "${1:-}" == static ]] || cargo test --lib --quiet
