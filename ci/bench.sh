#!/usr/bin/env bash
# Benchmarks for pigsty, each side by side with the tool it replaces.
#
#   ci/bench.sh            run the quick ones: plan and render
#   ci/bench.sh NAME ...   run the named ones (see BENCHES below), e.g. `lab`
#
# Results go to target/bench/<name>.json (hyperfine's JSON) and <name>.md.
# Tools are installed only from package registries: hyperfine from Debian
# (apt-get), ansible-core from PyPI into target/bench/venv.
#
# Knobs (environment): BENCH_WARMUP (2), BENCH_RUNS (10),
# ANSIBLE_CORE_SPEC (pip requirement, default "ansible-core==2.19.*"),
# BENCH_PIGSTY (benchmark this pigsty binary and skip cargo build),
# BENCH_CACHE (layer cache of the image benchmarks; default target/pigsty-cache, the
# tests' own, warm for the image-test node).
#
# The image benchmarks need root, mmdebstrap and the Debian mirror (for layers not
# cached yet): image-cold builds the pg-test primary from an empty cache (one run,
# minutes); image-warm rebuilds after changing one node variable; image-all is
# `build-image --all` on inventory/sandbox.yml against one build per node; fleet is
# `build-image --all --format bundle` on the generated 1,000-node inventory (shared
# roots and node bundles) against full builds of a sample of its nodes; mkosi
# builds the pg-test primary's package set with Debian's mkosi.
#
# To add a benchmark: write a function bench_NAME and add NAME to BENCHES.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$ROOT/target/bench
PIGSTY=${BENCH_PIGSTY:-$ROOT/target/release/pigsty}
VENV=$OUT/venv
WARMUP=${BENCH_WARMUP:-2}
RUNS=${BENCH_RUNS:-10}
ANSIBLE_CORE_SPEC=${ANSIBLE_CORE_SPEC:-ansible-core==2.19.*}

BENCHES=(plan render image-cold image-warm image-all fleet mkosi lab)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    printf 'usage: ci/bench.sh [%s]...\n' "$(IFS='|'; echo "${BENCHES[*]}")" >&2
    exit 2
}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# ---- tools -------------------------------------------------------------------

ensure_hyperfine() {
    command -v hyperfine >/dev/null && return
    log "installing hyperfine (apt-get)"
    # A stale package list makes the install fail: refresh once and retry.
    as_root apt-get install -y hyperfine \
        || { as_root apt-get update && as_root apt-get install -y hyperfine; }
}

# Puts ansible-inventory on PATH: the one already installed, else a venv.
ensure_ansible() {
    if [ -x "$VENV/bin/ansible-inventory" ]; then
        export PATH=$VENV/bin:$PATH
        return
    fi
    command -v ansible-inventory >/dev/null && return
    log "installing $ANSIBLE_CORE_SPEC into $VENV (pip)"
    if ! python3 -m venv "$VENV"; then
        # Debian's system python needs python3-venv for ensurepip.
        rm -rf "$VENV"
        as_root apt-get install -y python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "$ANSIBLE_CORE_SPEC"
    export PATH=$VENV/bin:$PATH
}

build_pigsty() {
    if [ -n "${BENCH_PIGSTY:-}" ]; then
        [ -x "$PIGSTY" ] || die "BENCH_PIGSTY=$PIGSTY is not executable"
        return
    fi
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release)
    [ -x "$PIGSTY" ] || die "no binary at $PIGSTY after cargo build --release"
}

# gen_inventory N_CLUSTERS -> prints the path of the (cached) inventory file.
gen_inventory() {
    local n=$1 file
    file=$OUT/inventory-$((3 * n + 1)).yml
    python3 "$ROOT/ci/gen-inventory.py" "$n" "$file"
    printf '%s\n' "$file"
}

# ---- reporting ---------------------------------------------------------------

