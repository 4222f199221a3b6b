//! The node overlay, applied to a layer in memory: rendered files with their owners
//! resolved against the image's passwd/group, the agent binary, unit enablement,
//! and removal of everything that must not be baked into an image (machine-id, SSH
//! host keys, random seed, Debian's default PostgreSQL cluster, etcd data).

use std::collections::HashMap;

use anyhow::{Context, bail};

use super::tree::{Entry, Kind, Tree};
use crate::plan::NodePlan;
use crate::render::RenderedFile;

/// Module services that ship disabled: the first-boot agent starts them in order.
const MODULE_SERVICES: &[&str] = &[
    "etcd.service",
    "patroni.service",
    "postgresql.service",
    "pgbouncer.service",
    "haproxy.service",
    "redis-server.service",
    "redis-sentinel.service",
    "prometheus.service",
    "prometheus-alertmanager.service",
    "prometheus-postgres-exporter.service",
    "prometheus-redis-exporter.service",
    "prometheus-blackbox-exporter.service",
    "prometheus-pushgateway.service",
    "grafana-server.service",
    "nginx.service",
    "minio.service",
    // Debian's keepalived enables itself; the node VIP's keepalived is started by the
    // agent, after its configuration is made at boot.
    "keepalived.service",
];

/// Paths a layer may hold that identify one machine or one run.
const NOT_BAKED: &[&str] = &[
    "var/lib/dbus/machine-id",
    "var/lib/systemd/random-seed",
    // The cluster Debian's postgresql-<major> creates on install, per base's major.
    "etc/postgresql/15/main",
    "var/lib/postgresql/15/main",
    "var/log/postgresql/postgresql-15-main.log",
    "etc/postgresql/17/main",
    "var/lib/postgresql/17/main",
    "var/log/postgresql/postgresql-17-main.log",
    "var/lib/etcd/default",
    "var/cache/ldconfig/aux-cache",
];

/// Units the layer's packages enable that have no work on an immutable node, by the
/// target that wants them: it is never upgraded in place (apt), its package database
/// never changes (dpkg backup), nobody reads man pages on it, and it has no LVM
/// volumes for e2scrub to check or reap. Each would also run at first boot (the
/// timers are `Persistent=`; e2scrub_reap at every boot, about 40 s of CPU under
/// emulation), beside the join.
const DISABLED_UNITS: &[(&str, &str)] = &[
    ("timers.target", "apt-daily.timer"),
    ("timers.target", "apt-daily-upgrade.timer"),
    ("timers.target", "dpkg-db-backup.timer"),
    ("timers.target", "man-db.timer"),
    ("timers.target", "e2scrub_all.timer"),
    ("multi-user.target", "e2scrub_reap.service"),
];

/// `init=` of a node booted from a slot: the agent makes the node's root, then
/// execs systemd.
const INIT: &str = "#!/bin/sh
# Managed by pigsty: the first process of a node booted from an A/B slot. The agent
# lays the node bundle over this shared root, mounts the state from the data
# partition, and starts systemd (docs/updates.md).
exec /usr/local/bin/pigsty agent pre-init
";

/// On a node booted from an A/B slot: keep a boot on trial once the node is healthy,
/// or reboot it so that systemd-boot falls back to the other slot (docs/updates.md).
const BLESS_UNIT: &str =
    "# Managed by pigsty: keeps an A/B slot booted on trial once this node is healthy
# (its join done for this slot's bundle, the services it started active), or reboots
# it when it is not within the trial's bound, so that systemd-boot's boot counter
# runs out and the other slot boots (docs/updates.md). Nothing to do on a kept slot.
[Unit]
Description=pigsty: keep this A/B slot once the node is healthy, else fall back
ConditionKernelCommandLine=pigsty.slot
Wants=network-online.target
After=network-online.target pigsty-firstboot.service

[Service]
Type=exec
ExecStart=/usr/local/bin/pigsty agent bless
StandardOutput=journal+console
StandardError=journal+console

[Install]
WantedBy=multi-user.target
";

/// The node's image booted over the network to install its disk (`pigsty serve`
/// boots it with `systemd.unit=pigsty-install.target`): the network and the
/// installer, none of the node's own services (docs/pxe.md).
const INSTALL_TARGET: &str =
    "# Managed by pigsty: a network boot that installs this node's disk, and nothing
