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
        drop_idle(&dir, EXT4);
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
    drop_idle(&dir, EXT4);
    Ok(path)
}

/// The cached A/B base disk of a shared root, `$PIGSTY_CACHE/ab/<key>.ab.raw`, with
/// the offsets its maker returned kept beside it (`.ab.json`). `key` names
/// everything its bytes come from. `make(dir)` writes the disk as `dir/base.raw` and
/// returns the offsets; it runs only when the disk is missing, under a lock, so
/// builds of the same root (and the `_roots/` of every `--out`, hard links to it)
/// share one copy.
pub fn ensure_ab_base(
    cache: &Path,
    key: &str,
    make: impl FnOnce(&Path) -> anyhow::Result<Vec<u64>>,
) -> anyhow::Result<(PathBuf, Vec<u64>)> {
    let dir = cache.join("ab");
    let path = dir.join(format!("{key}{}", AB.suffix));
    let offsets_file = dir.join(format!("{key}{}", AB.sidecar));
    let cached = || -> Option<Vec<u64>> {
        if !path.is_file() {
            return None;
        }
        serde_json::from_slice(&std::fs::read(&offsets_file).ok()?).ok()
    };
    if let Some(offsets) = cached() {
        tracing::info!(base = %key, "A/B base disk cached");
        touch(&path);
        drop_idle(&dir, AB);
        return Ok((path, offsets));
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let _lock = crate::sys::lock_exclusive(
        &dir.join(format!(".{key}.lock")),
        &format!("the A/B base disk {key}"),
        super::layer::LOCK_LIMIT,
    )?;
    if let Some(offsets) = cached() {
        touch(&path);
        return Ok((path, offsets));
    }
    let work = tempfile::Builder::new()
        .prefix(".ab-")
        .tempdir_in(&dir)
        .with_context(|| format!("scratch directory in {}", dir.display()))?;
    let offsets = make(work.path())?;
    // The offsets first: the disk's presence says both are there.
    let tmp = work.path().join("offsets.json");
    std::fs::write(&tmp, serde_json::to_vec(&offsets)?)
        .and_then(|()| std::fs::rename(&tmp, &offsets_file))
        .with_context(|| format!("writing {}", offsets_file.display()))?;
    std::fs::rename(work.path().join("base.raw"), &path)
        .with_context(|| format!("moving the A/B base disk to {}", path.display()))?;
    drop_idle(&dir, AB);
    Ok((path, offsets))
}

/// `dest` as a hard link to the cached `src` (a copy when they are on different
/// filesystems), replacing whatever `dest` was unless it is that very file.
pub fn link_or_copy(src: &Path, dest: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same =
        |a: &std::fs::Metadata, b: &std::fs::Metadata| a.dev() == b.dev() && a.ino() == b.ino();
    let meta = std::fs::metadata(src).with_context(|| format!("reading {}", src.display()))?;
    if std::fs::metadata(dest).is_ok_and(|d| same(&meta, &d)) {
        return Ok(());
    }
    let dir = dest.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp)
            .with_context(|| format!("copying {} to {}", src.display(), tmp.display()))?;
    }
    std::fs::rename(&tmp, dest)
        .with_context(|| format!("moving {} to {}", tmp.display(), dest.display()))
}

/// A base image not used for this long is removed (a layer or its size changed).
const BASE_MAX_IDLE: std::time::Duration = std::time::Duration::from_secs(14 * 24 * 3600);
/// At most this many of a kind of base are kept, the most recently used (each is 1 to
/// 2 GiB: a cache that only grew filled a CI machine's disk).
const BASE_KEEP: usize = 6;

/// A kind of cached base: its file name's ending and that of the file kept beside it.
#[derive(Clone, Copy)]
struct Kept {
    suffix: &'static str,
    sidecar: &'static str,
}

