//! The end-to-end test of the whole product: `pigsty lab up` boots inventory/lab.yml
//! (three nodes, each running etcd, MinIO and Patroni/PostgreSQL 15) as qemu VMs from
//! the images `build-image` makes (two booted by qemu's direct kernel boot, one through
//! UEFI firmware and the disk's systemd-boot), and the clusters must form, fail over,
//! and survive a reimage cut by a power loss in the middle of its first boot.
//!
//! No MinIO-compatible server can be installed here, so the VMs run the MinIO
//! STAND-IN of tests/minio_standin: this very test executable, copied into each image
//! as /usr/local/bin/minio (an extra tree). Run as `minio server ...` it serves as the
//! stand-in instead of testing.
//!
//! It needs root, qemu, mmdebstrap with the Debian mirror (once, for the layer) and
//! about twenty minutes of TCG, so like the other VM tests it runs only when asked:
//! `cargo test --test lab -- --include-ignored` (ci/test.sh does).
//!
//! A custom harness (harness = false): the steps share one lab and run in order.

#[path = "minio_standin/mod.rs"]
mod minio_standin;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use pigsty::agent::etcd;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("server") {
        minio_standin::serve();
    }
    let asked = args
        .iter()
        .any(|a| a == "--include-ignored" || a == "--ignored");
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    let selected = filters.is_empty() || filters.iter().any(|f| "lab_e2e".contains(f.as_str()));
    if args.iter().any(|a| a == "--list") {
        println!("lab_e2e: test");
        return;
    }
    if !selected {
        return;
    }
    if !asked {
        println!(
            "test lab_e2e ... ignored (needs root, qemu and ~20 min of TCG; run with --include-ignored)"
        );
        return;
    }
    println!("test lab_e2e ...");
    e2e();
    println!("test lab_e2e ... ok");
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn lab_dir() -> PathBuf {
    std::env::var_os("PIGSTY_LAB").map_or_else(
        || PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab"),
        PathBuf::from,
    )
}

fn cache() -> PathBuf {
    std::env::var_os("PIGSTY_CACHE")
        .map_or_else(|| root().join("target/pigsty-cache"), PathBuf::from)
}

/// `pigsty -i inventory/lab.yml lab ARGS --dir LAB`.
fn pigsty(args: &[&str]) -> Output {
    pigsty_with(&root().join("inventory/lab.yml"), args)
}

/// `pigsty -i INV lab ARGS --dir LAB`.
fn pigsty_with(inv: &std::path::Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pigsty"));
    // `--dir` right after the subcommand: `lab ssh NODE -- COMMAND` ends with the
    // command.
    cmd.arg("-i").arg(inv).arg("lab").args(&args[..1]);
    cmd.arg("--dir").arg(lab_dir()).args(&args[1..]);
    cmd.env("PIGSTY_CACHE", cache());
    // Progress (stderr) shows in the test's output as it happens.
    cmd.stderr(Stdio::inherit());
    cmd.output().expect("running pigsty")
}

fn ok(args: &[&str]) -> String {
    let out = pigsty(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "pigsty lab {args:?} failed ({}):\n{stdout}",
        out.status,
    );
    stdout
}

/// The extra tree holding the stand-in as /usr/local/bin/minio (debug sections
/// stripped: the image needs only the code).
fn standin_tree() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-extra");
    let bin = dir.join("usr/local/bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = std::env::current_exe().unwrap();
    let dest = bin.join("minio");
    let st = Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&dest)
        .arg(&exe)
        .status();
    if !st.is_ok_and(|s| s.success()) {
        std::fs::copy(&exe, &dest).unwrap();
    }
    dir
}

const NODES: [(&str, &str); 3] = [
    ("pg-lab-1", "10.10.10.11"),
    ("pg-lab-2", "10.10.10.12"),
    ("pg-lab-3", "10.10.10.13"),
];
/// The cluster VIP of inventory/lab.yml (`pg_vip_address`).
const VIP: &str = "10.10.10.2";
const DSN_USER: &str = "user=dbuser_lab password=DBUser.Lab dbname=lab connect_timeout=5";

fn ip_of(name: &str) -> &'static str {
    NODES
        .iter()
        .find(|(n, _)| *n == name)
        .expect("a lab node")
        .1
}

/// Stops the lab however the test ends, so no VM outlives it.
struct Down;

impl Drop for Down {
    fn drop(&mut self) {
        if std::thread::panicking() {
            probe_before_down();
        }
        let out = pigsty(&["down", "--purge"]);
        eprintln!("{}", String::from_utf8_lossy(&out.stdout).trim());
        if std::thread::panicking() {
            // `down --purge` removes the disks only: what the guests logged stays.
            eprintln!(
                "lab e2e failed: every VM's console and journal are kept under {}/vms/<node>/ \
                 (serial.log, journal.json); `pigsty lab logs NODE [UNIT] --dir {}` prints a journal",
                lab_dir().display(),
                lab_dir().display()
            );
            // CI keeps only this output: each node's last agent and systemd failure
            // lines from its console travel with it.
            for (name, _) in NODES {
                let log = lab_dir().join("vms").join(name).join("serial.log");
                let Ok(text) = std::fs::read(&log) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&text);
                let wanted: String = text
                    .lines()
                    .filter(|l| l.contains("pigsty") || l.contains("Failed") || l.contains("rror"))
                    .collect::<Vec<_>>()
                    .join("\n");
                eprintln!(
                    "{name}'s console, last agent lines:\n{}",
                    console_tail(&wanted, 25)
                );
            }
            // And what Patroni, PostgreSQL, the kernel (the OOM killer, hung tasks)
            // and systemd said last, from each journal the host kept.
            for (name, _) in NODES {
                let path = lab_dir().join("vms").join(name).join("journal.json");
                let Ok(entries) = pigsty::lab::logs::read(&path) else {
                    continue;
                };
                let wanted: Vec<String> = entries
                    .iter()
                    .filter(|e| {
                        ["patroni", "kernel", "systemd"].iter().any(|u| e.is_of(u))
                            || e.unit
                                .as_deref()
                                .is_some_and(|u| u.starts_with("postgresql"))
                    })
                    .map(|e| e.line())
                    .collect();
                eprintln!(
                    "{name}'s journal, last Patroni, PostgreSQL, kernel and systemd lines:\n{}",
                    wanted[wanted.len().saturating_sub(30)..].join("\n")
                );
            }
        }
    }
}

