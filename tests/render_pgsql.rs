//! The PGSQL overlay checked with the real components (Debian 12: Patroni 3.0.2,
//! HAProxy 2.6, PgBouncer 1.18, PostgreSQL 15, pgBackRest 2.45; `ci/setup.sh` installs
//! them). Every PGSQL node of the example inventories (`inventory/*.yml`) and of
//! `tests/fixtures/inventories/*.yml` is rendered through the library and its files are
//! handed to the tool that reads them:
//!
//! - `haproxy -c` parses haproxy.cfg (it does not bind).
//! - `patroni --validate-config` lints patroni.yml inside an empty network namespace;
//!   the messages it gives for every valid config are listed in [`patroni_allowed`].
//! - `pgbackrest help backup` parses pgbackrest.conf and checks every option's name,
//!   type, allowed values and dependencies without needing a cluster.
//! - pgbouncer starts on 127.0.0.1 with the rendered files and answers `SHOW DATABASES`
//!   on its admin console (root: it runs as `postgres`).
//! - PostgreSQL 15 runs a throwaway cluster created with the rendered initdb options,
//!   the rendered pg_hba lines and parameters, then applies the rendered SQL twice
//!   (root: it runs as `postgres`).
//! - Hostile values (quotes, colons, `off`, `yes`, newlines, `#`, `%`, backslashes)
//!   either come back unchanged from the files or fail the render with a clear error.
//!
//! Tests that start servers need root (the servers run as `postgres`): they are
//! ignored unless asked for (`--include-ignored`; ci/test.sh does), and fail saying
//! so when asked without root. Every wait is bounded; servers listen on 127.0.0.1
//! ports the test picks.

// serde_json's json! of the template variables nests deeper than the default allows.
#![recursion_limit = "256"]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pigsty::compile::compile;
use pigsty::inventory::{load_str, load_str_in};
use pigsty::model::Fleet;
use pigsty::render::write::write_tree;
use serde_json::Value;

/// The SQL files of a primary, in the order the agent applies them.
const SQL_FILES: [&str; 3] = [
    "/etc/pigsty/sql/10-roles.sql",
    "/etc/pigsty/sql/15-template.sql",
    "/etc/pigsty/sql/20-databases.sql",
];

/// The PostgreSQL major version installed on test machines (Debian 12).
const PG_VERSION: u32 = 15;
const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

// ------------------------------------------------------------------ rendering

/// One rendered PGSQL node: its overlay tree on disk and what the test needs to know.
struct PgNode {
    label: String,
    cluster: String,
    primary: bool,
    pg_version: u32,
    tree: PathBuf,
    files: BTreeMap<String, Vec<u8>>,
}

impl PgNode {
    fn path(&self, target: &str) -> PathBuf {
        self.tree.join(target.trim_start_matches('/'))
    }

    fn text(&self, target: &str) -> String {
        let bytes = self
            .files
            .get(target)
            .unwrap_or_else(|| panic!("{}: {target} was not rendered", self.label));
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// The permission bits of a rendered file, as written into the tree.
    fn file_mode(&self, target: &str) -> Option<u32> {
        use std::os::unix::fs::PermissionsExt;
        let path = self.tree.join(target.trim_start_matches('/'));
        Some(std::fs::metadata(path).ok()?.permissions().mode() & 0o7777)
    }

    fn patroni(&self) -> Value {
        pyyaml(&self.path("/etc/patroni/patroni.yml"))
    }
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The example inventories and the fixtures, as (name, text).
fn inventories() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in ["inventory", "tests/fixtures/inventories"] {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yml"))
            .collect();
        paths.sort();
        for p in paths {
            let name = format!("{dir}/{}", p.file_name().unwrap().to_string_lossy());
            out.push((name, std::fs::read_to_string(&p).unwrap()));
        }
    }
    out
}

/// Load an inventory named by its path under the repository, reading the files it
/// names (baselines) from beside it.
fn load_in(name: &str, text: &str) -> Result<pigsty::inventory::Loaded, pigsty::diag::Invalid> {
    let dir = root().join(name);
    let dir = dir.parent().filter(|d| d.is_dir());
    load_str_in(name, text, dir)
}

/// Render every PGSQL node of an inventory into `dir/<nodename>`.
fn render_pg_nodes(name: &str, text: &str, dir: &Path) -> Vec<PgNode> {
    let loaded = load_in(name, text).unwrap_or_else(|e| panic!("{name}: {e:?}"));
    render_fleet(name, &loaded.fleet, dir)
}

fn render_fleet(name: &str, fleet: &Fleet, dir: &Path) -> Vec<PgNode> {
    let mut out = Vec::new();
    for node in fleet.nodes.iter().filter(|n| n.pg.is_some()) {
        let pg = node.pg.as_ref().unwrap();
        let compiled =
            compile(fleet, node).unwrap_or_else(|e| panic!("{name}: {}: {e}", node.nodename));
        let tree = dir.join(&node.nodename);
        write_tree(&compiled.files, &tree).unwrap();
        out.push(PgNode {
            label: format!("{name}:{}", node.nodename),
            cluster: pg.cluster.clone(),
            primary: pg.role == pigsty::model::PgRole::Primary,
            pg_version: pg.params.pg_version,
            tree,
            files: compiled
                .files
                .iter()
                .map(|f| (f.path.clone(), f.content.clone()))
                .collect(),
        });
    }
    out
}

/// Every PGSQL node of every inventory, rendered under `dir`.
fn all_pg_nodes(dir: &Path) -> Vec<PgNode> {
    let mut out = Vec::new();
    for (i, (name, text)) in inventories().iter().enumerate() {
        out.extend(render_pg_nodes(name, text, &dir.join(i.to_string())));
    }
    assert!(
        out.len() >= 20,
        "expected the inventories to hold PGSQL nodes, got {}",
        out.len()
    );
    out
}

/// patroni.yml as Patroni reads it: PyYAML's `safe_load`, as JSON.
fn pyyaml(path: &Path) -> Value {
    let script = "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))";
    let out = run(Command::new("python3").args(["-c", script]).arg(path), 30);
    assert!(
        out.status.success(),
        "PyYAML cannot read {}: {}",
        path.display(),
        stderr(&out)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

// ------------------------------------------------------------------ processes

/// Run a command to completion within `secs`, killing it on timeout.
fn run(cmd: &mut Command, secs: u64) -> Output {
    let desc = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{desc}: {e} (run ci/setup.sh to install the tools)"));
    let mut out_pipe = child.stdout.take().unwrap();
    let mut err_pipe = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = out_pipe.read_to_end(&mut b);
        b
    });
    let err_t = std::thread::spawn(move || {
        let mut b = Vec::new();
        let _ = err_pipe.read_to_end(&mut b);
        b
    });
    let deadline = Instant::now() + Duration::from_secs(secs);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{desc} did not finish within {secs}s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output {
        status,
        stdout: out_t.join().unwrap(),
        stderr: err_t.join().unwrap(),
    }
}

fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Why the server tests need root.
const AS_POSTGRES: &str = "the servers run as the postgres user";

/// `postgres`'s uid and gid from /etc/passwd.
fn postgres_ids() -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let line = passwd
        .lines()
        .find(|l| l.starts_with("postgres:"))
        .expect("a postgres user");
    let f: Vec<&str> = line.split(':').collect();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// A temporary directory the postgres user owns (servers write their sockets there).
fn postgres_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid)).unwrap();
    dir
}

fn write_as_postgres(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    let (uid, gid) = postgres_ids();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

fn as_postgres(program: &str) -> Command {
    let mut c = Command::new("runuser");
    c.args(["-u", "postgres", "--", program]);
    c
}

/// Run `f` on every item, a few at a time: each item starts its own processes on its
/// own ports and directories. A panic in one fails the test after its batch.
fn in_parallel<T: Sync>(items: &[T], f: impl Fn(&T) + Sync) {
    let width = std::thread::available_parallelism()
        .map_or(4, |n| n.get())
        .min(8);
    for batch in items.chunks(width) {
        std::thread::scope(|s| {
            for item in batch {
                s.spawn(|| f(item));
            }
        });
    }
}

/// Poll `ready` every 100 ms for at most `secs`.
fn wait_for(what: &str, secs: u64, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} was not ready within {secs}s");
}

// ------------------------------------------------------------------ haproxy

#[test]
fn haproxy_accepts_every_rendered_config() {
    let dir = tempfile::tempdir().unwrap();
    for n in all_pg_nodes(dir.path()) {
        let cfg = n.path("/etc/haproxy/haproxy.cfg");
        let out = run(Command::new("haproxy").arg("-c").arg("-f").arg(&cfg), 30);
        assert!(
            out.status.success(),
            "{}: haproxy -c rejects haproxy.cfg:\n{}",
            n.label,
            stderr(&out)
        );
        assert!(
            !stderr(&out).contains("[WARNING]"),
            "{}: haproxy warns:\n{}",
            n.label,
            stderr(&out)
        );
    }
}

