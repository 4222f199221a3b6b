//! The MINIO, REDIS and INFRA files, and every systemd unit of every module, checked
//! with the real tools over every example and fixture inventory:
//!
//! - `promtool check config` on each rendered prometheus.yml (plus: every node's
//!   node_exporter is a target), `amtool check-config` on each alertmanager.yml;
//! - nginx: `nginx -t` on a minimal main config that includes the rendered server,
//!   then the server started for real on loopback, serving an autoindex;
//! - redis: each rendered config run by a real `redis-server` on loopback (only
//!   port, bind, dir and upstream rewritten), replicas streaming from their primary,
//!   sentinels authenticated to the primary they watch;
//! - `systemd-analyze verify` on every rendered unit and drop-in, inside a root;
//! - EnvironmentFiles read back by a shell, value for value;
//! - sysusers.d and tmpfiles.d applied for real to the rendered tree (root only);
//! - no secret of a node in a file of that node that every user can read.
//!
//! The tools come from Debian packages that ci/setup.sh installs; a missing tool
//! fails the test with that hint rather than skipping it. Only the sysusers/tmpfiles
//! test needs root (it chowns): it is ignored unless asked for (`--include-ignored`;
//! ci/test.sh does) and fails saying so when asked without root. Every wait is bounded;
//! every process listens on 127.0.0.1 on a port the test picked, and is killed when
//! its guard drops (also on panic).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use pigsty::compile::{Compiled, compile};
use pigsty::inventory::{Source, load};
use pigsty::model::{Fleet, Node, RedisMode};
use pigsty::render::RenderedFile;
use pigsty::render::write::write_tree;

// ------------------------------------------------------------------ shared helpers

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// inventory/*.yml and tests/fixtures/inventories/*.yml, sorted.
fn inventories() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in ["inventory", "tests/fixtures/inventories"] {
        let entries = std::fs::read_dir(repo().join(dir)).expect("listing inventories");
        out.extend(
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "yml")),
        );
    }
    out.sort();
    assert!(
        out.len() >= 8,
        "expected the example and fixture inventories"
    );
    out
}

/// One inventory, loaded and compiled node by node.
struct Rendered {
    name: String,
    fleet: Fleet,
    nodes: Vec<Compiled>,
}

fn compile_fleet(fleet: &Fleet) -> Vec<Compiled> {
    fleet
        .nodes
        .iter()
        .map(|n| compile(fleet, n).expect("compiling a node"))
        .collect()
}

fn render_all() -> Vec<Rendered> {
    inventories()
        .iter()
        .map(|path| {
            let loaded = load(&Source::File(path.clone()))
                .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()));
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            Rendered {
                name,
                nodes: compile_fleet(&loaded.fleet),
                fleet: loaded.fleet,
            }
        })
        .collect()
}

impl Rendered {
    /// (node, its compiled plan) pairs.
    fn pairs(&self) -> impl Iterator<Item = (&Node, &Compiled)> {
        self.fleet.nodes.iter().zip(&self.nodes)
    }
}

fn file<'a>(c: &'a Compiled, path: &str) -> Option<&'a RenderedFile> {
    c.files.iter().find(|f| f.path == path)
}

/// Write a node's tree under `base/<inventory>/<nodename>` and return that root.
fn write_node(base: &Path, inv: &str, c: &Compiled) -> PathBuf {
    let root = base.join(inv).join(&c.plan.node.nodename);
    write_tree(&c.files, &root).expect("writing the rendered tree");
    root
}