# else: none of the node's services start (docs/pxe.md).
[Unit]
Description=pigsty: install this node's disk from the network
Requires=basic.target
Wants=network-online.target pigsty-install.service
After=basic.target network-online.target
AllowIsolate=yes
";

const INSTALL_UNIT: &str =
    "# Managed by pigsty: writes this node's A/B disk from the image the kernel command
# line names (pigsty.install=), then reboots into it (docs/pxe.md). A failed install
# stays up with its reason on the console and reported to the server.
[Unit]
Description=pigsty: write this node's disk from the network
ConditionKernelCommandLine=pigsty.install
Wants=network-online.target
After=network-online.target

[Service]
Type=oneshot
ExecStart=/usr/local/bin/pigsty agent install --from-cmdline --reboot
StandardOutput=journal+console
StandardError=journal+console
";

/// A systemd generator: the units the agent enabled (recorded under
/// /var/lib/pigsty/enabled) are wanted by multi-user.target at every boot. A node
/// booted from a slot has a read-only /etc, where `systemctl enable` would link them.
const GENERATOR: &str = r#"#!/bin/sh
# Managed by pigsty: links the units the first-boot agent enabled (recorded under
# /var/lib/pigsty/enabled) into multi-user.target at every boot (docs/updates.md).
dir=/var/lib/pigsty/enabled
[ -d "$dir" ] || exit 0
wants="$1/multi-user.target.wants"
for f in "$dir"/*; do
    [ -e "$f" ] || continue
    unit=${f##*/}
    file=$unit
    case "$unit" in *@*.*) file="${unit%%@*}@.${unit##*.}" ;; esac
    for d in /etc/systemd/system /usr/lib/systemd/system /lib/systemd/system; do
        if [ -e "$d/$file" ]; then
            mkdir -p "$wants"
            ln -sf "$d/$file" "$wants/$unit"
            break
        fi
    done
done
exit 0
"#;

/// State paths every node keeps on its data partition when booted from a slot: the
/// writable parts of a read-only root (the journal and the agent's state under
/// /var, host keys under /etc/ssh, homes).
const STATE_ALWAYS: &[&str] = &["/var", "/etc/ssh", "/root", "/home"];

/// Top directories that are never state: the system's own.
const NEVER_STATE: &[&str] = &[
    "/", "/etc", "/usr", "/bin", "/sbin", "/lib", "/lib64", "/boot", "/dev", "/proc", "/sys",
    "/run", "/tmp",
];

/// The node's state paths: the fixed ones, and the top directory of every path its
/// tmpfiles.d make (`/pg`, `/data`, `/www`), or the directory itself below /etc
/// (`/etc/redis`).
pub fn state_paths(files: &[RenderedFile], extra: &[&str]) -> Vec<String> {
    let mut out: Vec<String> = STATE_ALWAYS.iter().map(|s| s.to_string()).collect();
    let mut add = |path: &str| {
        let mut parts = path.trim_start_matches('/').split('/');
        let top = format!("/{}", parts.next().unwrap_or_default());
        let state = if top == "/etc" {
            match parts.next() {
                Some(second) if !second.is_empty() => format!("/etc/{second}"),
                _ => return,
            }
        } else {
            top
        };
        let covered = out
            .iter()
            .any(|s| state == *s || state.starts_with(&format!("{s}/")));
        if !NEVER_STATE.contains(&state.as_str()) && !covered {
            out.push(state);
        }
    };
    for f in files
        .iter()
        .filter(|f| f.path.starts_with("/etc/tmpfiles.d/"))
    {
        for line in String::from_utf8_lossy(&f.content).lines() {
            let mut w = line.split_whitespace();
            if let (Some(kind), Some(path)) = (w.next(), w.next())
                && !kind.starts_with('#')
                && path.starts_with('/')
            {
                add(path);
            }
        }
    }
    for p in extra.iter().filter(|p| p.starts_with('/')) {
        add(p);
    }
    out
}

