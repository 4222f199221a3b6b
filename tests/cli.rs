//! The command-line contract, run through the real binary: exit codes, inventory
//! lookup, `--role` names, golden plans, and one test per class of inventory error.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pigsty(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(args)
        .current_dir(cwd)
        .env_remove("PIGSTY_INVENTORY")
        // No fleet PKI: a developer's files/pki beside the repository's inventories
        // (from a build) would add certificates to the golden plans.
        .env(
            "PIGSTY_PKI",
            std::env::temp_dir().join("pigsty-cli-tests-no-pki"),
        )
        .output()
        .expect("running pigsty")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Write `text` as `inv.yml` in a fresh directory and run `inventory check` on it.
fn check_text(text: &str) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yml"), text).unwrap();
    let out = pigsty(
        &["-i", "inv.yml", "inventory", "check", "--json"],
        dir.path(),
    );
    (out, dir)
}

/// Errors from `inventory check --json`, as (line, key, message) triples.
fn errors(text: &str) -> Vec<(u64, String, String)> {
    let (out, _dir) = check_text(text);
    assert_eq!(
        out.status.code(),
        Some(2),
        "expected exit 2\nstdout: {}\nstderr: {}",
        stdout(&out),
        stderr(&out)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["valid"], false);
    report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["file"], "inv.yml");
            (
                e["line"].as_u64().unwrap(),
                e["key"].as_str().unwrap().to_string(),
                e["message"].as_str().unwrap().to_string() + e["help"].as_str().unwrap_or(""),
            )
        })
        .collect()
}

/// Assert that some error sits on `line`, names `key`, and mentions `needle`.
fn assert_error(errs: &[(u64, String, String)], line: u64, key: &str, needle: &str) {
    assert!(
        errs.iter()
            .any(|(l, k, m)| *l == line && k == key && m.contains(needle)),
        "no error at line {line} for `{key}` mentioning {needle:?} in {errs:#?}"
    );
}

const PG_TEST: &str = "\
all:
  children:
    etcd: { hosts: { 10.0.0.1: { etcd_seq: 1 } }, vars: { etcd_cluster: etcd } }
    pg-test:
      hosts:
        10.0.0.1: { pg_seq: 1, pg_role: primary }
        10.0.0.2: { pg_seq: 2, pg_role: replica }
      vars: { pg_cluster: pg-test }
";

#[test]
fn valid_inventory_exits_zero() {
    let (out, _dir) = check_text(PG_TEST);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["valid"], true);
    assert_eq!(report["nodes"], 2);
}

#[test]
fn two_primaries() {
    let errs =
        errors(&PG_TEST.replace("pg_seq: 2, pg_role: replica", "pg_seq: 2, pg_role: primary"));
    assert_error(&errs, 7, "pg_role", "more than one primary");
}

#[test]
fn no_primary() {
    let errs =
        errors(&PG_TEST.replace("pg_seq: 1, pg_role: primary", "pg_seq: 1, pg_role: replica"));
    assert_error(&errs, 6, "pg_role", "no primary");
}

#[test]
fn duplicate_seq() {
    let errs = errors(&PG_TEST.replace("pg_seq: 2", "pg_seq: 1"));
    assert_error(&errs, 7, "pg_seq", "already used by 10.0.0.1");
}

const REDIS_TEST: &str = "\
all:
  children:
    redis-test:
      hosts:
        10.0.0.1: { redis_node: 1, redis_instances: { 6379: {}, 6380: {}, 6381: {} } }
        10.0.0.2: { redis_node: 2, redis_instances: { 6379: {}, 6380: {}, 6381: {} } }
      vars: { redis_cluster: redis-test, redis_mode: cluster }
";

#[test]
fn redis_cluster_needs_three_primaries_and_one_mode() {
    let (out, _dir) = check_text(REDIS_TEST);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // Five instances cannot hold three primaries with one replica each.
    let errs =
        errors(&REDIS_TEST.replace(", 6381: {} } }\n        10.0.0.2", " } }\n        10.0.0.2"));
    assert_error(&errs, 5, "redis_instances", "needs at least 3 primaries");
    let errs =
        errors(&REDIS_TEST.replace("redis_node: 2,", "redis_node: 2, redis_mode: standalone,"));
    assert_error(&errs, 6, "redis_mode", "mixes modes");
}