/// The tool's path, or a failure that says how to get it.
fn tool(name: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .chain(["/usr/sbin".into(), "/sbin".into()])
            .map(|d| d.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` is not installed: run ci/setup.sh (it installs every tool these tests call)"
        )
    })
}

fn output(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"))
}

/// Run and require success; on failure show the command and both streams.
fn check(cmd: &mut Command) -> Output {
    let out = output(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A free port whose cluster bus port (port + 10000, which a cluster-mode redis binds
/// too) is free as well, and not handed out before in this test binary: an ephemeral
/// port's +10000 may be anyone's.
fn redis_port() -> u16 {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut given = GIVEN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    let start = std::process::id() % 20000;
    let port = (0..20000u32)
        .map(|i| (20000 + (start + i * 7) % 25000) as u16)
        .find(|&p| {
            !given.contains(&p) && !given.contains(&(p + 10000)) && free(p) && free(p + 10000)
        })
        .expect("a free port pair below 55000");
    given.extend([port, port + 10000]);
    port
}

/// Poll `probe` every 100 ms, at most `tries` times.
fn wait_for(tries: u32, mut probe: impl FnMut() -> bool) -> bool {
    for _ in 0..tries {
        if probe() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

/// A child process killed (and reaped) when dropped, so a failing assertion
/// leaves nothing running.
struct Guard {
    child: Child,
    what: String,
    log: PathBuf,
}

impl Guard {
    fn spawn(cmd: &mut Command, what: &str, log: PathBuf) -> Guard {
        let out = std::fs::File::create(&log).expect("creating a log file");
        let err = out.try_clone().expect("cloning the log handle");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what}: {e}"));
        Guard {
            child,
            what: what.to_string(),
            log,
        }
    }

    /// Fail with the process's log when it has exited or `ready` never holds.
    fn wait_ready(&mut self, ready: impl FnMut() -> bool) {
        let up = wait_for(100, ready);
        let exited = self.child.try_wait().ok().flatten();
        if !up || exited.is_some() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            panic!(
                "{} did not come up (exit: {exited:?}); its log:\n{log}",
                self.what
            );
        }
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ------------------------------------------------------------------ prometheus / alertmanager

#[test]
fn prometheus_configs_pass_promtool_and_scrape_every_node() {
    let promtool = tool("promtool");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for (node, c) in inv.pairs() {
            let Some(f) = file(c, "/etc/prometheus/prometheus.yml") else {
                assert!(
                    node.infra.is_none(),
                    "{}: infra node without prometheus.yml",
                    node.nodename
                );
                continue;
            };
            let root = write_node(tmp.path(), &inv.name, c);
            check(
                Command::new(&promtool)
                    .arg("check")
                    .arg("config")
                    .arg(root.join("etc/prometheus/prometheus.yml")),
            );
            let text = String::from_utf8_lossy(&f.content);
            for n in inv
                .fleet
                .nodes
                .iter()
                .filter(|n| n.node.node_exporter_enabled.0)
            {
                let target = format!("\"{}:{}\"", n.ip, n.node.node_exporter_port);
                assert!(
                    text.contains(&target),
                    "{}/{}: no scrape target {target}",
                    inv.name,
                    node.nodename
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} prometheus.yml checked");
}

/// Debian's blackbox exporter with the rendered probe modules and arguments (the
/// listen address moved to loopback) pings an address with ICMP, as the infra node's
/// `ping` job asks it to; the job lists every node of the inventory.
#[test]
#[ignore = "needs root (an ICMP raw socket) and starts the blackbox exporter (run with --include-ignored)"]
fn blackbox_exporter_pings_with_the_rendered_modules() {
    let exporter = tool("prometheus-blackbox-exporter");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for (node, c) in inv.pairs() {
            if file(c, "/etc/default/prometheus-blackbox-exporter").is_none() {
                continue;
            }
            let prom = String::from_utf8_lossy(
                &file(c, "/etc/prometheus/prometheus.yml").unwrap().content,
            )
            .into_owned();
            for n in &inv.fleet.nodes {
                assert!(
                    prom.contains(&format!("__param_target: \"{}\"", n.ip)),
                    "{}: the ping job misses {}",
                    inv.name,
                    n.ip
                );
            }
            let root = write_node(tmp.path(), &inv.name, c);
            let env = root.join("etc/default/prometheus-blackbox-exporter");
            let out = output(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!(". {}; printf %s \"$ARGS\"", env.display())),
            );
            let args = String::from_utf8_lossy(&out.stdout).into_owned();
            let p = &node.infra.as_ref().unwrap().params;
            assert_eq!(
                args,
                format!(
                    "--config.file=/etc/prometheus/blackbox.yml --web.listen-address=:{}",
                    p.blackbox_port
                )
            );
            let port = support::free_port();
            let config = root.join("etc/prometheus/blackbox.yml");
            let mut cmd = Command::new(&exporter);
            cmd.arg(format!("--config.file={}", config.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"));
            let mut guard = Guard::spawn(
                &mut cmd,
                "blackbox exporter",
                tmp.path().join("blackbox.log"),
            );
            guard.wait_ready(|| {
                http_path(port, "/probe?module=icmp&target=127.0.0.1")
                    .lines()
                    .any(|l| l == "probe_success 1")
            });
            drop(guard);
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} blackbox exporters checked");
}

#[test]
fn alertmanager_configs_pass_amtool() {
    let amtool = tool("amtool");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for c in inv
            .nodes
            .iter()
            .filter(|c| file(c, "/etc/prometheus/alertmanager.yml").is_some())
        {
            let root = write_node(tmp.path(), &inv.name, c);
            check(
                Command::new(&amtool)
                    .arg("check-config")
                    .arg(root.join("etc/prometheus/alertmanager.yml")),
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} alertmanager.yml checked");
}

// ------------------------------------------------------------------ nginx

/// A main nginx.conf around the rendered server: everything nginx writes goes
/// under `dir`, so neither `-t` nor the real start touches /var or /run.
fn nginx_main(dir: &Path, server_conf: &Path) -> PathBuf {
    let d = dir.display();
    let main = dir.join("nginx.conf");
    let text = format!(
        "pid {d}/nginx.pid;\nerror_log {d}/error.log;\nevents {{}}\nhttp {{\n    access_log off;\n    \
         client_body_temp_path {d}/body;\n    proxy_temp_path {d}/proxy;\n    fastcgi_temp_path {d}/fastcgi;\n    \
         uwsgi_temp_path {d}/uwsgi;\n    scgi_temp_path {d}/scgi;\n    include {};\n}}\n",
        server_conf.display()
    );
    std::fs::write(&main, text).unwrap();
    main
}

fn nginx(dir: &Path, main: &Path) -> Command {
    let mut cmd = Command::new(tool("nginx"));
    cmd.arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(dir.join("error.log"))
        .arg("-c")
        .arg(main);
    cmd
}

/// The rendered server moved to a loopback port and a test directory; nothing else changes.
fn nginx_on_loopback(conf: &str, port: u16, www: &Path) -> String {
    conf.lines()
        .map(|l| match l.trim_start() {
            s if s.starts_with("listen ") => format!("    listen 127.0.0.1:{port};"),
            s if s.starts_with("root ") => format!("    root {};", www.display()),
            _ => l.to_string(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One HTTP/1.0 GET on a loopback port with this Host header; None when nothing
/// listens there.
fn http(port: u16, host: &str, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").ok()?;
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    Some(body)
}

fn http_get(port: u16, host: &str) -> String {
    http(port, host, "/").expect("connecting to nginx")
}

#[test]
fn nginx_serves_the_artifact_directory() {
    let tmp = tempfile::tempdir().unwrap();
    // nginx workers drop to `nobody` when started as root: they must reach the files.
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for c in &inv.nodes {
            let Some(f) = file(c, "/etc/nginx/conf.d/pigsty.conf") else {
                continue;
            };
            let dir = tmp
                .path()
                .join(format!("{}-{}", inv.name, c.plan.node.nodename));
            std::fs::create_dir_all(&dir).unwrap();
            let rendered = dir.join("pigsty.conf");
            std::fs::write(&rendered, &f.content).unwrap();
            check(nginx(&dir, &nginx_main(&dir, &rendered)).arg("-t"));
            serve_for_real(&dir, &String::from_utf8_lossy(&f.content), &c.plan.node.ip);
            checked += 1;
        }
    }
    assert!(checked >= 4, "only {checked} nginx servers checked");
}

/// Start the server on loopback and read the autoindex of a directory holding one
/// file. Beside it runs a catch-all `default_server`, as Debian's default site does on
/// a node: the rendered server must still answer for its own names.
fn serve_for_real(dir: &Path, conf: &str, node_ip: &str) {
    let www = dir.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("pigsty-artifact.tar"), b"x").unwrap();
    let port = support::free_port();
    let live = dir.join("live.conf");
    let catch_all =
        format!("server {{\n    listen 127.0.0.1:{port} default_server;\n    return 404;\n}}\n");
    std::fs::write(
        &live,
        nginx_on_loopback(conf, port, &www) + "\n" + &catch_all,
    )
    .unwrap();
    let main = nginx_main(dir, &live);
    let mut cmd = nginx(dir, &main);
    cmd.arg("-g").arg("daemon off;");
    let mut guard = Guard::spawn(&mut cmd, "nginx", dir.join("nginx.out"));
    guard.wait_ready(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
    // The node's own address is one of the server names: it matches exactly.
    let page = http_get(port, node_ip);
    assert!(page.starts_with("HTTP/1.1 200"), "GET / answered:\n{page}");
    assert!(
        page.contains("pigsty-artifact.tar"),
        "no autoindex listing:\n{page}"
    );
    let other = http_get(port, "unknown.invalid");
    assert!(
        other.starts_with("HTTP/1.1 404"),
        "the catch-all answered:\n{other}"
    );
}

// ------------------------------------------------------------------ redis

/// The rendered config with some directives replaced in place (`port`, `bind`, `dir`,
/// `replicaof`) or added, and `sentinel monitor` upstreams moved to loopback ports.
fn rewrite_redis(
    text: &str,
    set: &[(&str, String)],
    upstream: &HashMap<(String, u16), u16>,
) -> String {
    let mut done = Vec::new();
    let mut out: Vec<String> = text
        .lines()
        .map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if let Some((key, value)) = set.iter().find(|(k, _)| words.first() == Some(k)) {
                done.push(*key);
                return format!("{key} {value}");
            }
            match words.as_slice() {
                ["sentinel", "monitor", name, host, port, quorum] => {
                    let port: u16 = port.parse().expect("sentinel monitor port");
                    let local = upstream
                        .get(&(host.to_string(), port))
                        .copied()
                        .unwrap_or_else(support::free_port);
                    format!("sentinel monitor {name} 127.0.0.1 {local} {quorum}")
                }
                _ => line.to_string(),
            }
        })
        .collect();
    out.extend(
        set.iter()
            .filter(|(k, _)| !done.contains(k))
            .map(|(k, v)| format!("{k} {v}")),
    );
    out.join("\n") + "\n"
}

/// `redis-cli` against a loopback port; the password goes through the environment.
fn redis_cli(port: u16, password: &str, args: &[&str]) -> String {
    let out = output(
        Command::new(tool("redis-cli"))
            .env("REDISCLI_AUTH", password)
            .args(["-h", "127.0.0.1", "-p", &port.to_string()])
            .args(args),
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Redis's own reading of a memory size (`memtoll`): k/m/g are powers of 1000,
/// kb/mb/gb powers of 1024, case-insensitive.
fn redis_bytes(s: &str) -> u64 {
    let lower = s.to_ascii_lowercase();
    let split = lower
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(split);
    let mul = match unit {
        "" | "b" => 1,
        "k" => 1000,
        "kb" => 1024,
        "m" => 1000 * 1000,
        "mb" => 1024 * 1024,
        "g" => 1000 * 1000 * 1000,
        "gb" => 1024 * 1024 * 1024,
        other => panic!("unexpected memory unit {other}"),
    };
    num.parse::<u64>().expect("memory size") * mul
}

/// A rendered instance to run: its node, name, port and config text.
struct Instance<'a> {
    node: &'a Node,
    name: String,
    port: u16,
    upstream: Option<(String, u16)>,
    conf: String,
}

fn redis_instances(inv: &Rendered) -> Vec<Instance<'_>> {
    let mut out = Vec::new();
    for (node, c) in inv.pairs() {
        let Some(r) = &node.redis else { continue };
        for (port, inst) in &r.instances {
            let path = format!("/etc/redis/{}.conf", inst.name);
            let f = file(c, &path).unwrap_or_else(|| panic!("{}: {path} not rendered", inv.name));
            out.push(Instance {
                node,
                name: inst.name.clone(),
                port: *port,
                upstream: inst.replica_of.map(|(ip, p)| (ip.to_string(), p)),
                conf: String::from_utf8_lossy(&f.content).into_owned(),
            });
        }
    }
    out
}

/// Start one instance on a loopback port with its own data directory.
fn start_redis(
    tmp: &Path,
    inst: &Instance,
    extra: &[(&str, String)],
    upstream: &HashMap<(String, u16), u16>,
) -> (Guard, u16) {
    let port = redis_port();
    let dir = tmp.join(&inst.name);
    std::fs::create_dir_all(&dir).unwrap();
    let mut set = vec![
        ("port", port.to_string()),
        ("bind", "127.0.0.1".into()),
        ("dir", dir.display().to_string()),
    ];
    set.extend(extra.iter().cloned());
    // Sentinel rewrites its config, so it runs from a writable copy.
    let conf = dir.join("redis.conf");
    std::fs::write(&conf, rewrite_redis(&inst.conf, &set, upstream)).unwrap();
    let mut cmd = Command::new(tool("redis-server"));
    cmd.arg(&conf);
    if is_sentinel(inst) {
        cmd.arg("--sentinel");
    }
    let password = password(inst.node);
    let mut guard = Guard::spawn(&mut cmd, &inst.name, dir.join("redis.log"));
    guard.wait_ready(|| redis_cli(port, &password, &["ping"]).trim() == "PONG");
    (guard, port)
}

fn password(node: &Node) -> String {
    node.redis
        .as_ref()
        .map(|r| r.params.redis_password.clone())
        .unwrap_or_default()
}

/// What the running instance reports for a config parameter.
fn config_get(port: u16, pw: &str, key: &str) -> String {
    let out = redis_cli(port, pw, &["config", "get", key]);
    out.lines().nth(1).unwrap_or_default().to_string()
}

fn check_standalone(inst: &Instance, port: u16) {
    let p = &inst.node.redis.as_ref().unwrap().params;
    let pw = password(inst.node);
    assert_eq!(
        config_get(port, &pw, "maxmemory-policy"),
        p.redis_mem_policy,
        "{}",
        inst.name
    );
    assert_eq!(
        config_get(port, &pw, "maxmemory"),
        redis_bytes(&p.redis_max_memory).to_string(),
        "{}",
        inst.name
    );
    assert_eq!(
        config_get(port, &pw, "save"),
        p.redis_rdb_save.join(" "),
        "{}",
        inst.name
    );
    let aof = if p.redis_aof_enabled.0 { "yes" } else { "no" };
    assert_eq!(config_get(port, &pw, "appendonly"), aof, "{}", inst.name);
}

#[test]
fn redis_configs_run_in_real_redis() {
    let tmp = tempfile::tempdir().unwrap();
    let (mut started, mut sentinels) = (0, 0);
    for inv in render_all() {
        let instances = redis_instances(&inv);
        let mut guards = Vec::new();
        let mut local: HashMap<(String, u16), u16> = HashMap::new();
        // Primaries and cluster members first, so replicas and sentinels have an upstream.
        // A primary waits 5 s (repl-diskless-sync-delay) for more replicas before a
        // full sync; not waiting changes nothing the test checks.
        let no_delay = [("repl-diskless-sync-delay", "0".to_string())];
        for inst in instances
            .iter()
            .filter(|i| i.upstream.is_none() && !is_sentinel(i))
        {
            let (guard, port) = start_redis(tmp.path(), inst, &no_delay, &local);
            guards.push(guard);
            local.insert((inst.node.ip.to_string(), inst.port), port);
            check_mode(inst, port);
            started += 1;
        }
        for inst in instances.iter().filter(|i| i.upstream.is_some()) {
            guards.push(start_replica(tmp.path(), inst, &local));
            started += 1;
        }
        for inst in instances.iter().filter(|i| is_sentinel(i)) {
            let (guard, port) = start_redis(tmp.path(), inst, &[], &local);
            guards.push(guard);
            check_sentinel(inst, port, &local);
            sentinels += 1;
        }
    }
    assert!(
        started >= 6 && sentinels >= 3,
        "only {started} redis and {sentinels} sentinels ran"
    );
}

/// Debian's redis exporter, run with the variables of the rendered
/// `/etc/default/prometheus-redis-exporter` (read by a shell, as systemd's
/// EnvironmentFile reads it), scrapes a node's instance through `/scrape` with the
/// node's password, as the infra node's Prometheus does.
#[test]
#[ignore = "starts redis-server and Debian's redis exporter (run with --include-ignored)"]
fn redis_exporter_scrapes_instances_with_the_rendered_settings() {
    let exporter = tool("prometheus-redis-exporter");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        let instances = redis_instances(&inv);
        for (node, c) in inv.pairs() {
            let Some(r) = &node.redis else { continue };
            let path = "/etc/default/prometheus-redis-exporter";
            let Some(f) = file(c, path) else {
                assert!(
                    !r.params.redis_exporter_enabled.0,
                    "{}: {path} not rendered",
                    inv.name
                );
                continue;
            };
            assert_eq!(f.mode, 0o600, "{}: {path} holds the password", inv.name);
            let Some(inst) = instances
                .iter()
                .find(|i| i.node.ip == node.ip && i.upstream.is_none() && !is_sentinel(i))
            else {
                continue;
            };
            let (guard, port) = start_redis(tmp.path(), inst, &[], &HashMap::new());
            let env_file = tmp.path().join(format!("{}.env", inst.name));
            std::fs::write(&env_file, &f.content).unwrap();
            let out = output(
                Command::new("sh")
                    .arg("-c")
                    .arg(format!("set -a; . {}; env -0", env_file.display())),
            );
            let vars: BTreeMap<String, String> = String::from_utf8_lossy(&out.stdout)
                .split('\0')
                .filter_map(|kv| kv.split_once('='))
                .filter(|(k, _)| k.starts_with("REDIS_") || *k == "ARGS")
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            assert_eq!(
                vars["REDIS_EXPORTER_WEB_LISTEN_ADDRESS"],
                format!("0.0.0.0:{}", r.params.redis_exporter_port)
            );
            assert_eq!(
                vars.get("REDIS_PASSWORD").cloned().unwrap_or_default(),
                r.params.redis_password
            );
            let listen = support::free_port();
            let mut cmd = Command::new(&exporter);
            cmd.args(vars["ARGS"].split_whitespace()).envs(&vars).env(
                "REDIS_EXPORTER_WEB_LISTEN_ADDRESS",
                format!("127.0.0.1:{listen}"),
            );
            let mut ex = Guard::spawn(&mut cmd, "redis exporter", tmp.path().join("exporter.log"));
            let query = format!("/scrape?target=redis://127.0.0.1:{port}");
            ex.wait_ready(|| http_path(listen, &query).lines().any(|l| l == "redis_up 1"));
            drop(ex);
            drop(guard);
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} exporters checked");
}

/// GET a path on a loopback port; empty when nothing answers.
fn http_path(port: u16, path: &str) -> String {
    http(port, "127.0.0.1", path).unwrap_or_default()
}

fn is_sentinel(inst: &Instance) -> bool {
    inst.node
        .redis
        .as_ref()
        .is_some_and(|r| r.params.redis_mode == RedisMode::Sentinel)
}

fn check_mode(inst: &Instance, port: u16) {
    check_standalone(inst, port);
    let cluster = inst
        .node
        .redis
        .as_ref()
        .is_some_and(|r| r.params.redis_mode == RedisMode::Cluster);
    let info = redis_cli(port, &password(inst.node), &["info", "cluster"]);
    let want = if cluster {
        "cluster_enabled:1"
    } else {
        "cluster_enabled:0"
    };
    assert!(info.contains(want), "{}: {info}", inst.name);
}

/// A replica pointed at its primary's loopback port must stream within 10 s.
fn start_replica(tmp: &Path, inst: &Instance, local: &HashMap<(String, u16), u16>) -> Guard {
    let upstream = inst.upstream.clone().unwrap();
    let primary = *local.get(&upstream).unwrap_or_else(|| {
        panic!(
            "{}: replica of {upstream:?}, which no inventory node runs",
            inst.name
        )
    });
    let set = [("replicaof", format!("127.0.0.1 {primary}"))];
    let (guard, port) = start_redis(tmp, inst, &set, local);
    check_standalone(inst, port);
    let pw = password(inst.node);
    let up = wait_for(100, || {
        redis_cli(port, &pw, &["info", "replication"]).contains("master_link_status:up")
    });
    assert!(
        up,
        "{}: no link to its primary:\n{}",
        inst.name,
        redis_cli(port, &pw, &["info", "replication"])
    );
    guard
}

/// Every monitored primary is listed; one that runs here must be reached with the
/// rendered auth-pass (flags exactly `master`, an INFO reply seen) within 10 s.
fn check_sentinel(inst: &Instance, port: u16, local: &HashMap<(String, u16), u16>) {
    let r = inst.node.redis.as_ref().unwrap();
    let pw = password(inst.node);
    let masters = redis_cli(port, &pw, &["sentinel", "masters"]);
    for m in &r.params.redis_sentinel_monitor {
        assert!(
            masters.lines().any(|l| l == m.name),
            "{}: {} not monitored:\n{masters}",
            inst.name,
            m.name
        );
        if !local.contains_key(&(m.host.clone(), m.port)) {
            continue;
        }
        let linked = wait_for(100, || {
            let fields = sentinel_master(port, &pw, &m.name);
            fields.get("flags").map(String::as_str) == Some("master")
                && fields.get("info-refresh").is_some_and(|v| v != "0")
        });
        assert!(
            linked,
            "{}: never authenticated to {}: {:?}",
            inst.name,
            m.name,
            sentinel_master(port, &pw, &m.name)
        );
    }
}

fn sentinel_master(port: u16, pw: &str, name: &str) -> BTreeMap<String, String> {
    let out = redis_cli(port, pw, &["sentinel", "master", name]);
    let lines: Vec<&str> = out.lines().collect();
    lines
        .chunks(2)
        .filter_map(|kv| Some((kv[0].to_string(), kv.get(1)?.to_string())))
        .collect()
}

#[test]
fn redis_rewrite_keeps_order_and_maps_monitors() {
    let conf = "port 6379\nsentinel monitor m 10.0.0.1 6379 2\nsentinel auth-pass m pw\n";
    let up = HashMap::from([(("10.0.0.1".to_string(), 6379), 17000)]);
    let out = rewrite_redis(conf, &[("port", "1".into()), ("dir", "/t".into())], &up);
    assert_eq!(
        out,
        "port 1\nsentinel monitor m 127.0.0.1 17000 2\nsentinel auth-pass m pw\ndir /t\n"
    );
    assert_eq!(redis_bytes("64MB"), 64 << 20);
    assert_eq!(redis_bytes("1g"), 1_000_000_000);
}

// ------------------------------------------------------------------ systemd units

/// What `systemd-analyze verify` needs to run in this container (systemd is not PID
/// 1 here, and the host's units are not the image's):
/// - `--root=DIR` with the rendered tree, so units resolve against the image's
///   paths and not this machine's /etc;
/// - the unit files packages ship, copied from this machine's /usr/lib/systemd/system
///   (ci/setup.sh installs the packages whose units our drop-ins extend); without
///   them every unit fails on its default dependencies (`sysinit.target not found`);
/// - the merged-/usr links (`/bin` → `usr/bin`, ...) and an executable at every
///   absolute path an `Exec*=` line or `AssertFileIsExecutable=` names: verify
///   checks each is executable *inside the root*; ours (/usr/local/bin/pigsty,
///   minio_server_bin) exist only in built images, so they are stubs;
/// - `--man=no`: `Documentation=man:` pages are not in the root, and a missing
///   page says nothing about the unit; `--generators=no`: generators would inspect
///   this machine (fstab, kernel command line), not the image.
///
/// verify exits 0 even on a bad line ("Unknown key", "Failed to parse"), so any
/// output at all fails the test: no warning is expected from our units today.
fn verify_root(root: &Path, units: &[String]) -> Output {
    let mut cmd = Command::new(tool("systemd-analyze"));
    cmd.arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(["--man=no", "--generators=no"])
        .args(units)
        .env("SYSTEMD_LOG_COLOR", "0");
    output(&mut cmd)
}

/// Package unit directories of this machine (one of them when /lib is /usr/lib).
fn host_unit_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    for d in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        let Ok(real) = std::fs::canonicalize(d) else {
            continue;
        };
        if !dirs
            .iter()
            .any(|x| std::fs::canonicalize(x).ok().as_ref() == Some(&real))
        {
            dirs.push(PathBuf::from(d));
        }
    }
    dirs
}

/// Copy a directory, keeping symlinks as links (unit aliases are relative links).
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let kind = e.file_type().unwrap();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&src).unwrap(), &dst).unwrap();
        } else if kind.is_dir() {
            copy_tree(&src, &dst);
        } else {
            std::fs::copy(&src, &dst).unwrap();
        }
    }
}

/// The absolute executables a unit file names (`Exec*=` and
/// `AssertFileIsExecutable=`/`ConditionFileIsExecutable=`), prefixes and quotes removed.
fn executables(unit_text: &str) -> Vec<String> {
    unit_text
        .lines()
        .filter_map(|l| l.split_once('='))
        .filter(|(k, _)| k.trim().starts_with("Exec") || k.trim().ends_with("FileIsExecutable"))
        .filter_map(|(_, v)| {
            let v = v.trim().trim_start_matches(['-', '@', ':', '+', '!', '|']);
            let word = match v.strip_prefix('"') {
                Some(q) => q
                    .split('"')
                    .next()?
                    .replace("\\\\", "\\")
                    .replace("\\\"", "\""),
                None => v.split_whitespace().next()?.to_string(),
            };
            let word = word.replace("%%", "%").replace("$$", "$");
            word.starts_with('/').then_some(word)
        })
        .collect()
}

/// The units to verify on one node: every rendered unit (a template by each
/// instance the plan starts, or by itself), and every unit a rendered drop-in extends.
fn units_to_verify(c: &Compiled) -> Vec<String> {
    let mut units = Vec::new();
    for f in &c.files {
        let Some(rel) = f.path.strip_prefix("/etc/systemd/system/") else {
            continue;
        };
        match rel.split_once('/') {
            Some((dir, _)) => units.extend(dir.strip_suffix(".d").map(str::to_string)),
            None if rel.contains("@.") => {
                let prefix = rel.split_once("@.").map(|(p, _)| format!("{p}@")).unwrap();
                let instances: Vec<String> = c
                    .plan
                    .services
                    .iter()
                    .filter(|s| s.starts_with(&prefix))
                    // systemd-analyze verify (252) fails to load an instance whose
                    // name holds `:` ("Couldn't process aliases"), a name systemd
                    // itself runs (sshd's per-connection `sshd@1-10.0.0.1:22-...`):
                    // verified as its `\x3a` spelling, the same template and `%I`.
                    .map(|s| s.replace(':', "\\x3a"))
                    .collect();
                units.extend(if instances.is_empty() {
                    vec![rel.to_string()]
                } else {
                    instances
                });
            }
            None => units.push(rel.to_string()),
        }
    }
    units.sort();
    units.dedup();
    units
}

/// The unit file a name loads in the root: ours under etc, else the package's.
fn unit_file(root: &Path, unit: &str) -> Option<PathBuf> {
    let template = match unit.split_once('@') {
        Some((p, rest)) => format!("{p}@.{}", rest.rsplit('.').next()?),
        None => unit.to_string(),
    };
    ["etc/systemd/system", "usr/lib/systemd/system"]
        .iter()
        .flat_map(|d| [root.join(d).join(unit), root.join(d).join(&template)])
        .find(|p| p.is_file())
}

/// Stub every executable the units (and their drop-ins) name that the root lacks.
fn stub_executables(root: &Path, units: &[String]) {
    for unit in units {
        let base = unit_file(root, unit).unwrap_or_else(|| {
            panic!("{unit}: no unit file in the image's etc or in this machine's package units (run ci/setup.sh)")
        });
        let mut texts = vec![std::fs::read_to_string(&base).unwrap()];
        if let Ok(dropins) =
            std::fs::read_dir(root.join("etc/systemd/system").join(format!("{unit}.d")))
        {
            texts.extend(
                dropins
                    .flatten()
                    .map(|e| std::fs::read_to_string(e.path()).unwrap()),
            );
        }
        for exe in texts.iter().flat_map(|t| executables(t)) {
            let path = root.join(exe.trim_start_matches('/'));
            if !path.exists() {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, "#!/bin/sh\nexit 0\n").unwrap();
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            }
        }
    }
}

/// The rendered tree plus package units, merged-/usr links and executable stubs.
fn verify_tree(base: &Path, inv: &str, c: &Compiled, units: &[String]) -> PathBuf {
    let root = write_node(base, inv, c);
    for dir in host_unit_dirs() {
        copy_tree(&dir, &root.join(dir.strip_prefix("/").unwrap()));
    }
    for (link, target) in [("bin", "usr/bin"), ("sbin", "usr/sbin"), ("lib", "usr/lib")] {
        std::fs::create_dir_all(root.join(target)).unwrap();
        if !root.join(link).exists() {
            std::os::unix::fs::symlink(target, root.join(link)).unwrap();
        }
    }
    stub_executables(&root, units);
    root
}

/// Verify one node's units; the units on success, verify's complaint otherwise.
fn verify_node(base: &Path, inv: &str, c: &Compiled) -> Result<Vec<String>, String> {
    let units = units_to_verify(c);
    if !units.iter().any(|u| u == "pigsty-firstboot.service") {
        return Err(format!(
            "{inv}/{}: no pigsty-firstboot.service",
            c.plan.node.nodename
        ));
    }
    let root = verify_tree(base, inv, c, &units);
    let out = verify_root(&root, &units);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() && said.trim().is_empty() {
        return Ok(units);
    }
    Err(format!(
        "{inv}/{}: systemd-analyze verify {units:?} ({}):\n{said}",
        c.plan.node.nodename, out.status
    ))
}

#[test]
fn systemd_units_pass_verify() {
    use rayon::prelude::*;
    let tmp = tempfile::tempdir().unwrap();
    let all = render_all();
    let nodes: Vec<(&str, &Compiled)> = all
        .iter()
        .flat_map(|inv| inv.nodes.iter().map(|c| (inv.name.as_str(), c)))
        .collect();
    // One root and one verify per node, nodes in parallel (each takes ~0.3 s).
    let results: Vec<Result<Vec<String>, String>> = nodes
        .par_iter()
        .map(|(inv, c)| verify_node(tmp.path(), inv, c))
        .collect();
    let failures: Vec<&String> = results.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        failures.is_empty(),
        "{}",
        failures
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    let mut verified = BTreeMap::new();
    for u in results.into_iter().flatten().flatten() {
        *verified.entry(u).or_insert(0) += 1;
    }
    // Every kind of unit the overlays render was seen at least once.
    for want in [
        "pigsty-firstboot.service",
        "minio.service",
        "patroni.service",
        "pigsty-redis@redis-ms-1-6379.service",
    ] {
        assert!(
            verified.contains_key(want),
            "{want} never verified: {verified:?}"
        );
    }
    eprintln!("verified: {verified:?}");
}

/// The checks above would be worthless if verify accepted anything in this setup.
#[test]
fn systemd_verify_setup_reports_a_broken_unit() {
    let tmp = tempfile::tempdir().unwrap();
    let inv = render_all()
        .into_iter()
        .find(|r| r.name == "pigsty")
        .unwrap();
    let c = &inv.nodes[0];
    let units = vec!["minio.service".to_string()];
    let root = verify_tree(tmp.path(), &inv.name, c, &units);
    let unit = root.join("etc/systemd/system/minio.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    std::fs::write(&unit, text.replace("RestartSec=5", "RestartSec=soon")).unwrap();
    let out = verify_root(&root, &units);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("Failed to parse"),
        "{out:?}"
    );
    std::fs::write(&unit, text).unwrap();
    std::fs::remove_file(root.join("usr/local/bin/minio")).unwrap();
    let out = verify_root(&root, &units);
    assert!(
        !out.status.success(),
        "a missing ExecStart binary must fail: {out:?}"
    );
}

#[test]
fn executables_are_read_from_exec_lines() {
    let unit = "[Service]\nExecStart=\nExecStart=-/usr/bin/a x\nExecReload=/bin/kill -HUP $MAINPID\n\
                AssertFileIsExecutable=\"/opt/my dir/b\"\nUser=x\nExecStop=%%x\n";
    assert_eq!(
        executables(unit),
        ["/usr/bin/a", "/bin/kill", "/opt/my dir/b"]
    );
}

// ------------------------------------------------------------------ secrets

/// Values shorter than this are not looked for: they occur in files by chance.
const MIN_SECRET_LEN: usize = 4;

/// Every secret a node's typed parameters hold, as (parameter, value).
fn secrets_of(node: &Node) -> Vec<(String, String)> {
    let mut node = node.clone();
    let mut out = Vec::new();
    for_each_secret(&mut node, &mut |field, value| {
        out.push((field, value.clone()))
    });
    out.retain(|(_, v)| v.len() >= MIN_SECRET_LEN);
    out
}

/// Visit every password, secret key and cipher pass of a node's parameters.
fn for_each_secret(node: &mut Node, visit: &mut dyn FnMut(String, &mut String)) {
    if let Some(i) = &mut node.infra {
        visit(
            "grafana_admin_password".into(),
            &mut i.params.grafana_admin_password,
        );
    }
    if let Some(e) = &mut node.etcd {
        visit(
            "etcd_root_password".into(),
            &mut e.params.etcd_root_password,
        );
    }
    if let Some(m) = &mut node.minio {
        visit("minio_secret_key".into(), &mut m.params.minio_secret_key);
        for u in &mut m.params.minio_users {
            visit(
                format!("minio_users.{}.secret_key", u.access_key),
                &mut u.secret_key,
            );
        }
    }
    if let Some(r) = &mut node.redis {
        visit("redis_password".into(), &mut r.params.redis_password);
        for m in &mut r.params.redis_sentinel_monitor {
            if let Some(p) = &mut m.password {
                visit(
                    format!("redis_sentinel_monitor.{}.password", m.name),
                    &mut p.0,
                );
            }
        }
    }
    if let Some(pg) = &mut node.pg {
        pg_secrets(&mut pg.params, visit);
    }
    visit(
        "haproxy_admin_password".into(),
        &mut node.node.haproxy_admin_password,
    );
    visit("vip_auth_pass".into(), &mut node.node.vip_auth_pass);
}

fn pg_secrets(p: &mut pigsty::model::PgParams, visit: &mut dyn FnMut(String, &mut String)) {
    visit("pg_admin_password".into(), &mut p.pg_admin_password);
    visit("pg_monitor_password".into(), &mut p.pg_monitor_password);
    visit(
        "pg_replication_password".into(),
        &mut p.pg_replication_password,
    );
    visit("patroni_password".into(), &mut p.patroni_password);
    for (list, users) in [
        ("pg_users", &mut p.pg_users),
        ("pg_default_roles", &mut p.pg_default_roles),
    ] {
        for u in users {
            if let Some(pw) = &mut u.password {
                visit(format!("{list}.{}.password", u.name), &mut pw.0);
            }
        }
    }
    for (repo, r) in &mut p.pgbackrest_repo {
        for (key, v) in &mut r.options {
            if key.contains("pass") || key.contains("secret") {
                visit(format!("pgbackrest_repo.{repo}.{key}"), &mut v.0);
            }
        }
    }
}

/// World-readable files holding a secret. A file is flagged when a secret occurs in
/// it more often than in `baseline` (the same node rendered with every secret
/// replaced by a marker): a value like `test` or `pigsty` that is also a cluster
/// name or a word of a comment then only counts where the secret put it. With an
/// empty baseline, every occurrence counts.
fn leaks(
    files: &[RenderedFile],
    secrets: &[(String, String)],
    baseline: &[RenderedFile],
) -> Vec<String> {
    let mut out = Vec::new();
    for f in files.iter().filter(|f| f.world_readable()) {
        let text = String::from_utf8_lossy(&f.content);
        let before = baseline
            .iter()
            .find(|b| b.path == f.path)
            .map(|b| String::from_utf8_lossy(&b.content).into_owned());
        for (field, value) in secrets.iter().filter(|(_, v)| v.len() >= MIN_SECRET_LEN) {
            let natural = before
                .as_deref()
                .map_or(0, |b| b.matches(value.as_str()).count());
            if text.matches(value.as_str()).count() > natural {
                out.push(format!(
                    "{} ({:04o} {}) holds {field}",
                    f.path, f.mode, f.owner
                ));
            }
        }
    }
    out
}

/// A copy of the fleet with every secret (of every node) replaced by a marker that
/// cannot occur by chance; equal secrets get equal markers, so clusters still agree.
fn with_markers(fleet: &Fleet) -> Fleet {
    let mut fleet = fleet.clone();
    let mut markers: HashMap<String, String> = HashMap::new();
    for node in &mut fleet.nodes {
        for_each_secret(node, &mut |_, value| {
            if value.len() >= MIN_SECRET_LEN {
                let next = markers.len();
                *value = markers
                    .entry(value.clone())
                    .or_insert_with(|| format!("Zq{next:04}SecretMarkerXq"))
                    .clone();
            }
        });
    }
    fleet
}

/// The secrets test: every node of every example and fixture inventory, with its
/// real values (compared against the marker rendering) and with the markers.
#[test]
fn no_secret_in_a_world_readable_file() {
    let mut found = Vec::new();
    let (mut scanned, mut secrets_seen) = (0, 0);
    for inv in render_all() {
        let marked_fleet = with_markers(&inv.fleet);
        let marked = compile_fleet(&marked_fleet);
        for ((node, real), (marked_node, mark)) in
            inv.pairs().zip(marked_fleet.nodes.iter().zip(&marked))
        {
            let at = |l: String| format!("{}/{}: {l}", inv.name, node.nodename);
            found.extend(
                leaks(&real.files, &secrets_of(node), &mark.files)
                    .into_iter()
                    .map(at),
            );
            let markers = secrets_of(marked_node);
            found.extend(leaks(&mark.files, &markers, &[]).into_iter().map(at));
            // Not vacuous: the marked secrets do reach the node's protected files.
            secrets_seen += mark
                .files
                .iter()
                .filter(|f| {
                    markers
                        .iter()
                        .any(|(_, m)| String::from_utf8_lossy(&f.content).contains(m.as_str()))
                })
                .count();
            scanned += real.files.len();
        }
    }
    // The real-value and the marker scans usually report a leak twice.
    found.sort();
    found.dedup();
    assert!(
        found.is_empty(),
        "secrets in world-readable files:\n{}",
        found.join("\n")
    );
    assert!(
        scanned > 500 && secrets_seen > 50,
        "scanned {scanned} files, {secrets_seen} with secrets"
    );
}

#[test]
fn secret_scanner_flags_a_world_readable_secret() {
    let secret = vec![("redis_password".to_string(), "Redis.Cache".to_string())];
    let f = |mode, content: &str| RenderedFile {
        path: "/etc/redis/x.conf".into(),
        mode,
        owner: "redis:redis".into(),
        content: content.as_bytes().to_vec(),
    };
    let open = [f(0o644, "requirepass Redis.Cache\n")];
    assert_eq!(
        leaks(&open, &secret, &[]),
        ["/etc/redis/x.conf (0644 redis:redis) holds redis_password"]
    );
    assert!(leaks(&[f(0o640, "requirepass Redis.Cache\n")], &secret, &[]).is_empty());
    // A value that also occurs for another reason counts only beyond the baseline.
    let named = [f(0o644, "# cluster Redis.Cache\n")];
    assert!(leaks(&named, &secret, &named).is_empty());
    let both = [f(0o644, "# cluster Redis.Cache\nrequirepass Redis.Cache\n")];
    assert_eq!(leaks(&both, &secret, &named).len(), 1);
    // Too short to look for.
    assert!(leaks(&[f(0o644, "abc")], &[("x".into(), "abc".into())], &[]).is_empty());
}

// ------------------------------------------------------------------ env files, sysusers, tmpfiles

/// A shell's reading of an EnvironmentFile. Inside double quotes systemd unescapes
/// exactly what sh does (`\"`, `\\`, `` \` ``, `\$`), so sh reading back each value
/// unchanged shows the `env` filter and the template wrote what was meant.
fn read_env(path: &Path, var: &str) -> String {
    let script = format!("set -a; . \"$1\"; printf %s \"${var}\"");
    let out = check(Command::new("sh").args(["-c", &script, "sh"]).arg(path));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn env_files_read_back_exactly() {
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for (node, c) in inv.pairs() {
            let root = write_node(tmp.path(), &inv.name, c);
            if let Some(m) = &node.minio {
                let env = root.join("etc/default/minio");
                let p = &m.params;
                let volumes = inv.fleet.minio_volumes(&m.cluster).unwrap();
                assert_eq!(read_env(&env, "MINIO_VOLUMES"), volumes);
                let opts = format!(
                    "--address :{} --console-address :{}",
                    p.minio_port, p.minio_admin_port
                );
                assert_eq!(read_env(&env, "MINIO_OPTS"), opts);
                assert_eq!(read_env(&env, "MINIO_ROOT_USER"), p.minio_access_key);
                assert_eq!(read_env(&env, "MINIO_ROOT_PASSWORD"), p.minio_secret_key);
                checked += 1;
            }
            if let Some(i) = &node.infra {
                let prom = root.join("etc/default/prometheus");
                let want = format!("--web.listen-address=:{}", i.params.prometheus_port);
                assert_eq!(read_env(&prom, "ARGS"), want);
                let am = root.join("etc/default/prometheus-alertmanager");
                assert!(read_env(&am, "ARGS").starts_with(&format!(
                    "--web.listen-address=:{} ",
                    i.params.alertmanager_port
                )));
            }
        }
    }
    assert!(checked >= 8, "only {checked} MinIO env files read");
}

/// The uid and gid `name` has in the root's passwd.
fn ids_in(root: &Path, name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    let f: Vec<&str> = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f[0] == name)
        .unwrap_or_else(|| panic!("no user {name} in the root"))
        .clone();
    (f[2].parse().unwrap(), f[3].parse().unwrap())
}

/// sysusers.d and tmpfiles.d of every node applied for real to the rendered tree
/// (as at first boot): every line must be accepted, and the data directories must
/// come out with the owner and mode the modules need. The package users (redis,
/// etcd, postgres) come from this machine's passwd, where ci/setup.sh's packages
/// created them. Needs root: tmpfiles changes owners.
#[test]
#[ignore = "needs root: tmpfiles changes owners (run with --include-ignored)"]
fn sysusers_and_tmpfiles_create_the_data_dirs() {
    support::require_root("systemd-tmpfiles changes owners in the rendered tree");
    let tmp = tempfile::tempdir().unwrap();
    let mut dirs = 0;
    for inv in render_all() {
        for (node, c) in inv.pairs() {
            let root = write_node(tmp.path(), &inv.name, c);
            for f in ["passwd", "group"] {
                std::fs::copy(Path::new("/etc").join(f), root.join("etc").join(f)).unwrap();
            }
            let sysusers = check(
                Command::new(tool("systemd-sysusers")).arg(format!("--root={}", root.display())),
            );
            let said = String::from_utf8_lossy(&sysusers.stderr);
            assert!(
                said.lines().all(|l| l.starts_with("Creating ")),
                "{}: sysusers said:\n{said}",
                node.nodename
            );
            let tmpfiles = check(
                Command::new(tool("systemd-tmpfiles"))
                    .arg(format!("--root={}", root.display()))
                    .arg("--create"),
            );
            let said = String::from_utf8_lossy(&tmpfiles.stderr);
            assert!(
                said.trim().is_empty(),
                "{}: tmpfiles said:\n{said}",
                node.nodename
            );
            dirs += check_data_dirs(&root, &inv.fleet, node);
        }
    }
    assert!(dirs >= 20, "only {dirs} data directories checked");
}

/// MinIO and redis data directories: owned by the service user, not world-readable.
fn check_data_dirs(root: &Path, fleet: &Fleet, node: &Node) -> usize {
    use std::os::unix::fs::MetadataExt;
    let mut want: Vec<(String, &str)> = Vec::new();
    if let Some(m) = &node.minio {
        // The expansion of minio_data, as the templates see it (unit-tested in minio.rs).
        let ctx = pigsty::render::context::build(fleet, node, &[]).expect("context");
        let dirs = ctx["minio"]["data_dirs"].as_array().unwrap().iter();
        want.extend(dirs.map(|d| {
            (
                d.as_str().unwrap().to_string(),
                m.params.minio_user.as_str(),
            )
        }));
    }
    if let Some(r) = &node.redis {
        want.extend(
            r.instances
                .values()
                .map(|i| (format!("/data/redis/{}", i.name), "redis")),
        );
    }
    for (dir, user) in &want {
        let meta = std::fs::metadata(root.join(dir.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{dir}: {e}"));
        assert_eq!((meta.uid(), meta.gid()), ids_in(root, user), "{dir} owner");
        assert_eq!(
            meta.mode() & 0o007,
            0,
            "{dir} is open to others: {:o}",
            meta.mode()
        );
    }
    want.len()
}

// ------------------------------------------------------------------ haproxy_services

/// A node without PostgreSQL, balancing two HTTP servers (Pigsty's MinIO example of
/// `haproxy_services`).
const LB_INVENTORY: &str = "\
all:
  children:
    lb:
      hosts: { 10.10.10.20: {} }
      vars:
        haproxy_services:
          - name: minio
            port: 9002
            balance: leastconn
            options:
              - option httpchk
              - option http-keep-alive
              - http-check send meth OPTIONS uri /minio/health/live
              - http-check expect status 200
            servers:
              - { name: minio-1, ip: 10.10.10.10, port: 9000, options: 'check port 9000' }
              - { name: minio-2, ip: 10.10.10.11, port: 9000, options: 'check port 9000' }
";

/// An HTTP server on loopback answering every request with its own name.
fn http_backend(name: &'static str) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = write!(
                s,
                "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                name.len()
            );
        }
    });
    port
}

