//! The agent's etcd join against real etcd 3.4 processes on loopback: a fresh
//! three-member cluster, a fourth member joining as a learner, a reimaged member
//! rejoining with an empty data dir, a kill at each point of the join, and the
//! failure modes (quorum lost, peers that never appear). Every wait is bounded.
//!
//! Every test starts etcd members, so all are ignored unless asked for
//! (`--include-ignored`; ci/test.sh does). A custom main (harness = false): this
//! binary is also the agent process that `a_killed_agent_process_resumes` starts
//! and kills (see `agent_process`).

mod support;

use std::time::{Duration, Instant};

use pigsty::agent::etcd::Client;
use pigsty::agent::service::ServiceManager;
use pigsty::agent::state::StepStatus;
use support::{TestNode, etcd_inventory, port_pairs, require_tools};

/// The etcd tests of this file run one at a time: each starts three or four etcd
/// members, and several clusters electing leaders at once on two cores starve each
/// other past the agent's waits.
fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

const ETCD: &str = "/usr/bin/etcd";

/// A root client of member `n` of the fleet under `base`.
fn client(base: &std::path::Path, net: &str, n: usize, ports: &[(u16, u16)]) -> Client {
    support::root_client(base, &format!("https://{net}.{n}:{}", ports[n - 1].0))
}

/// The members' RBAC is on and etcd refuses whoever lacks a part of the access:
/// plain http, TLS without a client certificate, a certificate of another CA, a
/// certificate but no user, a wrong password. Root reads and writes.
fn refuses_plaintext_and_strangers(base: &std::path::Path, addr: &str) {
    use pigsty::agent::etcd::{Access, answered};
    let url = format!("https://{addr}");
    let t = Duration::from_secs(2);
    let root = support::root_access(base);
    let tls = root.tls.clone().unwrap();
    // Plain http to a TLS port: no answer etcd would call its own.
    let plain = Client::new(&format!("http://{addr}"), t).unwrap();
    assert!(plain.member_list().is_err());
    // TLS trusting the CA but presenting no certificate: the handshake fails.
    let http = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(tls.ca.as_bytes()).unwrap())
        .timeout(t)
        .build()
        .unwrap();
    assert!(http.get(format!("{url}/health")).send().is_err());
    // A certificate from another CA: refused in the handshake too.
    let other = tempfile::tempdir().unwrap();
    let stranger = pigsty::pki::Pki::open_or_create(other.path())
        .unwrap()
        .client("stranger")
        .unwrap();
    let foreign = Access {
        tls: Some(pigsty::http::Tls {
            ca: tls.ca.clone(),
            cert: stranger.cert,
            key: stranger.key,
        }),
        user: None,
    };
    let err = Client::with(&url, t, &foreign)
        .unwrap()
        .health()
        .unwrap_err();
    assert!(!answered(&err), "{err:#}");
    // The fleet's certificate without a user: etcd answers, and says no.
    let anonymous = Client::with(
        &url,
        t,
        &Access {
            user: None,
            ..root.clone()
        },
    )
    .unwrap();
    assert!(anonymous.health().unwrap());
    let err = anonymous.put("/pigsty/probe", b"x").unwrap_err();
    assert!(format!("{err:#}").contains("user name is empty"), "{err:#}");
    // A wrong password.
    let wrong = Access {
        user: Some(("root".into(), "guess".into())),
        ..root.clone()
    };
    let err = Client::with(&url, t, &wrong)
        .unwrap()
        .get("/pigsty/probe")
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("authentication failed"),
        "{err:#}"
    );
    // Root with the inventory's password.
    let c = Client::with(&url, t, &root).unwrap();
    c.put("/pigsty/probe", b"x").unwrap();
    assert_eq!(c.get("/pigsty/probe").unwrap().as_deref(), Some(&b"x"[..]));
    c.delete("/pigsty/probe").unwrap();
}

/// Every node's first boot at once, each done with its etcd step done.
fn join_at_once(nodes: &[TestNode], wait: Duration) {
    std::thread::scope(|s| {
        let runs: Vec<_> = nodes
            .iter()
            .map(|n| s.spawn(move || n.firstboot(&n.options(wait))))
            .collect();
        for (run, node) in runs.into_iter().zip(nodes) {
            let state = run
                .join()
                .unwrap()
                .unwrap_or_else(|e| panic!("{}: {e:#}\n{}", node.name, node.log("etcd.log")));
            assert!(state.done);
            assert_eq!(state.steps["etcd"].status, StepStatus::Done);
        }
    });
}