// ------------------------------------------------------------------ patroni

/// Messages `patroni --validate-config` (3.0.2) prints for configs that are valid, each
/// exact for this config:
///
/// - `bootstrap.pg_hba  is not defined.` The validator's schema requires it, but
///   Patroni ignores `bootstrap.pg_hba` whenever `postgresql.pg_hba` is set (it only
///   appends bootstrap lines when there is no `postgresql.pg_hba`), and ours is there so
///   that reimaging a node updates its rules.
/// - `etcd3.hosts.N HOST:PORT didn't pass validation: 'HOST:PORT is not reachable'`.
///   The validator opens a TCP connection to every etcd endpoint; the lint runs in an
///   empty network namespace (so it cannot touch or wait on real addresses), where no
///   endpoint is reachable.
/// - `postgresql.bin_dir  Directory 'DIR' does not exist.` The validator looks for the
///   binaries on this machine, which has PostgreSQL 15 only; inventories for 16-18 name
///   their own version's directory.
fn patroni_allowed(cfg: &Value) -> BTreeSet<String> {
    let mut ok = BTreeSet::from(["bootstrap.pg_hba  is not defined.".to_string()]);
    for (i, h) in cfg["etcd3"]["hosts"].as_array().unwrap().iter().enumerate() {
        let h = h.as_str().unwrap();
        ok.insert(format!(
            "etcd3.hosts.{i} {h} didn't pass validation: '{h} is not reachable'"
        ));
    }
    let bin = cfg["postgresql"]["bin_dir"].as_str().unwrap();
    if !Path::new(bin).is_dir() {
        // Two blanks: the validator prints an empty value field for directory checks.
        ok.insert(format!(
            "postgresql.bin_dir  Directory '{bin}' does not exist."
        ));
    }
    ok
}

/// `unshare -n` as root; an unprivileged user namespace otherwise.
fn isolated(program: &str) -> Command {
    let mut c = Command::new("unshare");
    if !support::is_root() {
        c.arg("--map-root-user");
    }
    c.args(["--net", program]);
    c
}

#[test]
fn patroni_lint_reports_only_known_false_positives() {
    let probe = run(&mut isolated("true"), 10);
    assert!(
        probe.status.success(),
        "the patroni lint needs a network namespace (root, or unprivileged user \
         namespaces): unshare says: {}",
        stderr(&probe)
    );
    let dir = tempfile::tempdir().unwrap();
    in_parallel(&all_pg_nodes(dir.path()), |n| {
        let unknown = patroni_lint(&n.path("/etc/patroni/patroni.yml"), &n.patroni());
        assert!(
            unknown.is_empty(),
            "{}: patroni --validate-config says:\n{}",
            n.label,
            unknown.join("\n")
        );
    });
}

/// What `patroni --validate-config` says of `file` (its YAML read back as `cfg`),
/// without the messages it gives for every valid config ([`patroni_allowed`]).
fn patroni_lint(file: &Path, cfg: &Value) -> Vec<String> {
    let out = run(
        isolated("patroni")
            .arg("--validate-config")
            .arg(file)
            .env_clear(),
        60,
    );
    let allowed = patroni_allowed(cfg);
    stderr(&out)
        .lines()
        .filter(|l| !l.trim().is_empty() && !allowed.contains(*l))
        .map(str::to_string)
        .collect()
}

/// `pigsty agent tune` on machines of three sizes: for every PGSQL node, the sized
/// patroni.yml Patroni reads from /run holds Pigsty's values for that machine (and for
/// no line without the mark), PyYAML reads it, and `patroni --validate-config` finds
/// nothing new in it.
#[test]
fn patroni_yml_is_sized_for_the_machine_at_boot() {
    use pigsty::plan::sizing::Hardware;
    const GIB: u64 = 1 << 30;
    let machines = [
        Hardware {
            cpus: 1,
            mem_bytes: 1536 << 20,
            fs_bytes: 8 * GIB,
        },
        Hardware {
            cpus: 8,
            mem_bytes: 32 * GIB,
            fs_bytes: 500 * GIB,
        },
        Hardware {
            cpus: 64,
            mem_bytes: 512 * GIB,
            fs_bytes: 8192 * GIB,
        },
    ];
    let dir = tempfile::tempdir().unwrap();
    let nodes = all_pg_nodes(dir.path());
    // The dbsu owns the sized file: map it to whoever runs the test.
    let (uid, gid) = {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(dir.path()).unwrap();
        (m.uid(), m.gid())
    };
    in_parallel(&nodes, |n| {
        let dbsu = n.patroni()["postgresql"]["authentication"]["superuser"]["username"]
            .as_str()
            .unwrap()
            .to_string();
        std::fs::write(
            n.path("/etc/passwd"),
            format!("{dbsu}:x:{uid}:{gid}::/var/lib/postgresql:/bin/sh\n"),
        )
        .unwrap();
        let node_json: pigsty::plan::node_json::NodeJson =
            serde_json::from_slice(&std::fs::read(n.path("/etc/pigsty/node.json")).unwrap())
                .unwrap();
        let tune = node_json.node.tune;
        let sizing = node_json
            .pg
            .unwrap()
            .sizing
            .expect("node.json has the sizing inputs");
        let image = n.patroni();
        for hw in &machines {
            let tuned = pigsty::agent::tune::tune(&n.tree, Some(*hw))
                .unwrap_or_else(|e| panic!("{}: agent tune: {e:#}", n.label));
            let file = n.path("/run/pigsty/patroni.yml");
            let sized = pyyaml(&file);
            let want = sizing.parameters(hw);
            assert_eq!(tuned.pg, want, "{}", n.label);
            for (k, v) in &want {
                let local = &sized["postgresql"]["parameters"][*k];
                let wide = &sized["bootstrap"]["dcs"]["postgresql"]["parameters"][*k];
                let got = if local.is_null() { wide } else { local };
                assert_eq!(got.as_str(), Some(v.as_str()), "{}: {k} on {hw:?}", n.label);
            }
            // Everything else is the image's file, unchanged.
            let mut a = sized.clone();
            let mut b = image.clone();
            for (k, _) in &want {
                for c in [&mut a, &mut b] {
                    for path in [
                        "/postgresql/parameters",
                        "/bootstrap/dcs/postgresql/parameters",
                    ] {
                        if let Some(m) = c.pointer_mut(path).and_then(Value::as_object_mut) {
                            m.remove(*k);
                        }
                    }
                }
            }
            assert_eq!(a, b, "{}: tune changed more than the sized lines", n.label);
            let unknown = patroni_lint(&file, &sized);
            assert!(
                unknown.is_empty(),
                "{} sized for {hw:?}: patroni --validate-config says:\n{}",
                n.label,
                unknown.join("\n")
            );
            if tune != pigsty::model::NodeTune::None {
                let sysctl =
                    std::fs::read_to_string(n.path("/run/sysctl.d/60-pigsty-tune.conf")).unwrap();
                let shmmax = (hw.mem_bytes as f64 * 0.75) as u64;
                assert!(
                    sysctl.contains(&format!("kernel.shmmax = {shmmax}\n")),
                    "{}: {sysctl}",
                    n.label
                );
            }
        }
    });
}