/// haproxy_services on a node without PostgreSQL: the plan installs and starts
/// haproxy (after the node's other steps), Prometheus gets its metrics target, and
/// the rendered haproxy.cfg, run by Debian's haproxy on loopback, health-checks both
/// servers and balances requests across them, with metrics on the admin port.
#[test]
#[ignore = "starts haproxy (run with --include-ignored)"]
fn haproxy_services_balance_on_a_node_without_postgres() {
    let haproxy = tool("haproxy");
    let loaded = pigsty::inventory::load_str("lb.yml", LB_INVENTORY).unwrap();
    let node = &loaded.fleet.nodes[0];
    let c = compile(&loaded.fleet, node).unwrap();
    assert!(
        c.plan.packages.iter().any(|p| p == "haproxy"),
        "{:?}",
        c.plan.packages
    );
    assert!(c.plan.services.iter().any(|s| s == "haproxy.service"));
    assert!(c.plan.join.iter().any(|s| s.id.as_str() == "haproxy"));
    let jobs = pigsty::render::infra::scrape_jobs(&loaded.fleet);
    let job = jobs
        .iter()
        .find(|j| j.name == "haproxy")
        .expect("a haproxy job");
    assert_eq!(job.targets[0].address, "10.10.10.20:9101");
    let f = file(&c, "/etc/haproxy/haproxy.cfg").expect("haproxy.cfg rendered");
    assert_eq!(f.mode, 0o640, "it holds the admin password");
    let text = String::from_utf8_lossy(&f.content).into_owned();
    assert!(
        text.contains("listen minio\n    bind *:9002\n    mode tcp\n"),
        "{text}"
    );
    assert!(
        text.contains("    server minio-2 10.10.10.11:9000 check port 9000\n"),
        "{text}"
    );

    // Loopback: own ports, the servers moved to two local HTTP servers.
    let tmp = tempfile::tempdir().unwrap();
    let (b1, b2) = (http_backend("minio-1"), http_backend("minio-2"));
    let (lb, admin) = (support::free_port(), support::free_port());
    let local = text
        .replace("bind *:9002", &format!("bind 127.0.0.1:{lb}"))
        .replace("bind *:9101", &format!("bind 127.0.0.1:{admin}"))
        .replace(
            "10.10.10.10:9000 check port 9000",
            &format!("127.0.0.1:{b1} check port {b1}"),
        )
        .replace(
            "10.10.10.11:9000 check port 9000",
            &format!("127.0.0.1:{b2} check port {b2}"),
        )
        .replace(
            "stats socket /run/haproxy/admin.sock",
            &format!("stats socket {}/admin.sock", tmp.path().display()),
        )
        .replace("maxconn     65535", "maxconn     4000")
        .replace("    user        haproxy\n    group       haproxy\n", "");
    let cfg = tmp.path().join("haproxy.cfg");
    std::fs::write(&cfg, &local).unwrap();
    let check = output(Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg));
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut guard = Guard::spawn(
        Command::new(&haproxy).arg("-db").arg("-f").arg(&cfg),
        "haproxy",
        tmp.path().join("haproxy.log"),
    );
    let get = |port: u16, path: &str| http_path(port, path);
    let mut seen = std::collections::BTreeSet::new();
    guard.wait_ready(|| {
        let page = get(lb, "/");
        if let Some(body) = page.split("\r\n\r\n").nth(1) {
            seen.insert(body.to_string());
        }
        seen.len() == 2
    });
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["minio-1", "minio-2"],
        "both servers answer through the service"
    );
    let metrics = get(admin, "/metrics");
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("haproxy_backend_status{proxy=\"minio\"")),
        "no metrics for the service:\n{}",
        metrics.lines().take(5).collect::<Vec<_>>().join("\n")
    );
}

