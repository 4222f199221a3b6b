//! The node VIP (`vip_enabled`): two nodes of one node cluster run Debian's keepalived
//! with their rendered configuration, each in a network namespace of its own joined by
//! a veth pair, as two machines on one LAN. The rendered `keepalived-conf` finds each
//! node's interface (`vip_interface: auto`), `keepalived -t` accepts the result, the
//! VIP lands on the `vip_role: master` node, and moves to the other when that node's
//! keepalived dies (SIGKILL, as a crash). Root only (network namespaces): ignored
//! unless asked for. Every wait is bounded.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use pigsty::compile::compile;
use pigsty::inventory::load_str;

const A: &str = "10.97.0.11";
const B: &str = "10.97.0.12";
const VIP: &str = "10.97.0.2";

const INVENTORY: &str = "all:
  children:
    web:
      hosts:
        10.97.0.11: { vip_role: master }
        10.97.0.12: {}
      vars: { node_cluster: web, vip_enabled: true, vip_address: 10.97.0.2, vip_vrid: 97 }
  vars: { admin_ip: 10.97.0.11, node_repo_modules: node }
";

/// Each node's rendered files by path: (content, mode).
fn rendered() -> BTreeMap<String, BTreeMap<String, (Vec<u8>, u32)>> {
    let loaded = load_str("node-vip.yml", INVENTORY).unwrap_or_else(|e| panic!("{e:?}"));
    loaded
        .fleet
        .nodes
        .iter()
        .map(|node| {
            let c = compile(&loaded.fleet, node).unwrap();
            assert!(
                c.plan.packages.iter().any(|p| p == "keepalived"),
                "a node VIP needs keepalived: {:?}",
                c.plan.packages
            );
            assert!(
                c.plan.services.iter().any(|s| s == "keepalived.service"),
                "{:?}",
                c.plan.services
            );
            let files = c
                .files
                .into_iter()
                .map(|f| (f.path, (f.content, f.mode)))
                .collect();
            (node.ip.to_string(), files)
        })
        .collect()
}

/// Two namespaces, one per node, joined by a veth pair (`kv0` in the first, `kv1` in
/// the second). Deleted when dropped.
struct Lan {
    ns: [String; 2],
}

impl Lan {
    fn new() -> Lan {
        let ns = [
            format!("pigsty-kv-a-{}", std::process::id()),
            format!("pigsty-kv-b-{}", std::process::id()),
        ];
        for n in &ns {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            run_ok(Command::new("ip").args(["netns", "add", n]));
        }
        let lan = Lan { ns };
        run_ok(Command::new("ip").args([
            "link", "add", "kv0", "netns", &lan.ns[0], "type", "veth", "peer", "name", "kv1",
            "netns", &lan.ns[1],
        ]));
        for (i, (dev, ip)) in [("kv0", A), ("kv1", B)].iter().enumerate() {
            for args in [
                "link set lo up".to_string(),
                format!("addr add {ip}/24 dev {dev}"),
                format!("link set {dev} up"),
            ] {
                let out = lan.exec(i, &format!("ip {args}"));
                assert!(out.status.success(), "ip {args}: {}", stderr(&out));
            }
        }
        lan
    }

    fn cmd(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns[i], program]);
        c
    }

    fn exec(&self, i: usize, sh: &str) -> Output {
        self.cmd(i, "sh").args(["-c", sh]).output().unwrap()
    }

    /// Whether namespace `i` holds the VIP.
    fn holds_vip(&self, i: usize) -> bool {
        let out = self.exec(i, "ip -o -4 addr show");
        String::from_utf8_lossy(&out.stdout).contains(&format!(" {VIP}/32 "))
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for n in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", n]).status();
        }
    }
}

/// A keepalived process, killed when dropped.
struct Keepalived(Child);