/// Three members boot at once, then a fourth joins (killed twice on the way), then
/// member 2 is reimaged (killed once after removing its stale self) and rejoins.
fn three_bootstrap_a_fourth_joins_a_reimaged_member_rejoins() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let t0 = Instant::now();
    let net = "127.0.1";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(4);
    let v1 = etcd_inventory(net, &ports[..3]);
    let v2 = etcd_inventory(net, &ports);
    let wait = Duration::from_secs(30);

    // 1. A fresh cluster: three agents at once, nobody answers, all bootstrap.
    let first: Vec<TestNode> = (1..=3)
        .map(|i| TestNode::render(tmp.path(), &format!("n{i}"), &v1, &format!("etcd-{i}")))
        .collect();
    join_at_once(&first, wait);
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().all(|m| m.started() && !m.is_learner));
    eprintln!("bootstrap of 3: {:?}", t0.elapsed());
    refuses_plaintext_and_strangers(tmp.path(), &format!("{net}.1:{}", ports[0].0));

    // 2. A fourth member from the grown inventory joins as a learner; the agent is
    //    killed right after member add and again after etcd started, then completes.
    let fourth = TestNode::render(tmp.path(), "n4", &v2, "etcd-4");
    for point in ["etcd:member-added", "etcd:started"] {
        let mut opts = fourth.options(wait);
        opts.crash_at = Some(point.into());
        let err = fourth.firstboot(&opts).unwrap_err();
        assert!(err.to_string().contains(point), "{err:#}");
    }
    let state = fourth
        .firstboot(&fourth.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", fourth.log("etcd.log")));
    assert!(state.done);
    assert_eq!(state.steps["etcd"].attempts, 3);
    assert!(
        state.steps["etcd"].detail.contains("promoted"),
        "{:?}",
        state.steps["etcd"]
    );
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    assert_eq!(members.len(), 4);
    assert!(
        members.iter().all(|m| m.started() && !m.is_learner),
        "{members:?}"
    );
    eprintln!("fourth joined: {:?}", t0.elapsed());

    // 3. Member 2 is reimaged: the machine dies, comes back with an empty data dir
    //    and a fresh root; the agent removes the stale member (and is killed right
    //    then), then joins again as a learner and is promoted.
    let old_id = members.iter().find(|m| m.name == "etcd-2").unwrap().id;
    first[1].services.kill_all();
    std::fs::remove_dir_all(&first[1].root).unwrap();
    let reimaged = TestNode::render(tmp.path(), "n2", &v2, "etcd-2");
    let mut opts = reimaged.options(wait);
    opts.crash_at = Some("etcd:removed-stale".into());
    assert!(reimaged.firstboot(&opts).is_err());
    let state = reimaged
        .firstboot(&reimaged.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", reimaged.log("etcd.log")));
    assert!(state.done);
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    let new = members
        .iter()
        .find(|m| m.name == "etcd-2")
        .expect("etcd-2 rejoined");
    assert_ne!(new.id, old_id);
    assert_eq!(members.len(), 4);
    assert!(
        members.iter().all(|m| m.started() && !m.is_learner),
        "{members:?}"
    );
    eprintln!("reimaged member rejoined: {:?}", t0.elapsed());

    // 4. Every node reported its state to etcd; `pigsty status` reads it from there.
    let urls: Vec<String> = (1..=4)
        .map(|i| format!("https://{net}.{i}:{}", ports[i - 1].0))
        .collect();
    let access = support::root_access(tmp.path());
    let fleet = pigsty::agent::read_fleet(&urls, Duration::from_secs(2), &access).unwrap();
    assert_eq!(fleet.len(), 4, "{:?}", fleet.keys());
    assert!(fleet.values().all(|s| s.done));
    let loaded = pigsty::inventory::load_str("v2.yml", &v2).unwrap();
    let rows = pigsty::agent::fleet_rows(&loaded.fleet, &fleet);
    assert!(rows.iter().all(|r| r.state == "done"), "{rows:?}");

    // 5. A second run is a no-op: the done marker gates it.
    let again = first[0].firstboot(&first[0].options(wait)).unwrap();
    assert!(again.done);

    // 6. A member removed after its join is no longer healthy, whatever its agent
    //    reported: `pigsty status` reads the live membership beside the reports.
    let live =
        pigsty::agent::fleet::read_live(&loaded.fleet, &urls, Duration::from_secs(2), &access)
            .unwrap();
    for node in &loaded.fleet.nodes {
        let p = pigsty::agent::fleet::problems(node, &live);
        assert!(p.is_empty(), "{}: {p:?}", node.nodename);
    }
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    let gone = members.iter().find(|m| m.name == "etcd-4").unwrap().id;
    client(tmp.path(), net, 1, &ports)
        .member_remove(gone)
        .unwrap();
    let live =
        pigsty::agent::fleet::read_live(&loaded.fleet, &urls, Duration::from_secs(2), &access)
            .unwrap();
    let four = loaded
        .fleet
        .nodes
        .iter()
        .find(|n| n.etcd.as_ref().is_some_and(|e| e.name == "etcd-4"))
        .unwrap();
    assert_eq!(
        pigsty::agent::fleet::problems(four, &live),
        ["etcd-4 is not a started member of etcd"]
    );
    eprintln!("total: {:?}", t0.elapsed());
}

/// A fresh cluster whose third member boots late: the first two bootstrap (two of
/// three are a quorum), and the third finds them and takes its place in the static
/// list under the member ID that list gave it, rather than taking that never-started
/// member for the stale one of a reimaged node (remove, add a learner, promote).
fn a_member_that_boots_late_takes_its_place_in_the_static_list() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.18";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(3);
    let inv = etcd_inventory(net, &ports);
    let wait = Duration::from_secs(30);
    let nodes: Vec<TestNode> = (1..=3)
        .map(|i| TestNode::render(tmp.path(), &format!("n{i}"), &inv, &format!("etcd-{i}")))
        .collect();
    join_at_once(&nodes[..2], wait);
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    let waiting = members
        .iter()
        .find(|m| m.name == "etcd-3")
        .unwrap_or_else(|| panic!("the static list's etcd-3 is a member: {members:?}"));
    assert!(!waiting.started(), "{waiting:?}");
    let id = waiting.id;

    let late = &nodes[2];
    let state = late
        .firstboot(&late.options(wait))
        .unwrap_or_else(|e| panic!("{e:#}\n{}", late.log("etcd.log")));
    assert!(state.done);
    let detail = &state.steps["etcd"].detail;
    assert!(
        detail.contains("member of the cluster answering"),
        "{detail}"
    );
    assert!(!detail.contains("reimaged"), "{detail}");
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    assert_eq!(members.len(), 3, "{members:?}");
    assert!(
        members.iter().all(|m| m.started() && !m.is_learner),
        "{members:?}"
    );
    let joined = members.iter().find(|m| m.name == "etcd-3").unwrap();
    assert_eq!(joined.id, id, "etcd-3 kept the ID of the static list");
}

