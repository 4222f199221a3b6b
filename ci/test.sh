#!/usr/bin/env bash
# The test command (README): set up the machine, then run every test tier.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ci/setup.sh
cargo test --locked