/// A `haproxy_services` item haproxy cannot take is refused at its line or at render.
#[test]
fn haproxy_services_bad_items_are_refused() {
    let typo = LB_INVENTORY.replace("balance: leastconn", "balanse: leastconn");
    let err = pigsty::inventory::load_str("lb.yml", &typo).unwrap_err();
    assert!(format!("{err:?}").contains("balanse"), "{err:?}");
    let bad_ip = LB_INVENTORY.replace("ip: 10.10.10.11", "ip: 'minio-2'");
    let loaded = pigsty::inventory::load_str("lb.yml", &bad_ip).unwrap();
    let err = compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap_err();
    assert!(
        err.to_string().contains("haproxy_services[0] (minio)")
            && err.to_string().contains("minio-2"),
        "{err}"
    );
}

/// Pigsty's MinIO service: haproxy on an LB node checks each MinIO member over TLS
/// with the fleet CA (`check-ssl ca-file /etc/pki/ca.crt`), as in Pigsty's `conf/`.
const MINIO_LB_INVENTORY: &str = "\
all:
  children:
    minio:
      hosts:
        10.10.10.10: { minio_seq: 1 }
        10.10.10.11: { minio_seq: 2 }
        10.10.10.12: { minio_seq: 3 }
      vars: { minio_cluster: minio }
    lb:
      hosts: { 10.10.10.20: {} }
      vars:
        haproxy_services:
          - name: minio
            port: 9002
            options:
              - option httpchk
              - option http-keep-alive
              - http-check send meth OPTIONS uri /minio/health/live
              - http-check expect status 200
            servers:
              - { name: minio-1, ip: 10.10.10.10, port: 9000, options: 'check-ssl ca-file /etc/pki/ca.crt check port 9000' }
              - { name: minio-2, ip: 10.10.10.11, port: 9000, options: 'check-ssl ca-file /etc/pki/ca.crt check port 9000' }
              - { name: minio-3, ip: 10.10.10.12, port: 9000, options: 'check-ssl ca-file /etc/pki/ca.crt check port 9000' }
