//! The ext4 image of a shared root, made by `mke2fs -d` once per root and cached
//! under `$PIGSTY_CACHE/ext4/` (the A/B disks, their qcow2 base disks and the
//! `bundle` format's `_roots/` all take it from there), with its least recently used
//! images dropped.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use sha2::{Digest, Sha256};

use super::disk::{self, DiskIds};
use super::tree::{Kind, Tree};
use crate::sys;

/// Room a root image keeps beyond its files and inode table, for what the estimate
/// of [`size_mib`] leaves out (directories of many entries, extent blocks, bitmaps).
/// Nothing grows later: a shared root is only ever mounted read-only. Every MiB of
/// it is copied and hashed whenever a node writes the root into its other slot.
const ROOM_MIB: u64 = 96;

/// The cached ext4 image of a shared root's tree, made when missing.
pub fn ensure_base(
    cache: &Path,
    root_key: &str,
    tree: &Tree,
    ids: &DiskIds,
    size_mib: u64,
    epoch: u64,
) -> anyhow::Result<PathBuf> {
    let version = mke2fs_version()?;
    let inodes = inodes(tree);
    let mut h = Sha256::new();
    // The key's text is what it was when single-root disks shared this cache (read
    // -write roots had a journal), so cached roots stay valid.
    h.update(format!(
        "pigsty ext4 base v1\nlayer {root_key}\nuuid {}\nsize {size_mib}\nepoch {epoch}\n{version}\n",
        ids.root_fs
    ));
    h.update(b"read-only: no journal\n");
    h.update(format!("inodes {inodes}\n"));
    let key = hex::encode(h.finalize());
    let dir = cache.join("ext4");
    let path = dir.join(format!("{key}.ext4"));
    if path.is_file() {
        tracing::info!(base = %key, "ext4 base cached");
        touch(&path);
        drop_idle_bases(&dir);
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = crate::sys::lock_exclusive(
        &dir.join(format!(".{key}.lock")),
        &format!("the ext4 base {key}"),
        super::layer::LOCK_LIMIT,
    )?;
    // Made meanwhile by the build that held the lock.
    if path.is_file() {
        tracing::info!(base = %key, "ext4 base cached");
        touch(&path);
        return Ok(path);
    }
    let work = tempfile::Builder::new()
        .prefix(".base-")
        .tempdir_in(&dir)
        .with_context(|| format!("scratch directory in {}", dir.display()))?;
    let root = work.path().join("root");
    super::step("extracting the shared root", || tree.extract(&root, epoch))?;
    let img = work.path().join("root.ext4");
    super::step("mke2fs -d (the shared root's ext4)", || {
        disk::make_ext4(&root, &img, ids, size_mib, inodes, epoch)
    })?;
    std::fs::rename(&img, &path)
        .with_context(|| format!("moving the ext4 base to {}", path.display()))?;
    drop_idle_bases(&dir);
    Ok(path)
}

/// A base image not used for this long is removed (a layer or its size changed).
const BASE_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);
/// At most this many bases are kept, the most recently used (each is 1.5 to 2 GiB:
/// a cache that only grew filled a CI machine's disk).
const BASE_KEEP: usize = 8;

fn drop_idle_bases(dir: &Path) {
    let now = std::time::SystemTime::now();
    let mut bases: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "ext4"))
        .filter_map(|e| Some((e.metadata().and_then(|m| m.modified()).ok()?, e.path())))
        .collect();
    // Newest first: everything past BASE_KEEP goes, and anything idle too long.
    bases.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (i, (used, p)) in bases.iter().enumerate() {
        let idle = now.duration_since(*used).unwrap_or_default();
        if i >= BASE_KEEP || idle > BASE_MAX_IDLE {
            tracing::info!(
                "removing the ext4 base {} (least recently used)",
                p.display()
            );
            let _ = std::fs::remove_file(p);
            // And its recorded digest (a shared root's), if any.
            let _ = std::fs::remove_file(p.with_extension("ext4.sha256"));
        }
    }
}

fn mke2fs_version() -> anyhow::Result<String> {
    let out = sys::run(Command::new("mke2fs").arg("-V"))?;
    let text =
        String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
    Ok(text.lines().next().unwrap_or_default().trim().to_string())
}

/// Marks a cached base used now: bases left unused for [`BASE_MAX_IDLE`] are dropped.
fn touch(path: &Path) {
    if let Ok(f) = std::fs::File::options().write(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

/// Size of the root filesystem for `tree`, in MiB: its files in whole blocks and a
/// block for every other entry (most symlinks take none), 5 % more, its inode table
/// ([`inodes`]), and [`ROOM_MIB`]. (The lab's Debian 13 root was 1.8 GiB when the
/// size was 1.3 times the files with mke2fs's default inode table, and a third of it
/// free space, copied and hashed with the rest by every update that wrote it; the
/// Debian 12 roots of tests/image_build.rs went from 1.5 to 1.0 and 1.3 GB.)
pub fn size_mib(tree: &Tree) -> u64 {
    let used: u64 = tree
        .entries
        .values()
        .map(|e| match &e.kind {
            Kind::File(d) => (d.len() as u64).div_ceil(4096).max(1) * 4096,
            _ => 4096,
        })
        .sum();
    let inode_table = inodes(tree) * 256;
    (used * 21 / 20 + inode_table).div_ceil(1 << 20) + ROOM_MIB
}

/// Inodes of the root filesystem for `tree`: its entries and a quarter more (mke2fs
/// would give one per 16 KiB, five times what a root uses, in a table that is
/// zeroed, copied and hashed with the rest).
pub fn inodes(tree: &Tree) -> u64 {
    let n = tree.entries.len() as u64;
    n + n / 4 + 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_most_recently_used_bases_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let now = std::time::SystemTime::now();
        for i in 0..(BASE_KEEP as u64 + 3) {
            let p = dir.path().join(format!("{i:02}.ext4"));
            std::fs::write(&p, b"base").unwrap();
            std::fs::write(p.with_extension("ext4.sha256"), b"digest").unwrap();
            // Base 0 was used last, base 10 first.
            let f = std::fs::File::options().write(true).open(&p).unwrap();
            f.set_modified(now - std::time::Duration::from_secs(60 * i))
                .unwrap();
        }
        let old = dir.path().join("old.ext4");
        std::fs::write(&old, b"base").unwrap();
        let f = std::fs::File::options().write(true).open(&old).unwrap();
        f.set_modified(now - BASE_MAX_IDLE - std::time::Duration::from_secs(1))
            .unwrap();
        std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();

        drop_idle_bases(dir.path());
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut want: Vec<String> = (0..BASE_KEEP)
            .flat_map(|i| [format!("{i:02}.ext4"), format!("{i:02}.ext4.sha256")])
            .collect();
        want.push("notes.txt".into());
        want.sort();
        assert_eq!(left, want);
    }
}
