//! Kill-and-resume at every join step, on the real components on loopback: an etcd
//! member (`etcd`), and a node that is the primary of a PostgreSQL cluster and the
//! first member of a MinIO cluster (the MinIO STAND-IN of tests/minio_standin) but
//! not an etcd member, so its plan holds every other step: `etcd-ready`, `minio`,
//! `minio-buckets`, `patroni`, `pgbackrest-stanza`, `pgbouncer`, `haproxy`, `pg-users`,
//! `pg-databases`, `pgbackrest`, `done`.
//!
//! Two ways to stop the agent in the middle of each step:
//! - one table of checkpoints (`Options::crash_at`), at least one in every step of
//!   both plans, with the machine power-cycled at some of them;
//! - a real `pigsty` agent process (this test binary, re-run as one) SIGKILLed with its
//!   whole process group, as systemd or a power cut would, as soon as its state file
//!   shows it inside the next step.
//!
//! Every restart picks up where the last one stopped and the nodes end fully joined.
//!
//! Both tests need root and start etcd, Patroni, PostgreSQL, pgbouncer, haproxy and
//! pgBackRest: ignored unless asked for (`--include-ignored`; ci/test.sh does). A
//! custom main (harness = false): this binary is also the MinIO stand-in and the
//! agent process the second test kills.

mod minio_standin;
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pigsty::agent::service::ServiceManager;
use pigsty::agent::state::{State, StepStatus, Store};
use pigsty::plan::StepId;
use support::processes::{ProcessSpec, Processes};
use support::{
    PATRONI, PG_BIN, TestNode, define_extras, define_patroni, free_port, prepare_extras,
    prepare_patroni, psql, require_root, require_tools,
};

fn main() {
    // Started as minio.service or as the agent by a test: that, never a test run.
    minio_standin::run_if_asked();
    if let (Some(root), Some(net)) = (std::env::var_os(AGENT_ROOT), std::env::var(AGENT_NET).ok()) {
        agent_process(root.into(), &net);
    }
    support::run_tests(vec![
        support::ignored(
            "every_step_resumes_after_a_kill_at_its_checkpoints",
            every_step_resumes_after_a_kill_at_its_checkpoints,
        ),
        support::ignored(
            "a_killed_agent_process_resumes_at_every_step",
            a_killed_agent_process_resumes_at_every_step,
        ),
    ]);
}

/// Fails the test unless it can run: root and every component of the fleet.
fn require_ready() {
    require_root("PostgreSQL runs as the postgres user");
    require_tools(&[
        "/usr/bin/etcd",
        PATRONI,
        PG_BIN,
        "/usr/sbin/pgbouncer",
        "/usr/sbin/haproxy",
        "/usr/bin/pgbackrest",
    ]);
}

/// The test fleet on `net`: etcd on `.1`; MinIO on `.2`, `.3`, `.4`; the PostgreSQL
/// primary `pg-t-1` on `.2` with a local pgBackRest repository.
struct Fleet {
    inventory: String,
    pg_port: u16,
}

fn fleet(net: &str) -> Fleet {
    let pg_port = free_port();
    let exe = std::env::current_exe().unwrap();
    let inventory = format!(
        "all:
  children:
    etcd:
      hosts:
        {net}.1: {{ etcd_seq: 1, etcd_port: {}, etcd_peer_port: {} }}
      vars: {{ etcd_cluster: etcd }}
    minio:
      hosts:
        {net}.2: {{ minio_seq: 1 }}
        {net}.3: {{ minio_seq: 2 }}
        {net}.4: {{ minio_seq: 3 }}
      vars:
        minio_cluster: minio
        minio_port: {}
        minio_admin_port: {}
        minio_data: /data/minio
        minio_server_bin: {}
    pg-t:
      hosts:
        {net}.2: {{ pg_seq: 1, pg_role: primary, pg_port: {pg_port}, patroni_port: {}, pgbouncer_port: {} }}
      vars:
        pg_cluster: pg-t
        pg_conf: tiny.yml
        pg_rto: fast
        pgbackrest_method: local
        pg_hba_rules:
          - {{ user: all, db: all, addr: '127.0.0.0/8', auth: pwd, title: 'test fleet on loopback' }}
        pg_users:
          - {{ name: dbuser_lab, password: DBUser.Lab, pgbouncer: true, roles: [dbrole_admin] }}
        pg_databases:
          - {{ name: lab, owner: dbuser_lab }}
  vars:
    admin_ip: {net}.1
    node_ntp_enabled: false
    node_base: debian12       # the host's PostgreSQL 15 and Patroni 3
    node_repo_modules: node
",
        free_port(),
        free_port(),
        free_port(),
        free_port(),
        exe.display(),
        free_port(),
        free_port(),
    );
    Fleet { inventory, pg_port }
}