# report NAME: print the mean of each command from target/bench/NAME.json.
report() {
    python3 - "$OUT/$1.json" <<'EOF'
import json, sys
results = json.load(open(sys.argv[1]))["results"]
for r in results:
    print("%-22s mean %8.1f ms  ± %6.1f ms  (min %.1f, max %.1f, %d runs)" % (
        r["command"], r["mean"] * 1e3, (r["stddev"] or 0) * 1e3,
        r["min"] * 1e3, r["max"] * 1e3, len(r["times"])))
if len(results) == 2:
    a, b = results
    print("%s is %.1fx faster than %s" % (a["command"], b["mean"] / a["mean"], b["command"])
          if a["mean"] <= b["mean"] else
          "%s is %.1fx faster than %s" % (b["command"], a["mean"] / b["mean"], a["command"]))
EOF
    log "results: $OUT/$1.json $OUT/$1.md"
}

# ---- benchmarks --------------------------------------------------------------

# plan: resolve and plan a 1,000-node inventory (333 three-node PostgreSQL
# clusters + 1 infra node) versus ansible-inventory resolving the same file.
bench_plan() {
    local inv q_pigsty q_inv
    inv=$(gen_inventory 333)
    q_pigsty=$(printf '%q' "$PIGSTY")
    q_inv=$(printf '%q' "$inv")

    # One checked run of each first, so a failure shows its own message
    # rather than hyperfine's "command terminated with non-zero exit code".
    log "checking: pigsty -i $inv plan --all --json"
    "$PIGSTY" -i "$inv" plan --all --json >"$OUT/plan-1000.pigsty.out" \
        || die "pigsty plan --all --json failed on $inv"
    log "checking: ansible-inventory -i $inv --list"
    ansible-inventory -i "$inv" --list 2>/dev/null >"$OUT/plan-1000.ansible.out" \
        || die "ansible-inventory failed on $inv"
    python3 -c 'import json, sys; n = len(json.load(open(sys.argv[1]))["_meta"]["hostvars"]); print("ansible-inventory sees %d hosts" % n); sys.exit(n != 1000)' \
        "$OUT/plan-1000.ansible.out" || die "expected 1000 hosts in $inv"

    hyperfine --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$OUT/plan-1000.json" \
        --export-markdown "$OUT/plan-1000.md" \
        -n "pigsty plan" "$q_pigsty -i $q_inv plan --all --json >/dev/null" \
        -n "ansible-inventory" "ansible-inventory -i $q_inv --list >/dev/null 2>&1"
    report plan-1000
}

# render: render every node of the 1,000-node inventory, in memory (inventory
# check, for scale, and plan --all, which renders every file to hash it) and
# written out as trees (render --all --out DIR).
bench_render() {
    local inv q_pigsty q_inv q_dir
    inv=$(gen_inventory 333)
    q_pigsty=$(printf '%q' "$PIGSTY")
    q_inv=$(printf '%q' "$inv")
    q_dir=$(printf '%q' "$OUT/render-1000")
    "$PIGSTY" -i "$inv" render --all --out "$OUT/render-1000" >/dev/null \
        || die "pigsty render --all failed on $inv"
    hyperfine --warmup "$WARMUP" --runs "$RUNS" \
        --export-json "$OUT/render-1000.json" \
        --export-markdown "$OUT/render-1000.md" \
        -n "inventory check" "$q_pigsty -i $q_inv inventory check 2>/dev/null" \
        -n "render in memory (plan --all)" "$q_pigsty -i $q_inv plan --all --json >/dev/null 2>&1" \
        -n "render --all --out" "$q_pigsty -i $q_inv render --all --out $q_dir >/dev/null 2>&1"
    report render-1000
}

# ---- image benchmarks --------------------------------------------------------

IMG_CACHE=${BENCH_CACHE:-$ROOT/target/pigsty-cache}
SANDBOX=$ROOT/inventory/sandbox.yml
FIXTURE=$ROOT/tests/fixtures/image-node.yml