";

/// An HTTPS server on loopback with `cert`/`key` (PEM), answering every request with
/// its own name.
fn tls_backend(name: &'static str, cert: &str, key: &str) -> u16 {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let chain = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    let config = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap(),
    );
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = config.clone();
            std::thread::spawn(move || {
                let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                let Ok(conn) = rustls::ServerConnection::new(config) else {
                    return;
                };
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut buf = [0u8; 4096];
                if tls.read(&mut buf).is_ok() {
                    let _ = write!(
                        tls,
                        "HTTP/1.0 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    let _ = tls.flush();
                    tls.conn.send_close_notify();
                    let _ = tls.flush();
                }
            });
        }
    });
    port
}

/// With the fleet CA, Pigsty's haproxy MinIO service is built as written (without one,
/// as in a `render` preview, it is left out), and Debian's
/// haproxy running it on loopback marks the two members whose certificates come from
/// the CA up and the one with a foreign certificate down. A client that trusts only
/// the CA reaches the members through the service by `minio_domain` (`sss.pigsty`),
/// the name every member's certificate carries, as pgBackRest does.
#[test]
#[ignore = "starts haproxy (run with --include-ignored)"]
fn haproxy_checks_minio_over_tls_with_the_fleet_ca() {
    let haproxy = tool("haproxy");
    let tmp = tempfile::tempdir().unwrap();
    let loaded = pigsty::inventory::load_str("minio-lb.yml", MINIO_LB_INVENTORY).unwrap();
    assert!(
        loaded
            .warnings
            .iter()
            .all(|w| !w.key.starts_with("haproxy")),
        "{:#?}",
        loaded.warnings
    );
    // Rendered without a fleet CA (a preview), the service is left out: haproxy would
    // refuse a config naming a CA file the node does not have.
    let lb_plain = loaded
        .fleet
        .nodes
        .iter()
        .find(|n| n.ip.to_string() == "10.10.10.20")
        .unwrap();
    let plain = compile(&loaded.fleet, lb_plain).unwrap();
    assert!(
        file(&plain, "/etc/haproxy/haproxy.cfg").is_none(),
        "its only service is left out"
    );
    let pki = support::test_pki(tmp.path());
    let fleet = pigsty::pki::with_certs(&loaded.fleet, &pki, true).unwrap();
    let node = |ip: &str| fleet.nodes.iter().find(|n| n.ip.to_string() == ip).unwrap();
    let c = compile(&fleet, node("10.10.10.20")).unwrap();
    let text = String::from_utf8_lossy(&file(&c, "/etc/haproxy/haproxy.cfg").unwrap().content)
        .into_owned();
    assert!(
        text.contains(
            "    server minio-1 10.10.10.10:9000 check-ssl ca-file /etc/pki/ca.crt check port 9000\n"
        ),
        "{text}"
    );
    assert_eq!(
        file(&c, "/etc/pki/ca.crt").map(|f| String::from_utf8_lossy(&f.content).into_owned()),
        Some(pki.ca_pem().to_string()),
        "the LB node carries the CA its checks name"
    );

    // Members 1 and 2 serve their own pairs; member 3 one from a foreign CA that
    // names it just as well.
    let pair = |ip: &str| node(ip).tls.clone().expect("a member certificate");
    let (p1, p2) = (pair("10.10.10.10"), pair("10.10.10.11"));
    let foreign = pigsty::pki::Pki::open_or_create(&tmp.path().join("foreign")).unwrap();
    let p3 = foreign.issue(node("10.10.10.12")).unwrap();
    let b1 = tls_backend("minio-1", &p1.cert, &p1.key);
    let b2 = tls_backend("minio-2", &p2.cert, &p2.key);
    let b3 = tls_backend("minio-3", &p3.cert, &p3.key);
    let ca = tmp.path().join("ca.crt");
    std::fs::write(&ca, pki.ca_pem()).unwrap();
    let (lb, admin) = (support::free_port(), support::free_port());
    let mut local = text
        .replace("bind *:9002", &format!("bind 127.0.0.1:{lb}"))
        .replace("bind *:9101", &format!("bind 127.0.0.1:{admin}"))
        .replace(
            "ca-file /etc/pki/ca.crt",
            &format!("ca-file {}", ca.display()),
        )
        .replace(
            "stats socket /run/haproxy/admin.sock",
            &format!("stats socket {}/admin.sock", tmp.path().display()),
        )
        .replace("maxconn     65535", "maxconn     4000")
        .replace("    user        haproxy\n    group       haproxy\n", "");
    for (ip, port) in [
        ("10.10.10.10", b1),
        ("10.10.10.11", b2),
        ("10.10.10.12", b3),
    ] {
        local = local.replace(
            &format!("{ip}:9000 check-ssl"),
            &format!("127.0.0.1:{port} check-ssl"),
        );
        local = local.replace(
            &format!(
                "127.0.0.1:{port} check-ssl ca-file {} check port 9000",
                ca.display()
            ),
            &format!(
                "127.0.0.1:{port} check-ssl ca-file {} check port {port}",
                ca.display()
            ),
        );
    }
    assert!(!local.contains("9000"), "{local}");
    let cfg = tmp.path().join("haproxy.cfg");
    std::fs::write(&cfg, &local).unwrap();
    let check = output(Command::new(&haproxy).arg("-c").arg("-f").arg(&cfg));
    assert!(
        check.status.success(),
        "haproxy -c: {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let mut guard = Guard::spawn(
        Command::new(&haproxy).arg("-db").arg("-f").arg(&cfg),
        "haproxy",
        tmp.path().join("haproxy.log"),
    );
    let status = |server: &str, state: &str| {
        http_path(admin, "/metrics").lines().any(|l| {
            l.starts_with("haproxy_server_status{")
                && l.contains("proxy=\"minio\"")
                && l.contains(&format!("server=\"{server}\""))
                && l.contains(&format!("state=\"{state}\""))
                && l.ends_with(" 1")
        })
    };
    guard.wait_ready(|| {
        status("minio-3", "DOWN") && status("minio-1", "UP") && status("minio-2", "UP")
    });

    // Through the service, by the domain, trusting only the fleet CA.
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(pki.ca_pem().as_bytes()).unwrap())
        .resolve("sss.pigsty", ([127, 0, 0, 1], lb).into())
        .timeout(Duration::from_secs(5))
        .no_proxy()
        .build()
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let body = client
            .get(format!("https://sss.pigsty:{lb}/"))
            .send()
            .and_then(|r| r.text())
            .unwrap_or_else(|e| panic!("through the service: {e:#}"));
        seen.insert(body);
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        ["minio-1", "minio-2"],
        "both trusted members answer, the foreign one is out"
    );
    // And the foreign member itself is refused by that client (its CA has the fleet
    // CA's name, so the signature is what fails).
    let err = client
        .get(format!("https://127.0.0.1:{b3}/"))
        .send()
        .unwrap_err();
    assert!(format!("{err:?}").contains("InvalidCertificate"), "{err:?}");
}