/// `minio.service` of MinIO member `seq` (on `net.(seq+1)`): the server binary that
/// node.json names, configured by the rendered /etc/default/minio.
fn define_minio(services: &Processes, root: &Path, net: &str, seq: usize) {
    let doc = pigsty::plan::node_json::NodeJson::load(root).unwrap();
    let m = doc.minio.expect("a MinIO member");
    let hosts: Vec<String> = (1..=3)
        .map(|k| format!("minio-{k}.pigsty={net}.{}", k + 1))
        .collect();
    services.define(
        "minio.service",
        ProcessSpec {
            program: m.server_bin.into(),
            env_files: vec![root.join("etc/default/minio")],
            env: minio_standin::test_env(root, &format!("{net}.{}", seq + 1), &hosts),
            log: root.join("minio.log"),
            ..ProcessSpec::default()
        },
    );
}

/// The whole fleet rendered and made runnable: the etcd node, the primary (also
/// MinIO member 1), and MinIO members 2 and 3 with their servers running (write
/// quorum needs two of three).
struct Nodes {
    etcd: TestNode,
    primary: TestNode,
    _minio: Vec<TestNode>,
}

fn nodes(base: &Path, net: &str, inv: &str) -> Nodes {
    let etcd = TestNode::render(base, "etcd", inv, "etcd-1");
    let primary = TestNode::render(base, "primary", inv, "pg-t-1");
    prepare_patroni(&primary, &format!("{net}.2"));
    prepare_extras(&primary, &format!("{net}.2"));
    define_minio(&primary.services, &primary.root, net, 1);
    let others: Vec<TestNode> = (2..=3)
        .map(|seq| {
            let n = TestNode::render(base, &format!("minio{seq}"), inv, &format!("minio-{seq}"));
            define_minio(&n.services, &n.root, net, seq);
            n.services.start("minio.service").unwrap();
            n
        })
        .collect();
    Nodes {
        etcd,
        primary,
        _minio: others,
    }
}

fn load(node: &TestNode) -> State {
    Store::new(&node.root).load().unwrap()
}

/// The step a checkpoint is in: `pg-users:/etc/...` → `pg-users`.
fn step_of(point: &str) -> &str {
    point.split_once(':').map_or(point, |(s, _)| s)
}

/// Where to stop the agent, and whether the machine then loses power.
struct Kill {
    primary: bool,
    at: &'static str,
    power_cycle: bool,
}

const fn kill(primary: bool, at: &'static str, power_cycle: bool) -> Kill {
    Kill {
        primary,
        at,
        power_cycle,
    }
}

/// At least one stop inside every step of both plans, in plan order.
const KILLS: &[Kill] = &[
    kill(false, "etcd:probed", false),
    kill(false, "etcd:started", true),
    kill(false, "done:reported", false),
    kill(true, "etcd-ready:healthy", false),
    kill(true, "minio:started", true),
    kill(true, "minio-buckets:pgsql", false),
    kill(true, "patroni:started", true),
    kill(true, "pgbackrest-stanza:created", true),
    kill(true, "pgbouncer:started", false),
    kill(true, "haproxy:started", true),
    kill(true, "pg-users:/etc/pigsty/sql/10-roles.sql", false),
    kill(true, "pg-databases:/etc/pigsty/sql/20-databases.sql", false),
    kill(true, "pgbackrest:backup", false),
    kill(true, "done:reported", false),
];