# bumped_inventory SRC HOST_IP DEST COUNTER: DEST is SRC with one variable of
# HOST_IP's host (node_ntp_servers) set to a value no run used before.
bumped_inventory() {
    python3 - "$@" <<'EOF'
import re, sys
src, ip, dest, counter = sys.argv[1:]
try:
    n = int(open(counter).read()) + 1
except (OSError, ValueError):
    n = 1
open(counter, "w").write(str(n))
text = open(src).read()
pattern = re.compile(r"((?<![\d.])%s:\s*\{\s*)" % re.escape(ip))
if not pattern.search(text):
    sys.exit("no inline host entry for %s in %s" % (ip, src))
server = "server 10.%d.%d.%d iburst" % (n >> 16 & 255, n >> 8 & 255, n & 255)
open(dest, "w").write(pattern.sub(r"\g<1>node_ntp_servers: ['%s'], " % server, text, count=1))
EOF
}

# The mmdebstrap command of a node's package layer by hand (ci/same-set.py).
same_set() {
    local plan
    plan=$("$PIGSTY" -i "$SANDBOX" plan --role "$1" --json) || die "plan --role $1 failed"
    "$ROOT/ci/same-set.py" "$plan" "$ROOT" "$OUT/mmdebstrap-$1.tar"
}

# image-cold: the pg-test primary (rootfs and raw, Debian 13) from an empty cache:
# the mmdebstrap layer, the ext4 base, every zstd frame; beside it, mmdebstrap
# alone making the same package set (one --prepare per command: the cold cache
# must survive the second for the warm benchmarks). 2026-11-30, this machine:
# build-image 145.8 and 155.6 s, mmdebstrap alone 136.4 and 131.8 s. What it cached is then kept
# in BENCH_CACHE for the warm benchmarks.
bench_image_cold() {
    local cold=$OUT/cache-cold q
    q=$(printf '%q' "$PIGSTY")
    hyperfine --runs 1 \
        --export-json "$OUT/image-cold.json" --export-markdown "$OUT/image-cold.md" \
        --prepare "rm -rf $(printf '%q' "$cold") $(printf '%q' "$OUT/img-cold")" \
        --prepare "rm -f $(printf '%q' "$OUT/mmdebstrap-pg-test-1.tar")" \
        -n "cold: build-image pg-test-1 rootfs,raw" \
        "PIGSTY_CACHE=$(printf '%q' "$cold") $q -i $(printf '%q' "$SANDBOX") build-image --allow-default-passwords --role pg-test-1 --format rootfs,raw --out $(printf '%q' "$OUT/img-cold") >/dev/null 2>&1" \
        -n "mmdebstrap alone: same base and packages, to a tar" \
        "$(same_set pg-test-1) >/dev/null 2>&1"
    report image-cold
    mkdir -p "$IMG_CACHE"
    cp -aln "$cold/." "$IMG_CACHE/"
}

# image-warm: rebuild one node after changing one of its variables (each run a
# value never built before), for the image-test node and the pg-test primary.
bench_image_warm() {
    local q inv src ip node name bump
    q=$(printf '%q' "$PIGSTY")
    for name in "img-etcd-1 $FIXTURE 10.99.0.11" "pg-test-1 $SANDBOX 10.10.10.11"; do
        read -r node src ip <<<"$name"
        inv=$OUT/warm-$node.yml
        bumped_inventory "$src" "$ip" "$inv" "$OUT/warm-$node.counter"
        log "warming the cache for $node"
        PIGSTY_CACHE=$IMG_CACHE "$PIGSTY" -i "$inv" build-image --allow-default-passwords --role "$node" \
            --format rootfs,raw --out "$OUT/img-warm" >/dev/null 2>&1 \
            || die "build-image --allow-default-passwords --role $node failed (cache $IMG_CACHE)"
        bump="bash -c 'source $(printf '%q' "$ROOT/ci/bench.sh") --functions-only && bumped_inventory $(printf '%q' "$src") $ip $(printf '%q' "$inv") $(printf '%q' "$OUT/warm-$node.counter")'"
        hyperfine --warmup 1 --runs "$RUNS" --prepare "$bump" \
            --export-json "$OUT/image-warm-$node.json" \
            --export-markdown "$OUT/image-warm-$node.md" \
            -n "$node rootfs, one variable changed" \
            "PIGSTY_CACHE=$(printf '%q' "$IMG_CACHE") $q -i $(printf '%q' "$inv") build-image --allow-default-passwords --role $node --format rootfs --out $(printf '%q' "$OUT/img-warm") >/dev/null 2>&1" \
            -n "$node raw, one variable changed" \
            "PIGSTY_CACHE=$(printf '%q' "$IMG_CACHE") $q -i $(printf '%q' "$inv") build-image --allow-default-passwords --role $node --format raw --out $(printf '%q' "$OUT/img-warm") >/dev/null 2>&1"
        report "image-warm-$node"
    done
}

