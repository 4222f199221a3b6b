#!/usr/bin/env bash
# Install what the build and the tests need on a fresh Debian 12 machine, then check
# that every tool we promise is there and runs. Idempotent: packages already present
# are skipped. Needs root (or sudo).
#
# Machines of our kind come with some tools preinstalled in other versions (qemu-utils
# 10.0 from bookworm-backports). Installing qemu-system-x86 7.2 from bookworm beside it
# makes apt remove qemu-utils, so the qemu packages come from bookworm-backports, as
# one matching set, and the tool check at the end catches anything apt took away.
set -euo pipefail

# Debian packages the tests start or call for real.
PACKAGES=(
    python3                  # ci/gen-inventory.py (benchmarks)
    python3-yaml             # render tests read the rendered YAML back with PyYAML
    python3-jinja2           # render tests render Pigsty's own Patroni templates
    postgresql-15            # render tests: the rendered pg_hba/parameters in a throwaway cluster
    postgresql-15-repack     # pg_repack, one of pg_default_extensions (created in template1)
    prometheus-postgres-exporter  # run with the rendered DSN against a throwaway cluster
    patroni                  # patroni --validate-config
    python3-psycopg2
    python3-etcd
    pgbouncer                # started on loopback with the rendered config
    haproxy                  # haproxy -c -f
    pgbackrest
    etcd-server              # etcd 3.4
    etcd-client
    redis-server
    prometheus-redis-exporter  # scrapes a redis started with the rendered settings
    prometheus               # promtool check config
    prometheus-alertmanager  # amtool check-config
    prometheus-blackbox-exporter  # pings with the rendered probe modules
    prometheus-pushgateway   # takes a push with the rendered arguments
    systemd-journal-remote   # a journal entry shipped and received through the rendered units
    nginx                    # nginx -t and a real start on loopback (render_modules)
    chrony
    cron                     # node_crontab / pg_crontab fire for real (tests/cron.rs)
    iputils-arping           # the VIP callback announces the VIP (tests/vip.rs)
    keepalived               # the node VIP moves between two namespaces (tests/node_vip.rs)
    sudo                     # visudo -c on the VIP callback's sudoers rule
    systemd                  # systemd-analyze verify
    mmdebstrap               # image layers
    apt-utils                # apt-ftparchive: the signed test repository on loopback (apt_repo)
    gpg                      # signs that repository
    openssl                  # checks the fleet CA's chain and serves a handshake (tests/pki.rs)
    xz-utils                 # xz -dc of repositories' Packages.xz
    squashfs-tools           # mksquashfs (PXE root)
    e2fsprogs                # mke2fs -d, debugfs (ext4 root)
    zstd                     # tar --zstd in the image tests
    iproute2                 # network namespaces of the boot tests and the lab
    cloud-init               # cloud-init schema on the rendered seed
    ovmf                     # UEFI firmware for the boot tests
    openssh-client           # ssh, ssh-keygen: the lab's operator reaches its nodes (lab ssh, lab update)
    openssh-server           # sshd on loopback: the rollout's russh transport meets a real server (tests/rollout_ssh.rs)
    dnsmasq-base             # pigsty serve --dhcp: proxy DHCP and TFTP (tests/serve.rs)
    ipxe                     # the iPXE binaries serve's TFTP hands out
    curl                     # a TFTP client for tests/serve.rs
    isc-dhcp-client          # dhclient asks serve --dhcp-addresses for a lease (tests/serve.rs)
)
# One matching set from bookworm-backports (see the header).
QEMU_PACKAGES=(qemu-utils qemu-system-x86)
BACKPORTS=bookworm-backports