/// PostgreSQL's parameters are Pigsty's: Pigsty 4.5's own Patroni templates
/// (tests/fixtures/pigsty-v4.5.0/roles/pgsql/templates), rendered by Jinja2 for the
/// same machine and inventory values, are the reference. Four templates, three
/// inventories (libraries, version, connections), five machines: every parameter
/// `pigsty agent tune` sizes gets Pigsty's value on each machine, and on the reference
/// machine (the one the image's patroni.yml is written for) the whole parameter set
/// is Pigsty's, but for the differences listed in `KNOWN`, each with its reason.
#[test]
fn parameters_match_pigstys_templates() {
    /// Parameters where this tool differs from Pigsty on purpose.
    const KNOWN: &[(&str, &str)] = &[
        (
            "ssl_cert_file",
            "Pigsty's node certificate needs its CA (the CA issue); Debian's snakeoil pair here",
        ),
        ("ssl_key_file", "as ssl_cert_file"),
        ("ssl_ca_file", "as ssl_cert_file"),
        (
            "output_plugin_libraries",
            "not a parameter of PostgreSQL 15-18: Pigsty's templates rely on a newer Patroni to drop it",
        ),
        (
            "unix_socket_directories",
            "Debian's socket directory, set explicitly",
        ),
        // A name ending in `.`: every setting of that library. Pigsty sets them
        // whether or not the library is in pg_libs; here only when it is loaded, since
        // an unloaded library's settings are placeholders PostgreSQL cannot check.
        ("auto_explain.", "set only when auto_explain is in pg_libs"),
        (
            "pg_stat_statements.",
            "set only when pg_stat_statements is in pg_libs",
        ),
        (
            "pg_wait_sampling.",
            "set only when pg_wait_sampling is in pg_libs",
        ),
        ("cron.", "set only when pg_cron is in pg_libs"),
    ];
    let known = |k: &str| {
        KNOWN
            .iter()
            .any(|(n, _)| k == *n || (n.ends_with('.') && k.starts_with(n)))
    };
    use pigsty::plan::sizing::Hardware;
    const GIB: u64 = 1 << 30;
    let machines = [
        Hardware {
            cpus: 1,
            mem_bytes: 1_485_472 * 1024,
            fs_bytes: 8 * GIB,
        },
        Hardware {
            cpus: 2,
            mem_bytes: 4 * GIB,
            fs_bytes: 40 * GIB,
        },
        Hardware {
            cpus: 6,
            mem_bytes: 24 * GIB - 12345 * 4096,
            fs_bytes: 333 * GIB,
        },
        Hardware {
            cpus: 16,
            mem_bytes: 64 * GIB,
            fs_bytes: 1024 * GIB,
        },
        Hardware {
            cpus: 96,
            mem_bytes: 768 * GIB,
            fs_bytes: 30 * 1024 * GIB,
        },
    ];
    // (pg_libs, pg_version, pg_default_service_dest, pg_max_conn)
    let inventories = [
        ("pg_stat_statements, auto_explain", 17, "pgbouncer", "auto"),
        (
            "timescaledb, pg_stat_statements, auto_explain",
            18,
            "postgres",
            "auto",
        ),
        ("pg_stat_statements", 15, "pgbouncer", "300"),
    ];
    let templates = root().join("tests/fixtures/pigsty-v4.5.0/roles/pgsql/templates");
    let script = root().join("tests/support/pigsty_template.py");
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for conf in ["oltp", "olap", "crit", "tiny"] {
        for (i, (libs, version, dest, conns)) in inventories.iter().enumerate() {
            let text = format!(
                "all:\n  children:\n    etcd: {{ hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-s:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars: {{ pg_cluster: pg-s, pg_conf: {conf}.yml, pg_libs: '{libs}', pg_version: {version}, pg_default_service_dest: {dest}, pg_max_conn: {conns} }}\n  vars:\n    admin_ip: 10.0.0.1\n    node_repo_modules: node,pgsql\n"
            );
            let name = format!("{conf}-{i}.yml");
            let fleet = load_str(&name, &text)
                .unwrap_or_else(|e| panic!("{name}: {e:?}"))
                .fleet;
            let n = render_fleet(&name, &fleet, &dir.path().join(&name)).remove(0);
            let node_json: pigsty::plan::node_json::NodeJson =
                serde_json::from_slice(&std::fs::read(n.path("/etc/pigsty/node.json")).unwrap())
                    .unwrap();
            let sizing = node_json.pg.unwrap().sizing.unwrap();
            for hw in &machines {
                let vars = serde_json::json!({
                    "node_cpu": hw.cpus,
                    "node_mem_mb": hw.mem_mib(),
                    "node_mem_gb": hw.mem_bytes.div_ceil(GIB),
                    "node_fs_bytes": hw.fs_bytes,
                    "node_tune": conf,
                    "pg_max_conn": conns,
                    "pg_shared_buffer_ratio": 0.25,
                    "pg_libs": libs,
                    "pg_version": version,
                    "pg_conf": format!("{conf}.yml"),
                    "pg_default_service_dest": dest,
                    "pg_rto": "norm",
                    "pg_rto_plan": { "norm": [30, 5, 10, 25, 5, "2s", "1s", "2s", 3, 3] },
                    "pg_rpo": 1_048_576,
                    "groups": {},
                    "admin_ip": "10.0.0.1",
                    "inventory_hostname": "10.0.0.1",
                    "pg_listen": "0.0.0.0",
                    "pg_mode": "pgsql",
                    "pg_cluster": "pg-s",
                    "pg_instance": "pg-s-1",
                    "pg_role": "primary",
                    "pg_vip_enabled": false,
                    "pg_vip_address": "127.0.0.1/24",
                    "patroni_ssl_enabled": false,
                    "patroni_watchdog_mode": "off",
                    "pg_checksum": true,
                    "pg_namespace": "/pg",
                    "pg_port": 5432,
                    "patroni_port": 8008,
                    "etcd_port": 2379,
                    "pg_data": "/pg/data",
                    "pg_dbsu": "postgres",
                    "pgbackrest_enabled": true,
                    "pgbackrest_method": "local",
                    "pg_io_method": "worker",
                    "pg_storage_type": "SSD",
                    "pg_log_dir": "/pg/log/postgres",
                    "os_package": "deb",
                    "os_version": 13,
                    "pg_parameters": {},
                    "pg_hba_rules": [],
                    "pg_default_hba_rules": [],
                });
                let out = run(
                    Command::new("python3")
                        .arg(&script)
                        .arg(templates.join(format!("{conf}.yml")))
                        .arg(vars.to_string()),
                    60,
                );
                assert!(
                    out.status.success(),
                    "rendering Pigsty's {conf}.yml: {}",
                    stderr(&out)
                );
                let pigsty: Value = serde_json::from_slice(&out.stdout).unwrap();
                let as_text = |v: &Value| match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                if *hw == Hardware::REFERENCE {
                    let cfg = n.patroni();
                    let mut rendered = BTreeMap::new();
                    for path in [
                        "/bootstrap/dcs/postgresql/parameters",
                        "/postgresql/parameters",
                    ] {
                        for (k, v) in cfg.pointer(path).and_then(Value::as_object).unwrap() {
                            rendered.insert(k.clone(), as_text(v));
                        }
                    }
                    let pigsty_map = pigsty.as_object().unwrap();
                    let mut wrong = Vec::new();
                    for k in pigsty_map.keys().chain(rendered.keys()) {
                        if known(k) {
                            continue;
                        }
                        let theirs = pigsty_map.get(k).map(|v| match v {
                            Value::Bool(b) => {
                                if *b {
                                    "on".to_string()
                                } else {
                                    "off".to_string()
                                }
                            }
                            other => as_text(other),
                        });
                        if theirs.as_ref() != rendered.get(k) {
                            wrong.push(format!(
                                "{k}: Pigsty {theirs:?}, ours {:?}",
                                rendered.get(k)
                            ));
                        }
                    }
                    wrong.dedup();
                    assert!(
                        wrong.is_empty(),
                        "{conf}.yml, {libs}, PG {version}: parameters differ from Pigsty's:\n{}",
                        wrong.join("\n")
                    );
                }
                let ours = sizing.parameters(hw);
                assert!(!ours.is_empty());
                for (k, v) in &ours {
                    assert_eq!(
                        Some(v.clone()),
                        pigsty.get(*k).map(as_text),
                        "{conf}.yml, {libs}, PG {version}, pg_max_conn {conns}, {hw:?}: {k}"
                    );
                    checked += 1;
                }
                // The connection count the sizes divide by is Pigsty's too.
                assert_eq!(
                    sizing.max_connections.to_string(),
                    as_text(&pigsty["max_connections"]),
                    "{conf}.yml, {dest}, pg_max_conn {conns}: max_connections"
                );
            }
        }
    }
    assert!(checked > 500, "{checked} values compared");
}