/// Quorum lost during a join: a fourth member is added as a learner (and the agent
/// killed right then), then two of the three voters die; the resumed agent stops at
/// its bound. A fifth member that arrives now cannot even be added (member add would
/// hang without quorum): it fails with the step, the peer and the last answer.
fn join_fails_clearly_when_the_cluster_lost_quorum() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.2";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(5);
    let v1 = etcd_inventory(net, &ports[..3]);
    let v2 = etcd_inventory(net, &ports);
    let first: Vec<TestNode> = (1..=3)
        .map(|i| TestNode::render(tmp.path(), &format!("n{i}"), &v1, &format!("etcd-{i}")))
        .collect();
    std::thread::scope(|s| {
        for n in &first {
            s.spawn(move || n.firstboot(&n.options(Duration::from_secs(30))).unwrap());
        }
    });
    let fourth = TestNode::render(tmp.path(), "n4", &v2, "etcd-4");
    let mut opts = fourth.options(Duration::from_secs(30));
    opts.crash_at = Some("etcd:member-added".into());
    assert!(fourth.firstboot(&opts).is_err());
    first[1].services.kill_all();
    first[2].services.kill_all();

    // 1. The learner cannot catch up without a leader: bounded, and it says so.
    let start = Instant::now();
    let err = fourth
        .firstboot(&fourth.options(Duration::from_secs(3)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert!(
        msg.contains("step etcd") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{net}.4:{}", ports[3].0)), "{msg}");
    assert!(msg.contains("last answer"), "{msg}");

    // 2. A new member cannot be added at all.
    let fifth = TestNode::render(tmp.path(), "n5", &v2, "etcd-5");
    let start = Instant::now();
    let err = fifth
        .firstboot(&fifth.options(Duration::from_secs(3)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "took {:?}",
        start.elapsed()
    );
    assert!(msg.contains("step etcd") && msg.contains("quorum"), "{msg}");
    assert!(msg.contains(&format!("{net}.1:{}", ports[0].0)), "{msg}");
    assert!(msg.contains("last answer"), "{msg}");
    // The failure is in the state file for `agent status`.
    let state = pigsty::agent::state::Store::new(&fifth.root)
        .load()
        .unwrap();
    assert_eq!(state.steps["etcd"].status, StepStatus::Failed);
    assert!(state.steps["etcd"].error.contains("quorum"));
    // The cluster holds the three voters and the learner, nothing more (asked
    // without a user: a token needs the quorum this cluster lost).
    let members = client(tmp.path(), net, 1, &ports)
        .anonymous()
        .member_list()
        .unwrap();
    assert_eq!(members.len(), 4, "{members:?}");
    assert_eq!(members.iter().filter(|m| m.is_learner).count(), 1);
}

/// A member whose peers never start: the bootstrap waits for quorum within its bound
/// and fails naming its own endpoint; a client node waits for etcd the same way.
fn peers_that_never_appear_time_out() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.3";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(3);
    let inv = etcd_inventory(net, &ports);
    let lonely = TestNode::render(tmp.path(), "n1", &inv, "etcd-1");
    let start = Instant::now();
    let err = lonely
        .firstboot(&lonely.options(Duration::from_secs(3)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(start.elapsed() < Duration::from_secs(20));
    assert!(
        msg.contains("step etcd") && msg.contains("timed out"),
        "{msg}"
    );
    assert!(msg.contains(&format!("{net}.1:{}", ports[0].0)), "{msg}");
    // Resuming after the peers still do not exist fails the same bounded way.
    assert!(
        lonely
            .firstboot(&lonely.options(Duration::from_secs(1)))
            .is_err()
    );
}

/// An etcd that exits at once (here an option it cannot parse): the agent's bounded
/// wait ends with etcd's refusal and that etcd.service is not running, not with a
/// refused connection alone.
fn an_etcd_that_exits_is_named_not_waited_for() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.14";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(1);
    let inv = etcd_inventory(net, &ports);
    let node = TestNode::render(tmp.path(), "n1", &inv, "etcd-1");
    let env = node.root.join("etc/default/etcd");
    let mut text = std::fs::read_to_string(&env).unwrap();
    text.push_str("ETCD_HEARTBEAT_INTERVAL=often\n");
    std::fs::write(&env, text).unwrap();
    let err = node
        .firstboot(&node.options(Duration::from_secs(4)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("step etcd") && msg.contains("etcd.service is not running"),
        "{msg}\n{}",
        node.log("etcd.log")
    );
}

/// systemctl as it fails when etcd (Type=notify) outlasts its start timeout: the
/// process runs on (systemd starts it again), the start job failed.
struct StartTimesOut<'a> {
    inner: &'a support::processes::Processes,
    timed_out: std::sync::atomic::AtomicU32,
}

impl ServiceManager for StartTimesOut<'_> {
    fn start(&self, unit: &str) -> anyhow::Result<()> {
        self.inner.start(unit)?;
        if unit == "etcd.service" {
            self.timed_out
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            anyhow::bail!(
                "`systemctl start etcd.service` failed (exit status: 1): Job for etcd.service \
                 failed because a timeout was exceeded."
            );
        }
        Ok(())
    }
    fn reload(&self, unit: &str) -> anyhow::Result<()> {
        self.inner.reload(unit)
    }
    fn restart(&self, unit: &str) -> anyhow::Result<()> {
        self.inner.restart(unit)
    }
    fn daemon_reload(&self) -> anyhow::Result<()> {
        self.inner.daemon_reload()
    }
    fn stop(&self, unit: &str) -> anyhow::Result<()> {
        self.inner.stop(unit)
    }
    fn is_active(&self, unit: &str) -> anyhow::Result<bool> {
        self.inner.is_active(unit)
    }
    fn is_failed(&self, unit: &str) -> anyhow::Result<bool> {
        self.inner.is_failed(unit)
    }
    fn set_env(&self, unit: &str, vars: &[(&str, String)]) -> anyhow::Result<()> {
        self.inner.set_env(unit, vars)
    }
}

/// A start of etcd.service that outlasts systemd's start timeout (a member of a new
/// cluster waiting for its peers, a busy machine) is not a failed join: the agent
/// waits, bounded, for the member to be healthy, and the step is done. A start that
/// fails otherwise still fails the step (`an_etcd_that_exits_is_named_not_waited_for`).
fn a_start_timeout_is_waited_out() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.16";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(1);
    let inv = etcd_inventory(net, &ports);
    let node = TestNode::render(tmp.path(), "n1", &inv, "etcd-1");
    let services = StartTimesOut {
        inner: &node.services,
        timed_out: std::sync::atomic::AtomicU32::new(0),
    };
    let result = pigsty::agent::firstboot(&node.options(Duration::from_secs(30)), &services);
    let _ = node.services.stop("etcd.service");
    let state = result.unwrap_or_else(|e| panic!("{e:#}\n{}", node.log("etcd.log")));
    assert_eq!(
        services.timed_out.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "etcd.service was started once"
    );
    assert!(state.done, "{state:?}");
    assert!(
        matches!(state.steps["etcd"].status, StepStatus::Done),
        "{state:?}"
    );
}

fn main() {
    // Started by `a_killed_agent_process_resumes` as the agent: never a test run.
    if let Some(root) = std::env::var_os(AGENT_ROOT) {
        agent_process(root.into());
    }
    support::run_tests(vec![
        support::ignored(
            "three_bootstrap_a_fourth_joins_a_reimaged_member_rejoins",
            three_bootstrap_a_fourth_joins_a_reimaged_member_rejoins,
        ),
        support::ignored(
            "a_member_that_boots_late_takes_its_place_in_the_static_list",
            a_member_that_boots_late_takes_its_place_in_the_static_list,
        ),
        support::ignored(
            "join_fails_clearly_when_the_cluster_lost_quorum",
            join_fails_clearly_when_the_cluster_lost_quorum,
        ),
        support::ignored(
            "peers_that_never_appear_time_out",
            peers_that_never_appear_time_out,
        ),
        support::ignored(
            "an_etcd_that_exits_is_named_not_waited_for",
            an_etcd_that_exits_is_named_not_waited_for,
        ),
        support::ignored(
            "a_start_timeout_is_waited_out",
            a_start_timeout_is_waited_out,
        ),
        support::ignored(
            "a_killed_agent_process_resumes",
            a_killed_agent_process_resumes,
        ),
        support::ignored(
            "stopped_joins_show_in_agent_status_and_fleet_status",
            stopped_joins_show_in_agent_status_and_fleet_status,
        ),
    ]);
}

/// The environment variable that makes this binary the agent on that root.
const AGENT_ROOT: &str = "PIGSTY_TEST_AGENT_ROOT";

/// One agent process for `a_killed_agent_process_resumes`, started by it with
/// PIGSTY_TEST_AGENT_ROOT. Its services outlive it, as they outlive an agent that
/// systemd's unit runs.
fn agent_process(root: std::path::PathBuf) -> ! {
    let services = support::processes::Processes::new(&root);
    services.define("etcd.service", support::etcd_spec(&root));
    let mut opts = pigsty::agent::Options::new(&root);
    opts.wait = Duration::from_secs(30);
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

/// The agent as a real process, SIGKILLed at whatever it is doing after a growing
/// delay while a fourth member joins, until a run finishes before its kill; one more
/// run then finds the join complete.
fn a_killed_agent_process_resumes() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.10";
    let tmp = tempfile::tempdir().unwrap();
    let ports = port_pairs(4);
    let v1 = etcd_inventory(net, &ports[..3]);
    let v2 = etcd_inventory(net, &ports);
    let first: Vec<TestNode> = (1..=3)
        .map(|i| TestNode::render(tmp.path(), &format!("n{i}"), &v1, &format!("etcd-{i}")))
        .collect();
    std::thread::scope(|s| {
        for n in &first {
            s.spawn(move || n.firstboot(&n.options(Duration::from_secs(30))).unwrap());
        }
    });
    // etcd refuses reconfiguration for its first seconds ("unhealthy cluster"): let
    // that pass, so the kills land in member add, start and promote.
    std::thread::sleep(Duration::from_secs(6));
    // Its Processes only adopts (and finally stops) what the agent processes started.
    let fourth = TestNode::render(tmp.path(), "n4", &v2, "etcd-4");
    let agent = || {
        std::process::Command::new(std::env::current_exe().unwrap())
            .env(AGENT_ROOT, &fourth.root)
            .stdout(std::process::Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(fourth.root.join("agent.log"))
                    .unwrap(),
            )
            .spawn()
            .unwrap()
    };
    // The whole join takes a few hundred milliseconds: kill it ever later until a run
    // gets to the end before its kill.
    let mut kills = 0;
    for delay_ms in (1..=60).map(|i| i * 8) {
        let mut child = agent();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap();
        let status = child.wait().unwrap();
        if status.success() {
            break;
        }
        kills += 1;
        let state = pigsty::agent::state::Store::new(&fourth.root)
            .load()
            .unwrap();
        let etcd = state.steps.get("etcd").cloned().unwrap_or_default();
        eprintln!(
            "killed after {delay_ms} ms: etcd {:?} attempt {}",
            etcd.status, etcd.attempts
        );
    }
    assert!(
        kills >= 3,
        "only {kills} run(s) were killed before finishing"
    );
    let mut child = agent();
    let until = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < until, "the last agent run did not finish");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        status.success(),
        "{}\n{}",
        fourth.log("agent.log"),
        fourth.log("etcd.log")
    );
    let state = pigsty::agent::state::Store::new(&fourth.root)
        .load()
        .unwrap();
    assert!(state.done, "{}", state.summary());
    let members = client(tmp.path(), net, 1, &ports).member_list().unwrap();
    assert_eq!(members.len(), 4, "{members:?}");
    assert!(
        members.iter().all(|m| m.started() && !m.is_learner),
        "{members:?}"
    );
}