// ------------------------------------------------------------------ logs

/// A fleet of two infra nodes (the second receives no logs) and two plain nodes (the
/// second ships none).
const LOGS_INVENTORY: &str = r#"all:
  children:
    infra:
      hosts:
        10.10.10.10: { infra_seq: 1, vlogs_port: 9500 }
        10.10.10.11: { infra_seq: 2, vlogs_enabled: false }
    plain:
      hosts:
        10.10.10.12: {}
        10.10.10.13: { vector_enabled: false }
  # Built from Debian alone: the receivers are systemd-journal-remote (with Pigsty's
  # infra repository they are VictoriaLogs; see the grafana test).
  vars: { admin_ip: 10.10.10.10, node_repo_modules: node }
"#;

fn services_of(c: &Compiled, prefix: &str) -> Vec<String> {
    c.plan
        .services
        .iter()
        .filter(|s| s.starts_with(prefix))
        .cloned()
        .collect()
}

/// Every node with `vector_enabled` ships its journal to each infra node that
/// receives logs (`vlogs_enabled`, on `vlogs_port`), as Pigsty's Vector sends to each
/// infra node's VictoriaLogs; the receivers listen there, the shipper and the
/// receiver's socket are enabled at boot, and their package is in the plan.
#[test]
fn logs_go_from_every_node_to_each_receiving_infra_node() {
    let loaded = pigsty::inventory::load_str("logs.yml", LOGS_INVENTORY).unwrap();
    let compiled = compile_fleet(&loaded.fleet);
    let by_ip = |ip: &str| {
        let i = loaded
            .fleet
            .nodes
            .iter()
            .position(|n| n.ip.to_string() == ip)
            .unwrap();
        &compiled[i]
    };
    let upload = "pigsty-log-upload@10.10.10.10:9500.service";
    for ip in ["10.10.10.10", "10.10.10.11", "10.10.10.12"] {
        let c = by_ip(ip);
        assert_eq!(services_of(c, "pigsty-log-upload@"), [upload], "{ip}");
        assert!(
            c.plan
                .packages
                .iter()
                .any(|p| p == "systemd-journal-remote"),
            "{ip}"
        );
        assert!(file(c, "/etc/systemd/system/pigsty-log-upload@.service").is_some());
        assert_eq!(
            pigsty::compile::boot_unit_of(upload),
            Some("multi-user.target")
        );
    }
    // vector_enabled: false ships nothing and needs no package.
    let quiet = by_ip("10.10.10.13");
    assert!(services_of(quiet, "pigsty-log-upload@").is_empty());
    assert!(
        !quiet
            .plan
            .packages
            .iter()
            .any(|p| p == "systemd-journal-remote")
    );
    assert!(file(quiet, "/etc/systemd/system/pigsty-log-upload@.service").is_none());
    // The receiver: only the infra node with vlogs_enabled, on its vlogs_port.
    let receiver = by_ip("10.10.10.10");
    assert_eq!(
        services_of(receiver, "systemd-journal-"),
        [
            "systemd-journal-remote.socket",
            "systemd-journal-gatewayd.socket"
        ]
    );
    let socket = file(
        receiver,
        "/etc/systemd/system/systemd-journal-remote.socket.d/pigsty.conf",
    )
    .expect("the receiver's socket drop-in");
    let socket = String::from_utf8_lossy(&socket.content);
    assert!(
        socket.contains("\nListenStream=\nListenStream=9500\n"),
        "{socket}"
    );
    assert_eq!(
        pigsty::compile::boot_unit_of("systemd-journal-remote.socket"),
        Some("sockets.target")
    );
    let other = by_ip("10.10.10.11");
    assert!(services_of(other, "systemd-journal-remote").is_empty());
    assert!(
        file(
            other,
            "/etc/systemd/system/systemd-journal-remote.socket.d/pigsty.conf"
        )
        .is_none()
    );
    // Without an infra node receiving logs, nothing is shipped.
    let alone = LOGS_INVENTORY.replace(
        "infra_seq: 1, vlogs_port: 9500",
        "infra_seq: 1, vlogs_enabled: false",
    );
    let loaded = pigsty::inventory::load_str("logs.yml", &alone).unwrap();
    for c in compile_fleet(&loaded.fleet) {
        assert!(services_of(&c, "pigsty-log-upload@").is_empty());
        assert!(
            !c.plan
                .packages
                .iter()
                .any(|p| p == "systemd-journal-remote")
        );
    }
}

