//! `pigsty diff --against OLD`, through the real binary on edits of the built-in
//! inventories: each of Pigsty's everyday edits gets the lightest change that is
//! enough, and the rollout order keeps a primary until its replicas are done.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn inventory(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("inventory")
            .join(name),
    )
    .unwrap()
}

/// `pigsty -i new.yml diff --against old.yml ARGS` in a fresh directory.
fn diff(old: &str, new: &str, args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("old.yml"), old).unwrap();
    std::fs::write(dir.path().join("new.yml"), new).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["-i", "new.yml", "diff", "--against", "old.yml"])
        .args(args)
        .current_dir(dir.path())
        .env_remove("PIGSTY_INVENTORY")
        .env("PIGSTY_PKI", dir.path().join("no-pki"))
        .output()
        .unwrap()
}

fn json(old: &str, new: &str) -> Value {
    let out = diff(old, new, &["--json"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(
        text.contains(from),
        "the inventory no longer holds {from:?}"
    );
    text.replacen(from, to, 1)
}

/// nodename → (status, weight) of every node that differs.
fn weights(d: &Value) -> Vec<(String, String, String)> {
    d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["nodename"].as_str().unwrap().to_string(),
                n["status"].as_str().unwrap().to_string(),
                n["weight"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The rollout as (node, first word of what it does).
fn rollout(d: &Value) -> Vec<(String, String)> {
    d["rollout"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let what = s["what"].as_str().unwrap();
            (
                s["node"].as_str().unwrap().to_string(),
                what.split(':').next().unwrap().to_string(),
            )
        })
        .collect()
}

fn node<'a>(d: &'a Value, name: &str) -> &'a Value {
    d["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodename"] == name)
        .unwrap_or_else(|| panic!("{name} is not in the diff: {d:#}"))
}

fn effects(n: &Value) -> Vec<(String, String)> {
    n["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                format!(
                    "{} {}",
                    f["effect"]["action"].as_str().unwrap(),
                    f["effect"]["target"].as_str().unwrap_or("")
                )
                .trim()
                .to_string(),
            )
        })
        .collect()
}

fn s(a: &str, b: &str, c: &str) -> (String, String, String) {
    (a.into(), b.into(), c.into())
}

#[test]
fn the_same_inventory_is_no_change_and_exit_code_says_so() {
    let lab = inventory("lab.yml");
    let out = diff(&lab, &lab, &["--exit-code"]);
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("no change against old.yml: 3 node(s) the same"),
        "{text}"
    );
    // The old file's own name is not a change (node.json names the inventory).
    let d = json(&lab, &lab);
    assert_eq!(d["unchanged"], 3);
    assert!(d["rollout"].as_array().unwrap().is_empty());
}

#[test]
fn a_user_and_a_database_are_database_objects_applied_on_the_primary_first() {
    let old = inventory("lab.yml");
    let new = edit(
        &old,
        "          - { name: lab, owner: dbuser_lab }\n",
        "          - { name: lab, owner: dbuser_lab }\n          - { name: app, owner: dbuser_app }\n",
    );
    let new = edit(
        &new,
        "        pg_databases:\n",
        "          - { name: dbuser_app, password: DBUser.App, pgbouncer: true, roles: [dbrole_readwrite] }\n        pg_databases:\n",
    );
    let d = json(&old, &new);
    assert_eq!(
        weights(&d),
        vec![
            s("pg-lab-1", "changed", "database"),
            s("pg-lab-2", "changed", "database"),
            s("pg-lab-3", "changed", "database"),
        ]
    );
    // The primary first (the one that leads creates them), then every pgbouncer
    // lists them.
    let primary = node(&d, "pg-lab-1");
    let actions: Vec<&str> = primary["actions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "swap in its new node bundle",
            "the join again: the member that leads applies the SQL",
            "reload pgbouncer"
        ]
    );
    // Every member carries the SQL: whichever leads when its join runs applies it.
    let replica = node(&d, "pg-lab-2");
    let replica_effects = effects(replica);
    for want in [
        ("/etc/pgbouncer/userlist.txt", "reload pgbouncer.service"),
        ("/etc/pigsty/sql/10-roles.sql", "sql"),
    ] {
        assert!(
            replica_effects.contains(&(want.0.into(), want.1.into())),
            "{replica:#}"
        );
    }
    assert!(
        replica["actions"]
            .to_string()
            .contains("leads applies the SQL"),
        "{replica:#}"
    );
    assert_eq!(
        rollout(&d),
        [
            ("pg-lab-1".into(), "database".into()),
            ("pg-lab-2".into(), "database".into()),
            ("pg-lab-3".into(), "database".into())
        ]
    );
    // --exit-code: 1 with changes, the report still on stdout.
    let out = diff(&old, &new, &["--exit-code"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("3 changed, 0 new, 0 gone"));
}

