//! Test harness for the first-boot agent: nodes on loopback addresses, each with its
//! own root directory (the rendered overlay of a test inventory) and its own
//! [`Processes`] service manager running the real etcd, Patroni and PostgreSQL.
//!
//! Test tiers: a test that needs root or starts real servers (etcd, Patroni,
//! PostgreSQL...) is `#[ignore = "..."]` (ci/test.sh runs it with
//! `--include-ignored`). Asked to run where it cannot, it fails through
//! [`require_root`] / [`require_tools`] saying what is missing: it never returns
//! early and reports ok.
#![allow(dead_code)]

pub mod processes;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pigsty::agent::{Options, state::State};
use processes::{ProcessSpec, Processes};

/// A TCP port nobody listens on right now (the OS picks it).
/// A free port on loopback (bound, then released for the server), never one handed
/// out before in this test binary: two ephemeral binds in a row may get the same port
/// back, and a test that asks for several ports needs them distinct. Bounded: at most
/// 100 binds.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    for _ in 0..100 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("binding an ephemeral port on loopback");
        if !given.contains(&port) {
            given.push(port);
            return port;
        }
    }
    panic!("100 ephemeral ports in a row were ones this test binary had already taken")
}

pub fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Fail the test unless it runs as root; `why` says what needs it.
pub fn require_root(why: &str) {
    assert!(
        is_root(),
        "this test needs root ({why}): run it as root, as ci/test.sh does"
    );
}

/// Fail the test unless every tool (an absolute path) is installed.
pub fn require_tools(tools: &[&str]) {
    for t in tools {
        assert!(
            Path::new(t).exists(),
            "this test needs {t}, which is not installed: run ci/setup.sh"
        );
    }
}

/// The test binaries with their own `main` (harness = false), which double as the
/// processes their tests start: a test of such a binary, run by libtest-mimic.
pub fn test(name: &str, f: fn()) -> libtest_mimic::Trial {
    libtest_mimic::Trial::test(name, move || {
        f();
        Ok(())
    })
}

/// [`test`], ignored unless asked for (`--include-ignored`): `#[ignore]` for these
/// binaries (libtest-mimic shows no reason; the test's doc comment gives it).
pub fn ignored(name: &str, f: fn()) -> libtest_mimic::Trial {
    test(name, f).with_ignored_flag(true)
}

/// Run the trials with the command line's libtest options; exits.
pub fn run_tests(trials: Vec<libtest_mimic::Trial>) -> ! {
    libtest_mimic::run(&libtest_mimic::Arguments::from_args(), trials).exit()
}

/// One node of a test fleet.
pub struct TestNode {
    pub name: String,
    pub root: PathBuf,
    pub services: Processes,
}

impl TestNode {
    /// Render `role` of the inventory into a fresh root under `base/<dir>`.
    pub fn render(base: &Path, dir: &str, inventory: &str, role: &str) -> TestNode {
        let root = base.join(dir);
        std::fs::create_dir_all(&root).unwrap();
        let loaded = pigsty::inventory::load_str("test.yml", inventory)
            .unwrap_or_else(|e| panic!("test inventory is invalid: {e:?}"));
        // Secured as build-image secures a fleet: certificates from a CA beside the
        // test's inventory (`<base>/files/pki`), etcd over TLS with RBAC.
        let fleet = pigsty::pki::with_certs(&loaded.fleet, &test_pki(base), true)
            .expect("issuing the test fleet's certificates");
        let node = fleet.find(role).expect("role in the test inventory");
        let compiled = pigsty::compile::compile(&fleet, node).expect("compiling the test node");
        for f in &compiled.files {
            let path = root.join(f.path.trim_start_matches('/'));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.content).unwrap();
            // As in the image: PostgreSQL refuses a key others may read.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(f.mode)).unwrap();
            // And owned as in the image (PostgreSQL's key, Patroni's config), where the
            // test may chown and the owner exists here.
            if f.owner != "root" && !f.owner.is_empty() && is_root() {
                let _ = std::process::Command::new("chown")
                    .arg(&f.owner)
                    .arg(&path)
                    .stderr(std::process::Stdio::null())
                    .status();
            }
        }
        let services = Processes::new(&root);
        services.define("etcd.service", etcd_spec(&root));
        TestNode {
            name: node.nodename.clone(),
            root,
            services,
        }
    }

    pub fn options(&self, wait: Duration) -> Options {
        let mut o = Options::new(&self.root);
        o.wait = wait;
        o.request = Duration::from_secs(2);
        o
    }

    pub fn firstboot(&self, opts: &Options) -> anyhow::Result<State> {
        pigsty::agent::firstboot(opts, &self.services)
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.join(name)).unwrap_or_default()
    }
}