#[test]
fn bad_role() {
    let errs = errors(&PG_TEST.replace("pg_role: replica", "pg_role: master"));
    assert_error(&errs, 7, "pg_role", "unknown variant `master`");
}

#[test]
fn non_ipv4_host_key() {
    let errs = errors(&PG_TEST.replace("10.0.0.2:", "db-2.example.com:"));
    assert_error(&errs, 7, "db-2.example.com", "not an IPv4 address");
}

#[test]
fn minio_cluster_in_all_vars() {
    let text = "all:\n  children:\n    minio: { hosts: { 10.0.0.1: { minio_seq: 1 } } }\n  vars:\n    minio_cluster: minio\n";
    let errs = errors(text);
    assert_error(&errs, 5, "minio_cluster", "not in all.vars");
}

#[test]
fn minio_seqs_must_be_contiguous() {
    let text = "all:\n  children:\n    minio:\n      hosts: { 10.0.0.1: { minio_seq: 1 }, 10.0.0.2: { minio_seq: 3 } }\n      vars: { minio_cluster: minio }\n";
    let errs = errors(text);
    assert_error(&errs, 3, "minio_seq", "contiguous");
}

#[test]
fn bad_cluster_name() {
    let errs = errors(&PG_TEST.replace("pg_cluster: pg-test", "pg_cluster: pg_test!"));
    assert_error(&errs, 8, "pg_cluster", "not a valid cluster name");
    let errs = errors(&PG_TEST.replace("pg_cluster: pg-test", "pg_cluster: root"));
    assert_error(&errs, 8, "pg_cluster", "not `root`");
}

#[test]
fn wrong_types() {
    let errs = errors(&PG_TEST.replace("pg_seq: 2,", "pg_seq: two,"));
    assert_error(&errs, 7, "pg_seq", "invalid type");
    let errs = errors(&PG_TEST.replace(
        "pg_cluster: pg-test }",
        "pg_cluster: pg-test, pg_port: [5432] }",
    ));
    assert_error(&errs, 8, "pg_port", "invalid type");
}

#[test]
fn wrong_type_deep_inside_a_list_points_at_the_item() {
    let text = PG_TEST.replace(
        "      vars: { pg_cluster: pg-test }\n",
        "      vars:\n        pg_cluster: pg-test\n        pg_users:\n          - { name: ok }\n          - { password: nameless }\n",
    );
    let errs = errors(&text);
    assert_error(&errs, 12, "pg_users[1]", "missing field `name`");
}

#[test]
fn missing_required_keys() {
    let errs = errors(&PG_TEST.replace("pg_seq: 2, pg_role: replica", "pg_role: replica"));
    assert_error(&errs, 7, "pg_seq", "missing");
    let errs = errors(&PG_TEST.replace("{ etcd_seq: 1 }", "{}"));
    assert_error(&errs, 3, "etcd_seq", "missing");
}

#[test]
fn malformed_yaml() {
    let errs =
        errors("all:\n  children:\n    pg-test: { hosts: { 10.0.0.1: { pg_seq: 1 }\n  vars: {}\n");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].1, "yaml");
    assert!(errs[0].2.contains("malformed YAML"), "{errs:?}");
    let errs = errors("all:\n  vars: { a: 1 }\n  vars: { b: 2 }\n");
    assert_eq!(errs[0].0, 3, "{errs:?}");
}

#[test]
fn redis_replica_of_must_be_ip_port() {
    let text = "all:\n  children:\n    redis-ms:\n      hosts:\n        10.0.0.1: { redis_node: 1, redis_instances: { 6379: {}, 6380: { replica_of: '10.0.0.1:6379' } } }\n      vars: { redis_cluster: redis-ms }\n";
    let errs = errors(text);
    assert_error(&errs, 5, "redis_instances.6380.replica_of", "'IP PORT'");
}

#[test]
fn near_miss_key_suggests_the_real_one() {
    let errs =
        errors(&PG_TEST.replace("pg_seq: 2, pg_role: replica", "pg_seq: 2, pg_rol: replica"));
    assert_error(&errs, 7, "pg_rol", "did you mean `pg_role`?");
}

