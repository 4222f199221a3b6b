#!/usr/bin/env bash
# Benchmarks for pigsty, each side by side with the tool it replaces.
#
#   ci/bench.sh            run every benchmark
#   ci/bench.sh plan ...   run only the named ones (see BENCHES below)
#
# Results go to target/bench/<name>.json (hyperfine's JSON) and <name>.md.
# Tools are installed only from package registries: hyperfine from Debian
# (apt-get), ansible-core from PyPI into target/bench/venv.
#
# Knobs (environment): BENCH_WARMUP (2), BENCH_RUNS (10),
# ANSIBLE_CORE_SPEC (pip requirement, default "ansible-core==2.19.*"),
# BENCH_PIGSTY (benchmark this pigsty binary and skip cargo build).
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

BENCHES=(plan render)

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

# ---- main --------------------------------------------------------------------

main() {
    local selected=("$@") name
    [ ${#selected[@]} -gt 0 ] || selected=("${BENCHES[@]}")
    for name in "${selected[@]}"; do
        case " ${BENCHES[*]} " in
            *" $name "*) ;;
            *) usage ;;
        esac
    done

    mkdir -p "$OUT"
    build_pigsty
    ensure_hyperfine
    case " ${selected[*]} " in *" plan "*) ensure_ansible ;; esac
    log "$(hyperfine --version), $(nproc) CPUs"

    for name in "${selected[@]}"; do
        log "benchmark: $name"
        "bench_$name"
    done
}

main "$@"
