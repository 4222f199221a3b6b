#!/usr/bin/env bash
# Install what the build and the tests need on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped. Needs root (or sudo).
set -euo pipefail

# Debian packages the tests start or call for real.
PACKAGES=(
    python3            # ci/gen-inventory.py (benchmarks)
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ci/setup.sh: installing ${missing[*]}" >&2
    as_root apt-get update -q
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "ci/setup.sh: cargo not found: install a Rust toolchain >= 1.85 (rustup) first" >&2
    exit 1
fi