#[test]
fn unexpected_group_key_suggests_hosts() {
    // Ansible skips a group key it does not know with a warning; so does pigsty.
    let text = PG_TEST.replace("    pg-test:\n      hosts:", "    pg-test:\n      host:");
    let (out, dir) = check_text(&text);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warnings = report["warnings"].as_array().unwrap();
    let w = warnings
        .iter()
        .find(|w| w["key"] == "pg-test.host")
        .unwrap_or_else(|| panic!("no warning for pg-test.host: {report:#}"));
    assert_eq!(w["line"], 5);
    assert_eq!(w["help"], "did you mean `hosts`?");
    let plain = pigsty(&["-i", "inv.yml", "inventory", "check"], dir.path());
    assert_eq!(plain.status.code(), Some(0), "{}", stderr(&plain));
    assert!(
        stderr(&plain).contains("inv.yml:5:7: `pg-test.host`"),
        "{}",
        stderr(&plain)
    );
}

/// A Pigsty parameter that images do not build, set to something other than Pigsty's
/// default, is a warning at its line; the inventory stays valid (exit 0).
#[test]
fn unbuilt_parameter_is_warned_at_its_line() {
    let text = PG_TEST.replace(
        "vars: { pg_cluster: pg-test }",
        "vars: { pg_cluster: pg-test, pg_primary_db: app }",
    );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yml"), text).unwrap();
    let out = pigsty(
        &["-i", "inv.yml", "plan", "--role", "pg-test-1"],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("inv.yml:8:36: `pg_primary_db`: `pg_primary_db` has no effect in an image"),
        "{err}"
    );
    assert!(err.contains("not treated specially"), "{err}");
}

/// A host's own pg_parameters replace its cluster's whole map: one that leaves out a
/// parameter Patroni keeps cluster-wide, which the cluster sets, is a warning at the
/// host's pg_parameters; the same parameter repeated there is none.
#[test]
fn members_disagreeing_on_a_cluster_wide_parameter_are_warned() {
    let text = PG_TEST
        .replace(
            "vars: { pg_cluster: pg-test }",
            "vars: { pg_cluster: pg-test, pg_parameters: { max_locks_per_transaction: 96 } }",
        )
        .replace(
            "10.0.0.2: { pg_seq: 2, pg_role: replica }",
            "10.0.0.2: { pg_seq: 2, pg_role: replica, pg_parameters: { work_mem: 8MB } }",
        );
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("inv.yml"), &text).unwrap();
    let out = pigsty(&["-i", "inv.yml", "inventory", "check"], dir.path());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "inv.yml:7:65: `pg_parameters`: pg-test-2: its cluster-wide PostgreSQL parameters \
             (none) differ from the rest of pg-test (max_locks_per_transaction=96)"
        ),
        "{err}"
    );
    let agreed = text.replace(
        "{ work_mem: 8MB }",
        "{ work_mem: 8MB, max_locks_per_transaction: 96 }",
    );
    std::fs::write(dir.path().join("inv.yml"), agreed).unwrap();
    let out = pigsty(&["-i", "inv.yml", "inventory", "check"], dir.path());
    assert!(!stderr(&out).contains("cluster-wide"), "{}", stderr(&out));
}

#[test]
fn vip_needs_cidr_and_role_names_are_checked() {
    let text = PG_TEST.replace(
        "vars: { pg_cluster: pg-test }",
        "vars: { pg_cluster: pg-test, pg_vip_enabled: true, pg_vip_address: 10.0.0.9, pg_users: [{ name: Bad-User }] }",
    );
    let errs = errors(&text);
    assert_error(&errs, 8, "pg_vip_address", "CIDR");
    assert_error(&errs, 8, "pg_users[0].name", "not a valid role name");
}

#[test]
fn service_ports_must_be_unique() {
    let text = PG_TEST.replace(
        "vars: { pg_cluster: pg-test }",
        "vars: { pg_cluster: pg-test, pg_services: [{ name: x, port: 5433 }] }",
    );
    assert_error(
        &errors(&text),
        8,
        "pg_services[0].port",
        "already used by service `primary`",
    );
}

#[test]
fn every_error_of_a_file_is_reported_at_once() {
    let text = PG_TEST
        .replace(
            "pg_seq: 2, pg_role: replica",
            "pg_seq: two, pg_rol: replica",
        )
        .replace("10.0.0.1: { etcd_seq: 1 }", "10.0.0.1: { etcd_seq: -1 }");
    let errs = errors(&text);
    assert_error(&errs, 7, "pg_seq", "invalid");
    assert_error(&errs, 7, "pg_rol", "did you mean");
    assert_error(&errs, 3, "etcd_seq", "invalid value");
    assert!(errs.len() >= 3, "{errs:#?}");
}

