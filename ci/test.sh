#!/usr/bin/env bash
# The test command (README): set up the machine, then run every test tier.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ci/setup.sh
# Every tier: plain tests, then the ignored ones (root, images, VMs). The layer
# cache stays inside target/ so one CI run builds each layer once.
export PIGSTY_CACHE=${PIGSTY_CACHE:-$PWD/target/pigsty-cache}
# Every test binary first: the two runs below share them.
cargo test --locked --no-run
# The lab e2e (tests/lab.rs: three VMs under TCG, about 45 minutes, much of it
# waiting on them) runs beside every other test binary rather than after them,
# its lines prefixed `lab | `. Both share the layer cache, whose entries are built
# once under a lock (the second asker waits and finds it made).
cargo test --locked --test lab -- --include-ignored \
    > >(sed -u 's/^/lab | /') 2>&1 &
lab=$!
trap 'kill "$lab" 2>/dev/null || true' INT TERM
targets=(--lib --bins --examples)
for f in tests/*.rs; do
    name=$(basename "$f" .rs)
    [ "$name" = lab ] || targets+=(--test "$name")
done
others=0
cargo test --locked --no-fail-fast "${targets[@]}" -- --include-ignored || others=$?
cargo test --locked --doc || others=$?
# The other binaries are done, the lab goes on for half an hour more: the cached A/B
# base disks of the image tests are linked from nowhere now (the lab's are linked
# from its images/_roots), so they go, with their offsets, to leave the lab the
# disk (a CI machine's is shared). One used or made in the last 2 minutes stays.
find "$PIGSTY_CACHE/ab" -maxdepth 1 -name '*.ab.raw' -links 1 -mmin +2 2>/dev/null |
    while read -r base; do
        echo "ci: removing $base (no build links it any more)"
        rm -f -- "$base" "${base%.ab.raw}.ab.json"
    done || true
e2e=0
wait "$lab" || e2e=$?
echo "tests: the other binaries exited $others, the lab e2e $e2e"
[ "$others" -eq 0 ] && [ "$e2e" -eq 0 ]
