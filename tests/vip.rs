//! The cluster VIP (`pg_vip_enabled`): the rendered `/usr/lib/pigsty/pg-vip`, which
//! Patroni calls on_start, on_role_change and on_stop, binds the VIP while its member
//! leads and drops it otherwise. Run for real with iproute2 and arping in a network
//! namespace the test creates (a veth pair, so the interface does ARP), on the
//! interface it finds by the node's address (`pg_vip_interface: auto`) and on a
//! named one. The sudoers rule that lets the dbsu run it is checked by `visudo`.
//! Root only (network namespaces): ignored unless asked for.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use pigsty::compile::compile;
use pigsty::inventory::load_str;

const NODE_IP: &str = "10.98.0.11";
const VIP: &str = "10.98.0.2";

fn inventory(interface: &str) -> String {
    format!(
        "all:\n  children:\n    etcd: {{ hosts: {{ {NODE_IP}: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}\n    pg-v:\n      hosts: {{ {NODE_IP}: {{ pg_seq: 1, pg_role: primary }} }}\n      vars:\n        pg_cluster: pg-v\n        pg_vip_enabled: true\n        pg_vip_address: {VIP}/24\n        pg_vip_interface: {interface}\n  vars:\n    admin_ip: {NODE_IP}\n    node_repo_modules: node\n"
    )
}

/// The node's rendered files by path.
fn rendered(interface: &str) -> std::collections::BTreeMap<String, (Vec<u8>, u32)> {
    let loaded = load_str("vip.yml", &inventory(interface)).unwrap_or_else(|e| panic!("{e:?}"));
    let node = &loaded.fleet.nodes[0];
    let c = compile(&loaded.fleet, node).unwrap();
    assert!(
        c.plan.packages.iter().any(|p| p == "iputils-arping"),
        "the VIP's announcements need arping: {:?}",
        c.plan.packages
    );
    c.files
        .into_iter()
        .map(|f| (f.path, (f.content, f.mode)))
        .collect()
}

/// A network namespace with a veth pair: `pv0` holds the node's address, `pv1` a
/// neighbour's. Deleted when dropped.
struct Netns(String);

impl Netns {
    fn new() -> Self {
        let name = format!("pigsty-vip-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let out = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .unwrap();
        assert!(out.status.success(), "ip netns add: {}", stderr(&out));
        let ns = Netns(name);
        for args in [
            "link set lo up",
            "link add pv0 type veth peer name pv1",
            &format!("addr add {NODE_IP}/24 dev pv0"),
            "addr add 10.98.0.12/24 dev pv1",
            "link set pv0 up",
            "link set pv1 up",
        ] {
            let out = ns.exec(&format!("ip {args}"));
            assert!(out.status.success(), "ip {args}: {}", stderr(&out));
        }
        ns
    }

    fn exec(&self, cmd: &str) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.0, "sh", "-c", cmd])
            .output()
            .unwrap()
    }

    /// The interfaces that hold the VIP.
    fn vip_on(&self) -> Vec<String> {
        let out = self.exec("ip -o -4 addr show");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!(" {VIP}/24 ")))
            .map(|l| l.split_whitespace().nth(1).unwrap_or("").to_string())
            .collect()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn write_script(dir: &Path, name: &str, content: &[u8]) -> String {
    let path = dir.join(name);
    std::fs::write(&path, content).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.display().to_string()
}

#[test]
#[ignore = "needs root: creates a network namespace and binds addresses in it"]
fn the_vip_follows_the_role_patroni_gives() {
    support::require_root("network namespaces");
    support::require_tools(&["/usr/sbin/ip", "/usr/bin/arping", "/usr/sbin/visudo"]);
    let ns = Netns::new();
    let dir = tempfile::tempdir().unwrap();

    for interface in ["auto", "pv0"] {
        let files = rendered(interface);
        let (script, mode) = &files["/usr/lib/pigsty/pg-vip"];
        assert_eq!(*mode, 0o755);
        let script = write_script(dir.path(), &format!("pg-vip-{interface}"), script);
        let patroni = String::from_utf8_lossy(&files["/etc/patroni/patroni.yml"].0).into_owned();
        for cb in ["on_start", "on_stop", "on_role_change"] {
            assert!(
                patroni.contains(&format!("    {cb}: \"/usr/lib/pigsty/pg-vip\"")),
                "{cb} in patroni.yml:\n{patroni}"
            );
        }
        let call = |action: &str, role: &str| {
            let out = ns.exec(&format!("{script} {action} {role} pg-v"));
            assert!(
                out.status.success(),
                "{interface}: {action} {role}: {}",
                stderr(&out)
            );
            ns.vip_on()
        };
        let none: Vec<String> = Vec::new();
        assert_eq!(
            call("on_start", "replica"),
            none,
            "{interface}: a replica holds no VIP"
        );
        assert_eq!(
            call("on_role_change", "primary"),
            ["pv0"],
            "{interface}: promoted"
        );
        assert_eq!(
            call("on_role_change", "primary"),
            ["pv0"],
            "{interface}: again, once"
        );
        assert_eq!(
            call("on_role_change", "demoted"),
            none,
            "{interface}: demoted"
        );
        assert_eq!(call("on_start", "standby_leader"), ["pv0"], "{interface}");
        assert_eq!(call("on_stop", "primary"), none, "{interface}: stopped");
    }

    // A node whose address is on no interface leaves the VIP alone and says so.
    let files = rendered("auto");
    let text =
        String::from_utf8_lossy(&files["/usr/lib/pigsty/pg-vip"].0).replace(NODE_IP, "10.98.0.99");
    let script = write_script(dir.path(), "pg-vip-elsewhere", text.as_bytes());
    let out = ns.exec(&format!("{script} on_role_change primary pg-v"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no interface holds 10.98.0.99"),
        "{}",
        stderr(&out)
    );
    assert!(ns.vip_on().is_empty());

    // The dbsu may run exactly this script as root, and sudo accepts the rule.
    let (rule, mode) = &files["/etc/sudoers.d/pigsty-pg-vip"];
    assert_eq!(*mode, 0o440);
    let rule_text = String::from_utf8_lossy(rule);
    assert!(
        rule_text.contains("postgres ALL=(root) NOPASSWD: /usr/lib/pigsty/pg-vip"),
        "{rule_text}"
    );
    let path = dir.path().join("pigsty-pg-vip");
    std::fs::write(&path, rule).unwrap();
    let out = Command::new("visudo")
        .arg("-cf")
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "visudo: {}{}",
        String::from_utf8_lossy(&out.stdout),
        stderr(&out)
    );
}