#[test]
fn human_errors_show_file_line_and_snippet() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("inv.yml"),
        PG_TEST.replace("pg_role: replica", "pg_rol: replica"),
    )
    .unwrap();
    let out = pigsty(&["-i", "inv.yml", "inventory", "check"], dir.path());
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("inv.yml:7:32"), "{err}");
    assert!(err.contains("did you mean `pg_role`?"), "{err}");
    assert!(err.contains("pg_rol: replica"), "snippet missing: {err}");
    assert!(!err.contains("panicked"), "{err}");
}

#[test]
fn missing_file_is_a_runtime_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = pigsty(&["-i", "nope.yml", "inventory", "check"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.yml"));
}

#[test]
fn inventory_lookup_order() {
    let dir = tempfile::tempdir().unwrap();
    // Nothing given: the built-in singleton.
    let out = pigsty(&["inventory", "list", "--json"], dir.path());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    assert_eq!(rows[0]["nodename"], "pg-meta-1");
    // ./pigsty.yml beats the built-in.
    std::fs::write(dir.path().join("pigsty.yml"), PG_TEST).unwrap();
    let out = pigsty(&["inventory", "list", "--json"], dir.path());
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 2);
    // $PIGSTY_INVENTORY beats ./pigsty.yml, and -i beats both.
    let sandbox = root().join("inventory/sandbox.yml");
    let lab = root().join("inventory/lab.yml");
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_pigsty"))
            .args(args)
            .current_dir(dir.path())
            .env("PIGSTY_INVENTORY", &sandbox)
            .output()
            .unwrap();
        serde_json::from_slice::<serde_json::Value>(&o.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(run(&["inventory", "list", "--json"]), 4);
    assert_eq!(
        run(&["-i", lab.to_str().unwrap(), "inventory", "list", "--json"]),
        3
    );
}

#[test]
fn role_accepts_every_name_of_a_node() {
    let inv = root().join("inventory/pigsty.yml");
    for name in ["pg-meta-1", "etcd-1", "minio-1", "infra-1", "10.10.10.10"] {
        let out = pigsty(
            &[
                "-i",
                inv.to_str().unwrap(),
                "plan",
                "--role",
                name,
                "--json",
            ],
            &root(),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["node"]["ip"], "10.10.10.10", "{name}");
    }
    let out = pigsty(
        &["-i", inv.to_str().unwrap(), "plan", "--role", "pg-meta-2"],
        &root(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("did you mean `pg-meta-1`?"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn role_finds_redis_nodes_and_nodenames() {
    let inv = root().join("tests/fixtures/inventories/v3-full.yml");
    let out = pigsty(
        &["-i", inv.to_str().unwrap(), "inventory", "list", "--json"],
        &root(),
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let redis = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| {
            r["modules"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m == "REDIS")
        })
        .expect("a redis node in v3-full.yml");
    for name in redis["names"].as_array().unwrap() {
        let name = name.as_str().unwrap();
        let out = pigsty(
            &[
                "-i",
                inv.to_str().unwrap(),
                "plan",
                "--role",
                name,
                "--json",
            ],
            &root(),
        );
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(plan["node"]["ip"], redis["ip"], "{name}");
    }
}

/// Golden plans: `plan --all --json` of each example inventory must match the file
/// under tests/fixtures/plans/. Regenerate on purpose with PIGSTY_BLESS=1.
#[test]
fn golden_plans() {
    for name in ["pigsty", "sandbox", "lab"] {
        let inv = root().join(format!("inventory/{name}.yml"));
        let out = pigsty(
            &["-i", inv.to_str().unwrap(), "plan", "--all", "--json"],
            &root(),
        );
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let golden = root().join(format!("tests/fixtures/plans/{name}.json"));
        let got = stdout(&out).replace(env!("CARGO_MANIFEST_DIR"), "$ROOT");
        if std::env::var_os("PIGSTY_BLESS").is_some() {
            std::fs::create_dir_all(golden.parent().unwrap()).unwrap();
            std::fs::write(&golden, &got).unwrap();
        }
        let want = std::fs::read_to_string(&golden)
            .unwrap_or_else(|_| panic!("{} missing: run with PIGSTY_BLESS=1", golden.display()));
        assert!(
            got == want,
            "plan of {name} differs from {}; diff it, and bless with PIGSTY_BLESS=1 if intended",
            golden.display()
        );
    }
}

#[test]
fn every_fixture_inventory_checks_and_plans() {
    let dir = root().join("tests/fixtures/inventories");
    let mut count = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yml") {
            continue; // files/: the baselines the inventories name
        }
        let p = path.to_str().unwrap();
        let out = pigsty(&["-i", p, "inventory", "check"], &root());
        assert_eq!(out.status.code(), Some(0), "{p}: {}", stderr(&out));
        let out = pigsty(&["-i", p, "plan", "--all", "--json"], &root());
        assert_eq!(out.status.code(), Some(0), "{p}: {}", stderr(&out));
        let plans: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for plan in plans.as_array().unwrap() {
            assert_eq!(
                plan["join"].as_array().unwrap().last().unwrap()["id"],
                "done",
                "{p}"
            );
            assert_eq!(plan["digest"].as_str().unwrap().len(), 64, "{p}");
        }
        count += 1;
    }
    assert!(
        count >= 4,
        "expected the fixture inventories, found {count}"
    );
}

#[test]
fn render_writes_tree_and_refuses_unwritable_values() {
    let dir = tempfile::tempdir().unwrap();
    let inv = PG_TEST.replace(
        "vars: { pg_cluster: pg-test }",
        "vars: { pg_cluster: pg-test, node_timezone: \"Asia/Hong_Kong\" }",
    );
    std::fs::write(dir.path().join("inv.yml"), &inv).unwrap();
    let out = pigsty(
        &[
            "-i",
            "inv.yml",
            "render",
            "--role",
            "pg-test-1",
            "--out",
            "tree",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let tree = dir.path().join("tree");
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
        "pg-test-1\n"
    );
    let node: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.join("etc/pigsty/node.json")).unwrap()).unwrap();
    assert_eq!(node["node"]["nodename"], "pg-test-1");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(tree.join("etc/pigsty/node.json"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // A newline cannot be carried by chrony.conf: exit 2, naming the file and value,
    // and the previous tree stays as it was.
    std::fs::write(
        dir.path().join("inv.yml"),
        inv.replace(
            "node_timezone: \"Asia/Hong_Kong\"",
            "node_ntp_servers: [\"server a\\nserver b\"]",
        ),
    )
    .unwrap();
    let out = pigsty(
        &[
            "-i",
            "inv.yml",
            "render",
            "--role",
            "pg-test-1",
            "--out",
            "tree",
        ],
        dir.path(),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // The report's first line, unwrapped.
    let err = stderr(&out).replace("\n  │ ", " ");
    assert!(
        err.contains("/etc/chrony/chrony.conf") && err.contains("server a\\nserver b"),
        "{err}"
    );
    // At the line and key of the value.
    let line = inv
        .lines()
        .position(|l| l.contains("node_timezone"))
        .unwrap()
        + 1;
    assert!(
        err.contains(&format!("inv.yml:{line}:")) && err.contains("`node_ntp_servers`"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(tree.join("etc/timezone")).unwrap(),
        "Asia/Hong_Kong\n"
    );
}

/// The committed man pages (docs/man/) and completions (docs/completions/) are what
/// the clap definitions generate now. Regenerate on purpose with PIGSTY_BLESS=1 (or
/// `cargo run --example generate -- man docs/man`, `... completions docs/completions`).
#[test]
fn committed_man_pages_and_completions_are_current() {
    let sets = [
        ("docs/man", pigsty::generate::man_pages().unwrap()),
        ("docs/completions", pigsty::generate::completions()),
    ];
    for (dir, files) in sets {
        let dir = root().join(dir);
        if std::env::var_os("PIGSTY_BLESS").is_some() {
            let _ = std::fs::remove_dir_all(&dir);
            pigsty::generate::write_to(&dir, &files).unwrap();
        }
        let mut committed: Vec<String> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}; run with PIGSTY_BLESS=1", dir.display()))
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        committed.sort();
        let mut names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
        names.sort();
        assert_eq!(
            committed,
            names,
            "{} holds other files than generated; bless with PIGSTY_BLESS=1",
            dir.display()
        );
        for (name, text) in &files {
            let path = dir.join(name);
            assert!(
                std::fs::read(&path).unwrap() == *text,
                "{} differs from what the clap definitions generate; bless with PIGSTY_BLESS=1 if intended",
                path.display()
            );
        }
    }
}
