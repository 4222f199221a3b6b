//! Hostile inventories, one per class of value an attacker (or a slip) could use to
//! reach a unit file, a config line, a tmpfiles line or a system directory: each is
//! refused by `inventory check`, `render` and `build-image` with exit 2, the file and
//! line of the value and its key, and nothing is written under `--out`. Inputs that
//! are not inventories (a device, a FIFO, a huge file) are refused before reading.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// One node of every module but REDIS, then a REDIS node; each case replaces one line.
const BASE: &str = "all:
  children:
    infra: { hosts: { 10.10.10.10: { infra_seq: 1 } } }
    etcd: { hosts: { 10.10.10.10: { etcd_seq: 1 } }, vars: { etcd_cluster: etcd } }
    minio: { hosts: { 10.10.10.10: { minio_seq: 1 } }, vars: { minio_cluster: minio } }
    pg-meta:
      hosts: { 10.10.10.10: { pg_seq: 1, pg_role: primary } }
      vars:
        pg_cluster: pg-meta
        pg_databases: [ { name: meta, schemas: [ pigsty ] } ]
    redis-ms:
      hosts: { 10.10.10.11: { redis_node: 1, redis_instances: { 6379: {} } } }
      vars: { redis_cluster: redis-ms }
  vars:
    admin_ip: 10.10.10.10
    node_repo_modules: node
    grafana_enabled: false
";

struct Case {
    what: &'static str,
    /// Text replaced in [`BASE`] (must occur), and its replacement.
    from: &'static str,
    to: &'static str,
    /// The key and line the refusal names.
    key: &'static str,
    line: u32,
}

const CASES: &[Case] = &[
    Case {
        what: "a cluster name with a newline (a new [Service] section in minio.service)",
        from: "minio_cluster: minio }",
        to: "minio_cluster: \"minio\\n[Service]\\nExecStartPre=+/bin/sh -c id\" }",
        key: "minio_cluster",
        line: 5,
    },
    Case {
        what: "a nodename holding nginx syntax",
        from: "redis_node: 1,",
        to: "redis_node: 1, nodename: 'x; location / { root /etc; }',",
        key: "nodename",
        line: 12,
    },
    Case {
        what: "a nodename with a slash (one node's tree nested in another's)",
        from: "redis_node: 1,",
        to: "redis_node: 1, nodename: '../../etc',",
        key: "nodename",
        line: 12,
    },
    Case {
        what: "a nodename a PGSQL node does not use",
        from: "pg_seq: 1, pg_role: primary }",
        to: "pg_seq: 1, pg_role: primary, nodename: 'a b' }",
        key: "nodename",
        line: 7,
    },
    Case {
        what: "a redis cluster with spaces (more fields in a tmpfiles line)",
        from: "redis_cluster: redis-ms }",
        to: "redis_cluster: 'redis 0777 root root' }",
        key: "redis_cluster",
        line: 13,
    },
    Case {
        what: "pg_data in /etc",
        from: "pg_cluster: pg-meta\n",
        to: "pg_cluster: pg-meta\n        pg_data: /etc\n",
        key: "pg_data",
        line: 10,
    },
    Case {
        what: "etcd_data in root's home",
        from: "etcd_cluster: etcd }",
        to: "etcd_cluster: etcd, etcd_data: /root/.ssh }",
        key: "etcd_data",
        line: 4,
    },
    Case {
        what: "minio_data at /",
        from: "minio_cluster: minio }",
        to: "minio_cluster: minio, minio_data: / }",
        key: "minio_data",
        line: 5,
    },
    Case {
        what: "a path that climbs out of its directory",
        from: "pg_cluster: pg-meta\n",
        to: "pg_cluster: pg-meta\n        pg_fs_main: /data/../etc\n",
        key: "pg_fs_main",
        line: 10,
    },
    Case {
        what: "a database name with a quote",
        from: "name: meta,",
        to: "name: 'meta\"; DROP',",
        key: "pg_databases[0].name",
        line: 10,
    },
    Case {
        what: "a schema name with a semicolon",
        from: "schemas: [ pigsty ]",
        to: "schemas: [ 'a;b' ]",
        key: "pg_databases[0].schemas[0]",
        line: 10,
    },
    Case {
        what: "a host in two PostgreSQL clusters",
        from: "    redis-ms:\n",
        to: "    pg-other:\n      hosts: { 10.10.10.10: { pg_seq: 2, pg_role: replica } }\n      vars: { pg_cluster: pg-other }\n    redis-ms:\n",
        key: "pg_cluster",
        line: 13,
    },
    Case {
        what: "two services of one node on one port",
        from: "pg_cluster: pg-meta\n",
        to: "pg_cluster: pg-meta\n        pgbouncer_port: 5432\n",
        key: "pgbouncer_port",
        line: 10,
    },
    Case {
        what: "port 0",
        from: "etcd_cluster: etcd }",
        to: "etcd_cluster: etcd, etcd_port: 0 }",
        key: "etcd_port",
        line: 4,
    },
    Case {
        what: "an IP prefix above 32",
        from: "admin_ip: 10.10.10.10\n",
        to: "admin_ip: 10.10.10.10\n    node_ip_prefix: 99\n",
        key: "node_ip_prefix",
        line: 16,
    },
    Case {
        what: "a node_disk that is not a device path",
        from: "admin_ip: 10.10.10.10\n",
        to: "admin_ip: 10.10.10.10\n    node_disk: \"sda; rm\"\n",
        key: "node_disk",
        line: 16,
    },
    Case {
        what: "a value a file cannot carry, found only when it is written",
        from: "admin_ip: 10.10.10.10\n",
        to: "admin_ip: 10.10.10.10\n    haproxy_admin_password: \"a\\nb\"\n",
        key: "haproxy_admin_password",
        line: 16,
    },
];