#[test]
fn patroni_yml_holds_the_values_patroni_needs() {
    let dir = tempfile::tempdir().unwrap();
    for n in all_pg_nodes(dir.path()) {
        let c = n.patroni();
        assert_eq!(c["scope"], n.cluster.as_str(), "{}", n.label);
        let dcs = &c["bootstrap"]["dcs"];
        for key in ["ttl", "loop_wait", "retry_timeout", "primary_start_timeout"] {
            assert!(
                dcs[key].is_u64(),
                "{}: bootstrap.dcs.{key} is {}",
                n.label,
                dcs[key]
            );
        }
        let ttl = dcs["ttl"].as_u64().unwrap();
        // Patroni's rule: a leader must be able to retry its DCS update twice per TTL.
        let (lw, rt) = (
            dcs["loop_wait"].as_u64().unwrap(),
            dcs["retry_timeout"].as_u64().unwrap(),
        );
        assert!(
            ttl >= lw + 2 * rt,
            "{}: ttl {ttl} < loop_wait {lw} + 2 x retry_timeout {rt}",
            n.label
        );
        assert!(
            c["postgresql"]["pg_hba"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        );
        assert_eq!(
            c["watchdog"]["mode"]
                .as_str()
                .map(|m| ["off", "automatic", "required"].contains(&m)),
            Some(true)
        );
    }
}

// ------------------------------------------------------------------ pgbackrest

/// `help backup` with `--config` and `--stanza` loads the file and validates every
/// option (unknown names are warnings, bad values and missing dependencies errors), and
/// shows the values in effect; it needs neither a cluster nor the repository.
#[test]
fn pgbackrest_parses_and_validates_every_option() {
    let dir = tempfile::tempdir().unwrap();
    for n in all_pg_nodes(dir.path()) {
        let Some(conf) = n.files.get("/etc/pgbackrest/pgbackrest.conf") else {
            continue;
        };
        let s3 = String::from_utf8_lossy(conf).contains("repo1-type=s3");
        let path = n.path("/etc/pgbackrest/pgbackrest.conf");
        for command in ["backup", "archive-push", "restore"] {
            let out = run(
                Command::new("pgbackrest")
                    .arg(format!("--config={}", path.display()))
                    .arg(format!("--stanza={}", n.cluster))
                    .args(["help", command]),
                30,
            );
            let text = stderr(&out);
            assert!(
                out.status.success(),
                "{}: pgbackrest help {command}:\n{text}",
                n.label
            );
            assert!(
                !text.contains("WARN:") && !text.contains("ERROR:"),
                "{}: {text}",
                n.label
            );
            // The values in effect come from the file: the stanza, and the repo type.
            let help = String::from_utf8_lossy(&out.stdout)
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" ");
            assert!(
                help.contains(&format!("[current={}]", n.cluster)),
                "{}: stanza not read:\n{help}",
                n.label
            );
            assert_eq!(
                help.contains("[current=s3,"),
                s3,
                "{}: repo type not read:\n{help}",
                n.label
            );
        }
    }
}

// ------------------------------------------------------------------ pgbouncer

/// A server process killed when the test ends, however it ends.
struct Running(std::process::Child, String);

impl Drop for Running {
    fn drop(&mut self) {
        // The child leads its own process group (see start_pgbouncer): kill all of it,
        // not only runuser, or pgbouncer outlives the test.
        if let Some(pid) = i32::try_from(self.0.id())
            .ok()
            .and_then(rustix::process::Pid::from_raw)
        {
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.0.kill();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not exit within 10s after SIGKILL", self.1);
    }
}

/// Point the rendered pgbouncer.ini at `dir` and `port`, everything else as rendered.
/// `backend` replaces the databases' `host=/var/run/postgresql port=N` when given.
fn local_pgbouncer_ini(ini: &str, dir: &Path, port: u16, backend: Option<(&Path, u16)>) -> String {
    let d = dir.display();
    let mut out = String::new();
    for line in ini.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let line = match key {
            "listen_addr" => "listen_addr = 127.0.0.1".to_string(),
            "listen_port" => format!("listen_port = {port}"),
            "unix_socket_dir" => format!("unix_socket_dir = {d}"),
            "auth_file" => format!("auth_file = {d}/userlist.txt"),
            "auth_hba_file" => format!("auth_hba_file = {d}/pgb_hba.conf"),
            _ => match backend {
                Some((sock, pg_port)) if line.contains("host=/var/run/postgresql") => {
                    let (name, _) = line.split_once(" = ").unwrap();
                    format!("{name} = host={} port={pg_port}", sock.display())
                }
                _ => line.to_string(),
            },
        };
        out.push_str(&line);
        out.push('\n');
    }
    // The rendered file ends in its [pgbouncer] section; the journal is not here.
    out.push_str(&format!("logfile = {d}/pgbouncer.log\n"));
    out
}

/// Start pgbouncer as postgres with the node's rendered files, pointed into `dir`.
/// A port another test took between [`support::free_port`] and pgbouncer's bind (tests run in
/// parallel) is tried again with a new one, up to 5 times.
fn start_pgbouncer(n: &PgNode, dir: &Path, backend: Option<(&Path, u16)>) -> (Running, u16) {
    for _ in 0..5 {
        if let Some(started) = try_start_pgbouncer(n, dir, backend) {
            return started;
        }
    }
    panic!(
        "pgbouncer of {} found no free port in 5 tries:\n{}",
        n.label,
        pgbouncer_log(dir)
    );
}

/// One start on a fresh port: None when the port was taken (pgbouncer says so in its
/// log), else the server once its log says it listens there.
fn try_start_pgbouncer(
    n: &PgNode,
    dir: &Path,
    backend: Option<(&Path, u16)>,
) -> Option<(Running, u16)> {
    let port = support::free_port();
    let _ = std::fs::remove_file(dir.join("pgbouncer.log"));
    let ini = local_pgbouncer_ini(&n.text("/etc/pgbouncer/pgbouncer.ini"), dir, port, backend);
    write_as_postgres(&dir.join("pgbouncer.ini"), &ini);
    write_as_postgres(
        &dir.join("userlist.txt"),
        &n.text("/etc/pgbouncer/userlist.txt"),
    );
    write_as_postgres(
        &dir.join("pgb_hba.conf"),
        &n.text("/etc/pgbouncer/pgb_hba.conf"),
    );
    // Its own process group: runuser does not pass SIGKILL on, so the group is killed.
    let child = as_postgres("pgbouncer")
        .arg(dir.join("pgbouncer.ini"))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("pgbouncer (run ci/setup.sh)");
    let running = Running(child, format!("pgbouncer of {}", n.label));
    let (listening, taken) = (
        format!("listening on 127.0.0.1:{port}"),
        format!("cannot listen on 127.0.0.1:{port}"),
    );
    let mut port_taken = false;
    wait_for(&format!("pgbouncer of {}", n.label), 20, || {
        let log = pgbouncer_log(dir);
        port_taken = log.contains(&taken);
        port_taken || log.contains(&listening)
    });
    // Dropping `running` kills this pgbouncer.
    (!port_taken).then_some((running, port))
}

fn pgbouncer_log(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("pgbouncer.log")).unwrap_or_default()
}

#[test]
#[ignore = "needs root and starts pgbouncer (run with --include-ignored)"]
fn pgbouncer_serves_the_rendered_databases() {
    support::require_root(AS_POSTGRES);
    let trees = tempfile::tempdir().unwrap();
    in_parallel(&all_pg_nodes(trees.path()), |n| {
        let dir = postgres_dir();
        let (mut server, port) = start_pgbouncer(n, dir.path(), None);
        // The admin console over the socket as postgres: `local pgbouncer postgres peer`.
        let out = run(
            as_postgres("psql")
                .args(["-X", "-At", "-h"])
                .arg(dir.path())
                .args([
                    "-p",
                    &port.to_string(),
                    "-d",
                    "pgbouncer",
                    "-c",
                    "SHOW DATABASES",
                ]),
            30,
        );
        assert!(
            out.status.success(),
            "{}: admin console: {}\n{}",
            n.label,
            stderr(&out),
            pgbouncer_log(dir.path())
        );
        let listed: BTreeSet<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split('|').next().map(str::to_string))
            .collect();
        let ini = n.text("/etc/pgbouncer/pgbouncer.ini");
        for db in rendered_pool_databases(&ini) {
            assert!(
                listed.contains(&db),
                "{}: `{db}` missing from SHOW DATABASES: {listed:?}",
                n.label
            );
        }
        let log = pgbouncer_log(dir.path());
        assert!(
            !log.contains("WARNING") && !log.contains("ERROR"),
            "{}: pgbouncer log:\n{log}",
            n.label
        );
        let _ = server.0.kill();
    });
}

/// Database names of the rendered `[databases]` section.
fn rendered_pool_databases(ini: &str) -> Vec<String> {
    let section = ini
        .split("[databases]")
        .nth(1)
        .unwrap_or("")
        .split("\n[")
        .next()
        .unwrap_or("");
    section
        .lines()
        .filter(|l| l.contains(" = "))
        .map(|l| l.split(" = ").next().unwrap().trim().to_string())
        .collect()
}

// ------------------------------------------------------------------ postgres

/// A throwaway PostgreSQL 15 cluster, stopped when dropped.
struct Postgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl Postgres {
    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// `psql` as postgres over this cluster's socket.
    fn psql(&self, db: &str) -> Command {
        let mut c = as_postgres("psql");
        c.args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-d", db]);
        c
    }

    fn query(&self, sql: &str) -> String {
        self.query_in("postgres", sql)
    }