# command, and the arguments that make it print its version (or usage) and exit 0.
TOOLS=(
    "python3 --version"
    "psql --version"
    "/usr/lib/postgresql/15/bin/postgres --version"
    "patroni --version"
    "pgbouncer --version"
    "haproxy -v"
    "pgbackrest version"
    "etcd --version"
    "etcdctl version"
    "redis-server --version"
    "promtool --version"
    "amtool --version"
    "prometheus-redis-exporter --version"
    "prometheus-blackbox-exporter --version"
    "prometheus-pushgateway --version"
    "/usr/lib/systemd/systemd-journal-remote --version"
    "/usr/lib/systemd/systemd-journal-upload --version"
    "nginx -v"
    "chronyd --version"
    "systemd-analyze --version"
    "mmdebstrap --version"
    "apt-ftparchive --version"
    "gpg --version"
    "openssl version"
    "xz --version"
    "mksquashfs -version"
    "mke2fs -V"
    "debugfs -V"
    "e2fsck -V"
    "dumpe2fs -V"
    "qemu-img --version"
    "qemu-io --version"
    "qemu-system-x86_64 --version"
    "zstd --version"
    "ip -V"
    "ssh -V"
    "keepalived --version"
    "cloud-init --version"
)
FILES=(/usr/sbin/sshd /usr/sbin/dnsmasq /usr/sbin/dhclient /usr/bin/curl /usr/lib/ipxe/undionly.kpxe /usr/lib/ipxe/ipxe.efi /usr/share/OVMF/OVMF_CODE_4M.fd /usr/share/OVMF/OVMF_VARS_4M.fd /usr/sbin/cron /usr/bin/arping /usr/sbin/visudo)

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "ok installed"; }
export DEBIAN_FRONTEND=noninteractive

missing=()
for p in "${PACKAGES[@]}"; do installed "$p" || missing+=("$p"); done
qemu_missing=()
for p in "${QEMU_PACKAGES[@]}"; do installed "$p" || qemu_missing+=("$p"); done

if [ ${#missing[@]} -gt 0 ] || [ ${#qemu_missing[@]} -gt 0 ]; then
    echo "ci/setup.sh: installing ${missing[*]} ${qemu_missing[*]}" >&2
    if [ ${#qemu_missing[@]} -gt 0 ] && ! apt-cache policy 2>/dev/null | grep -q " $BACKPORTS/main"; then
        as_root tee /etc/apt/sources.list.d/pigsty-backports.sources >/dev/null <<EOF
Types: deb
URIs: http://deb.debian.org/debian
Suites: $BACKPORTS
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    fi
    as_root apt-get update -q
    # Packages must not start their services on this machine (tests start their own
    # on loopback), and Debian must not create the 15/main cluster on port 5432.
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod +x /usr/sbin/policy-rc.d
    trap 'as_root rm -f /usr/sbin/policy-rc.d' EXIT
    as_root apt-get install -y -q --no-install-recommends postgresql-common
    as_root sed -i 's/^#\?\s*create_main_cluster.*/create_main_cluster = false/' /etc/postgresql-common/createcluster.conf
    if [ ${#missing[@]} -gt 0 ]; then
        as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
    fi
    # Both from backports in one transaction, so apt never pairs versions that
    # break each other (qemu-utils 10 Breaks qemu-system-common < 8); -t takes their
    # dependencies (qemu-system-common, seabios, ...) from backports too.
    as_root apt-get install -y -q --no-install-recommends -t "$BACKPORTS" "${QEMU_PACKAGES[@]}"
fi

if ! command -v cargo >/dev/null; then
    echo "ci/setup.sh: cargo not found: install a Rust toolchain >= 1.85 (rustup) first" >&2
    exit 1
fi

# Every promised tool must be found and must run, whatever apt did above.
broken=()
for t in "${TOOLS[@]}"; do
    read -r -a argv <<<"$t"
    if ! out=$("${argv[@]}" 2>&1 </dev/null); then
        broken+=("${argv[0]} (\`$t\` failed: $(printf '%s' "$out" | tail -n1))")
    fi
done
for f in "${FILES[@]}"; do [ -r "$f" ] || broken+=("$f (missing)"); done
if [ ${#broken[@]} -gt 0 ]; then
    printf 'ci/setup.sh: a promised tool is missing or does not run: %s\n' "${broken[@]}" >&2
    exit 1
fi
