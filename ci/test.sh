#!/usr/bin/env bash
# The test command (README): set up the machine, then run every test tier.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ci/setup.sh
# Every tier: plain tests, then the ignored ones (root, images, VMs). The layer
# cache stays inside target/ so one CI run builds each layer once.
export PIGSTY_CACHE=${PIGSTY_CACHE:-$PWD/target/pigsty-cache}
cargo test --locked --no-fail-fast -- --include-ignored
