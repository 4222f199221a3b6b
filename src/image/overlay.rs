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

/// Timers the layer's packages enable that have no work on an immutable node: it is
/// never upgraded in place (apt), its package database never changes (dpkg backup),
/// and nobody reads man pages on it. Each would also fire at first boot (they are
/// `Persistent=`), on the critical path of a join.
const DISABLED_TIMERS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "man-db.timer",
];

/// Units enabled in every image, as `systemctl enable` would link them.
const ENABLE: &[(&str, &str, &str)] = &[
    (
        "multi-user.target.wants",
        "pigsty-firstboot.service",
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

impl Overlay<'_> {
    pub fn apply(&self, tree: &mut Tree) -> anyhow::Result<()> {
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
            Entry::file(Vec::new(), 0o444, 0, 0, self.epoch),
        );
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
            "/usr/local/bin/pigsty",
            Entry::file(self.agent.to_vec(), 0o755, 0, 0, self.epoch),
        );
        self.set_units(tree);
        Ok(())
    }

    fn set_units(&self, tree: &mut Tree) {
        let wants = "etc/systemd/system";
        for service in MODULE_SERVICES
            .iter()
            .copied()
            .chain(self.plan.services.iter().map(String::as_str))
        {
            if service != "pigsty-firstboot.service" {
                tree.remove(&format!("{wants}/multi-user.target.wants/{service}"));
            }
        }
        // Exporters start at boot, as `systemctl enable` links them (Debian's units
        // are under /lib/systemd/system, through the /usr merge on Debian 13 too).
        // Enabled by its package where its unit says (WantedBy=pgbouncer.service): only
        // where the plan runs it.
        for (unit, by) in crate::compile::BOOT_UNITS {
            tree.remove(&format!("{wants}/{by}.wants/{unit}"));
        }
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
        for timer in DISABLED_TIMERS {
            tree.remove(&format!("{wants}/timers.target.wants/{timer}"));
        }
        for (dir, unit, target) in ENABLE {
            tree.insert(
                &format!("/{wants}/{dir}/{unit}"),
                Entry::symlink(target, self.epoch),
            );
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