/// The words of the last `ExecStart=` line of a rendered unit or drop-in.
fn exec_start(unit: &RenderedFile) -> Vec<String> {
    let text = String::from_utf8_lossy(&unit.content).into_owned();
    let line = text
        .lines()
        .filter_map(|l| l.strip_prefix("ExecStart="))
        .rfind(|l| !l.is_empty())
        .unwrap_or_else(|| panic!("{}: no ExecStart", unit.path))
        .to_string();
    line.split_whitespace().map(str::to_string).collect()
}

/// A journal entry goes from a node to the infra node through the rendered units:
/// Debian's systemd-journal-remote runs with the receiver drop-in's command line on a
/// socket passed in as the socket unit would (systemd-socket-activate), and
/// systemd-journal-upload runs with the shipper unit's command line, its instance
/// naming the receiver, reading a journal file that holds the entry. The receiver's
/// journal then holds it, under the sender's host name.
#[test]
#[ignore = "starts systemd-journal-remote and systemd-journal-upload (run with --include-ignored)"]
fn a_journal_entry_reaches_the_infra_node_through_the_rendered_units() {
    let remote = tool("systemd-socket-activate");
    let journalctl = tool("journalctl");
    let receiver_bin = Path::new("/usr/lib/systemd/systemd-journal-remote");
    assert!(
        receiver_bin.is_file(),
        "systemd-journal-remote is not installed: run ci/setup.sh"
    );
    let loaded = pigsty::inventory::load_str("logs.yml", LOGS_INVENTORY).unwrap();
    let compiled = compile_fleet(&loaded.fleet);
    let tmp = tempfile::tempdir().unwrap();
    let out_dir = tmp.path().join("remote");
    std::fs::create_dir(&out_dir).unwrap();

    // The receiver, on the infra node.
    let infra = &compiled[loaded
        .fleet
        .nodes
        .iter()
        .position(|n| n.ip.to_string() == "10.10.10.10")
        .unwrap()];
    let drop_in = file(
        infra,
        "/etc/systemd/system/systemd-journal-remote.service.d/pigsty.conf",
    )
    .expect("the receiver's service drop-in");
    let mut args = exec_start(drop_in);
    assert!(args.contains(&"--listen-http=-3".to_string()), "{args:?}");
    let output_arg = "--output=/var/log/journal/remote/".to_string();
    let at = args
        .iter()
        .position(|a| *a == output_arg)
        .unwrap_or_else(|| panic!("no {output_arg}: {args:?}"));
    args[at] = format!("--output={}/", out_dir.display());
    let port = support::free_port();
    let mut cmd = Command::new(&remote);
    cmd.arg("-l").arg(format!("127.0.0.1:{port}")).args(&args);
    let mut receiver = Guard::spawn(&mut cmd, "journal receiver", tmp.path().join("remote.log"));
    receiver.wait_ready(|| TcpStream::connect(("127.0.0.1", port)).is_ok());

    // The entry, in a journal file of the sending node.
    let src = tmp.path().join("node.journal");
    let mut w = Command::new(receiver_bin)
        .arg(format!("--output={}", src.display()))
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    w.stdin
        .take()
        .unwrap()
        .write_all(
            b"__REALTIME_TIMESTAMP=1764500000000000\n__MONOTONIC_TIMESTAMP=12345\n\
              _BOOT_ID=0123456789abcdef0123456789abcdef\n_HOSTNAME=pg-test-2\n\
              MESSAGE=hello from pg-test-2\n\n",
        )
        .unwrap();
    assert!(w.wait().unwrap().success(), "writing the source journal");

    // The shipper, on a plain node: its unit's command line, %i/%I the receiver
    // (here on loopback), its state under the test's directory.
    let node = &compiled[loaded
        .fleet
        .nodes
        .iter()
        .position(|n| n.ip.to_string() == "10.10.10.12")
        .unwrap()];
    let unit = file(node, "/etc/systemd/system/pigsty-log-upload@.service").unwrap();
    let instance = format!("127.0.0.1:{port}");
    let state = tmp.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let args: Vec<String> = exec_start(unit)
        .into_iter()
        .map(|a| {
            a.replace(
                "/var/lib/pigsty-log-upload/%i",
                &state.display().to_string(),
            )
            .replace("%i", &instance)
            .replace("%I", &instance)
        })
        .collect();
    assert_eq!(args[0], "/usr/lib/systemd/systemd-journal-upload");
    assert!(
        args.contains(&format!("--url=http://{instance}")),
        "{args:?}"
    );
    let mut cmd = Command::new(&args[0]);
    cmd.args(&args[1..])
        .arg(format!("--file={}", src.display()));
    let mut shipper = Guard::spawn(&mut cmd, "journal upload", tmp.path().join("upload.log"));
    let received = || {
        let out = output(Command::new(&journalctl).arg("-D").arg(&out_dir).args([
            "-o",
            "json",
            "--no-pager",
        ]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    shipper.wait_ready(|| received().contains("\"MESSAGE\":\"hello from pg-test-2\""));
    let entry: serde_json::Value = received()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .find(|v: &serde_json::Value| v["MESSAGE"] == "hello from pg-test-2")
        .unwrap();
    assert_eq!(entry["_HOSTNAME"], "pg-test-2");
    // The cursor is kept: a restarted shipper resends nothing.
    let saved = std::fs::read_to_string(state.join("state")).unwrap_or_default();
    drop(shipper);
    drop(receiver);
    assert!(saved.contains("LAST_CURSOR="), "{saved:?}");

    // And the infra node serves it to read: journal-gatewayd with its drop-in's
    // command line over the receiver's directory, asked for one node's entries.
    let drop_in = file(
        infra,
        "/etc/systemd/system/systemd-journal-gatewayd.service.d/pigsty.conf",
    )
    .expect("the log reader's drop-in");
    let args: Vec<String> = exec_start(drop_in)
        .into_iter()
        .map(|a| {
            a.replace(
                "=/var/log/journal/remote",
                &format!("={}", out_dir.display()),
            )
        })
        .collect();
    assert!(args[0].ends_with("systemd-journal-gatewayd"), "{args:?}");
    let port = support::free_port();
    let mut cmd = Command::new(&remote);
    cmd.arg("-l").arg(format!("127.0.0.1:{port}")).args(&args);
    let mut reader = Guard::spawn(&mut cmd, "journal gateway", tmp.path().join("gatewayd.log"));
    reader.wait_ready(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET /entries?_HOSTNAME=pg-test-2 HTTP/1.0\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    drop(reader);
    assert!(
        answer.contains("\"MESSAGE\":\"hello from pg-test-2\""),
        "gatewayd's answer: {answer:.600}"
    );
}

// ------------------------------------------------------------------ grafana

const GRAFANA_INVENTORY: &str = r#"all:
  children:
    infra: { hosts: { 10.10.10.10: { infra_seq: 1 } } }
  vars:
    admin_ip: 10.10.10.10
    node_repo_modules: REPOS
    grafana_admin_password: 'Pass#word;1'
    prometheus_port: 9099
"#;

/// Grafana comes from Pigsty's `infra` repository: an infra node built from it runs
/// grafana-server with Pigsty's settings and this node's Prometheus as the `Metrics`
/// data source; one built without it gets no Grafana, and `inventory check` says so
/// at the host. A password that grafana.ini cannot carry is refused at render.
#[test]
fn grafana_comes_with_pigstys_infra_repository_or_is_said_missing() {
    let with = GRAFANA_INVENTORY.replace("REPOS", "node,infra");
    let loaded = pigsty::inventory::load_str("grafana.yml", &with).unwrap();
    assert!(
        !loaded.warnings.iter().any(|w| w.key == "grafana_enabled"),
        "{:?}",
        loaded.warnings
    );
    let c = compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap();
    assert!(c.plan.packages.iter().any(|p| p == "grafana"));
    assert!(
        c.plan
            .services
            .iter()
            .any(|s| s == "grafana-server.service")
    );
    assert_eq!(
        pigsty::compile::boot_unit_of("grafana-server.service"),
        Some("multi-user.target")
    );
    let ini = file(&c, "/etc/grafana/grafana.ini").expect("grafana.ini");
    assert_eq!((ini.mode, ini.owner.as_str()), (0o640, "root:grafana"));
    let text = String::from_utf8_lossy(&ini.content);
    for line in [
        "http_port = 3000",
        "admin_password = \"\"\"Pass#word;1\"\"\"",
        "root_url = /ui/",
    ] {
        assert!(text.lines().any(|l| l == line), "no `{line}` in:\n{text}");
    }
    let ds = file(&c, "/etc/grafana/provisioning/datasources/pigsty.yml").unwrap();
    let ds = String::from_utf8_lossy(&ds.content);
    assert!(ds.contains("uid: ds-prometheus"), "{ds}");
    assert!(ds.contains("url: \"http://127.0.0.1:9099\""), "{ds}");
    let nginx = file(&c, "/etc/nginx/conf.d/pigsty.conf").unwrap();
    assert!(String::from_utf8_lossy(&nginx.content).contains("proxy_pass http://127.0.0.1:3000;"));
    // The same repository packages VictoriaLogs: it receives the fleet's journals
    // (journald ingestion) instead of systemd-journal-remote, and is Grafana's `Logs`.
    assert!(
        ds.contains("uid: ds-vlogs") && ds.contains("url: \"http://127.0.0.1:9428\""),
        "{ds}"
    );
    assert!(text.contains("allow_loading_unsigned_plugins = victoriametrics-logs-datasource"));
    for p in ["victoria-logs", "grafana-victorialogs-ds"] {
        assert!(c.plan.packages.iter().any(|x| x == p), "{p}");
    }
    assert!(c.plan.services.iter().any(|s| s == "vlogs.service"));
    assert!(
        !c.plan
            .services
            .iter()
            .any(|s| s.starts_with("systemd-journal-remote"))
    );
    let env = file(&c, "/etc/default/vlogs").expect("/etc/default/vlogs");
    assert!(
        String::from_utf8_lossy(&env.content)
            .contains("-httpListenAddr=:9428 -retentionPeriod=15d")
    );
    let upload = c
        .plan
        .services
        .iter()
        .find(|s| s.starts_with("pigsty-log-upload@"))
        .expect("an upload unit");
    assert_eq!(
        upload,
        "pigsty-log-upload@10.10.10.10:9428-insert-journald.service"
    );
    // systemd reads the instance back as VictoriaLogs' journald URL (`%I`).
    if let Ok(out) = std::process::Command::new("systemd-escape")
        .args(["-u", "10.10.10.10:9428-insert-journald"])
        .output()
    {
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "10.10.10.10:9428/insert/journald"
        );
    } else {
        assert!(
            std::env::var_os("CI").is_none(),
            "systemd-escape is missing"
        );
    }

    let without = GRAFANA_INVENTORY.replace("REPOS", "node");
    let loaded = pigsty::inventory::load_str("grafana.yml", &without).unwrap();
    let w = loaded
        .warnings
        .iter()
        .find(|w| w.key == "grafana_enabled")
        .expect("a warning that the node gets no Grafana");
    assert_eq!(w.line, 3, "{w:?}");
    assert!(w.message.contains("`infra` repository"), "{w:?}");
    let c = compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap();
    assert!(!c.plan.packages.iter().any(|p| p == "grafana"));
    assert!(file(&c, "/etc/grafana/grafana.ini").is_none());

    let bad = with.replace("'Pass#word;1'", "'a\"\"\"b'");
    let loaded = pigsty::inventory::load_str("grafana.yml", &bad).unwrap();
    let err = compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap_err();
    assert!(err.to_string().contains("grafana_admin_password"), "{err}");
}

// ------------------------------------------------------------------ pushgateway

/// Debian's Pushgateway runs with the rendered arguments (its listen address moved to
/// loopback) and keeps a pushed metric, which the infra node's Prometheus scrapes with
/// the pushed labels kept (`honor_labels`).
#[test]
#[ignore = "starts the Pushgateway (run with --include-ignored)"]
fn pushgateway_takes_a_push_with_the_rendered_arguments() {
    let bin = tool("prometheus-pushgateway");
    let tmp = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for inv in render_all() {
        for (_, c) in inv.pairs() {
            let Some(env) = file(c, "/etc/default/prometheus-pushgateway") else {
                continue;
            };
            let prom = String::from_utf8_lossy(
                &file(c, "/etc/prometheus/prometheus.yml").unwrap().content,
            )
            .into_owned();
            assert!(
                prom.contains("job_name: \"pushgateway\"\n    metrics_path: \"/metrics\"\n    honor_labels: true"),
                "{}: no pushgateway job keeping labels:\n{prom}",
                inv.name
            );
            let path = tmp.path().join(format!("{}-pushgateway", inv.name));
            std::fs::write(&path, &env.content).unwrap();
            let args = read_env(&path, "ARGS");
            assert_eq!(
                args, "--web.listen-address=:9091 --persistence.interval=1m",
                "{}",
                inv.name
            );
            let port = support::free_port();
            let mut cmd = Command::new(&bin);
            cmd.args(args.split(' ').map(|a| {
                if a.starts_with("--web.listen-address=") {
                    format!("--web.listen-address=127.0.0.1:{port}")
                } else {
                    a.to_string()
                }
            }));
            let mut guard =
                Guard::spawn(&mut cmd, "pushgateway", tmp.path().join("pushgateway.log"));
            guard.wait_ready(|| TcpStream::connect(("127.0.0.1", port)).is_ok());
            let body = "pigsty_backup_done 1\n";
            let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
            write!(
                s,
                "POST /metrics/job/pgbackrest/ins/pg-test-1 HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            let mut answer = String::new();
            let _ = s.read_to_string(&mut answer);
            assert!(
                answer.starts_with("HTTP/1.0 200") || answer.starts_with("HTTP/1.1 200"),
                "{answer}"
            );
            let metrics = http_path(port, "/metrics");
            assert!(
                metrics.lines().any(|l| l
                    == "pigsty_backup_done{ins=\"pg-test-1\",instance=\"\",job=\"pgbackrest\"} 1"),
                "the pushed metric is not served:\n{metrics}"
            );
            drop(guard);
            checked += 1;
        }
    }
    assert!(checked >= 2, "only {checked} pushgateways checked");
}

/// The MinIO users' secrets reach only the member that creates the users (the first,
/// in its `minio-buckets` step); every member still has the root credentials its
/// server runs with.
#[test]
fn minio_user_secrets_reach_only_the_member_that_creates_users() {
    let text = "all:
  children:
    minio:
      hosts:
        10.10.10.10: { minio_seq: 1 }
        10.10.10.11: { minio_seq: 2 }
        10.10.10.12: { minio_seq: 3 }
      vars:
        minio_cluster: minio
        minio_users: [ { access_key: backup, secret_key: S3cret.Of.Backup, policy: readwrite } ]
  vars: { admin_ip: 10.10.10.10 }
";
    let loaded = pigsty::inventory::load_str("minio.yml", text).unwrap();
    let compiled = compile_fleet(&loaded.fleet);
    let holds = |c: &Compiled, secret: &str| {
        c.files
            .iter()
            .filter(|f| String::from_utf8_lossy(&f.content).contains(secret))
            .map(|f| f.path.clone())
            .collect::<Vec<_>>()
    };
    let root = &loaded.fleet.nodes[0]
        .minio
        .as_ref()
        .unwrap()
        .params
        .minio_secret_key;
    for (i, c) in compiled.iter().enumerate() {
        let users = holds(c, "S3cret.Of.Backup");
        if i == 0 {
            assert_eq!(users, ["/etc/pigsty/node.json"], "the first member");
        } else {
            assert!(users.is_empty(), "member {}: {users:?}", i + 1);
        }
        assert!(
            !holds(c, root).is_empty(),
            "member {} lacks the root secret",
            i + 1
        );
    }
}