#[test]
fn a_reloadable_parameter_is_a_reload_replicas_first_and_no_switchover() {
    let old = inventory("sandbox.yml");
    let new = edit(
        &old,
        "        pgbackrest_method: minio\n",
        "        pgbackrest_method: minio\n        pg_parameters: { log_min_duration_statement: 1234 }\n",
    );
    let d = json(&old, &new);
    assert_eq!(
        weights(&d),
        vec![
            s("pg-test-1", "changed", "config"),
            s("pg-test-2", "changed", "config"),
            s("pg-test-3", "changed", "config"),
        ]
    );
    assert_eq!(d["unchanged"], 1, "pg-meta is untouched");
    let n = node(&d, "pg-test-2");
    assert!(
        effects(n).contains(&(
            "/etc/patroni/patroni.yml".into(),
            "reload patroni.service".into()
        )),
        "{n:#}"
    );
    // Patroni reads the copy tune sizes: tune runs before the reload.
    let actions = n["actions"].to_string();
    assert!(
        actions.find("run pigsty agent tune").unwrap() < actions.find("reload patroni").unwrap(),
        "{actions}"
    );
    assert_eq!(
        rollout(&d),
        [
            ("pg-test-2".into(), "config".into()),
            ("pg-test-3".into(), "config".into()),
            ("pg-test-1".into(), "config".into())
        ]
    );
}

#[test]
fn a_cluster_wide_restart_parameter_is_patched_then_restarts_with_a_switchover() {
    let old = inventory("sandbox.yml");
    let new = edit(
        &old,
        "        pgbackrest_method: minio\n",
        "        pgbackrest_method: minio\n        pg_parameters: { max_connections: 300 }\n",
    );
    let d = json(&old, &new);
    let n = node(&d, "pg-test-3");
    let patroni = &n["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == "/etc/patroni/patroni.yml")
        .unwrap();
    assert_eq!(patroni["effect"]["action"], "restart");
    let why = patroni["why"].as_str().unwrap();
    assert!(
        why.contains("bootstrap.dcs") && why.contains("max_connections needs a restart"),
        "{why}"
    );
    assert_eq!(
        rollout(&d),
        [
            ("pg-test-1".into(), "cluster config".into()),
            ("pg-test-2".into(), "config".into()),
            ("pg-test-3".into(), "config".into()),
            ("pg-test-1".into(), "switchover".into()),
            ("pg-test-1".into(), "config".into())
        ]
    );
    let steps = d["rollout"].to_string();
    assert!(
        steps.contains("pg-test's primary moves to pg-test-2"),
        "{steps}"
    );
}

#[test]
fn an_etcd_setting_restarts_etcd_only_where_it_runs() {
    let old = inventory("sandbox.yml");
    let new = edit(
        &old,
        "    pg_rto: 30\n",
        "    pg_rto: 30\n    etcd_heartbeat_interval: 200\n",
    );
    let d = json(&old, &new);
    assert_eq!(weights(&d), vec![s("pg-meta-1", "changed", "config")]);
    assert_eq!(
        effects(node(&d, "pg-meta-1")),
        [(
            "/etc/default/etcd".to_string(),
            "restart etcd.service".to_string()
        )]
    );
}

#[test]
fn an_extension_is_a_new_image_and_names_its_packages() {
    let old = inventory("sandbox.yml");
    let new = edit(
        &old,
        "        pgbackrest_method: minio\n",
        "        pgbackrest_method: minio\n        pg_extensions: [ postgis ]\n",
    );
    let d = json(&old, &new);
    let n = node(&d, "pg-test-1");
    assert_eq!(n["weight"], "image");
    assert!(
        n["reason"].as_str().unwrap().contains("packages differ"),
        "{n:#}"
    );
    let added = n["packages_added"].to_string();
    assert!(added.contains("postgis"), "{added}");
    // Replicas, then the primary after a switchover (a reboot stops PostgreSQL).
    assert_eq!(
        rollout(&d),
        [
            ("pg-test-2".into(), "image".into()),
            ("pg-test-3".into(), "image".into()),
            ("pg-test-1".into(), "switchover".into()),
            ("pg-test-1".into(), "image".into())
        ]
    );
}

#[test]
fn a_new_replica_is_provisioned_first_and_its_peers_reload_haproxy() {
    let old = inventory("sandbox.yml");
    let line = "        10.10.10.13: { pg_seq: 3, pg_role: replica, pg_offline_query: true }\n";
    let new = edit(
        &old,
        line,
        &format!("{line}        10.10.10.14: {{ pg_seq: 4, pg_role: replica }}\n"),
    );
    let d = json(&old, &new);
    let n = node(&d, "pg-test-4");
    assert_eq!(n["status"], "new");
    let peer = node(&d, "pg-test-1");
    assert_eq!(peer["weight"], "config");
    assert!(
        effects(peer).contains(&(
            "/etc/haproxy/haproxy.cfg".into(),
            "reload haproxy.service".into()
        )),
        "{peer:#}"
    );
    let order = rollout(&d);
    assert_eq!(order[0], ("pg-test-4".into(), "provision".into()));
    // Removing it again: it is gone, and left running.
    let d = json(&new, &old);
    let n = node(&d, "pg-test-4");
    assert_eq!(n["status"], "gone");
    assert_eq!(
        rollout(&d).last().unwrap(),
        &("pg-test-4".into(), "retire by hand (left running)".into())
    );
}

#[test]
fn a_missing_or_invalid_old_inventory_is_exit_2_naming_it() {
    let lab = inventory("lab.yml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("new.yml"), &lab).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["-i", "new.yml", "diff", "--against", "nope.yml"])
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--against nope.yml: no such inventory file")
    );
    let bad = edit(&lab, "pg_role: primary", "pg_role: primry");
    let out = diff(&bad, &lab, &[]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("old.yml:") && err.contains("pg_role"), "{err}");
    assert!(
        out.stdout.is_empty(),
        "nothing printed for an invalid inventory"
    );
}