impl Drop for Keepalived {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_ok(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", stderr(&out));
    out
}

fn stderr(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn write(dir: &Path, name: &str, content: &[u8], mode: u32) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    path
}

/// Wait, bounded, until `f` holds.
fn until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while start.elapsed() < limit {
        if f() {
            return start.elapsed();
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    panic!("{what}: not within {limit:?}");
}

#[test]
#[ignore = "needs root: creates network namespaces and runs keepalived in them"]
fn the_node_vip_moves_when_its_holder_dies() {
    support::require_root("network namespaces");
    support::require_tools(&["/usr/sbin/ip", "/usr/sbin/keepalived"]);
    let nodes = rendered();
    let lan = Lan::new();
    let dir = tempfile::tempdir().unwrap();
    let mut running = Vec::new();
    for (i, ip) in [A, B].iter().enumerate() {
        let files = &nodes[*ip];
        let (conf, mode) = &files["/etc/keepalived/keepalived.conf"];
        assert_eq!(*mode, 0o600, "it holds the VRRP password");
        let text = String::from_utf8_lossy(conf);
        let peer = if i == 0 { B } else { A };
        assert!(
            text.contains(&format!("unicast_src_ip {ip}"))
                && text.contains(&format!("    {peer}\n")),
            "{text}"
        );
        assert!(
            text.contains("auth_pass web-97"),
            "Pigsty's default password: {text}"
        );
        let (script, mode) = &files["/usr/lib/pigsty/keepalived-conf"];
        assert_eq!(*mode, 0o755);
        let node_dir = dir.path().join(ip);
        std::fs::create_dir_all(&node_dir).unwrap();
        let src = write(&node_dir, "keepalived.conf", conf, 0o600);
        let script = write(&node_dir, "keepalived-conf", script, 0o755);
        let dst = node_dir.join("run/keepalived.conf");
        let out = lan
            .cmd(i, script.to_str().unwrap())
            .arg(&src)
            .arg(&dst)
            .output()
            .unwrap();
        assert!(out.status.success(), "keepalived-conf: {}", stderr(&out));
        let written = std::fs::read_to_string(&dst).unwrap();
        let dev = if i == 0 { "kv0" } else { "kv1" };
        assert!(
            written.contains(&format!("  interface {dev}\n")),
            "{written}"
        );
        let mode = std::fs::metadata(&dst).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let check = lan
            .cmd(i, "keepalived")
            .arg("-t")
            .arg("-f")
            .arg(&dst)
            .output()
            .unwrap();
        assert!(check.status.success(), "keepalived -t: {}", stderr(&check));
        let log = std::fs::File::create(node_dir.join("keepalived.log")).unwrap();
        let child = lan
            .cmd(i, "keepalived")
            .args(["--dont-fork", "--log-console", "--vrrp", "--use-file"])
            .arg(&dst)
            .arg("--pid")
            .arg(node_dir.join("keepalived.pid"))
            .arg("--vrrp_pid")
            .arg(node_dir.join("vrrp.pid"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        running.push(Keepalived(child));
    }
    let logs = || {
        [A, B]
            .iter()
            .map(|ip| {
                std::fs::read_to_string(dir.path().join(ip).join("keepalived.log"))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n----\n")
    };
    let took = until(
        "the VIP on the master node",
        Duration::from_secs(30),
        || lan.holds_vip(0) && !lan.holds_vip(1),
    );
    eprintln!("VIP on {A} after {took:?}");
    // The holder crashes: the other node takes the VIP after its master-down timer.
    let mut a = running.remove(0);
    a.0.kill().unwrap();
    a.0.wait().unwrap();
    let took = until("the VIP on the other node", Duration::from_secs(30), || {
        lan.holds_vip(1)
    });
    eprintln!("VIP moved to {B} {took:?} after the holder died");
    assert!(lan.holds_vip(1), "{}", logs());
}

#[test]
fn a_node_vip_needs_its_address_and_router_id() {
    let text = INVENTORY.replace(", vip_vrid: 97", "");
    let err = format!("{:?}", load_str("x.yml", &text).unwrap_err());
    assert!(err.contains("vip_enabled needs vip_vrid"), "{err}");
    assert!(err.contains("line: 7"), "at vip_enabled's line: {err}");
    let text = INVENTORY.replace(", vip_address: 10.97.0.2", "");
    let err = format!("{:?}", load_str("x.yml", &text).unwrap_err());
    assert!(err.contains("vip_enabled needs vip_address"), "{err}");
    let text = INVENTORY.replace("vip_vrid: 97", "vip_vrid: 255");
    let err = format!("{:?}", load_str("x.yml", &text).unwrap_err());
    assert!(err.contains("outside 1 to 254"), "{err}");
    let text = INVENTORY.replace("vip_vrid: 97", "vip_vrid: 97, vip_auth_pass: 'a b'");
    let err = format!("{:?}", load_str("x.yml", &text).unwrap_err());
    assert!(err.contains("vip_auth_pass may not hold blanks"), "{err}");
}