    fn query_in(&self, db: &str, sql: &str) -> String {
        let out = run(self.psql(db).args(["-c", sql]), 60);
        assert!(out.status.success(), "{sql}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn log(&self) -> String {
        let mut text =
            std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default();
        if let Ok(entries) = std::fs::read_dir(self.dir.path().join("log")) {
            for e in entries.flatten() {
                text.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
            }
        }
        text
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.data();
        let _ = run(
            as_postgres(&format!("{PG_BIN}/pg_ctl"))
                .args(["stop", "-m", "immediate", "-w", "-t", "30", "-D"])
                .arg(&data),
            60,
        );
    }
}

/// initdb's command-line options from Patroni's `bootstrap.initdb` list, as Patroni
/// passes them (`flag` → `--flag`, `{key: value}` → `--key=value`).
/// Libraries this machine has (citus or pg_cron are not in Debian's postgresql-15).
fn installed_library(lib: &str) -> bool {
    Path::new(&format!("/usr/lib/postgresql/{PG_VERSION}/lib/{lib}.so")).exists()
}

/// The rendered parameters (cluster-wide and local) as postgresql.conf lines, with the
/// few changes this test machine needs, each said below.
fn test_conf(cfg: &Value, dir: &Path, port: u16) -> String {
    let mut params = support::rendered_parameters(cfg);
    // Libraries this machine lacks are left out, with the settings of their prefix.
    let libs: Vec<String> = params["shared_preload_libraries"]
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let missing: Vec<&String> = libs.iter().filter(|l| !installed_library(l)).collect();
    let kept: Vec<&str> = libs
        .iter()
        .filter(|l| installed_library(l))
        .map(String::as_str)
        .collect();
    params.retain(|k, _| {
        !missing.iter().any(|m| {
            k.starts_with(&format!("{m}.")) || (m.as_str() == "pg_cron" && k.starts_with("cron."))
        })
    });
    params.insert("shared_preload_libraries".into(), kept.join(", "));
    // Sockets and logs go to the test's directory, the server listens on loopback.
    params.insert("unix_socket_directories".into(), dir.display().to_string());
    params.insert(
        "log_directory".into(),
        dir.join("log").display().to_string(),
    );
    params.insert("listen_addresses".into(), "127.0.0.1".into());
    params.insert("port".into(), port.to_string());
    // A throwaway cluster needs no durability; CREATE DATABASE fsyncs a lot otherwise.
    params.insert("fsync".into(), "off".into());
    // No pgBackRest repository exists here: archiving succeeds without one.
    if params.contains_key("archive_command") {
        params.insert("archive_command".into(), "/bin/true".into());
    }
    params
        .iter()
        .map(|(k, v)| format!("{k} = '{}'\n", v.replace('\\', "\\\\").replace('\'', "''")))
        .collect()
}

/// initdb with the rendered options, the rendered hba and parameters, then start.
fn start_postgres(n: &PgNode) -> Postgres {
    let cfg = n.patroni();
    let dir = postgres_dir();
    let data = dir.path().join("data");
    let out = run(
        as_postgres(&format!("{PG_BIN}/initdb"))
            // A throwaway cluster: skip initdb's fsyncs (seconds on slow disks).
            .args(["--no-sync", "-U", "postgres", "-D"])
            .arg(&data)
            .args(support::initdb_args(&cfg)),
        120,
    );
    assert!(
        out.status.success(),
        "{}: initdb {:?}: {}",
        n.label,
        support::initdb_args(&cfg),
        stderr(&out)
    );
    let hba: Vec<&str> = cfg["postgresql"]["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    write_as_postgres(&data.join("pg_hba.conf"), &(hba.join("\n") + "\n"));
    let base = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
    // A port another parallel test took between free_port() and the bind is tried
    // again with a new one (5 tries).
    let mut pg = Postgres { dir, port: 0 };
    for _ in 0..5 {
        pg.port = support::free_port();
        let conf = base.clone() + &test_conf(&cfg, pg.dir.path(), pg.port);
        write_as_postgres(&data.join("postgresql.conf"), &conf);
        let _ = std::fs::remove_file(pg.dir.path().join("server.log"));
        let out = run(
            as_postgres(&format!("{PG_BIN}/pg_ctl"))
                .args(["start", "-w", "-t", "60", "-D"])
                .arg(&data)
                .arg("-l")
                .arg(pg.dir.path().join("server.log")),
            90,
        );
        if out.status.success() {
            return pg;
        }
        let log = pg.log();
        assert!(
            log.contains("Address already in use"),
            "{}: pg_ctl start: {}\n{log}",
            n.label,
            stderr(&out),
        );
    }
    panic!("{}: PostgreSQL found no free port in 5 tries", n.label);
}

/// Apply one rendered SQL file. Extensions this machine does not have (pgvector,
/// postgis, citus) are left out: their packages belong in the image, not on the host.
fn apply_sql(pg: &Postgres, n: &PgNode, target: &str, available: &BTreeSet<String>) {
    let out = try_apply_sql(pg, n, target, available);
    assert!(
        out.status.success(),
        "{}: psql -f {target}: {}\n{}",
        n.label,
        stderr(&out),
        pg.log()
    );
}

/// `apply_sql` that returns psql's outcome. The baselines the file includes (`\i`
/// of the image's path) are copied beside it and included from there.
fn try_apply_sql(pg: &Postgres, n: &PgNode, target: &str, available: &BTreeSet<String>) -> Output {
    let mut sql = String::new();
    for l in n.text(target).lines() {
        if let Some(rest) = l.strip_prefix("CREATE EXTENSION IF NOT EXISTS \"")
            && !available.contains(rest.split('"').next().unwrap_or(""))
        {
            continue;
        }
        if let Some(image_path) = l.strip_prefix("\\i /etc/pigsty/sql/baseline/") {
            let copy = pg.dir.path().join(image_path);
            write_as_postgres(
                &copy,
                &n.text(&format!("/etc/pigsty/sql/baseline/{image_path}")),
            );
            sql.push_str(&format!("\\i {}\n", copy.display()));
            continue;
        }
        sql.push_str(l);
        sql.push('\n');
    }
    let file = pg.dir.path().join(target.rsplit('/').next().unwrap());
    write_as_postgres(&file, &sql);
    run(pg.psql("postgres").arg("-f").arg(&file), 120)
}

/// The role and database names the inventory asks for on this node.
fn expected_objects(fleet: &Fleet, nodename: &str) -> (Vec<String>, Vec<String>) {
    let node = fleet.nodes.iter().find(|x| x.nodename == nodename).unwrap();
    let p = &node.pg.as_ref().unwrap().params;
    let absent =
        |e: &BTreeMap<String, Value>| e.get("state").and_then(Value::as_str) == Some("absent");
    let roles = p
        .pg_default_roles
        .iter()
        .chain(&p.pg_users)
        .filter(|u| !absent(&u.extra))
        .map(|u| u.name.clone())
        .collect();
    let dbs = p
        .pg_databases
        .iter()
        .filter(|d| !absent(&d.extra))
        .map(|d| d.name.clone())
        .collect();
    (roles, dbs)
}

/// A fleet moved onto the base installed here (Debian 12, PostgreSQL 15), so the
/// parameters of every template and version gate are checked on a real server.
fn on_installed_base(mut fleet: Fleet) -> Fleet {
    for node in &mut fleet.nodes {
        node.node.node_base = "debian12".into();
        if let Some(pg) = &mut node.pg {
            pg.params.pg_version = PG_VERSION;
        }
    }
    fleet
}

/// Start the cluster of one rendered primary, check what PostgreSQL says of the
/// rendered hba and parameters, apply the SQL twice and find its objects.
fn check_primary(n: &PgNode, fleet: &Fleet, nodename: &str) -> Postgres {
    let pg = start_postgres(n);
    // What PostgreSQL found wrong in the rendered files, one row per problem.
    let problems = pg.query(
        "SELECT 'pg_hba.conf line ' || line_number || ': ' || error FROM pg_hba_file_rules WHERE error IS NOT NULL \
         UNION ALL SELECT 'postgresql.conf ' || name || ': ' || error FROM pg_file_settings WHERE error IS NOT NULL \
         UNION ALL SELECT 'pending restart: ' || name FROM pg_settings WHERE pending_restart \
         UNION ALL SELECT 'password_encryption is ' || setting FROM pg_settings \
                   WHERE name = 'password_encryption' AND setting <> 'scram-sha-256'",
    );
    assert!(problems.is_empty(), "{}: {problems}", n.label);
    let log = pg.log();
    for bad in [
        "invalid value for parameter",
        "unrecognized configuration parameter",
    ] {
        assert!(!log.contains(bad), "{}: server log:\n{log}", n.label);
    }
    // The leader of a standby cluster replays its upstream: it carries no SQL.
    let node = fleet.find(nodename).unwrap();
    if node
        .pg
        .as_ref()
        .is_some_and(|p| p.params.pg_upstream.is_some())
    {
        assert!(
            !n.files.keys().any(|f| f.starts_with("/etc/pigsty/sql/")),
            "{}: a standby cluster's leader renders SQL",
            n.label
        );
        return pg;
    }
    let available: BTreeSet<String> = pg
        .query("SELECT name FROM pg_available_extensions")
        .lines()
        .map(str::to_string)
        .collect();
    for round in 1..=2 {
        for file in SQL_FILES {
            eprintln!("{}: applying {file} (round {round})", n.label);
            apply_sql(&pg, n, file, &available);
        }
    }
    let found: BTreeSet<String> = pg
        .query("SELECT 'role ' || rolname FROM pg_roles UNION ALL SELECT 'database ' || datname FROM pg_database")
        .lines()
        .map(str::to_string)
        .collect();
    let (roles, dbs) = expected_objects(fleet, nodename);
    let expected = roles
        .iter()
        .map(|r| format!("role {r}"))
        .chain(dbs.iter().map(|d| format!("database {d}")));
    for object in expected {
        assert!(
            found.contains(&object),
            "{}: {object} missing after the SQL",
            n.label
        );
    }
    check_template(&pg, n, fleet, nodename);
    pg
}

/// template1 and postgres hold what `pg_default_schemas`, `pg_default_extensions` and
/// `pg_default_privileges` ask for, and a database created from template1 after the
/// SQL inherits it (Pigsty's pg-init-template.sql).
fn check_template(pg: &Postgres, n: &PgNode, fleet: &Fleet, nodename: &str) {
    let node = fleet.nodes.iter().find(|x| x.nodename == nodename).unwrap();
    let p = &node.pg.as_ref().unwrap().params;
    pg.query("DROP DATABASE IF EXISTS inherits_template");
    pg.query("CREATE DATABASE inherits_template");
    for db in ["template1", "postgres", "inherits_template"] {
        let exts = pg.query_in(
            db,
            "SELECT e.extname || ' in ' || n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace",
        );
        for e in p.pg_default_extensions.iter().filter(|e| !e.absent) {
            let want = match &e.schema {
                Some(s) => format!("{} in {s}", e.name),
                None => e.name.clone(),
            };
            assert!(
                exts.lines().any(|l| l == want
                    || (e.schema.is_none() && l.starts_with(&format!("{} in ", e.name)))),
                "{}: {db} lacks extension {want}; has:\n{exts}",
                n.label
            );
        }
        let schemas = pg.query_in(db, "SELECT nspname FROM pg_namespace");
        for s in p.pg_default_schemas.iter().filter(|s| !s.absent) {
            assert!(
                schemas.lines().any(|l| l == s.name),
                "{}: {db} lacks schema {}",
                n.label,
                s.name
            );
        }
        // One default ACL per (owner, object kind) the privileges name: dbsu, admin, dbrole_admin.
        let owners = pg.query_in(
            db,
            "SELECT DISTINCT r.rolname FROM pg_default_acl a JOIN pg_roles r ON r.oid = a.defaclrole ORDER BY 1",
        );
        for owner in [
            p.pg_dbsu.as_str(),
            p.pg_admin_username.as_str(),
            "dbrole_admin",
        ] {
            assert!(
                owners.lines().any(|l| l == owner),
                "{}: {db} has no default privileges for {owner}: {owners:?}",
                n.label
            );
        }
        let beat = pg.query_in(db, "SELECT status FROM monitor.beating()");
        assert_eq!(beat, "leading", "{}: {db}: monitor.beating()", n.label);
    }
    let monitor_in = pg.query(&format!(
        "SELECT string_agg(b.rolname, ',' ORDER BY b.rolname) FROM pg_auth_members m JOIN pg_roles a ON a.oid = m.member JOIN pg_roles b ON b.oid = m.roleid WHERE a.rolname = '{}'",
        p.pg_monitor_username
    ));
    assert!(
        monitor_in.contains("dbrole_readonly") && monitor_in.contains("pg_monitor"),
        "{}: {} is a member of {monitor_in}",
        n.label,
        p.pg_monitor_username
    );
    pg.query("DROP DATABASE inherits_template");
}

#[test]
#[ignore = "needs root and starts PostgreSQL (run with --include-ignored)"]
fn postgres_accepts_rendered_hba_parameters_and_sql() {
    support::require_root(AS_POSTGRES);
    let trees = tempfile::tempdir().unwrap();
    let mut primaries = Vec::new();
    for (i, (name, text)) in inventories().iter().enumerate() {
        let fleet = on_installed_base(load_in(name, text).unwrap().fleet);
        for n in render_fleet(name, &fleet, &trees.path().join(i.to_string())) {
            if n.primary {
                assert_eq!(n.pg_version, PG_VERSION, "{}", n.label);
                primaries.push((n, fleet.clone()));
            }
        }
    }
    assert!(primaries.len() >= 10, "only {} primaries", primaries.len());
    in_parallel(&primaries, |(n, fleet)| {
        let nodename = n.label.rsplit(':').next().unwrap();
        drop(check_primary(n, fleet, nodename));
    });
}

/// `pg_databases[].baseline`, read from `files/` beside the inventory, runs once when
/// its database is created: applying the SQL again leaves its rows alone. A baseline
/// that fails stops the SQL (the agent's step fails) and stays marked pending.
#[test]
#[ignore = "needs root and starts PostgreSQL (run with --include-ignored)"]
fn baseline_runs_once_when_its_database_is_created() {
    support::require_root(AS_POSTGRES);
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("files")).unwrap();
    std::fs::write(
        dir.path().join("files/app.sql"),
        "CREATE TABLE seeded (id int);\nINSERT INTO seeded VALUES (1);\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("files/bad.sql"),
        "CREATE TABLE half (id int);\nSELECT 1 / 0;\n",
    )
    .unwrap();
    let text = |dbs: &str| {
        format!(
            "all:\n  children:\n    etcd: {{ hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-b:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars:\n        pg_cluster: pg-b\n        pg_databases: [ {dbs} ]\n  vars:\n    admin_ip: 10.0.0.1\n    node_base: debian12\n    node_repo_modules: node\n    pg_version: {PG_VERSION}\n"
        )
    };
    let render = |dbs: &str, sub: &str| {
        let fleet = load_str_in("b.yml", &text(dbs), Some(dir.path()))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .fleet;
        render_fleet("b.yml", &fleet, &dir.path().join(sub)).remove(0)
    };
    let n = render("{ name: app, baseline: app.sql }, { name: plain }", "ok");
    assert_eq!(
        n.file_mode("/etc/pigsty/sql/baseline/00-app.sql"),
        Some(0o600),
        "the baseline travels in the image, readable by its owner only"
    );
    let pg = start_postgres(&n);
    let available = BTreeSet::new();
    for _round in 1..=3 {
        for file in SQL_FILES {
            apply_sql(&pg, &n, file, &available);
        }
    }
    assert_eq!(
        pg.query_in("app", "SELECT count(*) FROM seeded"),
        "1",
        "applied once"
    );
    assert_eq!(
        pg.query_in(
            "app",
            "SELECT coalesce(current_setting('pigsty.baseline', true), '')"
        ),
        "",
        "the pending mark is gone once the baseline ran"
    );
    assert_eq!(
        pg.query_in(
            "plain",
            "SELECT count(*) FROM pg_class WHERE relname = 'seeded'"
        ),
        "0"
    );
    // A baseline that fails: the SQL fails loudly and the database stays pending.
    let bad = render(
        "{ name: app, baseline: app.sql }, { name: bad, baseline: bad.sql }",
        "bad",
    );
    let out = try_apply_sql(&pg, &bad, SQL_FILES[2], &available);
    assert!(!out.status.success(), "a failing baseline fails the step");
    assert!(
        stderr(&out).contains("division by zero"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        pg.query_in("bad", "SELECT current_setting('pigsty.baseline', true)"),
        "pending"
    );
    assert_eq!(pg.query_in("app", "SELECT count(*) FROM seeded"), "1");
}

/// GET a path from 127.0.0.1:port (HTTP/1.0: the body ends with the connection).
fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port))?;
    c.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(c, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
    let mut body = String::new();
    c.read_to_string(&mut body)?;
    Ok(body)
}