const EXT4: Kept = Kept {
    suffix: ".ext4",
    sidecar: ".ext4.sha256",
};
const AB: Kept = Kept {
    suffix: ".ab.raw",
    sidecar: ".ab.json",
};

fn drop_idle(dir: &Path, kind: Kept) {
    let now = std::time::SystemTime::now();
    let mut bases: Vec<(std::time::SystemTime, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            name.ends_with(kind.suffix) && !name.starts_with('.')
        })
        .filter_map(|e| Some((e.metadata().and_then(|m| m.modified()).ok()?, e.path())))
        .collect();
    // Newest first: everything past BASE_KEEP goes, and anything idle too long.
    bases.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (i, (used, p)) in bases.iter().enumerate() {
        let idle = now.duration_since(*used).unwrap_or_default();
        if i >= BASE_KEEP || idle > BASE_MAX_IDLE {
            tracing::info!(
                "removing the cached base {} (least recently used)",
                p.display()
            );
            let _ = std::fs::remove_file(p);
            // And what was kept beside it (a shared root's digest, a disk's offsets).
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            let stem = name.strip_suffix(kind.suffix).unwrap_or(&name);
            let _ = std::fs::remove_file(p.with_file_name(format!("{stem}{}", kind.sidecar)));
        }
    }
}

pub(super) fn mke2fs_version() -> anyhow::Result<String> {
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
        for (kind, other) in [(EXT4, AB), (AB, EXT4)] {
            let dir = tempfile::tempdir().unwrap();
            let now = std::time::SystemTime::now();
            let base = |name: &str, k: Kept, age: std::time::Duration| {
                let p = dir.path().join(format!("{name}{}", k.suffix));
                std::fs::write(&p, b"base").unwrap();
                std::fs::write(dir.path().join(format!("{name}{}", k.sidecar)), b"x").unwrap();
                let f = std::fs::File::options().write(true).open(&p).unwrap();
                f.set_modified(now - age).unwrap();
            };
            // Base 0 was used last, base 8 first.
            for i in 0..(BASE_KEEP as u64 + 3) {
                base(
                    &format!("{i:02}"),
                    kind,
                    std::time::Duration::from_secs(60 * i),
                );
            }
            base(
                "old",
                kind,
                BASE_MAX_IDLE + std::time::Duration::from_secs(1),
            );
            // Another kind's base, however old, is not this kind's to drop.
            base("other", other, BASE_MAX_IDLE * 2);
            std::fs::write(dir.path().join("notes.txt"), b"kept").unwrap();

            drop_idle(dir.path(), kind);
            let mut left: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            left.sort();
            let mut want: Vec<String> = (0..BASE_KEEP)
                .flat_map(|i| {
                    [
                        format!("{i:02}{}", kind.suffix),
                        format!("{i:02}{}", kind.sidecar),
                    ]
                })
                .collect();
            want.extend([
                "notes.txt".to_string(),
                format!("other{}", other.suffix),
                format!("other{}", other.sidecar),
            ]);
            want.sort();
            assert_eq!(left, want);
        }
    }

    #[test]
    fn a_cached_file_is_linked_not_copied() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("cache.raw");
        std::fs::write(&src, b"disk").unwrap();
        let dest = dir.path().join("out/_roots/x.ab.raw");
        link_or_copy(&src, &dest).unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        assert_eq!(ino(&src), ino(&dest));
        // Again: nothing to do. Over a stale file of the same name: replaced.
        link_or_copy(&src, &dest).unwrap();
        std::fs::remove_file(&dest).unwrap();
        std::fs::write(&dest, b"stale").unwrap();
        link_or_copy(&src, &dest).unwrap();
        assert_eq!(std::fs::read(&dest).unwrap(), b"disk");
        assert_eq!(ino(&src), ino(&dest));
        let left: Vec<_> = std::fs::read_dir(dest.parent().unwrap()).unwrap().collect();
        assert_eq!(left.len(), 1, "no scratch file left");
    }
}