/// The test fleet's CA, beside the test's inventory (`<base>/inventory.yml`), where
/// `pigsty -i <base>/inventory.yml status` finds it.
pub fn test_pki(base: &Path) -> pigsty::pki::Pki {
    pigsty::pki::Pki::open_or_create(&base.join("files/pki")).expect("the test fleet's CA")
}

/// How a test reaches its fleet's etcd: TLS with the operator's certificate, as root
/// (the inventories keep Pigsty's default root password).
pub fn root_access(base: &Path) -> pigsty::agent::etcd::Access {
    let c = test_pki(base)
        .client(pigsty::pki::OPERATOR)
        .expect("the operator's certificate");
    pigsty::agent::etcd::Access {
        tls: Some(pigsty::http::Tls {
            ca: c.ca,
            cert: c.cert,
            key: c.key,
        }),
        user: Some(("root".into(), "Etcd.Root".into())),
    }
}

/// A root client of one etcd endpoint (`https://ip:port`) of the fleet under `base`.
pub fn root_client(base: &Path, url: &str) -> pigsty::agent::etcd::Client {
    pigsty::agent::etcd::Client::with(url, Duration::from_secs(2), &root_access(base))
        .expect("an etcd client")
}

/// etcd as Debian's etcd.service runs it: configured only by `/etc/default/etcd`
/// (plus the agent's override file); the data dir and the TLS files are mapped into
/// the node's root.
pub fn etcd_spec(root: &Path) -> ProcessSpec {
    let at = |p: &str| root.join(p).display().to_string();
    let mut env = vec![("ETCD_DATA_DIR".to_string(), at("data/etcd"))];
    for (var, file) in [
        ("ETCD_CERT_FILE", "etc/etcd/server.crt"),
        ("ETCD_KEY_FILE", "etc/etcd/server.key"),
        ("ETCD_TRUSTED_CA_FILE", "etc/etcd/ca.crt"),
        ("ETCD_PEER_CERT_FILE", "etc/etcd/server.crt"),
        ("ETCD_PEER_KEY_FILE", "etc/etcd/server.key"),
        ("ETCD_PEER_TRUSTED_CA_FILE", "etc/etcd/ca.crt"),
    ] {
        env.push((var.to_string(), at(file)));
    }

    ProcessSpec {
        program: "/usr/bin/etcd".into(),
        env_files: vec![root.join("etc/default/etcd")],
        env,
        log: root.join("etcd.log"),
        ..ProcessSpec::default()
    }
}

/// An inventory of etcd members on `net.1`, `net.2`, ... with free ports.
pub fn etcd_inventory(net: &str, ports: &[(u16, u16)]) -> String {
    let mut hosts = String::new();
    for (i, (client, peer)) in ports.iter().enumerate() {
        hosts.push_str(&format!(
            "        {net}.{}: {{ etcd_seq: {}, etcd_port: {client}, etcd_peer_port: {peer} }}\n",
            i + 1,
            i + 1
        ));
    }
    format!(
        "all:\n  children:\n    etcd:\n      hosts:\n{hosts}      vars: {{ etcd_cluster: etcd }}\n  vars:\n    node_ntp_enabled: false\n"
    )
}

pub fn port_pairs(n: usize) -> Vec<(u16, u16)> {
    (0..n).map(|_| (free_port(), free_port())).collect()
}

pub const PATRONI: &str = "/usr/bin/patroni";
pub const PG_BIN: &str = "/usr/lib/postgresql/15/bin/postgres";