# image-all: build-image --all on the sandbox (rootfs and raw, warm cache) against
# one build-image per node, one after the other.
bench_image_all() {
    local q qi qo nodes n singles=""
    q=$(printf '%q' "$PIGSTY")
    qi=$(printf '%q' "$SANDBOX")
    qo=$(printf '%q' "$OUT/img-all")
    log "warming the cache for every sandbox node"
    PIGSTY_CACHE=$IMG_CACHE "$PIGSTY" -i "$SANDBOX" build-image --allow-default-passwords --all --format rootfs,raw \
        --out "$OUT/img-all" >/dev/null 2>&1 || die "build-image --all failed"
    nodes=$(cd "$OUT/img-all" && ls -d */ | tr -d /) || die "no node directories in $OUT/img-all"
    for n in $nodes; do
        singles+="$q -i $qi build-image --allow-default-passwords --role $n --format rootfs,raw --out $qo >/dev/null 2>&1 && "
    done
    PIGSTY_CACHE=$IMG_CACHE hyperfine --runs "$RUNS" \
        --export-json "$OUT/image-all.json" --export-markdown "$OUT/image-all.md" \
        -n "build-image --all" "$q -i $qi build-image --allow-default-passwords --all --format rootfs,raw --out $qo >/dev/null 2>&1" \
        -n "one build-image per node" "${singles}true"
    report image-all
}

# fleet: build-image --all --format bundle on the 1,000-node inventory (333
# three-node clusters and an infra node): one shared root per package set and a
# bundle per node, warm layers. Against it, full builds (rootfs,raw) of 10 of its
# nodes, one build-image each: a full build per node of the fleet is that times 100.
# Then one run with qcow2 too (a disk per node over its root's shared base disk).
# Checked after each: at most one root per package set, at most 5 MiB per node.
# 2026-12-01, this machine (a niced compile beside it): 27.6 s for the fleet's
# bundles (3 roots, at most 0.88 MiB a node), 36.9 s with qcow2, 82.2 s for the 10
# full builds.
bench_fleet() {
    local inv q qi qo qs sample="" n
    inv=$(gen_inventory 333)
    q=$(printf '%q' "$PIGSTY")
    qi=$(printf '%q' "$inv")
    qo=$(printf '%q' "$OUT/fleet")
    qs=$(printf '%q' "$OUT/fleet-full")
    log "warming the layers and roots of the 1,000-node inventory"
    # Roots of an earlier pigsty binary would count against one per package set.
    rm -rf "$OUT/fleet" "$OUT/fleet-full"
    PIGSTY_CACHE=$IMG_CACHE "$PIGSTY" -i "$inv" build-image --allow-default-passwords --all \
        --format bundle --out "$OUT/fleet" >"$OUT/fleet-warm.log" 2>&1 \
        || die "build-image --all --format bundle failed (see $OUT/fleet-warm.log)"
    fleet_check "$OUT/fleet"
    for n in pg-c0001-1 pg-c0002-2 pg-c0003-3 pg-c0004-1 pg-c0005-2 pg-c0006-3 pg-c0007-1 \
        pg-c0008-2 pg-c0009-3 pg-c0010-1; do
        sample+="$q -i $qi build-image --allow-default-passwords --role $n --format rootfs,raw --out $qs >/dev/null 2>&1 && "
    done
    PIGSTY_CACHE=$IMG_CACHE hyperfine --runs "${BENCH_FLEET_RUNS:-3}" \
        --export-json "$OUT/fleet.json" --export-markdown "$OUT/fleet.md" \
        -n "build-image --all --format bundle (1,000 nodes)" \
        "$q -i $qi build-image --allow-default-passwords --all --format bundle --out $qo >/dev/null 2>&1" \
        -n "full build-image of 10 nodes (x100 for the fleet)" "${sample}true"
    report fleet
    fleet_check "$OUT/fleet"
    rm -rf "$OUT/fleet-full"
    PIGSTY_CACHE=$IMG_CACHE hyperfine --runs 1 \
        --export-json "$OUT/fleet-qcow2.json" \
        -n "build-image --all --format bundle,qcow2 (1,000 nodes)" \
        "$q -i $qi build-image --allow-default-passwords --all --format bundle,qcow2 --out $qo >/dev/null 2>&1"
    report fleet-qcow2
    fleet_check "$OUT/fleet"
}