fn every_step_resumes_after_a_kill_at_its_checkpoints() {
    require_ready();
    let t0 = Instant::now();
    let net = "127.0.11";
    let tmp = tempfile::tempdir().unwrap();
    support::open_up(tmp.path());
    let f = fleet(net);
    let n = nodes(tmp.path(), net, &f.inventory);
    let wait = Duration::from_secs(90);

    // 1. Stop at each checkpoint in turn; the state file shows the agent died inside
    //    that step (or, at `done`, before the marker).
    for k in KILLS {
        let node = if k.primary { &n.primary } else { &n.etcd };
        let mut opts = node.options(wait);
        opts.crash_at = Some(k.at.into());
        let err = node.firstboot(&opts).unwrap_err();
        assert!(
            format!("{err:#}").contains(&format!("simulated crash at {}", k.at)),
            "{}: {err:#}\n{}\n{}",
            k.at,
            node.log("patroni.log"),
            node.log("minio.log")
        );
        let state = load(node);
        let step = step_of(k.at);
        assert_eq!(state.current, step, "{}", state.summary());
        if step == "done" {
            assert!(state.done && !node.root.join("var/lib/pigsty/firstboot.done").exists());
        } else {
            assert_eq!(state.steps[step].status, StepStatus::Running, "{}", k.at);
        }
        if k.power_cycle {
            node.services.power_cycle().unwrap();
        }
        eprintln!("stopped at {}: {:?}", k.at, t0.elapsed());
    }

    // 2. One more run on each node completes it.
    for node in [&n.etcd, &n.primary] {
        let state = node
            .firstboot(&node.options(wait))
            .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", node.name, node.log("patroni.log")));
        assert!(state.done, "{}", state.summary());
        assert!(node.root.join("var/lib/pigsty/firstboot.done").exists());
        // Every step of the plan was stopped at least once, and each ran once per stop
        // in it plus the run that finished it.
        for id in &state.order {
            let stops = KILLS
                .iter()
                .filter(|k| k.primary == (node.name == n.primary.name) && step_of(k.at) == id)
                .count();
            assert!(stops > 0, "{}: no stop inside step {id}", node.name);
            let s = &state.steps[id];
            assert_eq!(s.status, StepStatus::Done, "{}", state.summary());
            assert_eq!(s.attempts as usize, stops + 1, "{id}: {}", state.summary());
        }
    }
    let state = load(&n.primary);
    assert_eq!(
        state.order,
        [
            "etcd-ready",
            "minio",
            "minio-buckets",
            "patroni",
            "pgbackrest-stanza",
            "pgbouncer",
            "haproxy",
            "pg-users",
            "pg-databases",
            "pgbackrest",
            "done"
        ]
    );
    eprintln!("joined: {:?}", t0.elapsed());

    // 3. What the steps made is there, made once.
    let buckets = &state.steps["minio-buckets"].detail;
    assert!(buckets.contains("already there [pgsql]"), "{buckets}");
    assert!(
        buckets.contains("not created: the server has no MinIO admin API")
            && buckets.contains("HTTP 501"),
        "{buckets}"
    );
    for b in ["pgsql", "meta", "data"] {
        assert!(n.primary.root.join("data/minio").join(b).is_dir(), "{b}");
    }
    assert_eq!(
        psql(
            f.pg_port,
            "SELECT count(*) FROM pg_roles WHERE rolname = 'dbuser_lab'"
        ),
        "1"
    );
    assert_eq!(
        psql(
            f.pg_port,
            "SELECT count(*) FROM pg_database WHERE datname = 'lab'"
        ),
        "1"
    );
    assert!(
        state.steps["pgbackrest"].detail.contains("1 backup"),
        "{}",
        state.summary()
    );
    // The primary reported to etcd, and `pigsty status` reads it there.
    let inv_path = tmp.path().join("inventory.yml");
    std::fs::write(&inv_path, &f.inventory).unwrap();
    let rows = fleet_status(&inv_path);
    for name in [&n.etcd.name, &n.primary.name] {
        let row = rows
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["nodename"] == name.as_str())
            .unwrap_or_else(|| panic!("{name} in {rows}"));
        assert_eq!(row["state"], "done", "{rows}");
    }
    eprintln!("total: {:?}", t0.elapsed());
}

