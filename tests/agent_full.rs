//! A whole node's first boot, killed at every point: an etcd member that is also the
//! primary of a PostgreSQL cluster with pgbouncer, haproxy, roles and databases, and a
//! local pgBackRest repository. The agent is stopped at each checkpoint in turn (and
//! the machine power-cycled twice on the way); every restart picks up where the last
//! one stopped, and the node ends fully joined. Then `pigsty agent status` and
//! `pigsty status` read the result back, from the state file and from etcd.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use pigsty::agent::state::StepStatus;
use support::{
    PATRONI, PG_BIN, TestNode, pg_inventory, prepare_extras, prepare_patroni, psql, require_root,
    require_tools,
};

#[test]
#[ignore = "needs root and starts etcd, Patroni, PostgreSQL, pgbouncer, haproxy (run with --include-ignored)"]
fn a_primary_joins_through_a_kill_at_every_step() {
    require_root("PostgreSQL runs as the postgres user");
    require_tools(&[
        "/usr/bin/etcd",
        PATRONI,
        PG_BIN,
        "/usr/sbin/pgbouncer",
        "/usr/sbin/haproxy",
        "/usr/bin/pgbackrest",
    ]);
    let t0 = Instant::now();
    let net = "127.0.8";
    let tmp = tempfile::tempdir().unwrap();
    support::open_up(tmp.path());
    let inv = pg_inventory(net, 0, "        pgbackrest_method: local\n");
    let node = TestNode::render(tmp.path(), "n1", &inv, "pg-t-1");
    prepare_patroni(&node, &format!("{net}.1"));
    prepare_extras(&node, &format!("{net}.1"));
    let wait = Duration::from_secs(90);

    // 1. Stop at every checkpoint in order; power-cycle the machine twice.
    let points = [
        "etcd:probed",
        "etcd:started",
        "patroni:started",
        "pgbackrest-stanza:created",
        "pgbouncer:started",
        "haproxy:started",
        "pg-users:/etc/pigsty/sql/10-roles.sql",
        "pg-databases:/etc/pigsty/sql/20-databases.sql",
        "pgbackrest:backup",
        "done:reported",
    ];
    for point in points {
        let mut opts = node.options(wait);
        opts.crash_at = Some(point.into());
        let err = node.firstboot(&opts).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("simulated crash at {point}")),
            "{point}: {err:#}\n{}\n{}",
            node.log("patroni.log"),
            node.log("etcd.log")
        );
        if point == "patroni:started" || point == "pgbackrest-stanza:created" {
            node.services.power_cycle().unwrap();
        }
        eprintln!("stopped at {point}: {:?}", t0.elapsed());
    }
    let state = node
        .firstboot(&node.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert!(state.done, "{}", state.summary());
    assert!(node.root.join("var/lib/pigsty/firstboot.done").exists());
    assert_eq!(state.steps["done"].attempts, 2);
    for id in &state.order {
        assert_eq!(
            state.steps[id].status,
            StepStatus::Done,
            "{}",
            state.summary()
        );
    }
    assert_eq!(state.steps["etcd"].attempts, 3, "{}", state.summary());
    assert_eq!(state.steps["pgbackrest-stanza"].attempts, 2);
    assert_eq!(state.steps["pgbackrest"].attempts, 2);
    assert!(
        state.steps["pgbackrest"].detail.contains("1 backup"),
        "{}",
        state.summary()
    );
    eprintln!("joined: {:?}", t0.elapsed());

    // 2. What the steps made is there: roles, database, pools, a backup.
    let pg_port = inv.lines().find(|l| l.contains("pg_seq: 1")).unwrap();
    let at = pg_port.find("pg_port: ").unwrap() + 9;
    let pg_port: u16 = pg_port[at..].split(',').next().unwrap().parse().unwrap();
    assert_eq!(
        psql(
            pg_port,
            "SELECT count(*) FROM pg_database WHERE datname = 'lab'"
        ),
        "1"
    );
    assert!(node.root.join("pg/backup/backup/pg-t/backup.info").exists());

    // The image's /pg/bin/pg-backup (what pg_crontab entries call): a full backup on
    // the primary; a member without a running primary refuses; a bad type is exit 3.
    let script = node.root.join("pg/bin/pg-backup");
    let conf = node.root.join("etc/pgbackrest/pgbackrest.conf");
    let text = std::fs::read_to_string(&script).unwrap();
    assert!(
        text.contains("pgbackrest --stanza=pg-t --type=\"$type\" backup"),
        "{text}"
    );
    let local = tmp.path().join("pg-backup");
    let runnable = text.replace(
        "pgbackrest --stanza",
        &format!("pgbackrest --config={} --stanza", conf.display()),
    );
    std::fs::write(&local, &runnable).unwrap();
    let down = tmp.path().join("pg-backup-down");
    std::fs::write(&down, runnable.replace(&format!("-p {pg_port} "), "-p 1 ")).unwrap();
    let pg_backup = |script: &std::path::Path, arg: &str| {
        Command::new("runuser")
            .args(["-u", "postgres", "--", "bash"])
            .arg(script)
            .arg(arg)
            .output()
            .unwrap()
    };
    let out = pg_backup(&local, "full");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let info = Command::new("runuser")
        .args(["-u", "postgres", "--", "pgbackrest"])
        .arg(format!("--config={}", conf.display()))
        .args(["--stanza=pg-t", "--output=json", "info"])
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    let backups = info[0]["backup"].as_array().unwrap();
    assert_eq!(
        backups.len(),
        2,
        "the first-boot backup and pg-backup's: {info}"
    );
    assert_eq!(backups[1]["type"], "full");
    let out = pg_backup(&down, "full");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("backups run on the primary"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(pg_backup(&local, "weekly").status.code(), Some(3));

    // 3. `pigsty agent status --json` reads the state file.
    let exe = env!("CARGO_BIN_EXE_pigsty");
    let out = Command::new(exe)
        .args(["agent", "status", "--json", "--root"])
        .arg(&node.root)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["done"], true);
    assert_eq!(json["steps"]["patroni"]["status"], "done");
    let out = Command::new(exe)
        .args(["agent", "status", "--root"])
        .arg(&node.root)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("first boot: done"), "{text}");

    // 4. `pigsty status -i INVENTORY` reads every node's report from etcd.
    let inv_path = tmp.path().join("inventory.yml");
    std::fs::write(&inv_path, &inv).unwrap();
    let out = Command::new(exe)
        .arg("-i")
        .arg(&inv_path)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(rows[0]["nodename"], "pg-t-1");
    assert_eq!(rows[0]["state"], "done", "{rows}");
    let out = Command::new(exe)
        .arg("-i")
        .arg(&inv_path)
        .arg("status")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.contains("pg-t-1") && l.contains("done")),
        "{text}"
    );
    eprintln!("total: {:?}", t0.elapsed());
}