/// Users that sysusers.d would make at boot are made now: with their fixed id, or
/// (`u name -`) with one chosen as sysusers does (the highest free below 1000). A
/// node booted from a slot has a read-only /etc, and every build of the same inputs
/// picks the same ids.
fn make_sysusers(tree: &mut Tree, files: &[RenderedFile], epoch: u64) {
    let text = |tree: &Tree, p: &str| match tree.get(p).map(|e| &e.kind) {
        Some(Kind::File(d)) => String::from_utf8_lossy(d.as_slice()).into_owned(),
        _ => String::new(),
    };
    let mut passwd = text(tree, "etc/passwd");
    let mut group = text(tree, "etc/group");
    if passwd.is_empty() {
        return;
    }
    let ids = |t: &str| -> std::collections::HashSet<u64> {
        t.lines()
            .filter_map(|l| l.split(':').nth(2)?.parse().ok())
            .collect()
    };
    let mut appended: Vec<String> = Vec::new();
    for f in files
        .iter()
        .filter(|f| f.path.starts_with("/etc/sysusers.d/"))
    {
        for line in String::from_utf8_lossy(&f.content).lines() {
            let w: Vec<&str> = line.split_whitespace().collect();
            let (Some(&"u"), Some(&name), Some(&given)) = (w.first(), w.get(1), w.get(2)) else {
                continue;
            };
            let known = |t: &str| t.lines().any(|l| l.split(':').next() == Some(name));
            if known(&passwd) {
                continue;
            }
            let (taken_u, taken_g) = (ids(&passwd), ids(&group));
            let id = match given.parse::<u64>() {
                Ok(id) => id,
                Err(_) => match (100..1000u64)
                    .rev()
                    .find(|i| !taken_u.contains(i) && !taken_g.contains(i))
                {
                    Some(id) => id,
                    None => continue,
                },
            };
            let rest = line.splitn(4, char::is_whitespace).nth(3).unwrap_or("");
            let (gecos, after) = match rest.trim().strip_prefix('"') {
                Some(r) => r.split_once('"').unwrap_or((r, "")),
                None => ("", rest),
            };
            let mut tail = after.split_whitespace();
            let home = tail.next().unwrap_or("/");
            let shell = tail.next().unwrap_or("/usr/sbin/nologin");
            passwd.push_str(&format!(
                "{name}:x:{id}:{id}:{gecos}:{home}:{shell}
"
            ));
            if !known(&group) {
                group.push_str(&format!(
                    "{name}:x:{id}:
"
                ));
            }
            appended.push(name.to_string());
        }
    }
    if appended.is_empty() {
        return;
    }
    let put = |tree: &mut Tree, path: &str, content: String| {
        let mut e = tree
            .get(path)
            .cloned()
            .unwrap_or_else(|| Entry::file(Vec::new(), 0o644, 0, 0, epoch));
        e.kind = Kind::File(content.into_bytes().into());
        e.mtime = epoch;
        tree.insert(path, e);
    };
    let mut shadow = text(tree, "etc/shadow");
    let mut gshadow = text(tree, "etc/gshadow");
    for name in &appended {
        shadow.push_str(&format!(
            "{name}:!*:::::::
"
        ));
        gshadow.push_str(&format!(
            "{name}:!*::
"
        ));
    }
    put(tree, "/etc/passwd", passwd);
    put(tree, "/etc/group", group);
    if tree.get("etc/shadow").is_some() {
        put(tree, "/etc/shadow", shadow);
    }
    if tree.get("etc/gshadow").is_some() {
        put(tree, "/etc/gshadow", gshadow);
    }
}

/// Units enabled in every image, as `systemctl enable` would link them.
const ENABLE: &[(&str, &str, &str)] = &[
    (
        "multi-user.target.wants",
        crate::agent::FIRSTBOOT_UNIT,
        "/etc/systemd/system/pigsty-firstboot.service",
    ),
    (
        "multi-user.target.wants",
        "pigsty-tune.service",
        "/etc/systemd/system/pigsty-tune.service",
    ),
    (
        "multi-user.target.wants",
        "systemd-networkd.service",
        "/lib/systemd/system/systemd-networkd.service",
    ),
    (
        "sockets.target.wants",
        "systemd-networkd.socket",
        "/lib/systemd/system/systemd-networkd.socket",
    ),
    (
        "network-online.target.wants",
        "systemd-networkd-wait-online.service",
        "/lib/systemd/system/systemd-networkd-wait-online.service",
    ),
    (
        "ssh.service.wants",
        "pigsty-host-keys.service",
        "/etc/systemd/system/pigsty-host-keys.service",
    ),
    (
        "pigsty-firstboot.service.wants",
        "pigsty-host-keys.service",
        "/etc/systemd/system/pigsty-host-keys.service",
    ),
];

