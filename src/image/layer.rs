//! Package layers: a Debian root filesystem made by `mmdebstrap` for one package set,
//! cached under `$PIGSTY_CACHE/layers/<key>.tar`. The key is the sha256 of the
//! layer's canonical recipe, so nodes with the same package set share one layer.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::model::Repository;
use crate::sys;

/// Documentation and translations are left out of images (servers do not read them).
const PATH_EXCLUDES: &[&str] = &[
    "/usr/share/doc/*",
    "/usr/share/man/*",
    "/usr/share/info/*",
    "/usr/share/locale/*",
    "/usr/share/lintian/*",
];

/// Everything that determines a layer's content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Recipe {
    pub suite: String,
    pub mirror: String,
    pub architecture: String,
    pub components: Vec<String>,
    /// Sources beyond the base's archive: `deb` lines, each with its key's
    /// sha256 (`[key=<sha256>]`) so a changed key makes a new layer.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub sources: Vec<String>,
    /// Base and module packages, sorted and deduplicated.
    pub packages: Vec<String>,
    pub path_excludes: Vec<String>,
    pub source_date_epoch: u64,
    pub tool: String,
    /// The repositories behind `sources`, for their keys at build time.
    #[serde(skip)]
    pub repos: Vec<Repository>,
}

impl Recipe {
    /// The layer of `packages` on the base's archive alone.
    pub fn new(catalog: &Catalog, packages: &[String], epoch: u64, tool: &str) -> Recipe {
        Recipe::with_sources(catalog, &[], packages, epoch, tool)
    }

    /// The layer of `packages` from the base's archive and `repos` (those that are
    /// the archive itself are skipped).
    pub fn with_sources(
        catalog: &Catalog,
        repos: &[Repository],
        packages: &[String],
        epoch: u64,
        tool: &str,
    ) -> Recipe {
        let mut all: Vec<String> = catalog.base.iter().chain(packages).cloned().collect();
        all.sort();
        all.dedup();
        let extra: Vec<Repository> = repos
            .iter()
            .filter(|r| !catalog.is_archive(r))
            .cloned()
            .collect();
        Recipe {
            suite: catalog.suite.clone(),
            mirror: catalog.mirror.clone(),
            architecture: catalog.architecture.clone(),
            components: catalog.components.clone(),
            sources: extra
                .iter()
                .map(|r| {
                    let key = super::sources::key_sha(r).unwrap_or_else(|_| "?".into());
                    format!("{} [key={key}]", r.deb_line())
                })
                .collect(),
            packages: all,
            path_excludes: PATH_EXCLUDES.iter().map(|s| s.to_string()).collect(),
            source_date_epoch: epoch,
            tool: tool.to_string(),
            repos: extra,
        }
    }

    /// sha256 of the canonical (serde, fixed field order) JSON of the recipe.
    pub fn key(&self) -> String {
        let json = serde_json::to_vec(self).unwrap_or_default();
        hex::encode(Sha256::digest(json))
    }
}

/// The mmdebstrap version string, part of every recipe.
pub fn mmdebstrap_version() -> anyhow::Result<String> {
    let out = sys::run(Command::new("mmdebstrap").arg("--version"))?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// [`mmdebstrap_version`], remembered in `cache` for as long as the mmdebstrap
/// executable is the same file (path, size, mtime, inode): asking it costs a Perl
/// start, a tenth of a warm rebuild.
pub fn mmdebstrap_version_cached(cache: &Path) -> anyhow::Result<String> {
    use std::os::unix::fs::MetadataExt;
    let stamp = sys::which("mmdebstrap")
        .and_then(|p| std::fs::metadata(&p).ok().map(|m| (p, m)))
        .map(|(p, m)| format!("{} {} {} {}", p.display(), m.len(), m.mtime(), m.ino()));
    let memo = cache.join("mmdebstrap-version");
    if let (Some(stamp), Ok(text)) = (&stamp, std::fs::read_to_string(&memo))
        && let Some((seen, version)) = text.split_once('\n')
        && seen == stamp
    {
        return Ok(version.trim_end().to_string());
    }
    let version = mmdebstrap_version()?;
    if let Some(stamp) = stamp
        && std::fs::create_dir_all(cache).is_ok()
    {
        let tmp = memo.with_extension(format!("tmp-{}", std::process::id()));
        if std::fs::write(&tmp, format!("{stamp}\n{version}\n")).is_ok() {
            let _ = std::fs::rename(&tmp, &memo);
        }
    }
    Ok(version)
}

/// Where the cache lives: `$PIGSTY_CACHE`, else `~/.cache/pigsty`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("PIGSTY_CACHE").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    home.join(".cache/pigsty")
}

