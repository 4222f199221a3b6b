//! The lab's images: each node's A/B disk (format qcow2, over its root's shared
//! base disk, so nodes of one package set share a root's GiB on the host), built
//! when missing or stale (its key covers the plan, the agent binary and the extra
//! trees), and the checks before building.

use std::path::PathBuf;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::{Lab, UpOptions};
use crate::model::{Fleet, Node};

/// The lab's image key of a node: its plan, the agent binary and the extra trees. An
/// image whose key matches is not built again.
fn image_key(
    node_digest: &str,
    agent_sha: &str,
    extras: &[(PathBuf, String)],
    epoch: u64,
) -> String {
    let mut h = Sha256::new();
    h.update(node_digest.as_bytes());
    h.update(agent_sha.as_bytes());
    for (p, sha) in extras {
        h.update(p.to_string_lossy().as_bytes());
        h.update(sha.as_bytes());
    }
    h.update(epoch.to_be_bytes());
    // The layout: a lab image built before raw took the A/B layout, or as a whole
    // disk rather than a qcow2 over its root's base disk, is stale.
    h.update(b"ab over a shared base");
    hex::encode(h.finalize())
}

/// A MinIO member needs a server binary in its image; Debian has none. Say so before
/// anything is built.
pub(super) fn check_minio_binary(fleet: &Fleet, extras: &[PathBuf]) -> anyhow::Result<()> {
    for node in &fleet.nodes {
        let Some(m) = node.minio.as_ref() else {
            continue;
        };
        let bin = m.params.minio_server_bin.trim_start_matches('/');
        if !extras.iter().any(|d| d.join(bin).is_file()) {
            bail!(
                "{} runs MinIO, whose server ({}) Debian does not package: pass --extra-tree DIR \
                 with DIR/{bin} (MinIO, RustFS or another MinIO-compatible server)",
                node.nodename,
                m.params.minio_server_bin
            );
        }
    }
    Ok(())
}

/// The kernel of a node's image: its root's, beside the root's base disk.
pub(super) fn kernel(image_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let path = image_dir.join("manifest.json");
    let manifest: serde_json::Value = serde_json::from_slice(
        &std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
    )
    .with_context(|| format!("parsing {}", path.display()))?;
    let sha = manifest["root"]["sha256"]
        .as_str()
        .with_context(|| format!("{} names no root", path.display()))?;
    Ok(image_dir
        .join("..")
        .join(crate::image::ROOTS_DIR)
        .join(format!("{sha}.vmlinuz")))
}

/// Build the A/B disk of every node whose image is missing or stale.
pub(super) fn build_missing(fleet: &Fleet, lab: &Lab, opts: &UpOptions) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("locating the pigsty executable")?;
    let (agent_sha, _) = crate::image::hash_file(&exe)?;
    let epoch = crate::image::default_epoch();
    let extras = opts
        .extra_trees
        .iter()
        .map(|d| crate::image::extra::ExtraTree::read(d, epoch).map(|x| (d.clone(), x.sha256)))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let images = lab.dir.join("images");
    let mut missing: Vec<((&Node, crate::compile::Compiled), String)> = Vec::new();
    for node in &fleet.nodes {
        let compiled = crate::compile::compile(fleet, node)?;
        let key = image_key(&compiled.plan.digest, &agent_sha, &extras, epoch);
        let have = std::fs::read_to_string(images.join(format!("{}.key", node.nodename)))
            .unwrap_or_default();
        let complete = ["disk.qcow2", "cmdline", "manifest.json"]
            .iter()
            .all(|f| images.join(&node.nodename).join(f).is_file());
        if have.trim() == key && complete {
            continue;
        }
        let paths = lab.vm(&node.nodename);
        if paths.disk().exists() {
            bail!(
                "{}'s image changed (inventory, pigsty or extra trees) while the lab holds its \
                 disk: `pigsty lab down --purge` first (or `pigsty lab reimage {}` after `up`)",
                node.nodename,
                node.nodename
            );
        }
        missing.push(((node, compiled), key));
    }
    if missing.is_empty() {
        eprintln!("lab: every image is up to date");
        return Ok(());
    }
    let names: Vec<&str> = missing
        .iter()
        .map(|((n, _), _)| n.nodename.as_str())
        .collect();
    eprintln!("lab: building images of {}", names.join(", "));
    let build = crate::image::BuildOptions {
        formats: vec![crate::image::Format::Qcow2],
        out: images.clone(),
        cache: opts.cache.clone(),
        offline: false,
        epoch,
        extra_trees: opts.extra_trees.clone(),
    };
    let (nodes, keys): (Vec<_>, Vec<_>) = missing.into_iter().unzip();
    crate::image::build(fleet, &nodes, &build)?;
    for ((node, _), key) in nodes.iter().zip(&keys) {
        std::fs::write(images.join(format!("{}.key", node.nodename)), key)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_keys_change_with_every_input() {
        let base = image_key("plan", "agent", &[], 1);
        assert_ne!(base, image_key("plan2", "agent", &[], 1));
        assert_ne!(base, image_key("plan", "agent2", &[], 1));
        assert_ne!(base, image_key("plan", "agent", &[], 2));
        assert_ne!(
            base,
            image_key("plan", "agent", &[(PathBuf::from("/x"), "s".into())], 1)
        );
    }

    #[test]
    fn a_minio_member_without_a_server_binary_is_refused_before_building() {
        let fleet = crate::inventory::load(&crate::inventory::Source::BuiltInLab)
            .unwrap()
            .fleet;
        let err = check_minio_binary(&fleet, &[]).unwrap_err().to_string();
        assert!(err.contains("--extra-tree"), "{err}");
        assert!(err.contains("usr/local/bin/minio"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("usr/local/bin")).unwrap();
        std::fs::write(dir.path().join("usr/local/bin/minio"), b"x").unwrap();
        check_minio_binary(&fleet, &[dir.path().to_path_buf()]).unwrap();
    }
}