pub struct Overlay<'a> {
    pub plan: &'a NodePlan,
    pub files: &'a [RenderedFile],
    /// The agent: the running `pigsty` executable.
    pub agent: &'a [u8],
    pub epoch: u64,
}

/// What every node of a package set gets alike, on top of its layer: the shared root
/// (see docs/updates.md). It depends on the layer, the agent and the epoch alone.
pub fn apply_shared(tree: &mut Tree, agent: &[u8], epoch: u64) {
    for path in NOT_BAKED {
        tree.remove_tree(path);
    }
    // Host keys are made on first boot (pigsty-host-keys.service).
    tree.entries.retain(|k, _| {
        let p = k.as_path();
        !p.starts_with("etc/ssh/ssh_host_")
            && p != "etc/ssl/private/ssl-cert-snakeoil.key"
            && p != "etc/ssl/certs/ssl-cert-snakeoil.pem"
    });
    // An empty machine-id makes systemd generate one on first boot.
    tree.insert(
        "/etc/machine-id",
        Entry::file(Vec::new(), 0o444, 0, 0, epoch),
    );
    tree.insert(
        "/usr/local/bin/pigsty",
        Entry::file(agent.to_vec(), 0o755, 0, 0, epoch),
    );
    // The first process of a node booted from a slot (docs/updates.md), and the
    // generator that starts the units its agent enabled at every later boot.
    tree.insert(
        "/usr/lib/pigsty/init",
        Entry::file(INIT.as_bytes().to_vec(), 0o755, 0, 0, epoch),
    );
    tree.insert(
        "/usr/lib/systemd/system-generators/pigsty-enabled",
        Entry::file(GENERATOR.as_bytes().to_vec(), 0o755, 0, 0, epoch),
    );
    tree.insert(
        "/usr/lib/systemd/system/pigsty-bless.service",
        Entry::file(BLESS_UNIT.as_bytes().to_vec(), 0o644, 0, 0, epoch),
    );
    tree.insert(
        "/usr/lib/systemd/system/multi-user.target.wants/pigsty-bless.service",
        Entry::symlink("../pigsty-bless.service", epoch),
    );
    tree.insert(
        "/usr/lib/systemd/system/pigsty-install.target",
        Entry::file(INSTALL_TARGET.as_bytes().to_vec(), 0o644, 0, 0, epoch),
    );
    tree.insert(
        "/usr/lib/systemd/system/pigsty-install.service",
        Entry::file(INSTALL_UNIT.as_bytes().to_vec(), 0o644, 0, 0, epoch),
    );
    let wants = "etc/systemd/system";
    // Module services ship disabled: the agent starts them in order.
    for service in MODULE_SERVICES {
        tree.remove(&format!("{wants}/multi-user.target.wants/{service}"));
    }
    // Exporters start at boot where a node's plan runs them: its bundle links them.
    for (unit, by) in crate::compile::BOOT_UNITS {
        tree.remove(&format!("{wants}/{by}.wants/{unit}"));
    }
    for (by, unit) in DISABLED_UNITS {
        tree.remove(&format!("{wants}/{by}.wants/{unit}"));
    }
    for (dir, unit, target) in ENABLE {
        tree.insert(
            &format!("/{wants}/{dir}/{unit}"),
            Entry::symlink(target, epoch),
        );
    }
}

/// A node's tree as a shared root and the node bundle on top of it: the bundle holds
/// every entry of the node's tree that the root lacks or holds otherwise, with the
/// directories above them as the node's tree has them. Laid over the root (overlayfs,
/// the bundle on top) it gives the node's tree exactly; a node overlay that would
/// remove something from the shared root is an error, since a bundle cannot.
pub fn split(root: &Tree, node: &Tree) -> anyhow::Result<Tree> {
    if let Some((k, _)) = root
        .entries
        .iter()
        .find(|(k, _)| !node.entries.contains_key(k))
    {
        bail!(
            "the node's files remove /{} from the shared root, which a node bundle cannot do",
            k.as_path()
        );
    }
    let mut bundle = Tree::default();
    for (k, e) in &node.entries {
        if root.entries.get(k) == Some(e) {
            continue;
        }
        let path = k.as_path();
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            if let Some(d) = node.get(up) {
                bundle
                    .entries
                    .insert(super::tree::PathKey::new(up), d.clone());
            }
            parent = up;
        }
        bundle.entries.insert(k.clone(), e.clone());
    }
    Ok(bundle)
}