# fleet_check OUT: what a fleet build wrote is one root (and, with qcow2, one base
# disk) per package set, and at most 5 MiB in each node's directory.
fleet_check() {
    python3 - "$1" <<'PY'
import json, os, sys
out = sys.argv[1]
sets, sizes = set(), {}
for node in os.listdir(out):
    m = os.path.join(out, node, "manifest.json")
    if node.startswith("_") or not os.path.isfile(m):
        continue
    sets.add(json.load(open(m))["layer"]["key"])
    d = os.path.join(out, node)
    # Allocated bytes (a qcow2 is sparse at its end).
    sizes[node] = sum(os.stat(os.path.join(d, f)).st_blocks * 512 for f in os.listdir(d))
roots = os.listdir(os.path.join(out, "_roots"))
ext4 = [r for r in roots if r.endswith(".ext4")]
bases = [r for r in roots if r.endswith(".ab.raw")]
root_bytes = sum(os.stat(os.path.join(out, "_roots", r)).st_blocks * 512 for r in roots)
big = max(sizes.values())
print("%d nodes, %d package sets: %d roots, %d base disks (%.1f GiB); per node at most %.2f MiB, %.1f MiB in all"
      % (len(sizes), len(sets), len(ext4), len(bases), root_bytes / 2**30, big / 2**20, sum(sizes.values()) / 2**20))
if len(ext4) > len(sets) or len(bases) > len(sets):
    sys.exit("fleet: more roots than package sets")
if big > 5 << 20:
    sys.exit("fleet: a node's files take %d bytes, over 5 MiB" % big)
PY
}

# mkosi: Debian's mkosi building the pg-test primary's package set (the layer
# recipe's, read from a manifest of image-cold or image-warm) as a directory tree,
# cold, then warm (its incremental cache keeps the tree after package installation).
bench_mkosi() {
    local pkgs work=$OUT/mkosi cmd m
    command -v mkosi >/dev/null || as_root apt-get install -y mkosi
    for m in "$OUT/img-warm/pg-test-1/manifest.json" "$OUT/img-cold/pg-test-1/manifest.json"; do
        [ -f "$m" ] && break
    done
    [ -f "$m" ] || die "run image-cold or image-warm first (the package set comes from a manifest)"
    pkgs=$(python3 -c 'import json, sys; print(",".join(json.load(open(sys.argv[1]))["layer"]["packages"]))' "$m")
    rm -rf "$work" && mkdir -p "$work"
    cmd="cd $(printf '%q' "$work") && mkosi --force --distribution debian --release bookworm --format directory --incremental --cache $(printf '%q' "$work/cache") --package $(printf '%q' "$pkgs") --output $(printf '%q' "$work/image") build >$(printf '%q' "$work/log") 2>&1"
    hyperfine --runs 1 --prepare "rm -rf $(printf '%q' "$work/cache") $(printf '%q' "$work")/image*" \
        --export-json "$OUT/mkosi-cold.json" -n "mkosi cold (directory)" "$cmd"
    report mkosi-cold
    hyperfine --runs 3 --export-json "$OUT/mkosi-warm.json" -n "mkosi warm (incremental cache)" "$cmd"
    report mkosi-warm
}