pub fn layer_path(cache: &Path, key: &str) -> PathBuf {
    cache.join("layers").join(format!("{key}.tar"))
}

/// The cached layer for `recipe`, built with mmdebstrap when missing (unless offline).
pub fn ensure(recipe: &Recipe, cache: &Path, offline: bool) -> anyhow::Result<PathBuf> {
    let key = recipe.key();
    let path = layer_path(cache, &key);
    if path.is_file() {
        tracing::info!(layer = %key, "layer cached");
        return Ok(path);
    }
    if offline {
        bail!(
            "--offline: layer {key} is not in the cache ({}); it holds {} package(s): {}",
            path.display(),
            recipe.packages.len(),
            recipe.packages.join(" ")
        );
    }
    let dir = path.parent().context("layer path has no parent")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = sys::lock_exclusive(
        &dir.join(format!(".{key}.lock")),
        &format!("layer {key}"),
        LOCK_LIMIT,
    )?;
    // Made meanwhile by the build that held the lock.
    if path.is_file() {
        tracing::info!(layer = %key, "layer cached");
        return Ok(path);
    }
    build(recipe, dir, &path)?;
    Ok(path)
}

/// How long a build waits for another build of the same layer or base (a cold
/// layer takes minutes; an hour means the other is stuck).
pub const LOCK_LIMIT: std::time::Duration = std::time::Duration::from_secs(3600);

/// Build the layer into `path` inside `dir` (made by [`ensure`], under its lock).
fn build(recipe: &Recipe, dir: &Path, path: &Path) -> anyhow::Result<()> {
    let tmp = dir.join(format!(".{}.tmp-{}", recipe.key(), std::process::id()));
    let mut cmd = Command::new("mmdebstrap");
    cmd.env("SOURCE_DATE_EPOCH", recipe.source_date_epoch.to_string())
        .arg("--mode=auto")
        .arg("--variant=apt")
        .arg("--format=tar")
        .arg(format!("--architectures={}", recipe.architecture))
        .arg(format!("--components={}", recipe.components.join(",")))
        .arg(format!("--include={}", recipe.packages.join(",")))
        .arg("--aptopt=Acquire::Retries \"3\"");
    for pattern in &recipe.path_excludes {
        cmd.arg(format!("--dpkgopt=path-exclude={pattern}"));
    }
    cmd.arg(&recipe.suite).arg(&tmp).arg(&recipe.mirror);
    // Further sources, each trusting only its own key (a file beside the layer).
    let keys = tempfile::Builder::new()
        .prefix(".keys-")
        .tempdir_in(dir)
        .context("creating a directory for repository keys")?;
    for repo in &recipe.repos {
        cmd.arg(super::sources::mirror_arg(repo, keys.path())?);
    }
    tracing::info!(layer = %recipe.key(), packages = recipe.packages.len(), "building layer with mmdebstrap");
    let result = sys::run(&mut cmd)
        .map_err(anyhow::Error::from)
        .and_then(|_| {
            std::fs::rename(&tmp, path)
                .with_context(|| format!("moving layer to {}", path.display()))
        });
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    let recipe_json = serde_json::to_vec_pretty(recipe).unwrap_or_default();
    result.and_then(|()| {
        std::fs::write(path.with_extension("json"), recipe_json).context("writing the layer recipe")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_ignores_package_order_and_duplicates() {
        let cat = Catalog::debian12();
        let a = Recipe::new(
            cat,
            &["patroni".into(), "haproxy".into()],
            1,
            "mmdebstrap 1",
        );
        let b = Recipe::new(
            cat,
            &["haproxy".into(), "patroni".into(), "haproxy".into()],
            1,
            "mmdebstrap 1",
        );
        assert_eq!(a.key(), b.key());
        let c = Recipe::new(cat, &["haproxy".into()], 1, "mmdebstrap 1");
        assert_ne!(a.key(), c.key());
        assert_ne!(
            a.key(),
            Recipe::new(
                cat,
                &["patroni".into(), "haproxy".into()],
                1,
                "mmdebstrap 2"
            )
            .key()
        );
    }

    #[test]
    fn offline_names_the_missing_layer() {
        let dir = tempfile::tempdir().unwrap();
        let r = Recipe::new(Catalog::debian12(), &["etcd-server".into()], 1, "t");
        let err = ensure(&r, dir.path(), true).unwrap_err().to_string();
        assert!(
            err.contains(&r.key()) && err.contains("etcd-server"),
            "{err}"
        );
    }
}