impl Overlay<'_> {
    pub fn apply(&self, tree: &mut Tree) -> anyhow::Result<()> {
        apply_shared(tree, self.agent, self.epoch);
        self.apply_node(tree)
    }

    /// The node's own part, on a tree that has the shared part already.
    pub fn apply_node(&self, tree: &mut Tree) -> anyhow::Result<()> {
        make_sysusers(tree, self.files, self.epoch);
        let ids = Ids::from_tree(tree, self.files)?;
        for f in self.files {
            let (uid, gid) = ids
                .owner(&f.owner)
                .with_context(|| format!("owner of {}", f.path))?;
            tree.insert(
                &f.path,
                Entry::file(f.content.clone(), f.mode, uid, gid, self.epoch),
            );
        }
        tree.insert(
            crate::plan::IDENTITY_PATH,
            Entry::file(self.plan.identity().to_json(), 0o644, 0, 0, self.epoch),
        );
        self.set_units(tree);
        // What a node booted from a slot keeps on its data partition, with a mount
        // point for each in the node's tree (docs/updates.md).
        let paths = state_paths(self.files, &[]);
        let mut list = String::from(
            "# Managed by pigsty: paths kept on the data partition when booted from a slot.\n",
        );
        for p in &paths {
            list.push_str(p);
            list.push('\n');
            if tree.get(p).is_none() {
                tree.insert(p, Entry::dir(0o755, self.epoch));
            }
        }
        tree.insert(
            &format!("/{}", crate::agent::preinit::STATE_PATHS),
            Entry::file(list.into_bytes(), 0o644, 0, 0, self.epoch),
        );
        Ok(())
    }

    /// The node's unit enablement: the units its plan runs are not started by their
    /// packages' links (the agent starts them), and its boot units are linked.
    fn set_units(&self, tree: &mut Tree) {
        let wants = "etc/systemd/system";
        for service in &self.plan.services {
            if service != crate::agent::FIRSTBOOT_UNIT {
                tree.remove(&format!("{wants}/multi-user.target.wants/{service}"));
            }
        }
        // Exporters start at boot, as `systemctl enable` links them (Debian's units
        // are under /lib/systemd/system, through the /usr merge on Debian 13 too).
        // Enabled by its package where its unit says (WantedBy=pgbouncer.service): only
        // where the plan runs it.
        for unit in &self.plan.services {
            if let Some(by) = crate::compile::boot_unit_of(unit) {
                // A unit of the image's own files (an instance links to its
                // template), else the package's.
                let file = crate::compile::unit_file_of(unit);
                let ours = format!("/{wants}/{file}");
                let target = if self.files.iter().any(|f| f.path == ours) {
                    ours
                } else {
                    format!("/lib/systemd/system/{file}")
                };
                tree.insert(
                    &format!("/{wants}/{by}.wants/{unit}"),
                    Entry::symlink(&target, self.epoch),
                );
            }
        }
        let tz = self.files.iter().find(|f| f.path == "/etc/timezone");
        if let Some(tz) = tz {
            let zone = String::from_utf8_lossy(&tz.content).trim().to_string();
            tree.insert(
                "/etc/localtime",
                Entry::symlink(&format!("/usr/share/zoneinfo/{zone}"), self.epoch),
            );
        }
    }
}

/// User and group ids: the image's passwd/group, and users the overlay declares with
/// fixed ids in sysusers.d (created at boot).
struct Ids {
    users: HashMap<String, (u64, u64)>,
    groups: HashMap<String, u64>,
}