/// Let the postgres user reach paths under a test's temp dir.
pub fn open_up(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn chown_postgres(path: &Path) {
    let ok = std::process::Command::new("chown")
        .args(["-R", "postgres:postgres"])
        .arg(path)
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(ok, "chown postgres {}", path.display());
}

/// Make a node's rendered Patroni config runnable beside other instances on one
/// machine: data, logs and pgpass inside the node's root, listening on its own
/// loopback address, no WAL archiving, and a short Patroni loop. Then define
/// `patroni.service` as Patroni run by the postgres user.
pub fn prepare_patroni(node: &TestNode, ip: &str) {
    // The socket directory comes from postgresql-common's tmpfiles.d, which a machine
    // without systemd never ran.
    let sockets = Path::new("/var/run/postgresql");
    if !sockets.is_dir() {
        std::fs::create_dir_all(sockets).unwrap();
        chown_postgres(sockets);
    }
    let conf = node.root.join("etc/patroni/patroni.yml");
    let root = node.root.display().to_string();
    let text = std::fs::read_to_string(&conf).expect("rendered patroni.yml");
    let text = text
        .replace(
            "data_dir: \"/pg/data\"",
            &format!("data_dir: \"{root}/pg/data\""),
        )
        .replace("\"/pg/log/postgres\"", &format!("\"{root}/pg/log\""))
        .replace(
            "pgpass: /var/lib/postgresql/.pgpass",
            &format!("pgpass: {root}/pg/pgpass"),
        )
        .replace("listen: \"0.0.0.0:", &format!("listen: \"{ip}:"))
        .replace("\"archive_mode\": \"on\"", "\"archive_mode\": \"off\"")
        .replace("    loop_wait: 5\n", "    loop_wait: 2\n")
        .replace("/pg/cert/", &format!("{root}/pg/cert/"));
    std::fs::write(&conf, text).unwrap();
    std::fs::create_dir_all(node.root.join("pg/log")).unwrap();
    chown_postgres(&node.root.join("pg"));
    open_up(&node.root);
    define_patroni(&node.services, &node.root);
}

/// `patroni.service` of a root that [`prepare_patroni`] made runnable: Patroni run by
/// the postgres user. Also for an agent process of its own on that root.
pub fn define_patroni(services: &Processes, root: &Path) {
    services.define(
        "patroni.service",
        ProcessSpec {
            program: PATRONI.into(),
            args: vec![root.join("etc/patroni/patroni.yml").display().to_string()],
            user: Some("postgres".into()),
            cwd: Some(root.join("pg")),
            log: root.join("patroni.log"),
            ..ProcessSpec::default()
        },
    );
}

/// An etcd member plus a PostgreSQL cluster `pg-t` on `net.1` (primary, also the etcd
/// member), `net.2`, ... (replicas), each with free ports.
pub fn pg_inventory(net: &str, replicas: usize, extra_vars: &str) -> String {
    let mut hosts = String::new();
    for i in 1..=replicas + 1 {
        let role = if i == 1 { "primary" } else { "replica" };
        hosts.push_str(&format!(
            "        {net}.{i}: {{ pg_seq: {i}, pg_role: {role}, pg_port: {}, patroni_port: {}, pgbouncer_port: {} }}\n",
            free_port(),
            free_port(),
            free_port()
        ));
    }
    format!(
        "all:
  children:
    etcd:
      hosts:
        {net}.1: {{ etcd_seq: 1, etcd_port: {}, etcd_peer_port: {} }}
      vars: {{ etcd_cluster: etcd }}
    pg-t:
      hosts:
{hosts}      vars:
        pg_cluster: pg-t
        pg_conf: tiny.yml
        pg_rto: fast
        pg_hba_rules:
          - {{ user: all, db: all, addr: '127.0.0.0/8', auth: pwd, title: 'test fleet on loopback' }}
          - {{ user: replicator, db: replication, addr: '127.0.0.0/8', auth: pwd, title: 'replicas on loopback' }}
        pg_users:
          - {{ name: dbuser_lab, password: DBUser.Lab, pgbouncer: true, roles: [dbrole_admin] }}
        pg_databases:
          - {{ name: lab, owner: dbuser_lab }}
{extra_vars}  vars:
    admin_ip: {net}.1
    node_ntp_enabled: false
    node_base: debian12       # the host's PostgreSQL 15 and Patroni 3
    node_repo_modules: node
",
        free_port(),
        free_port()
    )
}

/// Run psql on a node's primary as postgres; returns stdout.
pub fn psql(port: u16, sql: &str) -> String {
    try_psql(port, sql).unwrap_or_else(|e| panic!("psql: {e}"))
}

/// psql as the dbsu over the local socket: stdout, or stderr when it fails.
pub fn try_psql(port: u16, sql: &str) -> Result<String, String> {
    let out = std::process::Command::new("runuser")
        .args([
            "-u",
            "postgres",
            "--",
            "psql",
            "-X",
            "-At",
            "-h",
            "/var/run/postgresql",
        ])
        .args(["-p", &port.to_string(), "-d", "postgres", "-c", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn rewrite(path: &Path, pairs: &[(&str, String)]) {
    let mut text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for (from, to) in pairs {
        assert!(text.contains(from), "{} has no {from:?}", path.display());
        text = text.replace(from, to);
    }
    std::fs::write(path, text).unwrap();
}

/// pgbouncer, haproxy and pgBackRest (local repo) of a prepared Patroni node, made
/// runnable inside its root on its own address; archiving through pgBackRest on.
pub fn prepare_extras(node: &TestNode, ip: &str) {
    let root = node.root.display().to_string();
    let etc = node.root.join("etc");
    rewrite(
        &etc.join("pgbouncer/pgbouncer.ini"),
        &[
            ("listen_addr = 0.0.0.0", format!("listen_addr = {ip}")),
            ("= /etc/pgbouncer/", format!("= {root}/etc/pgbouncer/")),
        ],
    );
    rewrite(
        &etc.join("haproxy/haproxy.cfg"),
        &[
            ("bind *:", format!("bind {ip}:")),
            // The test machine's hard file limit is below what 65535 connections need.
            ("maxconn     65535", "maxconn     4000".into()),
            (
                "stats socket /run/haproxy/admin.sock",
                format!("stats socket {root}/haproxy.sock"),
            ),
        ],
    );
    let conf = etc.join("pgbackrest/pgbackrest.conf");
    // Each node its own lock path: every test cluster is stanza pg-t, and pgBackRest's
    // default /tmp/pgbackrest would make nodes of parallel tests wait for each other.
    rewrite(
        &conf,
        &[
            ("=/pg/", format!("={root}/pg/")),
            (
                "[global]\n",
                format!("[global]\nlock-path={root}/pg/lock\n"),
            ),
        ],
    );
    rewrite(
        &etc.join("patroni/patroni.yml"),
        &[
            (
                "\"archive_mode\": \"off\"",
                "\"archive_mode\": \"on\"".into(),
            ),
            (
                "\"pgbackrest --stanza",
                format!("\"pgbackrest --config={} --stanza", conf.display()),
            ),
        ],
    );
    for d in ["pg/backup", "pg/spool", "pg/log/pgbackrest", "pg/lock"] {
        std::fs::create_dir_all(node.root.join(d)).unwrap();
    }
    chown_postgres(&node.root.join("pg"));
    define_extras(&node.services, &node.root);
}

/// `pgbouncer.service` and `haproxy.service` of a root that [`prepare_extras`] made
/// runnable. Also for an agent process of its own on that root.
pub fn define_extras(services: &Processes, root: &Path) {
    let etc = root.join("etc");
    services.define(
        "pgbouncer.service",
        ProcessSpec {
            program: "/usr/sbin/pgbouncer".into(),
            args: vec![etc.join("pgbouncer/pgbouncer.ini").display().to_string()],
            user: Some("postgres".into()),
            log: root.join("pgbouncer.log"),
            ..ProcessSpec::default()
        },
    );
    services.define(
        "haproxy.service",
        ProcessSpec {
            program: "/usr/sbin/haproxy".into(),
            args: vec![
                "-db".into(),
                "-f".into(),
                etc.join("haproxy/haproxy.cfg").display().to_string(),
            ],
            log: root.join("haproxy.log"),
            ..ProcessSpec::default()
        },
    );
}

/// initdb's options as a rendered patroni.yml gives them (`bootstrap.initdb`).
pub fn initdb_args(patroni: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    for o in patroni["bootstrap"]["initdb"].as_array().unwrap() {
        match o {
            serde_json::Value::String(flag) => out.push(format!("--{flag}")),
            serde_json::Value::Object(m) => out.extend(
                m.iter()
                    .map(|(k, v)| format!("--{k}={}", v.as_str().unwrap())),
            ),
            other => panic!("unexpected initdb item {other}"),
        }
    }
    out
}

/// The server parameters of a rendered patroni.yml: cluster-wide (DCS) first, then
/// the node's own, which win.
pub fn rendered_parameters(
    patroni: &serde_json::Value,
) -> std::collections::BTreeMap<String, String> {
    let mut params = std::collections::BTreeMap::new();
    for section in [
        &patroni["bootstrap"]["dcs"]["postgresql"]["parameters"],
        &patroni["postgresql"]["parameters"],
    ] {
        for (k, v) in section.as_object().unwrap() {
            params.insert(k.clone(), v.as_str().unwrap().to_string());
        }
    }
    params
}