/// `pigsty -i INVENTORY status --json`, parsed.
fn fleet_status(inventory: &Path) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .arg("-i")
        .arg(inventory)
        .args(["status", "--json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The environment that makes this binary the agent on that root, in that test net.
const AGENT_ROOT: &str = "PIGSTY_TEST_AGENT_ROOT";
const AGENT_NET: &str = "PIGSTY_TEST_NET";

/// One agent process for `a_killed_agent_process_resumes_at_every_step`, started by it
/// with PIGSTY_TEST_AGENT_ROOT and PIGSTY_TEST_NET. Its services outlive it, as they
/// outlive an agent that systemd's unit runs.
fn agent_process(root: std::path::PathBuf, net: &str) -> ! {
    let services = Processes::new(&root);
    services.define("etcd.service", support::etcd_spec(&root));
    if root.join("etc/patroni/patroni.yml").exists() {
        define_patroni(&services, &root);
        define_extras(&services, &root);
        define_minio(&services, &root, net, 1);
    }
    let mut opts = pigsty::agent::Options::new(&root);
    opts.wait = Duration::from_secs(90);
    opts.request = Duration::from_secs(2);
    let code = match pigsty::agent::firstboot(&opts, &services) {
        Ok(_) => 0,
        Err(e) => {
            eprintln!("agent failed: {e:#}");
            1
        }
    };
    std::mem::forget(services);
    std::process::exit(code);
}

/// Start the agent on `node` as a process of its own, in its own process group.
fn spawn_agent(node: &TestNode, net: &str) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(std::env::current_exe().unwrap())
        .env(AGENT_ROOT, &node.root)
        .env(AGENT_NET, net)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(node.root.join("agent.log"))
                .unwrap(),
        )
        .spawn()
        .unwrap()
}

/// SIGKILL the agent and everything it runs in its group (psql, pgbackrest), as
/// systemd stopping the unit's cgroup or a power cut would; its services live on in
/// groups of their own.
fn kill_group(child: &mut Child) {
    let pgid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .expect("the agent's pid");
    rustix::process::kill_process_group(pgid, rustix::process::Signal::KILL)
        .unwrap_or_else(|e| panic!("kill -KILL -{pgid:?}: {e}"));
    child.wait().unwrap();
}

/// What one agent process did before its end.
#[derive(Debug, PartialEq)]
enum Run {
    /// Killed while the state file showed it inside this step.
    KilledIn(String),
    /// It finished every step before it could be killed in the one wanted.
    Finished,
    /// It got past the wanted step before the state file showed it there.
    Passed,
}

/// Whether a process of group `pgid` runs with `needle` in its command line.
fn group_runs(pgid: u32, needle: &str) -> bool {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return false;
    };
    dir.filter_map(Result::ok).any(|e| {
        let p = e.path();
        // `pid (comm) state ppid pgrp ...`
        let in_group = std::fs::read_to_string(p.join("stat")).is_ok_and(|stat| {
            stat.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(2)?.parse::<u32>().ok())
                == Some(pgid)
        });
        in_group
            && std::fs::read(p.join("cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
    })
}