/// Before a failed run's VMs go: the lab's status and, from inside each guest, how
/// Patroni's REST API answers (a liveness check that skips PostgreSQL, and /patroni
/// that queries it) and who holds its port. Each command is bounded by `timeout`.
fn probe_before_down() {
    let bounded = |args: &[&str]| {
        let mut cmd = Command::new("timeout");
        cmd.args(["--kill-after=5", "60", env!("CARGO_BIN_EXE_pigsty")]);
        cmd.arg("-i")
            .arg(root().join("inventory/lab.yml"))
            .arg("lab");
        cmd.arg(args[0])
            .arg("--dir")
            .arg(lab_dir())
            .args(&args[1..]);
        cmd.env("PIGSTY_CACHE", cache());
        match cmd.output() {
            Ok(out) => format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => format!("could not run pigsty lab {}: {e}", args[0]),
        }
    };
    eprintln!("lab status when the run failed:\n{}", bounded(&["status"]));
    // qemu pauses a guest whose disk write finds the host's disk full (its VMs then
    // show no CPU and answer nothing): say how full it is.
    match Command::new("df").arg("-h").arg(lab_dir()).output() {
        Ok(out) => eprintln!("host disk:\n{}", String::from_utf8_lossy(&out.stdout)),
        Err(e) => eprintln!("host disk: df: {e}"),
    }
    // The guests have Python (Patroni's), not curl.
    let probe = "python3 -c \"
import socket, time, urllib.request as u
ip = socket.gethostbyname(socket.gethostname())
for p in ('liveness', 'patroni'):
    t = time.time()
    try:
        r = u.urlopen(f'http://{ip}:8008/{p}', timeout=10).status
    except Exception as e:
        r = repr(e)
    print(f'GET /{p}: {r} in {time.time() - t:.1f} s')
\"; ss -tn state established '( sport = :8008 )' | tail -n +2 | wc -l | \
sed 's/^/connections to 8008: /'; uptime; \
sudo -n journalctl -u patroni -n 5 --no-pager -o short-monotonic";
    for (name, _) in NODES {
        eprintln!(
            "{name}, from inside:\n{}",
            bounded(&["ssh", name, "--", probe])
        );
    }
}

/// Move this (single-threaded) process into the lab's namespace: every socket it
/// opens from now on, and every process it starts, lives there.
fn enter_lab() {
    let state: serde_json::Value =
        serde_json::from_slice(&std::fs::read(lab_dir().join("lab.json")).unwrap()).unwrap();
    let ns = state["netns"].as_str().unwrap();
    pigsty::lab::net::enter(ns).expect("entering the lab's namespace");
}

/// psql with one statement; Err carries psql's message. A connection that fails
/// (no statement ran) is tried again, up to 4 times 2 s apart: three emulated guests
/// on two host cores may take longer than `connect_timeout` to fork a backend or
/// finish a TLS handshake while they are busy. Any other error is returned at once.
fn psql(host: &str, port: u16, sql: &str) -> Result<String, String> {
    let mut tries = 0;
    loop {
        match psql_as(host, port, DSN_USER, sql) {
            Err(e) if tries < 3 && e.starts_with("psql: error: connection to server") => {
                tries += 1;
                std::thread::sleep(Duration::from_secs(2));
            }
            done => return done,
        }
    }
}