fn pigsty(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(args)
        .env("PIGSTY_CACHE", "/nonexistent/pigsty-cache")
        .output()
        .unwrap()
}

fn write_case(dir: &Path, case: &Case) -> PathBuf {
    assert!(
        BASE.contains(case.from),
        "{}: `{}` not in BASE",
        case.what,
        case.from
    );
    let path = dir.join("hostile.yml");
    std::fs::write(&path, BASE.replacen(case.from, case.to, 1)).unwrap();
    path
}

#[test]
fn the_base_inventory_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("base.yml");
    std::fs::write(&path, BASE).unwrap();
    let out = pigsty(&["-i", path.to_str().unwrap(), "inventory", "check"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn every_hostile_value_is_refused_at_its_line_and_nothing_is_written() {
    for case in CASES {
        let dir = tempfile::tempdir().unwrap();
        let inv = write_case(dir.path(), case);
        let inv_s = inv.to_str().unwrap();
        let out_dir = dir.path().join("out");
        let out_s = out_dir.to_str().unwrap();
        let runs: [Vec<&str>; 3] = [
            vec!["-i", inv_s, "inventory", "check"],
            vec!["-i", inv_s, "render", "--all", "--out", out_s],
            vec![
                "-i",
                inv_s,
                "build-image",
                "--allow-default-passwords",
                "--role",
                "10.10.10.10",
                "--out",
                out_s,
            ],
        ];
        for args in runs {
            let out = pigsty(&args);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "{} ({args:?}): exit {:?}\n{stderr}",
                case.what,
                out.status.code()
            );
            let at = format!("{inv_s}:{}:", case.line);
            assert!(
                stderr.contains(&at) && stderr.contains(&format!("`{}`", case.key)),
                "{} ({args:?}): no `{at}` with key `{}` in:\n{stderr}",
                case.what,
                case.key
            );
            assert!(
                !out_dir.exists(),
                "{} ({args:?}): {} was written",
                case.what,
                out_dir.display()
            );
        }
    }
}

/// A device, a FIFO and a file larger than any inventory are refused before they
/// are read (a read of /dev/zero would not end; opening a FIFO would block).
#[test]
fn inputs_that_are_not_inventories_are_refused_unread() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("fifo.yml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success(), "mkfifo");
    let big = dir.path().join("big.yml");
    std::fs::write(&big, "a".repeat((5 << 20) as usize)).unwrap();
    for (path, why) in [
        (Path::new("/dev/zero"), "is not a regular file"),
        (fifo.as_path(), "is not a regular file"),
        (big.as_path(), "is larger than 4 MiB"),
    ] {
        let out = pigsty(&["-i", path.to_str().unwrap(), "inventory", "check"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(stderr.contains(why), "{}: {stderr}", path.display());
    }
}

/// A refusal far along a very long line (column 70,000) is reported at its place,
/// exit 2, where the error printer used to panic (its padding stops at 65,535).
#[test]
fn a_refusal_far_along_a_long_line_is_reported_not_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wide.yml");
    let pad = "x".repeat(70_000);
    let line = format!(
        "    pg-x: {{ hosts: {{ 10.10.10.10: {{ pg_seq: 1, pg_role: primary }} }}, vars: {{ comment: '{pad}', pg_cluster: 'bad name' }} }}"
    );
    // The value's column, past 65,535.
    let col = line.find("'bad name'").unwrap() + 1;
    assert!(col > 65_535);
    std::fs::write(
        &path,
        format!("all:\n  children:\n{line}\n  vars: {{ admin_ip: 10.10.10.10 }}\n"),
    )
    .unwrap();
    let out = pigsty(&["-i", path.to_str().unwrap(), "inventory", "check"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr:.2000}");
    assert!(
        stderr.contains(&format!("wide.yml:3:{col}: `pg_cluster`")),
        "{stderr:.2000}"
    );
}

/// `--out` never wipes what pigsty did not write: `render` into a directory holding
/// other files, and `build-image` over a node directory without a build's
/// manifest.json, are exit 2 with those files untouched; a second render replaces
/// the first one's tree.
#[test]
fn an_out_directory_pigsty_did_not_write_is_refused_not_wiped() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("base.yml");
    std::fs::write(&inv, BASE).unwrap();
    let inv = inv.to_str().unwrap();
    let theirs = dir.path().join("theirs");
    std::fs::create_dir_all(theirs.join("pg-meta-1")).unwrap();
    std::fs::write(theirs.join("keep"), "mine").unwrap();
    std::fs::write(theirs.join("pg-meta-1/keep"), "mine").unwrap();
    let out_s = theirs.to_str().unwrap();
    for args in [
        vec!["-i", inv, "render", "--all", "--out", out_s],
        vec![
            "-i",
            inv,
            "build-image",
            "--allow-default-passwords",
            "--role",
            "pg-meta-1",
            "--out",
            out_s,
        ],
    ] {
        let out = pigsty(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("did not write"), "{args:?}: {stderr}");
        assert_eq!(
            std::fs::read_to_string(theirs.join("keep")).unwrap(),
            "mine"
        );
        assert_eq!(
            std::fs::read_to_string(theirs.join("pg-meta-1/keep")).unwrap(),
            "mine"
        );
    }
    // A render's own tree is replaced by the next render.
    let ours = dir.path().join("ours");
    let ours_s = ours.to_str().unwrap();
    for _ in 0..2 {
        let out = pigsty(&["-i", inv, "render", "--all", "--out", ours_s]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(ours.join("pg-meta-1/etc/patroni/patroni.yml").is_file());
}

/// `build-image` refuses Pigsty's published default passwords (exit 2, each at the line
/// that sets it, or at the host when the built-in default applies), before it writes
/// anything or creates a CA; `inventory passwords` makes strong ones, and with them
/// the build goes past that check.
#[test]
fn default_passwords_are_refused_until_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("inv.yml");
    let explicit = BASE.replace(
        "    grafana_enabled: false\n",
        "    grafana_enabled: false\n    pg_admin_password: DBUser.DBA\n",
    );
    std::fs::write(&inv, &explicit).unwrap();
    let inv_s = inv.to_str().unwrap();
    let out_dir = dir.path().join("out");
    let out_s = out_dir.to_str().unwrap();
    let build = |extra: &[&str]| {
        let mut args = vec![
            "-i",
            inv_s,
            "build-image",
            "--role",
            "10.10.10.10",
            "--out",
            out_s,
        ];
        args.extend_from_slice(extra);
        pigsty(&args)
    };
    let out = build(&[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Set in the file: its own line; from the built-in defaults: the host's line.
    assert!(stderr.contains("inv.yml:18:"), "{stderr}");
    assert!(stderr.contains("`pg_admin_password`"), "{stderr}");
    for key in ["etcd_root_password", "minio_secret_key", "patroni_password"] {
        assert!(stderr.contains(&format!("`{key}`")), "{key}: {stderr}");
    }
    assert!(stderr.contains("--allow-default-passwords"), "{stderr}");
    assert!(!out_dir.exists(), "nothing is written");
    assert!(!dir.path().join("files/pki").exists(), "no CA is made");

    // Strong passwords from `inventory passwords`, put under all.vars: the build
    // passes the password check (and stops later, at the empty layer cache).
    let made = pigsty(&["-i", inv_s, "inventory", "passwords"]);
    assert!(made.status.success());
    let text = String::from_utf8_lossy(&made.stdout);
    assert!(
        text.contains("#   ") && text.contains("inv.yml:18: pg_admin_password"),
        "{text}"
    );
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("    ") && l.contains("_pass") || l.contains("secret_key:"))
        .collect();
    assert!(lines.len() >= 6, "{text}");
    for l in &lines {
        let value = l.split(": ").nth(1).unwrap();
        assert_eq!(value.len(), 24, "{l}");
        assert!(value.chars().all(|c| c.is_ascii_alphanumeric()), "{l}");
    }
    let strong = explicit.replace("    pg_admin_password: DBUser.DBA\n", "")
        + &lines.iter().map(|l| format!("{l}\n")).collect::<String>();
    std::fs::write(&inv, strong).unwrap();
    let again = pigsty(&["-i", inv_s, "inventory", "passwords"]);
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("no default password is in use"),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "-i",
            inv_s,
            "build-image",
            "--role",
            "10.10.10.10",
            "--offline",
        ])
        .args(["--out", out_s])
        .env("PIGSTY_CACHE", dir.path().join("empty-cache"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("published default"), "{stderr}");
}
