//! `lab ssh` and `lab update`: reach a lab node as its admin user (the lab's
//! operator key is in every node's `node_admin_pk_list`), and give an A/B node a
//! new image the way an operator would: build the node's bundle from the inventory
//! given, copy it to the node, run `pigsty agent update --reboot` there, and wait
//! until the node reports the new slot kept (docs/updates.md).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::Lab;
use crate::model::Fleet;

/// The lab's operator key pair, made once per lab directory.
pub fn ssh_key(dir: &Path) -> PathBuf {
    dir.join("ssh").join("id_ed25519")
}

/// Make the operator key when the lab has none; returns its public half.
pub fn ensure_ssh_key(dir: &Path) -> anyhow::Result<String> {
    let key = ssh_key(dir);
    if !key.is_file() {
        crate::sys::require("ssh-keygen")?;
        let parent = key.parent().context("the key's directory")?;
        std::fs::create_dir_all(parent)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(0o700))?;
        crate::sys::run(
            Command::new("ssh-keygen")
                .args([
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    "pigsty-lab-operator",
                    "-f",
                ])
                .arg(&key),
        )?;
    }
    let public = key.with_extension("pub");
    Ok(std::fs::read_to_string(&public)
        .with_context(|| format!("reading {}", public.display()))?
        .trim()
        .to_string())
}

/// The fleet with the lab's operator key among every admin user's keys: how the lab
/// reaches its nodes, as an operator's key in `node_admin_pk_list` reaches Pigsty's.
pub fn with_operator_key(fleet: &Fleet, public: &str) -> Fleet {
    let mut fleet = fleet.clone();
    for n in &mut fleet.nodes {
        if !n.node.node_admin_pk_list.iter().any(|k| k == public) {
            n.node.node_admin_pk_list.push(public.to_string());
        }
    }
    fleet
}

impl Lab {
    /// Run `command` (a shell line) on a node as its admin user over SSH, from inside
    /// the lab's namespace, feeding it `stdin`.
    pub fn ssh(&self, name: &str, command: &str, stdin: Option<Input>) -> anyhow::Result<Output> {
        self.ssh_with(name, command, stdin, Stdio::piped())
    }