# lab: boot-to-ready (first qemu start to every agent done), failover (primary
# VM killed to a new leader; to writes through 5433 again), and rollout (a
# PostgreSQL parameter and an etcd setting taken to the 3 nodes: its time, and the
# longest gap between commits of a writer through haproxy's primary port every
# 100 ms) of the VM lab, as medians over BENCH_LAB_RUNS (3) runs of the lab's
# end-to-end test. Root, qemu,
# and about 20 minutes a run under TCG. Not part of a plain `ci/bench.sh`: name it.
bench_lab() {
    local runs=${BENCH_LAB_RUNS:-3} i
    local figures=$ROOT/target/tmp/lab-figures.json
    rm -rf "$OUT/lab" && mkdir -p "$OUT/lab"
    for i in $(seq 1 "$runs"); do
        log "lab run $i of $runs"
        rm -f "$figures"
        (cd "$ROOT" && cargo test --test lab -- --include-ignored) >&2 \
            || die "the lab's end-to-end test failed (run $i)"
        [ -f "$figures" ] || die "run $i wrote no $figures"
        cp "$figures" "$OUT/lab/run-$i.json"
    done
    lab_medians "$OUT"/lab/run-*.json | tee "$OUT/lab.md"
}

# lab_medians FIGURES.json...: the median of each figure whose key holds `ready`,
# `failover`, `rollout` or `pxe`, over the runs given. Each file is tests/lab.rs's lab-figures.json: one
# JSON object of seconds, e.g. {"boot_to_ready_s": 612.3, "failover_leader_s": 9.1}.
lab_medians() {
    python3 - "$@" <<'PY'
import json, statistics, sys
runs = [json.load(open(p)) for p in sys.argv[1:]]
keys = sorted({k for r in runs for k in r
               if any(w in k for w in ("ready", "failover", "rollout", "pxe"))})
if not keys:
    sys.exit("no ready, failover, rollout or pxe figure in %s" % " ".join(sys.argv[1:]))
print("%-24s %8s   %s" % ("lab figure (s)", "median", "runs"))
for key in keys:
    vals = [float(r[key]) for r in runs if key in r]
    print("%-24s %8.1f   %s" % (key, statistics.median(vals), " ".join("%.1f" % v for v in vals)))
PY
}

# ---- main --------------------------------------------------------------------

main() {
    local selected=("$@") name
    # The lab takes an hour: only when named.
    [ ${#selected[@]} -gt 0 ] || selected=(plan render)
    for name in "${selected[@]}"; do
        case " ${BENCHES[*]} " in
            *" $name "*) ;;
            *) usage ;;
        esac
    done

    mkdir -p "$OUT"
    # The lab times its own steps (cargo test, lab-figures.json): no hyperfine.
    if [ "${selected[*]}" != lab ]; then
        build_pigsty
        ensure_hyperfine
        case " ${selected[*]} " in *" plan "*) ensure_ansible ;; esac
        log "$(hyperfine --version), $(nproc) CPUs"
    fi
    export PIGSTY_LOG=${PIGSTY_LOG:-warn}

    for name in "${selected[@]}"; do
        log "benchmark: $name"
        "bench_${name//-/_}"
    done
}

# `source ci/bench.sh --functions-only` defines the functions (for hyperfine's
# --prepare) and runs nothing.
[ "${1:-}" = "--functions-only" ] || main "$@"
