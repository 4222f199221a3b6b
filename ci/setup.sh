#!/usr/bin/env bash
# Install what the build and the tests need on a fresh Debian 12 machine.
# Idempotent: packages already present are skipped. Needs root (or sudo).
set -euo pipefail

# Debian packages the tests start or call for real.
PACKAGES=(
    python3                  # ci/gen-inventory.py (benchmarks)
    postgresql-15            # render tests: the rendered pg_hba/parameters in a throwaway cluster
    patroni                  # patroni --validate-config
    python3-psycopg2
    python3-etcd
    pgbouncer                # started on loopback with the rendered config
    haproxy                  # haproxy -c -f
    pgbackrest
    etcd-server              # etcd 3.4
    etcd-client
    redis-server
    prometheus               # promtool check config
    prometheus-alertmanager  # amtool check-config
    nginx                    # nginx -t and a real start on loopback (render_modules)
    chrony
    systemd                  # systemd-analyze verify
    mmdebstrap               # image layers
    squashfs-tools           # mksquashfs (PXE root)
    e2fsprogs                # mke2fs -d (ext4 root)
    qemu-utils               # qemu-img (qcow2)
    qemu-system-x86          # boot tests (TCG)
    ovmf                     # UEFI firmware for the boot tests
    zstd                     # tar --zstd in the image tests
    iproute2                 # network namespaces of the boot tests and the lab
    cloud-init               # cloud-init schema on the rendered seed
)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "ci/setup.sh: installing ${missing[*]}" >&2
    as_root apt-get update -q
    # Packages must not start their services on this machine (tests start their own
    # on loopback), and Debian must not create the 15/main cluster on port 5432.
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends postgresql-common
    as_root sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "ci/setup.sh: cargo not found: install a Rust toolchain >= 1.85 (rustup) first" >&2
    exit 1
fi