    /// [`Lab::ssh`], with the command's stderr going to `stderr` (inherited: its
    /// progress shows as it comes).
    fn ssh_with(
        &self,
        name: &str,
        command: &str,
        stdin: Option<Input>,
        stderr: Stdio,
    ) -> anyhow::Result<Output> {
        let node = self.node(name)?;
        let Some(user) = &node.admin else {
            bail!("{name} has no admin user (node_admin_enabled is false): the lab cannot log in");
        };
        let key = ssh_key(&self.dir);
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.state.netns, "ssh"])
            .arg("-i")
            .arg(&key)
            .args([
                "-o",
                "BatchMode=yes",
                "-o",
                "ConnectTimeout=10",
                "-o",
                "ServerAliveInterval=10",
                "-o",
                "ServerAliveCountMax=3",
                // A lab node is a new machine at every reimage: its host key is too.
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg(format!("{user}@{}", node.ip))
            .arg("--")
            .arg(command)
            .stdin(match &stdin {
                None => Stdio::null(),
                Some(Input::Bytes(_)) => Stdio::piped(),
                Some(Input::File(p)) => Stdio::from(
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?,
                ),
            })
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd.spawn().context("starting ssh")?;
        if let Some(Input::Bytes(bytes)) = stdin {
            let mut pipe = child.stdin.take().context("ssh's stdin")?;
            pipe.write_all(bytes)
                .with_context(|| format!("sending {} bytes to {name}", bytes.len()))?;
        }
        child.wait_with_output().context("waiting for ssh")
    }

    /// Build a node's bundle from `fleet` as the lab built its image (same cache,
    /// extra trees and epoch), into `<lab>/updates/`. Returns the bundle and the
    /// sha256 of the shared root it goes over.
    pub fn build_bundle(&self, fleet: &Fleet, name: &str) -> anyhow::Result<(PathBuf, String)> {
        let node = fleet
            .nodes
            .iter()
            .find(|n| n.nodename == name)
            .with_context(|| format!("the inventory has no node {name}"))?;
        let compiled = crate::compile::compile(fleet, node)?;
        let build = self.bundle_build();
        let out = build.out.clone();
        let _ = std::fs::remove_dir_all(out.join(name));
        let manifests = crate::image::build(fleet, &[(node, compiled)], &build)?;
        let root = manifests
            .first()
            .and_then(|m| m.root.as_ref())
            .context("the bundle build named no shared root")?;
        Ok((out.join(name).join("bundle.tar"), root.sha256.clone()))
    }

    /// How the lab builds bundles: into `<lab>/updates`, from its layer cache, with
    /// its extra trees and the image epoch, as it built its images.
    pub(crate) fn bundle_build(&self) -> crate::image::BuildOptions {
        crate::image::BuildOptions {
            formats: vec![crate::image::Format::Bundle],
            out: self.dir.join("updates"),
            cache: self
                .state
                .cache
                .clone()
                .unwrap_or_else(crate::image::layer::cache_dir),
            offline: false,
            epoch: crate::image::default_epoch(),
            extra_trees: self.state.extra_trees.clone(),
        }
    }

    /// How `lab rollout` runs: the lab's operator key, layer cache and extra trees,
    /// bundles into `<lab>/updates`. Every node's bundle (and its root) is built here
    /// first, outside the lab's network, so the rollout inside it builds from the
    /// cache alone (`offline`).
    pub fn rollout_options(
        &self,
        fleet: &Fleet,
        compiled: &[crate::compile::Compiled],
    ) -> anyhow::Result<crate::rollout::Options> {
        let build = self.bundle_build();
        let pairs: Vec<(&crate::model::Node, crate::compile::Compiled)> =
            fleet.nodes.iter().zip(compiled.iter().cloned()).collect();
        crate::image::build(fleet, &pairs, &build)?;
        Ok(crate::rollout::Options {
            dry_run: false,
            parallel: 1,
            identity: ssh_key(&self.dir),
            ssh_port: 22,
            listen: "0.0.0.0:0".parse()?,
            out: build.out,
            cache: build.cache,
            offline: true,
            extra_trees: build.extra_trees,
            lag_bytes: 16 << 20,
            node_timeout: Duration::from_secs(900),
            poll: Duration::from_secs(2),
        })
    }

    /// `lab update`: the node's new bundle (and, when its package set changed, its
    /// new root) onto the node, `agent update --reboot` there, then (with `wait`)
    /// until the node reports the new slot kept and its join done.
    pub fn update(
        &self,
        fleet: &Fleet,
        name: &str,
        opts: &UpdateOptions,
    ) -> anyhow::Result<UpdateOutcome> {
        let before = self.reported_slots(name)?;
        let running_root = before
            .as_ref()
            .and_then(|s| s.running.as_ref())
            .map(|r| r.root.clone())
            .unwrap_or_default();
        let (bundle, root_sha) = match &opts.bundle {
            Some(b) => (b.clone(), running_root.clone()),
            None => self.build_bundle(fleet, name)?,
        };
        let tar =
            std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
        let staged = self.stage_bundle(name, &tar)?;
        let mut command = format!(
            "sudo pigsty agent update --bundle {staged} --bundle-sha256 {} --tries {} \
             --trial-timeout {}",
            crate::bundle::digest(&tar),
            opts.tries,
            opts.trial_timeout
        );
        let root_file = self
            .dir
            .join("updates/_roots")
            .join(format!("{root_sha}.ext4"));
        let stdin = if root_sha == running_root {
            None
        } else {
            // A new package set: its root goes through ssh's stdin.
            command.push_str(&format!(" --root /dev/stdin --root-sha256 {root_sha}"));
            Some(root_file.as_path())
        };
        if opts.reboot {
            command.push_str(" --reboot");
        }
        let ran = self.ssh_with(name, &command, stdin.map(Input::File), Stdio::inherit())?;
        let said = String::from_utf8_lossy(&ran.stdout).trim().to_string();
        // A reboot may cut the session before ssh hears the exit status.
        let rebooted = opts.reboot && said.contains("rebooting");
        if !(ran.status.success() || rebooted) {
            bail!("agent update on {name} failed ({}): {said}", ran.status);
        }
        Ok(UpdateOutcome {
            said,
            bundle: crate::bundle::digest(&tar),
            root: root_sha.clone(),
            root_shipped: stdin.is_some(),
        })
    }

    /// `lab apply`: the node's new bundle, built from the inventory, onto the node and
    /// `agent apply` there: taken in without a reboot, or refused when it needs one.
    /// Returns the bundle's digest and what the agent printed (its JSON).
    pub fn apply(&self, fleet: &Fleet, name: &str) -> anyhow::Result<(String, String)> {
        let (bundle, _root) = self.build_bundle(fleet, name)?;
        let tar =
            std::fs::read(&bundle).with_context(|| format!("reading {}", bundle.display()))?;
        let staged = self.stage_bundle(name, &tar)?;
        let digest = crate::bundle::digest(&tar);
        let ran = self.ssh_with(
            name,
            &format!("sudo pigsty agent apply --bundle {staged} --bundle-sha256 {digest} --json"),
            None,
            Stdio::inherit(),
        )?;
        let said = String::from_utf8_lossy(&ran.stdout).trim().to_string();
        if !ran.status.success() {
            bail!("agent apply on {name} failed ({}): {said}", ran.status);
        }
        Ok((digest, said))
    }

    /// Copy a bundle to the node, readable by root only; returns where it is there.
    fn stage_bundle(&self, name: &str, tar: &[u8]) -> anyhow::Result<&'static str> {
        let staged = "/var/lib/pigsty/update/bundle.tar";
        let put = self.ssh(
            name,
            &format!(
                "sudo install -d -m 0700 /var/lib/pigsty/update && sudo tee {staged} >/dev/null"
            ),
            Some(Input::Bytes(tar)),
        )?;
        if !put.status.success() {
            bail!(
                "copying the bundle to {name}: {}",
                String::from_utf8_lossy(&put.stderr).trim()
            );
        }
        Ok(staged)
    }

    /// What the node last reported of its slots (its record in etcd).
    pub fn reported_slots(
        &self,
        name: &str,
    ) -> anyhow::Result<Option<crate::agent::update::Slots>> {
        let access = self.etcd_access()?;
        let fleet =
            crate::agent::read_fleet(&self.etcd_endpoints(), Duration::from_secs(5), &access)?;
        Ok(fleet.get(name).and_then(|s| s.slots.clone()))
    }

    /// Wait (bounded) until the node reports the slot holding `bundle` running and
    /// kept, and its join done for it.
    pub fn wait_slot_kept(
        &self,
        name: &str,
        bundle: &str,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let what = format!("keep the slot with bundle {bundle}");
        self.wait_record(name, &what, limit, |state| {
            let Some(r) = state.slots.as_ref().and_then(|s| s.running.clone()) else {
                return Err("no slots reported".to_string());
            };
            if r.bundle == bundle && r.state == "blessed" && state.done {
                return Ok(());
            }
            Err(format!(
                "running slot {} (bundle {}, {}), join {}",
                r.slot,
                &r.bundle[..r.bundle.len().min(12)],
                r.state,
                if state.done {
                    "done"
                } else {
                    state.current.as_str()
                }
            ))
        })
    }

    /// Wait (bounded) until the node runs another slot than the one holding `bundle`
    /// again, with that slot marked bad (its tries ran out), and its join done.
    pub fn wait_fallback(
        &self,
        name: &str,
        bundle: &str,
        limit: Duration,
    ) -> anyhow::Result<Duration> {
        let what = format!("fall back from the bundle {bundle}");
        self.wait_record(name, &what, limit, |state| {
            let Some(slots) = state.slots.clone() else {
                return Err("no slots reported".to_string());
            };
            let (r, f) = (
                slots.running.unwrap_or_default(),
                slots.fallback.unwrap_or_default(),
            );
            if state.done && r.bundle != bundle && f.bundle == bundle && f.state == "bad" {
                return Ok(());
            }
            Err(format!(
                "running slot {} ({}), other slot {} ({}), join {}",
                r.slot,
                r.state,
                f.slot,
                f.state,
                if state.done { "done" } else { "not done" }
            ))
        })
    }

    /// Poll the node's record in etcd every 5 s, for at most `limit`, until `ready`
    /// says yes; the error names `what` and the last reason `ready` gave.
    fn wait_record(
        &self,
        name: &str,
        what: &str,
        limit: Duration,
        ready: impl Fn(&crate::agent::state::State) -> Result<(), String>,
    ) -> anyhow::Result<Duration> {
        let start = Instant::now();
        let (access, endpoints) = (self.etcd_access()?, self.etcd_endpoints());
        loop {
            let last = match crate::agent::read_fleet(&endpoints, Duration::from_secs(5), &access) {
                Ok(fleet) => match fleet.get(name) {
                    Some(state) => match ready(state) {
                        Ok(()) => return Ok(start.elapsed()),
                        Err(why) => why,
                    },
                    None => format!("{name} has no record"),
                },
                Err(e) => format!("{e:#}"),
            };
            if start.elapsed() > limit {
                bail!("{name} did not {what} within {limit:?}: {last}");
            }
            std::thread::sleep(Duration::from_secs(5));
        }
    }
}

/// What a command run over [`Lab::ssh`] reads.
pub enum Input<'a> {
    Bytes(&'a [u8]),
    File(&'a Path),
}

/// How `lab update` runs the node's `agent update`.
#[derive(Debug, Clone)]
pub struct UpdateOptions {
    pub tries: u32,
    pub trial_timeout: u64,
    pub reboot: bool,
    /// A bundle to ship as it is (over the running root), instead of one built.
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct UpdateOutcome {
    /// What `agent update` printed.
    pub said: String,
    pub bundle: String,
    pub root: String,
    /// The root went to the node (a new package set), not copied there from its
    /// running slot.
    pub root_shipped: bool,
}
