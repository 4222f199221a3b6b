#!/usr/bin/env python3
"""Generate a large, deterministic Pigsty inventory for benchmarks.

usage: gen-inventory.py N_CLUSTERS OUT.yml

Layout (N_CLUSTERS >= 1):
  10.10.0.10             infra-1, etcd-1, minio-1 (the admin node)
  pg-cNNNN (i = 1..N)    three nodes 10.{20 + i // 256}.{i % 256}.{11,12,13}
                         seq 1 primary, seq 2 replica, seq 3 offline replica
  etcd-2, etcd-3         on the first two PostgreSQL nodes (10.20.1.11, 10.20.1.12)

So N = 333 gives 999 PostgreSQL nodes + 1 infra node = 1000 nodes. Up to
(256 - 20) * 256 - 1 clusters fit the address plan.

The output is an Ansible YAML inventory (`ansible-inventory -i OUT.yml --list`
accepts it). Same arguments, same bytes: no timestamps, no randomness, fixed
key order. Python 3 standard library only; the file is written to a temporary
sibling and renamed into place.
"""

import os
import re
import sys

ADMIN_IP = "10.10.0.10"
FIRST_PG_OCTET2 = 20


def pg_ip(cluster, seq):
    """IP of node `seq` (1..3) of cluster number `cluster` (1-based)."""
    return "10.%d.%d.%d" % (FIRST_PG_OCTET2 + cluster // 256, cluster % 256, 10 + seq)


def build(n):
    """The inventory as plain dicts/lists (insertion order is output order)."""
    children = {}
    children["infra"] = {"hosts": {ADMIN_IP: {"infra_seq": 1}}}
    children["etcd"] = {
        "hosts": {
            ADMIN_IP: {"etcd_seq": 1},
            pg_ip(1, 1): {"etcd_seq": 2},
            pg_ip(1, 2): {"etcd_seq": 3},
        },
        "vars": {"etcd_cluster": "etcd"},
    }
    children["minio"] = {
        "hosts": {ADMIN_IP: {"minio_seq": 1}},
        "vars": {"minio_cluster": "minio"},
    }
    for i in range(1, n + 1):
        tag = "c%04d" % i
        name = "pg-" + tag
        user = "dbuser_" + tag
        children[name] = {
            "hosts": {
                pg_ip(i, 1): {"pg_seq": 1, "pg_role": "primary"},
                pg_ip(i, 2): {"pg_seq": 2, "pg_role": "replica"},
                pg_ip(i, 3): {"pg_seq": 3, "pg_role": "replica", "pg_offline_query": True},
            },
            "vars": {
                "pg_cluster": name,
                "pg_users": [
                    {
                        "name": user,
                        "password": "DBUser.%s" % tag.upper(),
                        "pgbouncer": True,
                        "roles": ["dbrole_readwrite"],
                        "comment": "business user of %s" % name,
                    },
                ],
                "pg_databases": [
                    {
                        "name": "db_" + tag,
                        "owner": user,
                        "comment": "business database of %s" % name,
                        "extensions": [{"name": "pg_stat_statements"}],
                    },
                ],
                "pg_conf": "oltp.yml",
                "pg_libs": "pg_stat_statements, auto_explain",
                "node_crontab": ["00 01 * * * postgres /pg/bin/pg-backup full"],
            },
        }
    all_vars = {
        "version": "v3.1.0",
        "admin_ip": ADMIN_IP,
        "region": "default",
        "infra_portal": {
            "home": {"domain": "h.pigsty"},
            "grafana": {"domain": "g.pigsty", "endpoint": "${admin_ip}:3000", "websocket": True},
            "prometheus": {"domain": "p.pigsty", "endpoint": "${admin_ip}:9090"},
            "alertmanager": {"domain": "a.pigsty", "endpoint": "${admin_ip}:9093"},
            "minio": {"domain": "m.pigsty", "endpoint": "${admin_ip}:9001", "scheme": "https", "websocket": True},
        },
        "node_tune": "oltp",
        "node_timezone": "UTC",
        "node_etc_hosts": ["${admin_ip} h.pigsty a.pigsty p.pigsty g.pigsty m.pigsty"],
        # What this machine's registries can build (ci/bench.sh fleet builds every
        # node): the Debian archive alone, so no Grafana (Pigsty's infra repository)
        # and the PostgreSQL major Debian gives (17 on Debian 13).
        "node_repo_modules": "node",
        "grafana_enabled": False,
        "pg_rto": "norm",
        "pg_rpo": 1048576,
        "pg_packages": ["pgsql-main", "pgsql-common"],
        "pgbackrest_method": "minio",
        "patroni_watchdog_mode": "off",
    }
    return {"all": {"children": children, "vars": all_vars}}


# ---- a small, deterministic YAML emitter (block style, flow for small leaves) ----

_PLAIN = re.compile(r"^[A-Za-z_/][A-Za-z0-9_./@-]*$")
_IPV4 = re.compile(r"^\d{1,3}(\.\d{1,3}){3}$")
_RESERVED = {"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"}


def scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, int):
        return str(v)
    s = str(v)
    if _IPV4.match(s) or (_PLAIN.match(s) and s.lower() not in _RESERVED):
        return s
    return "'" + s.replace("'", "''") + "'"


def is_leaf(v):
    return not isinstance(v, (dict, list))


def flow(v):
    """Flow style for a dict/list whose members are scalars or such flows."""
    if isinstance(v, dict):
        return "{ " + ", ".join("%s: %s" % (scalar(k), flow(x)) for k, x in v.items()) + " }" if v else "{}"
    if isinstance(v, list):
        return "[ " + ", ".join(flow(x) for x in v) + " ]" if v else "[]"
    return scalar(v)


def flow_ok(v, depth=0):
    if is_leaf(v):
        return True
    if depth >= 2:
        return False
    items = v.values() if isinstance(v, dict) else v
    return all(flow_ok(x, depth + 1) for x in items) and len(flow(v)) <= 100


def emit(v, indent, out):
    pad = "  " * indent
    if isinstance(v, dict):
        for k, x in v.items():
            if is_leaf(x) or flow_ok(x):
                out.append("%s%s: %s" % (pad, scalar(k), flow(x)))
            else:
                out.append("%s%s:" % (pad, scalar(k)))
                emit(x, indent + 1, out)
    else:
        for x in v:
            if is_leaf(x) or flow_ok(x):
                out.append("%s- %s" % (pad, flow(x)))
            else:
                # "- first: key" then the other keys aligned under it
                start = len(out)
                emit(x, indent + 1, out)
                out[start] = pad + "- " + out[start][len(pad) + 2:]


def main(argv):
    if len(argv) != 3 or not argv[1].isdigit():
        sys.stderr.write("usage: gen-inventory.py N_CLUSTERS OUT.yml\n")
        return 2
    n = int(argv[1])
    if not 1 <= n < (256 - FIRST_PG_OCTET2) * 256:
        sys.stderr.write("gen-inventory.py: N_CLUSTERS must be between 1 and %d\n"
                         % ((256 - FIRST_PG_OCTET2) * 256 - 1))
        return 2
    out_path = argv[2]
    lines = [
        "# Generated by ci/gen-inventory.py %d: %d PostgreSQL clusters, %d nodes. Do not edit."
        % (n, n, 3 * n + 1),
        "---",
    ]
    emit(build(n), 0, lines)
    text = "\n".join(lines) + "\n"
    tmp = "%s.tmp.%d" % (out_path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, out_path)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