/// Run the agent until its state file shows it inside `step` (and, with `running`,
/// until it runs a command with that in its command line), then kill it there.
fn kill_inside(node: &TestNode, net: &str, step: &str, running: Option<&str>) -> Run {
    let attempts = |s: &State| s.steps.get(step).map_or(0, |s| s.attempts);
    let before = load(node);
    if before.is_done(step) {
        return Run::Passed;
    }
    let mut child = spawn_agent(node, net);
    let until = Instant::now() + Duration::from_secs(120);
    loop {
        // Only what this run wrote counts: it started the step once more.
        let state = load(node);
        if state.current == step
            && attempts(&state) > attempts(&before)
            && state.steps[step].status == StepStatus::Running
            && running.is_none_or(|cmd| group_runs(child.id(), cmd))
        {
            kill_group(&mut child);
            return Run::KilledIn(match running {
                Some(cmd) => format!("{step} running {cmd}"),
                None => step.to_string(),
            });
        }
        if state.is_done(step) && step != "done" {
            kill_group(&mut child);
            return Run::Passed;
        }
        if let Some(status) = child.try_wait().unwrap() {
            assert!(
                status.success(),
                "agent run failed:\n{}",
                node.log("agent.log")
            );
            return Run::Finished;
        }
        assert!(
            Instant::now() < until,
            "no agent run reached step {step}\n{}",
            node.log("agent.log")
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn a_killed_agent_process_resumes_at_every_step() {
    require_ready();
    let t0 = Instant::now();
    let net = "127.0.12";
    let tmp = tempfile::tempdir().unwrap();
    support::open_up(tmp.path());
    let f = fleet(net);
    let n = nodes(tmp.path(), net, &f.inventory);
    n.etcd
        .firstboot(&n.etcd.options(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", n.etcd.log("etcd.log")));

    // 1. For each step of the plan in turn: a new agent process, killed as soon as
    //    its state file shows it inside that step.
    let plan = pigsty::plan::node_json::NodeJson::load(&n.primary.root)
        .unwrap()
        .ordered_steps()
        .unwrap();
    let mut runs = Vec::new();
    for step in &plan {
        let run = kill_inside(&n.primary, net, step.id.as_str(), None);
        eprintln!("{}: {run:?} at {:?}", step.id, t0.elapsed());
        runs.push(run);
        // The longest piece of work: the first full backup, killed while it runs
        // (PostgreSQL's backup session dies with it; the next run starts over).
        if step.id == StepId::Pgbackrest {
            let run = kill_inside(&n.primary, net, step.id.as_str(), Some("--type=full"));
            eprintln!("{}: {run:?} at {:?}", step.id, t0.elapsed());
            assert_eq!(run, Run::KilledIn("pgbackrest running --type=full".into()));
            runs.push(run);
        }
    }
    // The steps that take more than a moment were each killed inside; the quick
    // ones may pass between two looks at the state file.
    for slow in ["minio", "patroni", "pgbackrest"] {
        assert!(
            runs.contains(&Run::KilledIn(slow.into())),
            "no kill inside {slow}: {runs:?}"
        );
    }
    let kills = runs
        .iter()
        .filter(|r| matches!(r, Run::KilledIn(_)))
        .count();
    assert!(kills >= plan.len() / 2, "{runs:?}");

    // 2. A last run completes the join; every killed step ran again.
    let mut last = spawn_agent(&n.primary, net);
    let until = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(s) = last.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > until {
            kill_group(&mut last);
            panic!(
                "the last agent run did not finish\n{}",
                n.primary.log("agent.log")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{}\n{}",
        n.primary.log("agent.log"),
        n.primary.log("patroni.log")
    );
    let state = load(&n.primary);
    assert!(state.done, "{}", state.summary());
    for run in &runs {
        if let Run::KilledIn(what) = run {
            let step = what.split(' ').next().unwrap_or_default();
            assert!(
                state.steps[step].attempts >= 2,
                "{step}: {}",
                state.summary()
            );
        }
    }
    for id in &state.order {
        assert_eq!(
            state.steps[id].status,
            StepStatus::Done,
            "{}",
            state.summary()
        );
    }
    assert!(
        state.steps["pgbackrest"].detail.contains("1 backup")
            || state.steps["pgbackrest"].detail.contains("backup taken"),
        "{}",
        state.summary()
    );
    assert_eq!(
        psql(
            f.pg_port,
            "SELECT count(*) FROM pg_database WHERE datname = 'lab'"
        ),
        "1"
    );
    eprintln!("total: {:?}", t0.elapsed());
}