/// [`psql`] with another user, password and database (`dsn`).
fn psql_as(host: &str, port: u16, dsn: &str, sql: &str) -> Result<String, String> {
    let out = Command::new("psql")
        .arg(format!("host={host} port={port} {dsn}"))
        .args(["-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The lab's HTTP client: 2 s to connect, 10 s to answer. A guest under TCG on a
/// busy host (the other test binaries run beside the lab) takes seconds to answer
/// what queries PostgreSQL, Patroni's /patroni among them: 4.1 s was seen here with
/// two busy host cores, and the lab tests what answers, not how fast.
fn http() -> pigsty::http::Client {
    pigsty::http::client(Duration::from_secs(2), Duration::from_secs(10)).unwrap()
}

/// Poll `f` every second until it gives Some, for at most `limit`.
fn until<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
    let start = Instant::now();
    let mut last = String::new();
    while start.elapsed() < limit {
        match f() {
            Ok(v) => return v,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    panic!("{what}: not within {limit:?}; last: {last}");
}

#[derive(serde::Deserialize, Debug, Clone)]
struct Member {
    name: String,
    role: String,
    state: String,
    /// Patroni lists it only when a parameter waits for a restart.
    #[serde(default)]
    pending_restart: bool,
}

/// Patroni's /cluster from the first node that answers (skipping `down`).
fn cluster(down: &[&str]) -> Result<Vec<Member>, String> {
    let http = http();
    let mut last = String::new();
    for (name, ip) in NODES {
        if down.contains(&name) {
            continue;
        }
        match http.get(format!("http://{ip}:8008/cluster")).send() {
            Ok(r) => {
                let v: serde_json::Value = r.json().map_err(|e| e.to_string())?;
                return serde_json::from_value(v["members"].clone()).map_err(|e| e.to_string());
            }
            Err(e) => last = format!("{name}: {}", chain(e)),
        }
    }
    Err(last)
}

/// An error with its causes (`error sending request …: operation timed out`): the
/// first line alone does not tell a timeout from a refused connection.
fn chain(e: impl std::error::Error + Send + Sync + 'static) -> String {
    format!("{:#}", anyhow::Error::from(e))
}

/// One leader and every other member a replica that the leader sees streaming.
fn formed(expect: usize) -> Result<String, String> {
    let members = cluster(&[])?;
    let leaders: Vec<&Member> = members.iter().filter(|m| m.role == "leader").collect();
    if leaders.len() != 1 || members.len() != expect {
        return Err(format!("members: {members:?}"));
    }
    let leader = leaders[0].name.clone();
    let body = http()
        .get(format!("http://{}:8008/patroni", ip_of(&leader)))
        .send()
        .and_then(|r| r.text())
        .map_err(chain)?;
    let status: pigsty::agent::patroni::PatroniStatus =
        serde_json::from_str(&body).map_err(|e| e.to_string())?;
    let streaming: Vec<&str> = status
        .replication
        .iter()
        .filter(|r| r.state == "streaming")
        .map(|r| r.application_name.as_str())
        .collect();
    for m in members.iter().filter(|m| m.name != leader) {
        if !streaming.contains(&m.name.as_str()) {
            return Err(format!(
                "{} ({}, {}) is not streaming from {leader}; leader sees {streaming:?}",
                m.name, m.role, m.state
            ));
        }
    }
    Ok(leader)
}

/// How the lab reaches its etcd: over TLS with the operator's certificate from the
/// lab's CA, as root (kept in lab.json by `lab up`).
fn lab_access() -> etcd::Access {
    let state: pigsty::lab::LabState =
        serde_json::from_slice(&std::fs::read(lab_dir().join("lab.json")).unwrap()).unwrap();
    let files = state
        .etcd_access
        .expect("lab up keeps the access to the lab's etcd (the lab runs with a CA)");
    files.load().expect("reading the lab's etcd access")
}

fn etcd_client(ip: &str) -> Result<etcd::Client, String> {
    etcd_client_within(ip, Duration::from_secs(3))
}

fn etcd_client_within(ip: &str, timeout: Duration) -> Result<etcd::Client, String> {
    etcd::Client::with(&format!("https://{ip}:2379"), timeout, &lab_access())
        .map_err(|e| format!("{e:#}"))
}

/// etcd refuses plain http, a client without the fleet's certificate, and a request
/// without a user, on every member; root gets in.
fn etcd_refuses_strangers() -> Result<(), String> {
    let access = lab_access();
    for (name, ip) in NODES {
        let plain = etcd::Client::new(&format!("http://{ip}:2379"), Duration::from_secs(3))
            .map_err(|e| e.to_string())?;
        if plain.member_list().is_ok() {
            return Err(format!("{name}: etcd answered plain http"));
        }
        let no_cert = reqwest::blocking::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(
                reqwest::Certificate::from_pem(access.tls.as_ref().unwrap().ca.as_bytes()).unwrap(),
            )
            .timeout(Duration::from_secs(3))
            .build()
            .unwrap();
        if no_cert
            .get(format!("https://{ip}:2379/health"))
            .send()
            .is_ok()
        {
            return Err(format!(
                "{name}: etcd accepted a client without a certificate"
            ));
        }
        let anonymous = etcd_client(ip)?.anonymous();
        match anonymous.get("/pigsty/nodes/pg-lab-1") {
            Err(e) if format!("{e:#}").contains("user name is empty") => {}
            other => return Err(format!("{name}: a request without a user: {other:?}")),
        }
        etcd_client(ip)?
            .get("/pigsty/nodes/pg-lab-1")
            .map_err(|e| format!("{name}: root: {e:#}"))?;
    }
    Ok(())
}

/// etcd: every node a started, voting member and healthy.
fn etcd_members() -> Result<Vec<String>, String> {
    let c = etcd_client("10.10.10.11")?;
    let members = c.member_list().map_err(|e| format!("{e:#}"))?;
    let mut names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
    names.sort();
    if members.len() != 3 || members.iter().any(|m| m.is_learner || !m.started()) {
        return Err(format!("members: {members:?}"));
    }
    for (_, ip) in NODES {
        let c = etcd_client(ip)?;
        if !c.health().map_err(|e| format!("{ip}: {e:#}"))? {
            return Err(format!("{ip} unhealthy"));
        }
    }
    Ok(names)
}

/// Every Prometheus scrape target the fleet renders (`render::infra::scrape_jobs`, what
/// an infra node's prometheus.yml lists) answers on its node with metrics, and the
/// exporters report what they watch as up. MinIO is the test stand-in, over TLS: it
/// reports how many of its peers it reaches over TLS (all three, none offline).
fn scrape_targets() -> Vec<String> {
    let loaded = pigsty::inventory::load(&pigsty::inventory::Source::File(
        root().join("inventory/lab.yml"),
    ))
    .expect("loading the lab inventory");
    let mut up = Vec::new();
    for job in pigsty::render::infra::scrape_jobs(&loaded.fleet) {
        // An exporter that answers while it cannot reach its server says `<x>_up 0`.
        let must = match job.name {
            "pgsql" => Some("pg_up 1"),
            "pgbouncer" => Some("pgbouncer_up 1"),
            "redis" => Some("redis_up 1"),
            "ping" => Some("probe_success 1"),
            "minio" => Some("minio_cluster_nodes_offline_total 0"),
            _ => None,
        };
        for t in &job.targets {
            let mut path = match &t.param_target {
                Some(p) => format!("{}?target={p}", job.metrics_path),
                None => job.metrics_path.to_string(),
            };
            if let Some(m) = job.module {
                path.push_str(&format!("&module={m}"));
            }
            // A probe goes through the infra node's own exporter (127.0.0.1 there).
            let address = t.address.replace("127.0.0.1:", &format!("{}:", NODES[0].1));
            let what = format!("{} target {} ({address}{path})", job.name, t.ins);
            until(&what, Duration::from_secs(120), || {
                // etcd asks every client for a certificate from the lab's CA; MinIO
                // serves https with one.
                let page = if matches!(job.name, "etcd" | "minio") {
                    https_get(&address, &path)?
                } else {
                    http_get(&address, &path)?
                };
                let (head, body) = page.split_once("\r\n\r\n").unwrap_or((&page, ""));
                if !head.starts_with("HTTP/1.1 200") && !head.starts_with("HTTP/1.0 200") {
                    return Err(head.lines().next().unwrap_or_default().to_string());
                }
                match must {
                    Some(line) if !body.lines().any(|l| l == line) => Err(format!(
                        "no `{line}`: {}",
                        body.lines()
                            .filter(|l| l.starts_with(line.split(' ').next().unwrap()))
                            .collect::<Vec<_>>()
                            .join("; ")
                    )),
                    _ if body.is_empty() => Err("an empty page".into()),
                    _ => Ok(()),
                }
            });
            up.push(format!("{}:{}", job.name, t.ins));
        }
    }
    let count = |job: &str| {
        up.iter()
            .filter(|u| u.starts_with(&format!("{job}:")))
            .count()
    };
    for job in [
        "node",
        "etcd",
        "pgsql",
        "pgbouncer",
        "patroni",
        "haproxy",
        "ping",
        "minio",
    ] {
        assert!(count(job) >= 3, "fewer than 3 {job} targets: {up:?}");
    }
    // The one infra node's own services.
    for job in ["prometheus", "alertmanager", "pushgateway"] {
        assert_eq!(count(job), 1, "{job} targets: {up:?}");
    }
    up
}

/// Prometheus' `/api/v1/targets` on one infra node: every active target `up` (MinIO
/// and etcd scraped over TLS), and at least `want` of them. Returns how many are up.
fn prometheus_targets_up(ip: &str, want: usize) -> usize {
    until(
        &format!("every Prometheus target up on {ip}"),
        Duration::from_secs(180),
        || {
            let page = http_get(&format!("{ip}:9090"), "/api/v1/targets?state=active")?;
            let body = page.split_once("\r\n\r\n").map_or("", |(_, b)| b);
            let v: serde_json::Value =
                serde_json::from_str(body).map_err(|e| format!("{e}: {body:.200}"))?;
            let targets = v["data"]["activeTargets"]
                .as_array()
                .ok_or_else(|| format!("no activeTargets: {body:.200}"))?;
            let mut up = 0;
            let mut down = Vec::new();
            for t in targets {
                let job = t["labels"]["job"].as_str().unwrap_or_default();
                if t["health"] == "up" {
                    up += 1;
                } else {
                    down.push(format!(
                        "{job} {} {}: {}",
                        t["labels"]["ins"].as_str().unwrap_or_default(),
                        t["health"],
                        t["lastError"].as_str().unwrap_or_default()
                    ));
                }
            }
            if !down.is_empty() || up < want {
                return Err(format!("{up} up, want {want}; not up: {}", down.join("; ")));
            }
            Ok(up)
        },
    )
}

/// One HTTP/1.0 GET (bounded), the whole answer.
/// [`http_get`] over TLS with the lab's etcd access, in the same shape (status line,
/// blank line, body).
fn https_get(addr: &str, path: &str) -> Result<String, String> {
    let tls = lab_access().tls.unwrap();
    let http = pigsty::http::client_tls(Duration::from_secs(3), Duration::from_secs(5), &tls)
        .map_err(|e| format!("{e:#}"))?;
    let (status, body) =
        pigsty::http::get(&http, &format!("https://{addr}{path}")).map_err(|e| format!("{e:#}"))?;
    Ok(format!("HTTP/1.1 {status}\r\n\r\n{body}"))
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    http_request(addr, path, "")
}

/// One HTTP/1.0 GET with extra header lines (each ending in CRLF), the whole answer.
fn http_request(addr: &str, path: &str, headers: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let sock: std::net::SocketAddr = addr.parse().map_err(|e| format!("{addr}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&sock, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n{headers}\r\n").map_err(|e| e.to_string())?;
    let mut page = Vec::new();
    s.take(64 << 20)
        .read_to_end(&mut page)
        .map_err(|e| e.to_string())?;
    Ok(String::from_utf8_lossy(&page).into_owned())
}

/// The first line sshd sends (read from inside the lab's namespace).
fn ssh_banner(ip: &str) -> Result<String, String> {
    use std::io::Read;
    let addr: std::net::SocketAddr = format!("{ip}:22").parse().unwrap();
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 256];
    let n = s.read(&mut buf).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&buf[..n]);
    match text.lines().next() {
        Some(l) if l.starts_with("SSH-") => Ok(l.to_string()),
        _ => Err(format!("not an SSH banner: {text:?}")),
    }
}

fn count_rows(host: &str, port: u16) -> Result<i64, String> {
    psql(host, port, "SELECT count(*) FROM lab_rows")?
        .parse()
        .map_err(|e| format!("{e}"))
}

/// Wait for one node's console to show `marker` (bounded). When it does not, the
/// panic carries the console's last lines: CI keeps only the test's output, not the
/// lab directory, so the cause must travel in the message.
fn wait_console(name: &str, marker: &str, limit: Duration) {
    let log = lab_dir().join("vms").join(name).join("serial.log");
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Ok(text) = std::fs::read(&log)
            && String::from_utf8_lossy(&text).contains(marker)
        {
            return;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let text = std::fs::read(&log)
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_else(|e| format!("(cannot read {}: {e})", log.display()));
    panic!(
        "{name}'s console to show {marker:?}: not within {limit:?}; its last lines:\n{}",
        console_tail(&text, 60)
    );
}

/// The last `n` non-blank lines of a console log, without terminal escapes.
fn console_tail(text: &str, n: usize) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(strip_escapes)
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

fn strip_escapes(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            // CSI: ESC [ parameters final-byte.
            if chars.peek() == Some(&'[') {
                chars.next();
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
        } else if c != '\r' {
            out.push(c);
        }
    }
    out
}

/// `pigsty lab ssh NODE -- COMMAND`, which must succeed; its output.
fn lab_ssh(node: &str, command: &str) -> String {
    ok(&["ssh", node, "--", command])
}

/// The node's etcd member ID (its member is named etcd-<seq>, as its pg_seq).
fn etcd_member_id(node: &str) -> u64 {
    let want = format!("etcd-{}", &node[7..]);
    // From the first member that answers (any of them may be rebooting), retried.
    until(
        &format!("etcd's member {want}"),
        Duration::from_secs(60),
        || {
            let mut last = String::new();
            for (_, ip) in NODES {
                match etcd_client_within(ip, Duration::from_secs(10))?.member_list() {
                    Ok(list) => {
                        return list
                            .into_iter()
                            .find(|m| m.name == want)
                            .map(|m| m.id)
                            .ok_or_else(|| format!("no etcd member {want}"));
                    }
                    Err(e) => last = format!("{ip}: {e:#}"),
                }
            }
            Err(last)
        },
    )
}

/// How many times Patroni made this node's data directory from a leader
/// (basebackup), by its journal on the host.
fn clone_count(node: &str) -> usize {
    ok(&["logs", node, "patroni.service"])
        .matches("replica has been created using basebackup")
        .count()
}

/// `pigsty lab rollout --json` with `inv`, which must finish; its report.
fn rollout(inv: &std::path::Path) -> serde_json::Value {
    let out = pigsty_with(inv, &["rollout", "--json", "--timeout", "1200"]);
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "lab rollout: {said}");
    let report: serde_json::Value = serde_json::from_str(&said).unwrap();
    for row in report["rows"].as_array().unwrap() {
        println!(
            "rollout {:<10} {:<24} {} → {} {:>6.1}s downtime {}",
            row["node"].as_str().unwrap_or(""),
            row["step"].as_str().unwrap_or(""),
            row["old_digest"].as_str().unwrap_or(""),
            row["new_digest"].as_str().unwrap_or(""),
            row["secs"].as_f64().unwrap_or(0.0),
            row["downtime_secs"]
        );
    }
    report
}

/// Commits through haproxy's primary port every 100 ms until told to stop: the ids
/// committed, and the longest gap between two commits (seconds).
fn writer(
    host: &'static str,
    first_id: i64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(Vec<i64>, f64)> {
    std::thread::spawn(move || {
        let mut ids = Vec::new();
        let mut last = Instant::now();
        let mut gap = 0.0f64;
        let mut id = first_id;
        // Bounded: at most 2 hours of 100 ms ticks.
        for _ in 0..72_000 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            id += 1;
            let sql = format!("INSERT INTO lab_rows VALUES ({id}, 'rollout')");
            if psql_as(host, 5433, DSN_USER_QUICK, &sql).is_ok() {
                gap = gap.max(last.elapsed().as_secs_f64());
                last = Instant::now();
                ids.push(id);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        (ids, gap)
    })
}

const DSN_USER_QUICK: &str = "user=dbuser_lab password=DBUser.Lab dbname=lab connect_timeout=2";

/// Samples etcd every second until told to stop: the fewest members that answered
/// (each its own status; a majority of the three running is quorum), the longest
/// stretch with no member that knows a leader (seconds), and the samples taken.
fn etcd_watch(
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<(usize, f64, usize)> {
    std::thread::spawn(move || {
        let mut fewest = usize::MAX;
        let mut samples = 0;
        let mut leaderless_since: Option<Instant> = None;
        let mut leaderless = 0.0f64;
        // One client per member, kept: a new one per sample was a new TLS handshake
        // with each member every second.
        let clients: Vec<etcd::Client> = NODES
            .iter()
            .map(|(_, ip)| etcd_client(ip).unwrap_or_else(|e| panic!("{e}")))
            .collect();
        let patient: Vec<etcd::Client> = NODES
            .iter()
            .map(|(_, ip)| {
                etcd_client_within(ip, Duration::from_secs(10)).unwrap_or_else(|e| panic!("{e}"))
            })
            .collect();
        for _ in 0..7_200 {
            if stop.load(std::sync::atomic::Ordering::SeqCst) {
                break;
            }
            // Each member is asked within 3 s. Before fewer than a quorum are counted
            // as answering, the silent ones are asked again within 10 s: a busy guest
            // (PostgreSQL restarting beside it, TCG) may take over 3 s to answer, and
            // only a member that is down (or cut off) stays silent through both.
            let quick: Vec<Option<u64>> = clients
                .iter()
                .map(|c| c.status().ok().map(|(_, l)| l))
                .collect();
            let mut answers: Vec<u64> = quick.iter().flatten().copied().collect();
            if answers.len() < 2 {
                for (q, c) in quick.iter().zip(&patient) {
                    if q.is_none() {
                        answers.extend(c.status().ok().map(|(_, l)| l));
                    }
                }
            }
            fewest = fewest.min(answers.len());
            if answers.iter().any(|l| *l != 0) {
                if let Some(t) = leaderless_since.take() {
                    leaderless = leaderless.max(t.elapsed().as_secs_f64());
                }
            } else if leaderless_since.is_none() {
                leaderless_since = Some(Instant::now());
            }
            samples += 1;
            std::thread::sleep(Duration::from_secs(1));
        }
        if let Some(t) = leaderless_since {
            leaderless = leaderless.max(t.elapsed().as_secs_f64());
        }
        (fewest, leaderless, samples)
    })
}

/// A copy of a node bundle whose etc/pigsty/node.json is not JSON.
fn break_node_json(from: &std::path::Path, to: &std::path::Path) {
    let bytes = std::fs::read(from).unwrap();
    let mut archive = tar::Archive::new(&bytes[..]);
    let mut out = tar::Builder::new(Vec::new());
    let mut found = false;
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let mut header = e.header().clone();
        let path = e.path().unwrap().into_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        if path.ends_with("etc/pigsty/node.json") {
            data = b"{ broken on purpose".to_vec();
            found = true;
        }
        header.set_size(data.len() as u64);
        out.append_data(&mut header, &path, &data[..]).unwrap();
    }
    assert!(found, "the bundle holds etc/pigsty/node.json");
    std::fs::write(to, out.into_inner().unwrap()).unwrap();
}

fn e2e() {
    let extra = standin_tree();
    let mut figures: BTreeMap<&str, f64> = BTreeMap::new();
    let _down = Down;
    // A lab left by an earlier run would not be a first boot.
    let _ = pigsty(&["down", "--purge"]);

    // Boot: every agent done.
    // Every node boots its A/B disk (shared root, node bundle, data partition)
    // through UEFI firmware and the disk's systemd-boot, which counts a trial slot's
    // boots (docs/updates.md).
    let mut up = vec![
        "up",
        "--extra-tree",
        extra.to_str().unwrap(),
        "--accel",
        "tcg",
    ];
    // A debugging aid: more trees (an authorized_keys for root, say) from the
    // environment.
    let debug_tree = std::env::var("PIGSTY_LAB_DEBUG_TREE").unwrap_or_default();
    if !debug_tree.is_empty() {
        up.extend(["--extra-tree", debug_tree.as_str()]);
    }
    let out = ok(&up);
    println!("{out}");
    let ready: f64 = out
        .split("done in ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .expect("lab up reports its ready time");
    figures.insert("boot_to_ready_s", ready);
    enter_lab();
    // Each A/B drive is 4 GiB larger than its image: pre-init grew the data
    // partition into the rest at first boot.
    for (name, _) in NODES {
        wait_console(
            name,
            "pigsty pre-init: data partition",
            Duration::from_secs(5),
        );
    }

    // etcd: three healthy voting members.
    let names = until(
        "etcd with 3 healthy members",
        Duration::from_secs(60),
        etcd_members,
    );
    assert_eq!(names, ["etcd-1", "etcd-2", "etcd-3"]);
    // etcd runs TLS with client certificates and RBAC on every member.
    // Retried, bounded: each check is one request with a 3 s timeout, and an
    // authentication (a bcrypt hash in the guest) may take longer while the host is
    // busy. A member that lets a stranger in does so on every try.
    until(
        "etcd refusing strangers and letting root in",
        Duration::from_secs(60),
        etcd_refuses_strangers,
    );
    // Patroni: one leader, two streaming replicas.
    let leader = until(
        "a leader with 2 streaming replicas",
        Duration::from_secs(120),
        || formed(3),
    );
    println!("patroni leader: {leader}");

    // A row written through the primary service is read back through the replica one.
    psql(
        "10.10.10.12",
        5433,
        "CREATE TABLE lab_rows (id int PRIMARY KEY, note text); \
         INSERT INTO lab_rows SELECT g, 'before failover' FROM generate_series(1, 100) g",
    )
    .expect("writing through 5433");
    let seen = until(
        "the rows on the replica service (5434)",
        Duration::from_secs(30),
        || match count_rows("10.10.10.13", 5434)? {
            100 => Ok(100),
            n => Err(format!("{n} rows")),
        },
    );
    assert_eq!(seen, 100);
    // The replica service lands on a replica.
    assert_eq!(
        psql("10.10.10.13", 5434, "SELECT pg_is_in_recovery()").unwrap(),
        "t"
    );
    // pgbouncer answers on 6432 for the database.
    assert_eq!(psql("10.10.10.11", 6432, "SELECT 1").unwrap(), "1");
    // PostgreSQL serves the node's certificate from the lab's fleet CA: a client that
    // trusts that CA alone verifies it by the node's address (libpq verify-full).
    let ca = lab_dir().join("pki/ca/ca.crt");
    for (name, ip) in NODES {
        let tls = psql(
            &format!("{ip} sslmode=verify-full sslrootcert={}", ca.display()),
            5432,
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
        )
        .unwrap_or_else(|e| panic!("{name}: a verify-full connection: {e}"));
        assert_eq!(tls, "t", "{name}");
    }
    // The cluster VIP (pg_vip_enabled) reaches the primary.
    until(
        "the VIP on the primary",
        Duration::from_secs(60),
        || match psql(VIP, 5432, "SELECT pg_is_in_recovery()")?.as_str() {
            "f" => Ok(()),
            other => Err(format!("in recovery: {other}")),
        },
    );

    // Each node sized PostgreSQL for the VM it booted on (`pigsty agent tune`, before
    // Patroni): shared_buffers is pg_shared_buffer_ratio (0.25) of the memory it
    // measured, and that memory is the VM's (1536 MiB less what the kernel keeps), not
    // the image's reference machine (4 GiB).
    for (name, ip) in NODES {
        let log = ok(&["logs", name, "pigsty-tune.service"]);
        let mem: u64 = log
            .lines()
            .rev()
            .find_map(|l| {
                let head = l
                    .split(" MiB memory")
                    .next()
                    .filter(|h| h.len() < l.len())?;
                head.rsplit(' ').next()?.parse().ok()
            })
            .unwrap_or_else(|| panic!("{name}: no `tuned for` line from pigsty-tune:\n{log}"));
        assert!(
            (1024..=1536).contains(&mem),
            "{name}: pigsty-tune measured {mem} MiB in a 1536 MiB VM"
        );
        let want = (mem as f64 * 0.25).ceil() as i64;
        let got: i64 = psql(
            ip,
            5432,
            "SELECT setting::bigint * 8 / 1024 FROM pg_settings WHERE name = 'shared_buffers'",
        )
        .expect("shared_buffers")
        .parse()
        .unwrap();
        assert_eq!(
            got, want,
            "{name}: shared_buffers (MiB) for {mem} MiB of memory"
        );
        println!("{name}: sized for {mem} MiB: shared_buffers {got} MiB");
    }

    // Fault 1: kill the primary's VM.
    let mut committed = 100;
    for i in 101..=150 {
        psql(
            "10.10.10.12",
            5433,
            &format!("INSERT INTO lab_rows VALUES ({i}, 'last before kill')"),
        )
        .expect("insert");
        committed = i;
    }
    // The lab replicates asynchronously (Pigsty's default pg_rpo, 1 MiB): a commit is
    // safe from a failover once the replicas have it. Kill the primary only when both
    // have replayed every row committed so far, so a lost row below is a real loss.
    let lsn = psql(ip_of(&leader), 5432, "SELECT pg_current_wal_lsn()").expect("primary LSN");
    for (name, ip) in NODES.iter().filter(|(n, _)| *n != leader) {
        until(
            &format!("{name} to replay up to {lsn}"),
            Duration::from_secs(120),
            || match psql(
                ip,
                5432,
                &format!("SELECT pg_last_wal_replay_lsn() >= '{lsn}'::pg_lsn"),
            )?
            .as_str()
            {
                "t" => Ok(()),
                other => Err(format!("replayed past {lsn}: {other}")),
            },
        );
    }
    let t0 = Instant::now();
    ok(&["kill", &leader]);
    let survivors: Vec<(&str, &str)> = NODES
        .iter()
        .copied()
        .filter(|(n, _)| *n != leader)
        .collect();
    let new_leader = until("a new leader", Duration::from_secs(180), || {
        let members = cluster(&[leader.as_str()])?;
        members
            .iter()
            .find(|m| m.role == "leader" && m.name != leader && m.state == "running")
            .map(|m| m.name.clone())
            .ok_or_else(|| format!("{members:?}"))
    });
    let failover = t0.elapsed().as_secs_f64();
    let via = survivors[0].1;
    until(
        "writes through 5433 after failover",
        Duration::from_secs(120),
        || {
            psql(
                via,
                5433,
                &format!(
                    "INSERT INTO lab_rows VALUES ({}, 'after failover')",
                    committed + 1
                ),
            )
        },
    );
    let resumed = t0.elapsed().as_secs_f64();
    committed += 1;
    // The VIP followed the leader: a client of the VIP writes on the new primary
    // (the old one is powered off, so whoever answers there holds the VIP now).
    until(
        "the VIP on the new leader",
        Duration::from_secs(120),
        || {
            psql(
                VIP,
                5432,
                &format!(
                    "INSERT INTO lab_rows VALUES ({}, 'through the VIP')",
                    committed + 1
                ),
            )
        },
    );
    committed += 1;
    let vip_s = t0.elapsed().as_secs_f64();
    figures.insert("failover_vip_s", vip_s);
    let n = count_rows(via, 5433).unwrap();
    assert_eq!(
        n,
        i64::from(committed),
        "committed rows lost in the failover"
    );
    println!(
        "failover: {leader} killed, {new_leader} leads after {failover:.1} s, writes resumed after {resumed:.1} s"
    );
    figures.insert("failover_leader_s", failover);
    figures.insert("failover_writes_s", resumed);
    // The old primary boots from its own disk and rejoins as a replica.
    ok(&["start", &leader]);
    let t = Instant::now();
    until(
        "the old primary back as a streaming replica",
        Duration::from_secs(600),
        || formed(3),
    );
    figures.insert("old_primary_rejoin_s", t.elapsed().as_secs_f64());

    // Fault 2: reinstall a replica over the network (issue 15; docs/pxe.md): a new
    // machine with the replica's MAC, an empty disk and its NIC first boots iPXE from
    // qemu's ROM; the boot server and dnsmasq (serve's own) run inside the lab's
    // network; the live installer writes the node's A/B disk, verifies it and
    // reboots; the server then sends it to its disk. Beside it, a machine of no node
    // (a MAC the inventory does not give) boots from the network too and is shown
    // the unknown-machine script and nothing else. Then the node's first boot from
    // that disk is power-cut in its middle, and it boots again: it must rejoin etcd
    // under its name and Patroni as a streaming replica, with every committed row.
    // (A fresh disk is what a reimage gives too: this is that path, over the network.)
    let leader = formed(3).unwrap();
    let victim = NODES
        .iter()
        .map(|(n, _)| *n)
        .rfind(|n| *n != leader)
        .unwrap();
    let t = Instant::now();
    let pxe: serde_json::Value = serde_json::from_str(&ok(&[
        "pxe",
        victim,
        "--stranger",
        "--json",
        "--timeout",
        "1200",
    ]))
    .expect("lab pxe --json prints JSON");
    println!("lab pxe: {pxe}");
    let secs = |v: &serde_json::Value| v.as_f64().expect("seconds in lab pxe's JSON");
    figures.insert("pxe_installed_s", secs(&pxe["installed_secs"]));
    figures.insert("pxe_to_disk_s", secs(&pxe["to_disk_secs"]));
    let stranger = &pxe["stranger"];
    let mac = stranger["mac"]
        .as_str()
        .expect("the stranger's MAC")
        .replace(':', "-");
    let requests: Vec<&str> = stranger["requests"]
        .as_array()
        .expect("the stranger's requests")
        .iter()
        .filter_map(|r| r.as_str())
        .collect();
    assert!(
        requests.contains(&format!("GET /ipxe/{mac} 200").as_str()),
        "the machine of no node asked for its script: {requests:?}"
    );
    assert!(
        requests.iter().all(
            |r| r.starts_with("GET /boot.ipxe ") || r.starts_with(&format!("GET /ipxe/{mac} "))
        ),
        "the machine of no node was given its script and nothing else: {requests:?}"
    );
    figures.insert("pxe_stranger_told_s", secs(&stranger["asked_secs"]));
    wait_console(
        victim,
        "pigsty agent: step patroni: running",
        Duration::from_secs(600),
    );
    ok(&["kill", victim]);
    ok(&["start", victim]);
    ok(&["wait", "--timeout", "900"]);
    let names = until(
        "etcd with 3 healthy members after the reinstall",
        Duration::from_secs(60),
        etcd_members,
    );
    assert_eq!(names, ["etcd-1", "etcd-2", "etcd-3"]);
    until(
        "the reinstalled, power-cut node streaming",
        Duration::from_secs(300),
        || formed(3),
    );
    figures.insert("pxe_power_cut_joined_s", t.elapsed().as_secs_f64());
    // Connecting is retried (a node that has just finished its first boot on a loaded
    // host may take over 5 s to fork a backend); the count is not.
    let n = until(
        "every row on the reinstalled node",
        Duration::from_secs(60),
        || match count_rows(ip_of(victim), 5432)? {
            n if n == i64::from(committed) => Ok(n),
            n => Err(format!("{n} rows")),
        },
    );
    println!(
        "reinstalled {victim} over the network ({:.0} s to its disk written), cut its power \
         in its first boot from it: rejoined with {n} rows {:.1} s after its power-on",
        figures["pxe_installed_s"], figures["pxe_power_cut_joined_s"]
    );
    // Updates (docs/updates.md) of a replica's A/B disk: cut, kept, and fallen back.
    let leader = formed(3).unwrap();
    let node = NODES
        .iter()
        .map(|(n, _)| *n)
        .find(|n| *n != leader)
        .unwrap();
    let ip = ip_of(node);
    // What must survive every update: the data directory (a marker a re-clone would
    // remove), the system identifier, the etcd member ID, the MinIO drive.
    lab_ssh(
        node,
        "sudo touch /pg/data/pigsty-update-marker /data/minio/pigsty-update-marker",
    );
    let sysid = psql(
        ip,
        5432,
        "SELECT system_identifier FROM pg_control_system()",
    )
    .unwrap();
    let member_id = etcd_member_id(node);
    let basebackups = clone_count(node);

    // 1. Power cut in the middle of writing the inactive slot: the node boots its
    //    running slot, whose entry is the only one.
    let t = Instant::now();
    let mut cut = Command::new(env!("CARGO_BIN_EXE_pigsty"));
    cut.arg("-i")
        .arg(root().join("inventory/lab.yml"))
        .args(["lab", "update", node, "--no-reboot", "--dir"])
        .arg(lab_dir())
        .env("PIGSTY_CACHE", cache())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cut.spawn().unwrap();
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut writing = false;
    for line in std::io::BufRead::lines(stderr) {
        let line = line.unwrap_or_default();
        eprintln!("{line}");
        if line.contains("MiB of the root written") {
            writing = true;
            break;
        }
    }
    assert!(writing, "agent update never said it was writing the root");
    ok(&["kill", node]);
    let _ = child.wait();
    ok(&["start", node]);
    // Its own PostgreSQL and SSH first: Patroni's view of the cluster keeps a
    // killed member's key (and so its state) until its TTL runs out.
    until(
        &format!("{node}'s own PostgreSQL after the cut"),
        Duration::from_secs(600),
        || match psql(ip, 5432, "SELECT pg_is_in_recovery()")?.as_str() {
            "t" => Ok(()),
            other => Err(format!("in recovery: {other}")),
        },
    );
    until(
        &format!("an SSH banner from {node} after the cut"),
        Duration::from_secs(120),
        || ssh_banner(ip),
    );
    until(
        &format!("{node} back on its running slot after the cut"),
        Duration::from_secs(600),
        || formed(3),
    );
    // The cut update left no entry for the other slot.
    let status = lab_ssh(node, "sudo pigsty agent status");
    assert!(
        status.contains("running   slot a") && status.contains("fallback  none"),
        "{status}"
    );
    figures.insert("update_power_cut_back_s", t.elapsed().as_secs_f64());

    // 2. The update again, with one changed PostgreSQL parameter (the node's own
    //    pg_parameters): it comes back on the new slot, kept, streaming from the data
    //    directory it had, with nothing lost.
    let mut committed = count_rows(ip_of(&leader), 5432).unwrap();
    for i in 1..=20 {
        psql(
            ip_of(&leader),
            5432,
            &format!(
                "INSERT INTO lab_rows VALUES ({}, 'before update')",
                10_000 + i
            ),
        )
        .expect("insert");
        committed += 1;
    }
    let changed = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-changed.yml");
    let inv = std::fs::read_to_string(root().join("inventory/lab.yml")).unwrap();
    // The node's host line (`10.10.10.1N: { pg_seq: N, pg_role: ... }`) gains the
    // parameter.
    let head = format!("{ip}: {{ pg_seq: {}, ", &node[7..]);
    let at = inv
        .find(&head)
        .unwrap_or_else(|| panic!("inventory/lab.yml lists {head}"));
    let close = at + inv[at..].find('}').unwrap();
    let inv = format!(
        "{}, pg_parameters: {{ log_min_duration_statement: 1234 }} {}",
        &inv[..close],
        &inv[close..]
    );
    std::fs::write(&changed, inv).unwrap();
    let t = Instant::now();
    let out = pigsty_with(
        &changed,
        &["update", node, "--tries", "2", "--timeout", "1500"],
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "lab update {node}: {said}");
    println!("{said}");
    assert!(said.contains("copied from slot"), "{said}");
    until(
        &format!("{node} streaming after its update"),
        Duration::from_secs(300),
        || formed(3),
    );
    figures.insert("update_kept_s", t.elapsed().as_secs_f64());
    assert_eq!(
        psql(ip, 5432, "SHOW log_min_duration_statement").unwrap(),
        "1234ms",
        "the changed parameter in effect on {node}"
    );
    assert_eq!(
        psql(
            ip,
            5432,
            "SELECT system_identifier FROM pg_control_system()"
        )
        .unwrap(),
        sysid
    );
    lab_ssh(
        node,
        "sudo test -e /pg/data/pigsty-update-marker && sudo test -e /data/minio/pigsty-update-marker",
    );
    assert_eq!(clone_count(node), basebackups, "{node} was cloned again");
    assert_eq!(etcd_member_id(node), member_id, "{node}'s etcd member ID");
    let n = until(
        "every row on the updated node",
        Duration::from_secs(60),
        || match count_rows(ip, 5432)? {
            n if n == committed => Ok(n),
            n => Err(format!("{n} rows")),
        },
    );
    println!(
        "updated {node}: kept its data directory and member ID, {n} rows, parameter in effect"
    );

    // 3. A deliberately broken image (its node.json unreadable, so its agent cannot
    //    finish): the node falls back to the slot it ran, by itself, and rejoins.
    let good = lab_dir().join(format!("updates/{node}/bundle.tar"));
    let broken = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-broken-bundle.tar");
    break_node_json(&good, &broken);
    let t = Instant::now();
    let out = pigsty(&[
        "update",
        node,
        "--bundle",
        broken.to_str().unwrap(),
        "--tries",
        "1",
        "--trial-timeout",
        "150",
        "--no-wait",
    ]);
    assert!(
        out.status.success(),
        "lab update {node} --bundle broken: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    let bad = pigsty::bundle::digest(&std::fs::read(&broken).unwrap());
    let lab = pigsty::lab::Lab::open(&lab_dir()).unwrap();
    lab.wait_fallback(node, &bad, Duration::from_secs(1200))
        .unwrap_or_else(|e| panic!("{e:#}"));
    until(
        &format!("{node} streaming after its fallback"),
        Duration::from_secs(300),
        || formed(3),
    );
    figures.insert("update_fallback_s", t.elapsed().as_secs_f64());
    assert_eq!(clone_count(node), basebackups, "{node} was cloned again");
    assert_eq!(
        psql(ip, 5432, "SHOW log_min_duration_statement").unwrap(),
        "1234ms",
        "{node} runs the kept slot again"
    );
    println!(
        "{node} fell back from a broken image in {:.0} s",
        figures["update_fallback_s"]
    );

    // 4. A user and a database added to the inventory (on top of the node's kept
    //    parameter): `lab rollout` takes them in on every node without a reboot. The
    //    member that leads applies the SQL (every member carries it); every
    //    pgbouncer reloads its user and database lists; the new user reaches the
    //    new database through each node's pgbouncer.
    let added = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-added.yml");
    let inv = std::fs::read_to_string(&changed).unwrap();
    let users = "        pg_databases:\n";
    assert!(inv.contains(users), "inventory/lab.yml has pg_databases");
    let inv = inv.replacen(
        users,
        "          - { name: dbuser_app, password: DBUser.App, pgbouncer: true, roles: [dbrole_readwrite] }\n        pg_databases:\n          - { name: app, owner: dbuser_app }\n",
        1,
    );
    std::fs::write(&added, inv).unwrap();
    let boot_id = |n: &str| lab_ssh(n, "cat /proc/sys/kernel/random/boot_id");
    let boots: Vec<String> = NODES.iter().map(|(n, _)| boot_id(n)).collect();
    let t = Instant::now();
    let report = rollout(&added);
    let weights: Vec<String> = report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            format!(
                "{} {}",
                n["nodename"].as_str().unwrap(),
                n["weight"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        weights,
        [
            "pg-lab-1 database",
            "pg-lab-2 database",
            "pg-lab-3 database"
        ],
        "adding a user and a database changes database objects only"
    );
    figures.insert("apply_user_db_s", t.elapsed().as_secs_f64());
    for ((name, ip), before) in NODES.iter().zip(&boots) {
        assert_eq!(&boot_id(name), before, "{name} rebooted");
        let got = until(
            &format!("dbuser_app in app through {name}'s pgbouncer"),
            Duration::from_secs(120),
            || {
                psql_as(
                    ip,
                    6432,
                    "user=dbuser_app password=DBUser.App dbname=app connect_timeout=5",
                    "SELECT current_user || '@' || current_database()",
                )
            },
        );
        assert_eq!(got, "dbuser_app@app");
    }
    // Each node now reports the plan the changed inventory compiles to: `lab diff`
    // finds every node the same against it, and every node differing from lab.yml.
    let states = |inv: &std::path::Path| -> Vec<String> {
        let out = pigsty_with(inv, &["diff", "--json"]);
        assert!(
            out.status.success(),
            "lab diff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        rows.as_array()
            .unwrap()
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r["nodename"].as_str().unwrap(),
                    r["state"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(
        states(&added),
        ["pg-lab-1 same", "pg-lab-2 same", "pg-lab-3 same"]
    );
    assert_eq!(
        states(&root().join("inventory/lab.yml")),
        ["pg-lab-1 differs", "pg-lab-2 differs", "pg-lab-3 differs"]
    );
    until(
        "the cluster after the applies",
        Duration::from_secs(120),
        || formed(3),
    );
    println!(
        "user and database applied on every node without a reboot in {:.0} s",
        figures["apply_user_db_s"]
    );

    // 5. One PostgreSQL parameter (a restart) and one etcd setting changed for the
    //    whole cluster: `lab diff` shows the three nodes, `lab rollout` takes them in
    //    (replicas, a switchover through Patroni, the former primary) while a writer
    //    commits through haproxy's primary port every 100 ms. Afterwards every node
    //    runs the new plan, no committed row is lost, no replica was cloned again,
    //    etcd kept quorum throughout, and the write outage is printed.
    //    The parameter is raised (250 → 512): a replica runs at least its primary's
    //    value of it (Patroni takes the higher of the two), so replicas first, then
    //    the switchover, leaves every member at the new value. (A lowered one stays
    //    pending on the new primary after the switchover: the rollout then restarts
    //    what Patroni marks pending_restart, which this raise must not need.)
    let tuned = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-tuned.yml");
    let inv = std::fs::read_to_string(&added).unwrap();
    let inv = inv
        .replacen(
            "        pg_cluster: pg-lab\n",
            "        pg_cluster: pg-lab\n        pg_parameters: { max_locks_per_transaction: 512 }\n",
            1,
        )
        // The node whose own pg_parameters (step 2) replace its cluster's map takes
        // the parameter there too: the members agree (else `pigsty` warns).
        .replacen(
            "pg_parameters: { log_min_duration_statement: 1234 }",
            "pg_parameters: { log_min_duration_statement: 1234, max_locks_per_transaction: 512 }",
            1,
        )
        .replacen(
            "etcd_heartbeat_interval: 500",
            "etcd_heartbeat_interval: 400",
            1,
        );
    assert_eq!(inv.matches("max_locks_per_transaction: 512").count(), 2);
    assert!(inv.contains("interval: 400"));
    std::fs::write(&tuned, inv).unwrap();
    assert_eq!(
        states(&tuned),
        ["pg-lab-1 differs", "pg-lab-2 differs", "pg-lab-3 differs"]
    );
    let clones: Vec<usize> = NODES.iter().map(|(n, _)| clone_count(n)).collect();
    let boots: Vec<String> = NODES.iter().map(|(n, _)| boot_id(n)).collect();
    let leader = formed(3).unwrap();
    let before_rows = count_rows(ip_of(&leader), 5432).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writes = writer(ip_of(&leader), 100_000, stop.clone());
    let quorum = etcd_watch(stop.clone());
    std::thread::sleep(Duration::from_secs(3));
    let t = Instant::now();
    let report = rollout(&tuned);
    let took = t.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (ids, outage) = writes.join().unwrap();
    let (fewest, leaderless, samples) = quorum.join().unwrap();
    figures.insert("rollout_etcd_leaderless_s", leaderless);
    figures.insert("rollout_s", took);
    figures.insert("rollout_write_outage_s", outage);
    let kinds: Vec<String> = report["plan"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            format!(
                "{} {}",
                s["node"].as_str().unwrap(),
                s["kind"].as_str().unwrap()
            )
        })
        .collect();
    println!("rollout plan: {kinds:?}");
    assert_eq!(
        kinds.iter().filter(|k| k.ends_with(" update")).count(),
        3,
        "three nodes updated: {kinds:?}"
    );
    assert!(
        kinds.contains(&format!("{leader} switchover")),
        "the primary {leader} hands over first: {kinds:?}"
    );
    assert_eq!(
        kinds.last().unwrap(),
        &format!("{leader} update"),
        "the former primary goes last"
    );
    assert!(!ids.is_empty(), "the writer committed nothing");
    let new_leader = until(
        "the cluster after the rollout",
        Duration::from_secs(300),
        || formed(3),
    );
    assert_ne!(new_leader, leader, "the switchover moved the primary");
    let pending: Vec<String> = cluster(&[])
        .unwrap()
        .into_iter()
        .filter(|m| m.pending_restart)
        .map(|m| m.name)
        .collect();
    assert!(pending.is_empty(), "left pending a restart: {pending:?}");
    let got: i64 = psql(
        ip_of(&new_leader),
        5432,
        "SELECT count(*) FROM lab_rows WHERE id > 100000",
    )
    .unwrap()
    .parse()
    .unwrap();
    assert_eq!(got, ids.len() as i64, "every committed row is there");
    assert_eq!(
        count_rows(ip_of(&new_leader), 5432).unwrap(),
        before_rows + ids.len() as i64
    );
    assert!(samples > 0);
    assert!(
        fewest >= 2,
        "etcd lost quorum: {fewest} member(s) answering at one point"
    );
    for (i, (name, ip)) in NODES.iter().enumerate() {
        assert_eq!(clone_count(name), clones[i], "{name} was cloned again");
        assert_eq!(boot_id(name), boots[i], "{name} rebooted");
        assert_eq!(
            psql(ip, 5432, "SHOW max_locks_per_transaction").unwrap(),
            "512",
            "the parameter in effect on {name}"
        );
        let env = lab_ssh(
            name,
            "sudo cat /proc/$(pidof etcd)/environ | tr '\\0' '\\n' | grep HEARTBEAT",
        );
        assert_eq!(env.trim(), "ETCD_HEARTBEAT_INTERVAL=400", "{name}'s etcd");
    }
    assert_eq!(
        states(&tuned),
        ["pg-lab-1 same", "pg-lab-2 same", "pg-lab-3 same"]
    );
    println!(
        "rollout of a PostgreSQL parameter and an etcd setting on 3 nodes in {took:.0} s: \
         {} rows committed through haproxy, none lost, longest write outage {outage:.1} s, \
         etcd never below {fewest} members answering ({samples} samples), longest \
         stretch without a Raft leader {leaderless:.0} s",
        ids.len()
    );

    // Every node, whichever way it booted, serves SSH.
    for (name, ip) in NODES {
        let banner = until(
            &format!("an SSH banner from {name}"),
            Duration::from_secs(60),
            || ssh_banner(ip),
        );
        assert!(banner.starts_with("SSH-2.0-"), "{name}: {banner:?}");
    }
    // Every target an infra node's Prometheus would scrape in this fleet answers.
    let scraped = scrape_targets();
    println!("scrape targets up: {}", scraped.join(", "));
    // And the infra node's Prometheus (the admin node, pg-lab-1) has every one of
    // them up.
    let (name, ip) = NODES[0];
    let up = prometheus_targets_up(ip, scraped.len());
    println!("{name}: Prometheus has {up} targets up");
    // Every node's journal reaches the infra node (systemd-journal-upload to its
    // systemd-journal-remote), which serves it (journal-gatewayd on 19531).
    for (node, _) in NODES {
        let last = until(
            &format!("{node}'s journal on the infra node"),
            Duration::from_secs(120),
            || {
                let page = http_request(
                    &format!("{ip}:19531"),
                    &format!("/entries?_HOSTNAME={node}"),
                    "Accept: application/json\r\nRange: entries=:-3:3\r\n",
                )?;
                let (head, body) = page.split_once("\r\n\r\n").unwrap_or((&page, ""));
                let entries: Vec<serde_json::Value> = body
                    .lines()
                    .filter_map(|l| serde_json::from_str(l).ok())
                    .collect();
                match entries.last() {
                    Some(e) if entries.iter().all(|e| e["_HOSTNAME"] == node) => {
                        Ok(e["MESSAGE"].as_str().unwrap_or_default().to_string())
                    }
                    _ => Err(format!(
                        "{} ({} entries)",
                        head.lines().next().unwrap_or_default(),
                        entries.len()
                    )),
                }
            },
        );
        println!("{name} holds {node}'s journal, last: {last:.100}");
    }
    let status = ok(&["status"]);
    println!("{status}");

    println!("lab figures:");
    for (k, v) in &figures {
        println!("  {k:<24} {v:>7.1}");
    }
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("lab-figures.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&figures).unwrap()).unwrap();
}
