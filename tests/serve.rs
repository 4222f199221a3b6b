//! `pigsty serve` as a user runs it, on loopback: an inventory whose nodes are
//! 127.0.0.x, builds laid out as `build-image` writes them (small stand-in files with
//! a real manifest), the server started as a process and stopped by SIGTERM. The
//! install itself is `pigsty agent install` against a file as its disk.
//! `--dhcp` (dnsmasq, root, a network namespace) is the ignored test at the end.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

const INVENTORY: &str = r#"all:
  children:
    etcd:
      hosts:
        127.0.0.1: { etcd_seq: 1 }
      vars: { etcd_cluster: etcd }
    pg-test:
      hosts:
        127.0.0.1: { pg_seq: 1, pg_role: primary, node_mac: "52:54:00:00:00:01", node_disk: /dev/disk/by-id/virtio-pg1 }
        127.0.0.2: { pg_seq: 2, pg_role: replica, node_mac: "52:54:00:00:00:02" }
        127.0.0.3: { pg_seq: 3, pg_role: replica }
      vars: { pg_cluster: pg-test }
  vars:
    admin_ip: 127.0.0.1
"#;

const MAC1: &str = "52-54-00-00-00-01";
const MAC2: &str = "52-54-00-00-00-02";

fn pigsty(inv: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_pigsty"));
    c.arg("-i").arg(inv);
    // The PKI directory beside the inventory does not exist: no CA.
    c
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn digest_of(inv: &Path, node: &str) -> String {
    let out = pigsty(inv)
        .args(["plan", "--json", "--role", node])
        .output()
        .unwrap();
    assert!(out.status.success());
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    plan["digest"].as_str().unwrap().to_string()
}

/// A build of `node` as `build-image --format pxe,raw` lays it out, with small
/// stand-in artifacts; returns each artifact's sha256 by name.
fn fake_build(out: &Path, node: &str, digest: &str) -> std::collections::BTreeMap<String, String> {
    let dir = out.join(node);
    std::fs::create_dir_all(dir.join("pxe")).unwrap();
    let mut artifacts = Vec::new();
    let mut by_name = std::collections::BTreeMap::new();
    for (name, len) in [
        ("pxe/vmlinuz", 1000usize),
        ("pxe/initrd.img", 2000),
        ("pxe/root.squashfs", 3000),
        ("disk.raw", 3 << 20),
        ("disk.map.json", 100),
    ] {
        let bytes: Vec<u8> = (0..len).map(|i| (i * 7 + name.len()) as u8).collect();
        std::fs::write(dir.join(name), &bytes).unwrap();
        let hex = sha(&bytes);
        by_name.insert(name.to_string(), hex.clone());
        artifacts.push(serde_json::json!({"name": name, "sha256": hex, "size": len}));
    }
    let manifest = serde_json::json!({
        "node": node, "plan_digest": digest, "artifacts": artifacts,
    });
    std::fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
    by_name
}

fn check(inv: &Path, out: &Path) -> Vec<(String, String)> {
    let o = pigsty(inv)
        .args(["serve", "--check", "--json", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: Vec<serde_json::Value> = serde_json::from_slice(&o.stdout).unwrap();
    v.iter()
        .map(|e| {
            (
                e["node"].as_str().unwrap().to_string(),
                e["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// `pigsty serve` running; stopped by SIGTERM when dropped (if still running).
struct Serving {
    child: Child,
    base: String,
}

impl Serving {
    fn start(inv: &Path, out: &Path, extra: &[&str]) -> Serving {
        let mut child = pigsty(inv)
            .args(["serve", "--listen", "127.0.0.1:0", "--out"])
            .arg(out)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        Serving { child, base }
    }

    fn get(&self, path: &str) -> (u16, String) {
        let r = client(None)
            .get(format!("{}{path}", self.base))
            .send()
            .unwrap();
        (r.status().as_u16(), r.text().unwrap())
    }

    /// SIGTERM; its exit status.
    fn stop(mut self) -> std::process::ExitStatus {
        terminate(&self.child);
        let status = wait_bounded(&mut self.child, Duration::from_secs(20));
        std::mem::forget(self);
        status
    }
}

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn terminate(child: &Child) {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

fn wait_bounded(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    while start.elapsed() < limit {
        if let Some(s) = child.try_wait().unwrap() {
            return s;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("not stopped within {limit:?}");
}

/// A client; `from`: the local address its connections come from.
fn client(from: Option<&str>) -> reqwest::blocking::Client {
    let mut b = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .no_proxy();
    if let Some(ip) = from {
        b = b.local_address(Some(ip.parse().unwrap()));
    }
    b.build().unwrap()
}

fn setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("pigsty.yml");
    std::fs::write(&inv, INVENTORY).unwrap();
    let out = dir.path().join("out");
    std::fs::create_dir_all(&out).unwrap();
    (dir, inv, out)
}

#[test]
fn nodes_are_installed_by_mac_then_boot_from_disk() {
    let (dir, inv, out) = setup();
    assert_eq!(
        check(&inv, &out),
        [
            ("pg-test-1".to_string(), "not built".to_string()),
            ("pg-test-2".to_string(), "not built".to_string()),
            ("pg-test-3".to_string(), "no node_mac".to_string()),
        ]
    );
    let a1 = fake_build(&out, "pg-test-1", &digest_of(&inv, "pg-test-1"));
    // pg-test-2's build is of another inventory: refused, by name.
    fake_build(&out, "pg-test-2", &"0".repeat(64));
    let states = check(&inv, &out);
    assert_eq!(states[0].1, "install");
    assert_eq!(states[1].1, "stale");

    let s = Serving::start(&inv, &out, &[]);
    let (code, generic) = s.get("/boot.ipxe");
    assert_eq!(code, 200);
    assert!(generic.contains("chain --autofree ipxe/${mac:hexhyp}"));
    let (_, script) = s.get(&format!("/ipxe/{MAC1}"));
    assert!(
        script.contains(&format!(
            "kernel --name vmlinuz ../sha256/{}",
            a1["pxe/vmlinuz"]
        )),
        "{script}"
    );
    assert!(script.contains(&format!(
        "initrd --name initrd.img ../sha256/{}",
        a1["pxe/initrd.img"]
    )));
    assert!(script.contains(&format!(
        "fetch={}/sha256/{}/root.squashfs",
        s.base, a1["pxe/root.squashfs"]
    )));
    assert!(script.contains("systemd.unit=pigsty-install.target"));
    assert!(script.contains(&format!(
        "pigsty.install={}/sha256/{d} pigsty.install.sha256={d}",
        s.base,
        d = a1["disk.raw"]
    )));
    assert!(script.contains(&format!(
        "pigsty.install.map={}/sha256/{m} pigsty.install.map.sha256={m}",
        s.base,
        m = a1["disk.map.json"]
    )));
    assert!(
        script.contains(" pigsty.disk=/dev/disk/by-id/virtio-pg1"),
        "{script}"
    );
    assert!(!script.contains("pigsty.reinstall"));
    let (_, stale) = s.get(&format!("/ipxe/{MAC2}"));
    assert!(stale.contains("cannot be installed: stale"), "{stale}");
    assert!(!stale.contains("kernel"));
    let (_, unknown) = s.get("/ipxe/52-54-00-99-99-99");
    assert!(unknown.contains("not in the inventory"), "{unknown}");

    // The kernel goes to anyone; the disk (the node's secrets) to its address only.
    let from_other = client(Some("127.0.0.2"));
    let kernel = from_other
        .get(format!("{}/sha256/{}", s.base, a1["pxe/vmlinuz"]))
        .send()
        .unwrap();
    assert_eq!(kernel.status().as_u16(), 200);
    let disk_url = format!("{}/sha256/{}", s.base, a1["disk.raw"]);
    assert_eq!(
        from_other.get(&disk_url).send().unwrap().status().as_u16(),
        403
    );
    let part = client(None)
        .get(&disk_url)
        .header("Range", "bytes=10-19")
        .send()
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);

    // The node installs its disk and reports; from then on it boots from disk.
    let target = dir.path().join("vda");
    std::fs::write(&target, vec![0u8; 4 << 20]).unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args([
            "agent",
            "install",
            "--image",
            &disk_url,
            "--sha256",
            &a1["disk.raw"],
            "--disk",
        ])
        .arg(&target)
        .args(["--report", &format!("{}/installed/{MAC1}", s.base)])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        sha(&std::fs::read(&target).unwrap()[..3 << 20]),
        a1["disk.raw"]
    );
    let (_, script) = s.get(&format!("/ipxe/{MAC1}"));
    assert!(
        script.contains("booting from disk") && script.contains("\nexit\n"),
        "{script}"
    );
    // Its install window is closed: its disk goes to no one now, its own address
    // included; the kernel still to anyone.
    let closed = client(None).get(&disk_url).send().unwrap();
    assert_eq!(closed.status().as_u16(), 403);
    assert!(closed.text().unwrap().contains("install window is closed"));
    assert_eq!(
        client(None)
            .get(format!("{}/sha256/{}", s.base, a1["pxe/vmlinuz"]))
            .send()
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(s.stop().success(), "SIGTERM stops it cleanly");

    // The state outlives the server (the window stays closed); --reinstall forgets
    // it for that node and opens the window again.
    assert_eq!(check(&inv, &out)[0].1, "installed");
    let s = Serving::start(&inv, &out, &[]);
    assert!(s.get(&format!("/ipxe/{MAC1}")).1.contains("\nexit\n"));
    let disk_url = format!("{}/sha256/{}", s.base, a1["disk.raw"]);
    assert_eq!(
        client(None)
            .get(&disk_url)
            .send()
            .unwrap()
            .status()
            .as_u16(),
        403
    );
    drop(s);
    let s = Serving::start(&inv, &out, &["--reinstall", "pg-test-1"]);
    let (_, script) = s.get(&format!("/ipxe/{MAC1}"));
    assert!(script.contains("pigsty.reinstall"), "{script}");
    let disk_url = format!("{}/sha256/{}", s.base, a1["disk.raw"]);
    assert_eq!(
        client(None)
            .get(&disk_url)
            .header("Range", "bytes=0-9")
            .send()
            .unwrap()
            .status()
            .as_u16(),
        206
    );
    assert!(s.stop().success());
    assert_eq!(check(&inv, &out)[0].1, "install");

    // A node the inventory lacks: a usage error.
    let o = pigsty(&inv)
        .args(["serve", "--check", "--reinstall", "pg-nope-1", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("pg-nope-1"));
}

fn run(cmd: &str, args: &[&str]) {
    let st = Command::new(cmd).args(args).status().unwrap();
    assert!(st.success(), "{cmd} {args:?}");
}

/// Deletes the test's network namespace however the test ends.
struct Netns(&'static str);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", self.0]).status();
    }
}

/// `args` run inside namespace `ns`.
fn inns(ns: &str, args: &[&str]) {
    let mut a = vec!["netns", "exec", ns];
    a.extend_from_slice(args);
    run("ip", &a);
}

/// Whether a namespace test can run: root, and every path in `needs`. Outside CI it
/// says why it skips; under CI it fails instead.
fn can_run(needs: &[&str]) -> bool {
    let missing: Vec<&str> = needs
        .iter()
        .copied()
        .filter(|p| !Path::new(p).exists())
        .collect();
    if missing.is_empty() && rustix::process::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").map_or(true, |v| v != "true"),
        "under CI this test must run: missing {missing:?} or not root"
    );
    eprintln!("skipped: missing {missing:?} or not root");
    false
}

/// The server's namespace and a machine's, fresh, joined by a veth pair: `pxe0`
/// (192.0.2.1/24) in the server's, `pxe1` (no address) in the machine's, both up.
fn linked(server: &'static str, machine: &'static str) -> (Netns, Netns) {
    let (ns, m) = (Netns(server), Netns(machine));
    for n in [ns.0, m.0] {
        let _ = Command::new("ip").args(["netns", "del", n]).status();
        run("ip", &["netns", "add", n]);
    }
    inns(
        ns.0,
        &[
            "ip", "link", "add", "pxe0", "type", "veth", "peer", "name", "pxe1",
        ],
    );
    inns(ns.0, &["ip", "link", "set", "pxe1", "netns", m.0]);
    inns(ns.0, &["ip", "addr", "add", "192.0.2.1/24", "dev", "pxe0"]);
    for (n, dev) in [(ns.0, "lo"), (ns.0, "pxe0"), (m.0, "lo"), (m.0, "pxe1")] {
        inns(n, &["ip", "link", "set", dev, "up"]);
    }
    (ns, m)
}

/// `pigsty serve --dhcp` on pxe0 inside `ns`, and the line it prints once serving.
fn serve_dhcp(ns: &str, inv: &Path, out: &Path, extra: &[&str]) -> (Child, String) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, env!("CARGO_BIN_EXE_pigsty"), "-i"])
        .arg(inv)
        .args([
            "serve",
            "--listen",
            "192.0.2.1:0",
            "--dhcp",
            "--interface",
            "pxe0",
        ])
        .args(extra)
        .arg("--out")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.contains("dnsmasq pid"), "{line}");
    (child, line)
}

/// The pid of the dnsmasq a `serve --dhcp` started, from its first line.
fn dnsmasq_pid(line: &str) -> u32 {
    line.split("dnsmasq pid ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no dnsmasq pid in {line:?}"))
}

/// `--dhcp`: dnsmasq started on the provisioning interface (in a network namespace
/// of this test's own), answering TFTP with Debian's iPXE binaries, and stopped
/// with the server, which stops exactly the dnsmasq it started.
#[test]
#[ignore = "needs root, dnsmasq-base, ipxe and curl: creates network namespaces"]
fn dhcp_starts_dnsmasq_with_tftp_and_stops_it() {
    if !can_run(&[
        "/usr/sbin/dnsmasq",
        "/usr/lib/ipxe/undionly.kpxe",
        "/usr/bin/curl",
    ]) {
        return;
    }
    let (_dir, inv, out) = setup();
    fake_build(&out, "pg-test-1", &digest_of(&inv, "pg-test-1"));
    let (ns, machine) = linked("pigsty-serve-test", "pigsty-serve-machine");
    inns(
        machine.0,
        &["ip", "addr", "add", "192.0.2.50/24", "dev", "pxe1"],
    );
    let (mut child, line) = serve_dhcp(ns.0, &inv, &out, &[]);
    let pid = dnsmasq_pid(&line);
    let conf = std::fs::read_to_string(out.join("_serve/dnsmasq.conf")).unwrap();
    assert!(conf.contains("interface=pxe0"), "{conf}");
    assert!(
        conf.contains("dhcp-range=192.0.2.0,proxy,255.255.255.0"),
        "{conf}"
    );
    assert!(conf.contains("http://192.0.2.1:"), "{conf}");
    // TFTP from the other end of the link: Debian's BIOS iPXE, byte for byte.
    let got = out.join("got.0");
    let fetched = Command::new("ip")
        .args([
            "netns",
            "exec",
            machine.0,
            "curl",
            "-sS",
            "--max-time",
            "10",
            "-o",
        ])
        .arg(&got)
        .arg("tftp://192.0.2.1/undionly.0")
        .status()
        .unwrap();
    assert!(fetched.success());
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read("/usr/lib/ipxe/undionly.kpxe").unwrap()
    );
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "dnsmasq runs");
    terminate(&child);
    let status = wait_bounded(&mut child, Duration::from_secs(20));
    assert!(status.success(), "{status}");
    // The dnsmasq it started is gone (reaped by the server, no zombie left).
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(5) {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "dnsmasq stopped"
    );
    // A server killed outright leaves its dnsmasq behind: `stop_left` (what `lab
    // down` calls) finds exactly that one by its pid file and configuration.
    let (mut child, line) = serve_dhcp(ns.0, &inv, &out, &[]);
    let pid = dnsmasq_pid(&line);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(Path::new(&format!("/proc/{pid}")).exists(), "left running");
    assert_eq!(
        pigsty::serve::dhcp::stop_left(&out.join("_serve")).unwrap(),
        Some(pid)
    );
    assert!(!Path::new(&format!("/proc/{pid}")).exists(), "stopped");
    assert_eq!(
        pigsty::serve::dhcp::stop_left(&out.join("_serve")).unwrap(),
        None
    );
}

/// `--dhcp --dhcp-addresses`, for a network with no DHCP server of its own: a machine
/// with an inventory's node_mac gets that node's address and the iPXE binary to
/// boot; a machine with another MAC gets nothing. A real DHCP client (ISC dhclient)
/// asks from a network namespace of its own.
#[test]
#[ignore = "needs root, dnsmasq-base, ipxe and isc-dhcp-client: creates network namespaces"]
fn dhcp_addresses_go_to_the_inventorys_machines_only() {
    if !can_run(&[
        "/usr/sbin/dnsmasq",
        "/usr/lib/ipxe/undionly.kpxe",
        "/usr/sbin/dhclient",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("pigsty.yml");
    std::fs::write(
        &inv,
        "all:\n  children:\n    etcd:\n      hosts:\n        192.0.2.11: { etcd_seq: 1 }\n      vars: { etcd_cluster: etcd }\n    pg-one:\n      hosts:\n        192.0.2.11: { pg_seq: 1, pg_role: primary, node_mac: \"52:54:00:00:00:0b\" }\n      vars: { pg_cluster: pg-one }\n  vars:\n    admin_ip: 192.0.2.1\n",
    )
    .unwrap();
    let out = dir.path().join("out");
    fake_build(&out, "pg-one-1", &digest_of(&inv, "pg-one-1"));
    let (ns, machine) = linked("pigsty-serve-full", "pigsty-serve-asker");
    inns(
        machine.0,
        &["ip", "link", "set", "pxe1", "address", "52:54:00:00:00:0b"],
    );
    let (mut child, _) = serve_dhcp(ns.0, &inv, &out, &["--dhcp-addresses"]);
    // dhclient, bounded: one try of at most 10 s, its lease in a file of ours, and
    // nothing configured (its script is /bin/true).
    let conf = dir.path().join("dhclient.conf");
    std::fs::write(&conf, "timeout 10;\nretry 1;\n").unwrap();
    let ask = |tag: &str| -> (bool, String) {
        let lease = dir.path().join(format!("{tag}.leases"));
        let st = Command::new("ip")
            .args([
                "netns", "exec", machine.0, "timeout", "30", "dhclient", "-1", "-4",
            ])
            .args(["-sf", "/bin/true", "-cf"])
            .arg(&conf)
            .arg("-lf")
            .arg(&lease)
            .arg("-pf")
            .arg(dir.path().join(format!("{tag}.pid")))
            .arg("pxe1")
            .status()
            .unwrap();
        (
            st.success(),
            std::fs::read_to_string(&lease).unwrap_or_default(),
        )
    };
    let (ok, lease) = ask("known");
    assert!(ok, "the node's MAC gets a lease: {lease}");
    assert!(lease.contains("fixed-address 192.0.2.11;"), "{lease}");
    assert!(lease.contains("filename \"undionly.0\";"), "{lease}");
    inns(
        machine.0,
        &["ip", "link", "set", "pxe1", "address", "52:54:00:00:00:99"],
    );
    let (ok, lease) = ask("stranger");
    assert!(
        !ok && !lease.contains("fixed-address"),
        "a stranger gets no address: {lease}"
    );
    terminate(&child);
    assert!(wait_bounded(&mut child, Duration::from_secs(20)).success());
    // With --dhcp-pool, a stranger gets an address of the pool (and the iPXE binary,
    // which will be shown the unknown-machine script), the node still its own.
    let (mut child, _) = serve_dhcp(
        ns.0,
        &inv,
        &out,
        &["--dhcp-addresses", "--dhcp-pool", "192.0.2.200-192.0.2.201"],
    );
    let (ok, lease) = ask("pooled");
    assert!(ok, "a stranger gets a lease of the pool: {lease}");
    assert!(
        lease.contains("fixed-address 192.0.2.200;")
            || lease.contains("fixed-address 192.0.2.201;"),
        "{lease}"
    );
    assert!(lease.contains("filename \"undionly.0\";"), "{lease}");
    inns(
        machine.0,
        &["ip", "link", "set", "pxe1", "address", "52:54:00:00:00:0b"],
    );
    let (ok, lease) = ask("known-again");
    assert!(ok && lease.contains("fixed-address 192.0.2.11;"), "{lease}");
    terminate(&child);
    assert!(wait_bounded(&mut child, Duration::from_secs(20)).success());
    // A pool that holds a node's address is refused before dnsmasq starts.
    let bad = Command::new("ip")
        .args(["netns", "exec", ns.0])
        .arg(env!("CARGO_BIN_EXE_pigsty"))
        .arg("-i")
        .arg(&inv)
        .args([
            "serve",
            "--listen",
            "192.0.2.1:0",
            "--dhcp",
            "--interface",
            "pxe0",
            "--dhcp-addresses",
            "--dhcp-pool",
            "192.0.2.10-192.0.2.12",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success(), "{err}");
    assert!(err.contains("192.0.2.11") && err.contains("taken"), "{err}");
}