/// `pigsty` run as the admin would, with its stdout parsed as JSON when asked.
fn pigsty(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(args)
        .output()
        .unwrap()
}

fn json_of(out: &std::process::Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// PostgreSQL nodes whose join stops at Patroni, read back through `pigsty agent
/// status` and `pigsty status -i` (from real etcd): a client node whose etcd never
/// appears, a primary whose Patroni cannot start, a replica waiting for a leader
/// that never comes, and that replica again once etcd is gone. Patroni itself never
/// runs here, so no root is needed.
fn stopped_joins_show_in_agent_status_and_fleet_status() {
    let _serial = one_at_a_time();
    require_tools(&[ETCD]);
    let net = "127.0.13";
    let tmp = tempfile::tempdir().unwrap();
    let inv = support::pg_inventory(net, 2, "");
    let inv_path = tmp.path().join("inventory.yml");
    std::fs::write(&inv_path, &inv).unwrap();
    let etcd_port = {
        let l = inv.lines().find(|l| l.contains("etcd_seq: 1")).unwrap();
        let at = l.find("etcd_port: ").unwrap() + 11;
        l[at..].split(',').next().unwrap().parse::<u16>().unwrap()
    };
    let etcd_url = format!("https://{net}.1:{etcd_port}");
    let primary = TestNode::render(tmp.path(), "n1", &inv, "pg-t-1");
    let replica = TestNode::render(tmp.path(), "n2", &inv, "pg-t-2");
    // The primary's SSH host key, as its first boot makes it: the agent reports it.
    std::fs::create_dir_all(primary.root.join("etc/ssh")).unwrap();
    std::fs::write(
        primary.root.join("etc/ssh/ssh_host_ed25519_key.pub"),
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPigsty root@pg-t-1\n",
    )
    .unwrap();
    // The primary's image names its plan, as a build writes it: the agent reports it.
    let planted = "1".repeat(64);
    std::fs::write(
        primary.root.join("etc/pigsty/image.json"),
        format!(r#"{{"node":"pg-t-1","plan_digest":"{planted}","tool":"pigsty test"}}"#),
    )
    .unwrap();

    // 1. etcd never appears: the client node's etcd-ready stops at its bound, naming
    //    the endpoint and what it answered.
    let err = replica
        .firstboot(&replica.options(Duration::from_secs(2)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("step etcd-ready: timed out") && msg.contains(&etcd_url),
        "{msg}"
    );
    assert!(msg.contains("last answer: GET"), "{msg}");

    // 2. The primary bootstraps etcd, then its Patroni cannot start (none is
    //    installed on this node): the failure is reported to etcd.
    let err = primary
        .firstboot(&primary.options(Duration::from_secs(30)))
        .unwrap_err();
    assert!(
        format!("{err:#}").contains("join step patroni"),
        "{err:#}\n{}",
        primary.log("etcd.log")
    );

    // 3. The replica now passes etcd-ready and waits for a leader that never comes.
    let err = replica
        .firstboot(&replica.options(Duration::from_secs(2)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("step patroni: timed out")
            && msg.contains(&format!("{etcd_url} (etcd key /pg/pg-t/leader)")),
        "{msg}"
    );
    assert!(
        msg.contains("last answer: no leader and no initialize key"),
        "{msg}"
    );

    // 4. `pigsty agent status` on the replica: where it stopped and why.
    let root = replica.root.as_os_str();
    let status = json_of(&pigsty(&[
        "agent".as_ref(),
        "status".as_ref(),
        "--json".as_ref(),
        "--root".as_ref(),
        root,
    ]));
    assert_eq!(status["node"], "pg-t-2");
    assert_eq!(status["done"], false);
    assert_eq!(status["current"], "patroni");
    assert_eq!(status["steps"]["etcd-ready"]["status"], "done", "{status}");
    assert_eq!(status["steps"]["etcd-ready"]["attempts"], 2, "{status}");
    assert_eq!(status["steps"]["patroni"]["status"], "failed", "{status}");
    let error = status["steps"]["patroni"]["error"].as_str().unwrap();
    assert!(
        error.contains("/pg/pg-t/leader") && error.contains("last answer"),
        "{error}"
    );
    let out = pigsty(&["agent".as_ref(), "status".as_ref(), "--root".as_ref(), root]);
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("first boot: at step patroni"), "{text}");
    assert!(
        lines.any(|l| l.starts_with("patroni") && l.contains("failed")),
        "{text}"
    );

    // 4b. The cluster's etcd user (created by the member) holds its own keys only.
    let loaded = pigsty::inventory::load_str("test.yml", &inv).unwrap();
    let pg = loaded.fleet.find("pg-t-1").unwrap().pg.clone().unwrap();
    let (user, password) = pigsty::render::context::pg_etcd_user(&loaded.fleet, &pg, "etcd");
    assert_eq!(user, "pg-t");
    let mut access = support::root_access(tmp.path());
    access.user = Some((user, password));
    let own = Client::with(&etcd_url, Duration::from_secs(2), &access).unwrap();
    own.put("/pg/pg-t/probe", b"1").unwrap();
    let member_key = format!("{}pg-t-3", pigsty::agent::NODES_PREFIX);
    own.put(&member_key, b"{}").unwrap();
    own.delete(&member_key).unwrap();
    for key in ["/pg/pg-other/leader", "/pigsty/nodes/etcd-1", "/pg/pg-t"] {
        let err = own.put(key, b"1").unwrap_err();
        assert!(
            format!("{err:#}").contains("permission denied"),
            "{key}: {err:#}"
        );
    }
    own.delete("/pg/pg-t/probe").unwrap();

    // 5. `pigsty status -i` reads every node's report from etcd: the two that ran,
    //    the one that never did, and a report from a node the inventory lacks.
    support::root_client(tmp.path(), &etcd_url)
        .put(
            &format!("{}ghost", pigsty::agent::NODES_PREFIX),
            br#"{"node":"ghost","done":true,"order":["done"]}"#,
        )
        .unwrap();
    let i = inv_path.as_os_str();
    let rows = json_of(&pigsty(&[
        "-i".as_ref(),
        i,
        "status".as_ref(),
        "--json".as_ref(),
    ]));
    let row = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["nodename"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no row for {name}: {rows}"))
    };
    assert_eq!(row("pg-t-1")["state"], "patroni failed", "{rows}");
    assert!(
        row("pg-t-1")["note"]
            .as_str()
            .unwrap()
            .contains("patroni.service"),
        "{rows}"
    );
    assert_eq!(row("pg-t-1")["report"]["plan_digest"], planted, "{rows}");
    assert_eq!(
        row("pg-t-1")["report"]["host_keys"],
        serde_json::json!(["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIPigsty"]),
        "{rows}"
    );
    assert_eq!(row("pg-t-2")["state"], "patroni failed", "{rows}");
    assert!(
        row("pg-t-2")["note"]
            .as_str()
            .unwrap()
            .contains("/pg/pg-t/leader"),
        "{rows}"
    );
    assert_eq!(row("pg-t-3")["state"], "unreported", "{rows}");
    assert_eq!(row("ghost")["state"], "done", "{rows}");
    assert!(
        row("ghost")["note"]
            .as_str()
            .unwrap()
            .starts_with("not in the inventory"),
        "{rows}"
    );
    let out = pigsty(&["-i".as_ref(), i, "status".as_ref()]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("NODE"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("pg-t-3") && l.contains("unreported")),
        "{text}"
    );

    // 5b. `pigsty diff` compares what each node reports running (its image's plan
    //     digest) with what the inventory compiles to.
    let plan = json_of(&pigsty(&[
        "-i".as_ref(),
        i,
        "plan".as_ref(),
        "--role".as_ref(),
        "pg-t-1".as_ref(),
        "--json".as_ref(),
    ]));
    let digest = plan["digest"].as_str().unwrap();
    let root = support::root_client(tmp.path(), &etcd_url);
    let report = |node: &str, digest: &str| {
        root.put(
            &format!("{}{node}", pigsty::agent::NODES_PREFIX),
            format!(r#"{{"node":"{node}","done":true,"order":["done"],"plan_digest":"{digest}"}}"#)
                .as_bytes(),
        )
        .unwrap();
    };
    report("pg-t-1", digest);
    report("pg-t-2", &"0".repeat(64));
    let diff = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec!["-i".as_ref(), i, "diff".as_ref()];
        args.extend(extra.iter().map(|a| std::ffi::OsStr::new(*a)));
        pigsty(&args)
    };
    let rows = json_of(&diff(&["--json"]));
    let state = |name: &str| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["nodename"] == name)
            .map(|r| r["state"].as_str().unwrap().to_string())
            .unwrap_or_else(|| panic!("no row for {name}: {rows}"))
    };
    assert_eq!(state("pg-t-1"), "same", "{rows}");
    assert_eq!(state("pg-t-2"), "differs", "{rows}");
    assert_eq!(state("pg-t-3"), "unreported", "{rows}");
    assert_eq!(state("ghost"), "not-in-inventory", "{rows}");
    let out = diff(&["--exit-code"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("1 differ, 1 unreported, 1 the same"),
        "{text}"
    );

    // 6. etcd is gone while the replica's join resumes: Patroni's wait for its DCS
    //    stops at the bound with what the endpoint answered; `pigsty status` fails
    //    naming the endpoint.
    primary.services.kill_all();
    let err = replica
        .firstboot(&replica.options(Duration::from_secs(2)))
        .unwrap_err();
    let msg = format!("{err:#}");
    assert!(
        msg.contains("step patroni: timed out") && msg.contains("a healthy etcd"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!(
            "last answer: no etcd member answers healthy: GET {etcd_url}/health"
        )),
        "{msg}"
    );
    let out = pigsty(&["-i".as_ref(), i, "status".as_ref()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no etcd endpoint answered") && err.contains(&etcd_url),
        "{err}"
    );
}