/// Debian's PostgreSQL exporter, started with the rendered
/// `/etc/default/prometheus-postgres-exporter` (read by a shell, as systemd's
/// EnvironmentFile reads it), reaches the server as the monitor user over the socket
/// with a password that needs encoding (Debian 12's exporter, 0.11, takes no blank in
/// it: refused at render), and says `pg_up 1` on its metrics page. The
/// rendered ARGS put it on Pigsty's pg_exporter_port.
#[test]
#[ignore = "needs root and starts PostgreSQL (run with --include-ignored)"]
fn postgres_exporter_reaches_the_server_with_the_rendered_dsn() {
    support::require_root(AS_POSTGRES);
    support::require_tools(&["/usr/bin/prometheus-postgres-exporter"]);
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "all:\n  children:\n    etcd: {{ hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-e:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars: {{ pg_cluster: pg-e }}\n  vars:\n    admin_ip: 10.0.0.1\n    node_base: debian12\n    node_repo_modules: node\n    pg_version: {PG_VERSION}\n    pg_monitor_password: \"it's\\\\\\\"pw\\\"$HOME:@/%\"\n"
    );
    let fleet = load_str("e.yml", &text)
        .unwrap_or_else(|e| panic!("{e:?}"))
        .fleet;
    let n = render_fleet("e.yml", &fleet, dir.path()).remove(0);
    assert_eq!(
        n.file_mode("/etc/default/prometheus-postgres-exporter"),
        Some(0o600),
        "it holds a password"
    );
    let pg = start_postgres(&n);
    let available = BTreeSet::new();
    for file in SQL_FILES {
        apply_sql(&pg, &n, file, &available);
    }
    let env_file = dir.path().join("exporter.env");
    std::fs::write(
        &env_file,
        n.text("/etc/default/prometheus-postgres-exporter"),
    )
    .unwrap();
    let read = |var: &str| {
        let out = run(
            Command::new("sh")
                .arg("-c")
                .arg(format!(". {}; printf %s \"${var}\"", env_file.display())),
            10,
        );
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(read("ARGS"), "--web.listen-address=:9630");
    let dsn = read("DATA_SOURCE_NAME");
    assert_eq!(
        dsn,
        "postgresql://dbuser_monitor:it%27s%5C%22pw%22%24HOME%3A%40%2F%25@:5432/postgres?host=%2Fvar%2Frun%2Fpostgresql&sslmode=disable"
    );
    // This test's cluster listens on its own socket directory and port.
    let socket = pg.dir.path().display().to_string().replace('/', "%2F");
    let dsn = dsn
        .replace("@:5432/", &format!("@:{}/", pg.port))
        .replace("%2Fvar%2Frun%2Fpostgresql", &socket);
    let port = support::free_port();
    let mut exporter = Command::new("/usr/bin/prometheus-postgres-exporter")
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .env("DATA_SOURCE_NAME", &dsn)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut page = String::new();
    while Instant::now() < deadline {
        page = http_get(port, "/metrics").unwrap_or_default();
        if page.lines().any(|l| l == "pg_up 1") {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = exporter.kill();
    let mut err = String::new();
    let _ = exporter.wait();
    std::io::Read::read_to_string(exporter.stderr.as_mut().unwrap(), &mut err).ok();
    assert!(
        page.lines().any(|l| l == "pg_up 1"),
        "the exporter did not reach PostgreSQL:\n{err}\n{}",
        page.lines()
            .filter(|l| l.starts_with("pg_up"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Debian 13's pgbouncer exporter (0.10) reads its connection and listen address from
/// the rendered `/etc/default/prometheus-pgbouncer-exporter` (the lab e2e scrapes it
/// in its VMs: a Debian 13 binary runs in Debian 13). Debian 12's exporter (1.7) fails
/// on Debian 12's pgbouncer, so a Debian 12 node runs none, says so at check, and
/// Prometheus gets no target for it.
#[test]
fn pgbouncer_exporter_settings_per_base() {
    let text = |base: &str| {
        format!(
            "all:\n  children:\n    etcd: {{ hosts: {{ 10.0.0.1: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-e:\n      hosts: {{ 10.0.0.1: {{ pg_seq: 1, pg_role: primary }} }}\n      vars: {{ pg_cluster: pg-e }}\n  vars:\n    admin_ip: 10.0.0.1\n    node_base: {base}\n    node_repo_modules: node\n    pg_monitor_password: \"Mon.it'or#1\"\n"
        )
    };
    let dir = tempfile::tempdir().unwrap();
    let env_path = "/etc/default/prometheus-pgbouncer-exporter";
    let loaded = load_str("e.yml", &text("debian13")).unwrap_or_else(|e| panic!("{e:?}"));
    let n = render_fleet("e.yml", &loaded.fleet, &dir.path().join("13")).remove(0);
    assert_eq!(n.file_mode(env_path), Some(0o600), "it holds a password");
    let env = n.text(env_path);
    assert!(
        env.contains("PGBOUNCER_EXPORTER_CONNECTION_STRING=\"postgres://dbuser_monitor:Mon.it%27or%231@:6432/pgbouncer?host=%2Fvar%2Frun%2Fpostgresql&sslmode=disable\""),
        "{env}"
    );
    assert!(env.contains("ARGS=\"--web.listen-address=:9631\""), "{env}");
    let node = &loaded.fleet.nodes[0];
    assert!(node.pgbouncer_exporter());
    let plan = compile(&loaded.fleet, node).unwrap().plan;
    assert!(
        plan.services
            .iter()
            .any(|s| s == "prometheus-pgbouncer-exporter.service")
    );
    assert!(
        plan.packages
            .iter()
            .any(|s| s == "prometheus-pgbouncer-exporter")
    );

    let loaded = load_str("e.yml", &text("debian12")).unwrap_or_else(|e| panic!("{e:?}"));
    let warned: Vec<String> = loaded
        .warnings
        .iter()
        .filter(|f| f.key == "pgbouncer_exporter_enabled")
        .map(|f| f.message.clone())
        .collect();
    assert!(
        warned.len() == 1 && warned[0].contains("KeyError"),
        "{:#?}",
        loaded.warnings
    );
    let n = render_fleet("e.yml", &loaded.fleet, &dir.path().join("12")).remove(0);
    assert_eq!(n.file_mode(env_path), None);
    let plan = compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap().plan;
    assert!(
        !plan
            .services
            .iter()
            .any(|s| s.contains("pgbouncer-exporter"))
    );
    assert!(
        !plan
            .packages
            .iter()
            .any(|s| s.contains("pgbouncer-exporter"))
    );
}

// ------------------------------------------------------------------ hostile values

const HOSTILE_PASSWORD: &str = "it's \"q\": off #1 %s \\ yes";
/// pgbackrest.conf has no quoting: `#`, `=` and quotes inside a value are the value.
const HOSTILE_REGION: &str = "a#b=c 'd' %e \\f";
const HOSTILE_COMMENT: &str = "a 'comment': \"x\" # %s \\ off\nsecond line";

/// An inventory whose values are everything a careless template would break on.
fn hostile_inventory() -> String {
    format!(
        r##"all:
  children:
    etcd: {{ hosts: {{ 10.10.10.10: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}
    pg-evil:
      hosts:
        10.10.10.11: {{ pg_seq: 1, pg_role: primary }}
        10.10.10.12: {{ pg_seq: 2, pg_role: replica }}
      vars:
        pg_cluster: pg-evil
        pg_users:
          - {{ name: dbuser.odd@x-1, password: {pw}, pgbouncer: true, roles: [dbrole_readwrite], comment: {comment}, parameters: {{ search_path: '"$user", public' }} }}
          - {{ name: "off", password: "yes", pgbouncer: true, roles: [dbrole_readonly], comment: "yes" }}
        pg_databases:
          - {{ name: odd_db, pgbouncer: false, comment: {comment}, schemas: [s_p_a_c_e, q_uote], parameters: {{ work_mem: "8MB" }} }}
          - {{ name: meta, owner: "off", comment: "off" }}
        pg_hba_rules:
          - {{ user: "weird \"user\" #1", db: odd_db, addr: world, auth: pwd, title: {comment} }}
          - {{ user: all, db: all, addr: 127.0.0.1, auth: trust, title: "off", rules: [ 'host all all 127.0.0.2/32 reject' ] }}
        pg_parameters: {{ log_line_prefix: "%m [%p] %q%u@%d # 'x' \\ :", application_name: "off", statement_timeout: "0" }}
  vars:
    admin_ip: 10.10.10.10
    node_base: debian12
    node_repo_modules: node
    pg_version: {PG_VERSION}
    pg_admin_password: {pw}
    pg_monitor_password: "off"
    pg_replication_password: "yes: no"
    patroni_password: "#not a comment"
    patroni_username: "off"
    haproxy_admin_password: "a'b \"c\" $HOME #x \\"
    pgbackrest_method: s3x
    pgbackrest_repo:
      s3x: {{ type: s3, path: /pgbackrest, s3_endpoint: sss.pigsty, s3_bucket: pgsql, s3_uri_style: path, s3_region: {region}, s3_key: "k#1", s3_key_secret: "s=e#c 'r' %t \\" }}
"##,
        pw = serde_json::to_string(HOSTILE_PASSWORD).unwrap(),
        comment = serde_json::to_string(HOSTILE_COMMENT).unwrap(),
        region = serde_json::to_string(HOSTILE_REGION).unwrap(),
    )
}

/// A database and schemas whose names `inventory check` refuses (it takes
/// ^[A-Za-z_][A-Za-z0-9_-]{0,62}$), as the templates still escape them.
const HOSTILE_DB: &str = "odd db's \"name\" #%:\\";
const HOSTILE_SCHEMAS: [&str; 2] = ["s p a c e", "q\"uote"];

/// The hostile inventory, loaded, then given names the loader refuses: the second
/// line of defence (every template escapes for its format) is tested on its own.
fn hostile_fleet() -> Fleet {
    let mut fleet = load_str("hostile.yml", &hostile_inventory()).unwrap().fleet;
    for node in &mut fleet.nodes {
        let Some(pg) = node.pg.as_mut() else { continue };
        let db = &mut pg.params.pg_databases[0];
        assert_eq!(db.name, "odd_db");
        db.name = HOSTILE_DB.to_string();
        for (s, name) in db.schemas.iter_mut().zip(HOSTILE_SCHEMAS) {
            s.name = name.to_string();
        }
        pg.params.pg_hba_rules[0].db = Some(HOSTILE_DB.to_string());
    }
    fleet
}

#[test]
fn hostile_values_come_back_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = render_fleet("hostile.yml", &hostile_fleet(), dir.path());
    let primary = nodes.iter().find(|n| n.primary).unwrap();
    let c = primary.patroni();
    assert_eq!(c["restapi"]["authentication"]["username"], "off");
    assert_eq!(c["restapi"]["authentication"]["password"], "#not a comment");
    assert_eq!(
        c["postgresql"]["authentication"]["replication"]["password"],
        "yes: no"
    );
    assert_eq!(
        c["postgresql"]["parameters"]["log_line_prefix"],
        "%m [%p] %q%u@%d # 'x' \\ :"
    );
    assert_eq!(c["postgresql"]["parameters"]["application_name"], "off");
    let hba: Vec<&str> = c["postgresql"]["pg_hba"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        hba.contains(&"# a 'comment': \"x\" # %s \\ off second line [default]"),
        "{hba:?}"
    );
    assert!(
        hba.iter()
            .any(|l| l.contains(r#""weird ""user"" #1""#)
                && l.contains(r#""odd db's ""name"" #%:\""#)),
        "{hba:?}"
    );
    assert!(
        hba.contains(&"host all all 127.0.0.2/32 reject"),
        "raw rules win over the alias fields: {hba:?}"
    );
    // Our own YAML reader agrees with PyYAML.
    let ours = pigsty::inventory::yaml::parse(&primary.text("/etc/patroni/patroni.yml"))
        .unwrap()
        .unwrap();
    assert_eq!(
        ours.to_json_with(&|s: &str| s.to_string())["restapi"]["authentication"]["password"],
        "#not a comment"
    );
    // pgbouncer's userlist holds the role's SCRAM verifier, never the password (the
    // login through pgbouncer with it is `hostile_values_work_in_the_real_servers`).
    let userlist = primary.text("/etc/pgbouncer/userlist.txt");
    assert!(
        userlist.contains(r#""dbuser.odd@x-1" "SCRAM-SHA-256$4096:"#),
        "{userlist}"
    );
    assert!(!userlist.contains("off #1"), "{userlist}");
    let haproxy = primary.text("/etc/haproxy/haproxy.cfg");
    assert!(
        haproxy.contains(r#"insecure-password "a'b \"c\" \$HOME #x \\""#),
        "{haproxy}"
    );
    let out = run(
        Command::new("haproxy")
            .arg("-c")
            .arg("-f")
            .arg(primary.path("/etc/haproxy/haproxy.cfg")),
        30,
    );
    assert!(out.status.success(), "{}", stderr(&out));
    // pgBackRest reads the hostile option back as written.
    let out = run(
        Command::new("pgbackrest")
            .arg(format!(
                "--config={}",
                primary.path("/etc/pgbackrest/pgbackrest.conf").display()
            ))
            .args(["--stanza=pg-evil", "help", "backup"]),
        30,
    );
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        help.contains(&format!("[current={HOSTILE_REGION}]")),
        "{help}"
    );
}

/// Render a small cluster with `extra` lines under its vars.
fn render_with(extra: &str) -> Result<(), String> {
    let text = format!(
        "all:\n  children:\n    etcd: {{ hosts: {{ 10.10.10.10: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-x:\n      hosts: {{ 10.10.10.11: {{ pg_seq: 1, pg_role: primary }} }}\n      vars:\n        pg_cluster: pg-x\n{extra}\n  vars: {{ admin_ip: 10.10.10.10 }}\n"
    );
    let loaded = load_str("bad.yml", &text).map_err(|e| format!("{e:?}"))?;
    for node in &loaded.fleet.nodes {
        compile(&loaded.fleet, node).map_err(|e| e.to_string())?;
    }
    Ok(())
}

#[test]
fn values_a_file_cannot_carry_are_render_errors() {
    let cases = [
        (
            "        haproxy_admin_password: \"a\\nb\"",
            "haproxy_admin_password",
        ),
        (
            "        pg_parameters: { log_line_prefix: \"a\\nb\" }",
            "pg_parameters.log_line_prefix",
        ),
        // Refused by the loader's name rule before any file is written.
        (
            "        pg_databases: [ { name: \"my db\" } ]",
            "is not a valid name here",
        ),
        (
            "        pg_databases: [ { name: \"a\\nb\", pgbouncer: false } ]",
            "is not a valid name here",
        ),
        // A password is stored as its SCRAM verifier, computed without SASLprep.
        (
            "        pg_users: [ { name: x, password: \"p\u{e4}ss\", pgbouncer: true } ]",
            "not ASCII",
        ),
        (
            "        pgbackrest_repo: { local: { path: \" /pg/backup\" } }",
            "pgbackrest_repo.local",
        ),
        (
            "        pg_services: [ { name: x, port: 5440, backup: \"[? pg_seq > `1`]\" } ]",
            "pg_seq > `1`",
        ),
        (
            "        pg_hba_rules: [ { user: a, db: all, addr: mars, auth: pwd } ]",
            "unknown addr `mars`",
        ),
    ];
    for (extra, expect) in cases {
        let err = render_with(extra).expect_err(extra);
        assert!(
            err.contains(expect),
            "{extra}: error does not name {expect:?}: {err}"
        );
    }
    // The loader refuses role names outside Pigsty's pattern before rendering.
    let err = render_with("        pg_users: [ { name: \"bad name\" } ]").unwrap_err();
    assert!(err.contains("bad name"), "{err}");
}

#[test]
#[ignore = "needs root and starts PostgreSQL and pgbouncer (run with --include-ignored)"]
fn hostile_values_work_in_the_real_servers() {
    support::require_root(AS_POSTGRES);
    let fleet = hostile_fleet();
    let trees = tempfile::tempdir().unwrap();
    let nodes = render_fleet("hostile.yml", &fleet, trees.path());
    let n = nodes.iter().find(|n| n.primary).unwrap();
    let pg = check_primary(n, &fleet, "pg-evil-1");
    // The admin logs in with the hostile password over TCP and TLS (`hostssl` rule).
    let login = |user: &str, pw: &str, port: u16, db: &str, ssl: &str| {
        let mut c = as_postgres("psql");
        c.args(["-X", "-At", "-c", "SELECT current_user"])
            .arg(format!(
                "host=127.0.0.1 port={port} dbname={db} user={user} sslmode={ssl}"
            ))
            .env("PGPASSWORD", pw);
        run(&mut c, 30)
    };
    let out = login(
        "dbuser_dba",
        HOSTILE_PASSWORD,
        pg.port,
        "postgres",
        "require",
    );
    assert!(out.status.success(), "admin login: {}", stderr(&out));
    let comment = pg.query(
        "SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = 'dbuser.odd@x-1'",
    );
    assert_eq!(comment, HOSTILE_COMMENT);
    let setting = pg.query("SELECT setconfig[1] FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole WHERE rolname = 'dbuser.odd@x-1'");
    assert_eq!(setting, "search_path=\"$user\", public");
    // Through pgbouncer: the userlist entry and pgb_hba rules of the hostile user.
    let bouncer_dir = postgres_dir();
    let (_bouncer, port) = start_pgbouncer(n, bouncer_dir.path(), Some((pg.dir.path(), pg.port)));
    let out = login("dbuser.odd@x-1", HOSTILE_PASSWORD, port, "meta", "disable");
    assert!(
        out.status.success(),
        "login through pgbouncer: {}\n{}",
        stderr(&out),
        pgbouncer_log(bouncer_dir.path())
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "dbuser.odd@x-1"
    );
    let out = login("off", "yes", port, "meta", "disable");
    assert!(out.status.success(), "login as `off`: {}", stderr(&out));
}