impl Ids {
    fn from_tree(tree: &Tree, files: &[RenderedFile]) -> anyhow::Result<Ids> {
        let text = |p: &str| match tree.get(p).map(|e| &e.kind) {
            Some(Kind::File(d)) => String::from_utf8_lossy(d).into_owned(),
            _ => String::new(),
        };
        let mut users = HashMap::new();
        for line in text("etc/passwd").lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let (Some(name), Some(uid), Some(gid)) = (f.first(), f.get(2), f.get(3))
                && let (Ok(u), Ok(g)) = (uid.parse(), gid.parse())
            {
                users.insert(name.to_string(), (u, g));
            }
        }
        let mut groups = HashMap::new();
        for line in text("etc/group").lines() {
            let f: Vec<&str> = line.split(':').collect();
            if let (Some(name), Some(gid)) = (f.first(), f.get(2))
                && let Ok(g) = gid.parse()
            {
                groups.insert(name.to_string(), g);
            }
        }
        for f in files
            .iter()
            .filter(|f| f.path.starts_with("/etc/sysusers.d/"))
        {
            for line in String::from_utf8_lossy(&f.content).lines() {
                let w: Vec<&str> = line.split_whitespace().collect();
                if let (Some(&"u"), Some(name), Some(id)) = (w.first(), w.get(1), w.get(2))
                    && let Ok(id) = id.parse::<u64>()
                {
                    users.entry(name.to_string()).or_insert((id, id));
                    groups.entry(name.to_string()).or_insert(id);
                }
            }
        }
        Ok(Ids { users, groups })
    }

    fn owner(&self, owner: &str) -> anyhow::Result<(u64, u64)> {
        let (user, group) = owner.split_once(':').unwrap_or((owner, owner));
        let Some(&(uid, primary)) = self.users.get(user) else {
            bail!(
                "user `{user}` does not exist in the image (no package creates it and sysusers.d gives it no fixed id)"
            );
        };
        let gid = if group.is_empty() {
            primary
        } else {
            *self
                .groups
                .get(group)
                .with_context(|| format!("group `{group}` does not exist in the image"))?
        };
        Ok((uid, gid))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A layer with what the shared part takes out or links, as Debian's would have.
    fn layer() -> Tree {
        let mut t = Tree::default();
        let file = |s: &str| Entry::file(s.as_bytes().to_vec(), 0o644, 0, 0, 1);
        t.insert("/etc/passwd", file("root:x:0:0::/root:/bin/sh\n"));
        t.insert("/etc/group", file("root:x:0:\n"));
        t.insert("/etc/ssh/ssh_host_ed25519_key", file("secret"));
        t.insert("/var/lib/etcd/default/member", file("x"));
        t.insert("/usr/share/zoneinfo/Asia/Hong_Kong", file("tz"));
        for unit in ["etcd.service", "keepalived.service", "ssh.service"] {
            t.insert(
                &format!("/etc/systemd/system/multi-user.target.wants/{unit}"),
                Entry::symlink(&format!("/lib/systemd/system/{unit}"), 1),
            );
        }
        t.insert(
            "/etc/systemd/system/multi-user.target.wants/prometheus-node-exporter.service",
            Entry::symlink("/lib/systemd/system/prometheus-node-exporter.service", 1),
        );
        t
    }

    const INVENTORY: &str = "all:
  children:
    etcd: { hosts: { 10.10.10.11: { etcd_seq: 1 }, 10.10.10.12: { etcd_seq: 2 } }, vars: { etcd_cluster: etcd } }
  vars: { node_timezone: Asia/Hong_Kong, vip_enabled: true, vip_address: 10.10.10.3, vip_vrid: 3, node_cluster: n }
";

    /// The shared root of a layer is the same for every node; each node's bundle laid
    /// over it gives exactly the tree `apply` makes, and holds only the node's own
    /// entries.
    #[test]
    fn root_and_bundle_give_the_nodes_tree() {
        let loaded = crate::inventory::load_str("t.yml", INVENTORY).unwrap();
        let mut root = layer();
        apply_shared(&mut root, b"agent", 7);
        assert!(root.get("etc/ssh/ssh_host_ed25519_key").is_none());
        assert!(root.get("var/lib/etcd/default").is_none());
        for unit in ["etcd", "keepalived", "prometheus-node-exporter"] {
            let link = format!("etc/systemd/system/multi-user.target.wants/{unit}.service");
            assert!(root.get(&link).is_none(), "{link}");
        }
        assert!(
            root.get("etc/systemd/system/multi-user.target.wants/ssh.service")
                .is_some()
        );
        let mut bundles = Vec::new();
        for node in &loaded.fleet.nodes {
            let c = crate::compile::compile(&loaded.fleet, node).unwrap();
            let overlay = Overlay {
                plan: &c.plan,
                files: &c.files,
                agent: b"agent",
                epoch: 7,
            };
            let mut full = layer();
            overlay.apply(&mut full).unwrap();
            let bundle = split(&root, &full).unwrap();
            let mut merged = root.clone();
            for (k, e) in &bundle.entries {
                merged.entries.insert(k.clone(), e.clone());
            }
            assert!(merged.entries == full.entries, "{}", node.nodename);
            // The node's own: its files, its boot units and time zone; never the agent.
            assert!(bundle.get("etc/pigsty/node.json").is_some());
            assert!(bundle.get("etc/localtime").is_some());
            assert!(
                bundle
                    .get("etc/systemd/system/multi-user.target.wants/prometheus-node-exporter.service")
                    .is_some()
            );
            assert!(bundle.get("usr/local/bin/pigsty").is_none());
            // Users sysusers.d would make at boot are in the bundle's passwd already
            // (the root's /etc is read-only): the admin with its fixed id.
            let passwd = match bundle.get("etc/passwd").map(|e| &e.kind) {
                Some(Kind::File(d)) => String::from_utf8_lossy(d.as_slice()).into_owned(),
                other => panic!("no passwd in the bundle: {other:?}"),
            };
            assert!(
                passwd.contains("\ndba:x:88:88:pigsty admin:/home/dba:/bin/bash\n"),
                "{passwd}"
            );
            bundles.push(bundle);
        }
        assert!(bundles[0].entries != bundles[1].entries);
    }

    /// `u name -` gets the highest id free below 1000, as sysusers picks; a user the
    /// layer has is left alone; shadow gets a locked entry.
    #[test]
    fn sysusers_are_made_at_build_time() {
        let mut t = layer();
        t.insert(
            "/etc/passwd",
            Entry::file(
                b"root:x:0:0::/root:/bin/sh\nsystemd-x:x:999:999::/:/x\n".to_vec(),
                0o644,
                0,
                0,
                1,
            ),
        );
        t.insert(
            "/etc/shadow",
            Entry::file(b"root:*:::::::\n".to_vec(), 0o640, 0, 42, 1),
        );
        let conf = RenderedFile {
            path: "/etc/sysusers.d/x.conf".into(),
            content:
                b"u minio - \"MinIO server\" /var/lib/minio /usr/sbin/nologin\nu root - \"again\"\n"
                    .to_vec(),
            mode: 0o644,
            owner: "root".into(),
        };
        make_sysusers(&mut t, &[conf], 5);
        let text = |p: &str| match &t.get(p).unwrap().kind {
            Kind::File(d) => String::from_utf8_lossy(d.as_slice()).into_owned(),
            _ => panic!(),
        };
        assert!(
            text("etc/passwd")
                .ends_with("minio:x:998:998:MinIO server:/var/lib/minio:/usr/sbin/nologin\n"),
            "{}",
            text("etc/passwd")
        );
        assert_eq!(
            text("etc/passwd")
                .lines()
                .filter(|l| l.starts_with("root:"))
                .count(),
            1
        );
        assert!(text("etc/group").ends_with("minio:x:998:\n"));
        assert!(text("etc/shadow").ends_with("minio:!*:::::::\n"));
        let shadow = t.get("etc/shadow").unwrap();
        assert_eq!(
            (shadow.mode, shadow.gid),
            (0o640, 42),
            "keeps its mode and group"
        );
    }

    /// The state a node keeps on its data partition: the fixed paths and the top
    /// directories its tmpfiles.d make, or the directory itself below /etc.
    #[test]
    fn state_paths_come_from_tmpfiles_and_data_parameters() {
        let conf = RenderedFile {
            path: "/etc/tmpfiles.d/x.conf".into(),
            content: b"# c\nd /pg/data 0700 postgres postgres -\nd /etc/redis 0755 redis redis -\nd /var/lib/minio 0750 m m -\nd /run/x 0755 - - -\nC /home/dba/.ssh/authorized_keys 0600 dba dba - /etc/pigsty/k\n".to_vec(),
            mode: 0o644,
            owner: "root".into(),
        };
        assert_eq!(
            state_paths(&[conf], &["/data/etcd", "/data1/minio", "relative"]),
            [
                "/var",
                "/etc/ssh",
                "/root",
                "/home",
                "/pg",
                "/etc/redis",
                "/data",
                "/data1"
            ]
        );
    }

    /// A node tree missing an entry of the shared root cannot be a bundle over it.
    #[test]
    fn a_node_that_removes_a_root_entry_is_refused() {
        let mut root = layer();
        apply_shared(&mut root, b"agent", 7);
        let mut node = root.clone();
        node.remove("etc/systemd/system/multi-user.target.wants/ssh.service");
        let err = split(&root, &node).unwrap_err().to_string();
        assert!(err.contains("multi-user.target.wants/ssh.service"), "{err}");
    }
}
