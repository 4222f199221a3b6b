//! The ext4 root of a raw disk, fast: `mke2fs -d` runs once per layer, on the layer's
//! own tree, and the result is cached under `$PIGSTY_CACHE/ext4/`; each node's root is
//! that base image patched with `debugfs` (the files the overlay adds, changes or
//! removes). Every disk of a layer is made this way, whether the base was in the cache
//! or not, so two builds of the same inputs still give the same bytes.
//!
//! The patch handles regular files, directories and symlinks. A change that touches
//! hard links, or a path debugfs cannot quote, makes [`Patch::diff`] return `None`
//! and the caller formats the whole tree instead.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::disk::{self, DiskIds};
use super::tree::{Data, Entry, Kind, PathKey, Tree};
use crate::sys;

/// Room the base image keeps for what nodes add (the agent, rendered files, extra
/// trees): the part of a node's additions beyond the layer, rounded up to this.
const ROOM_STEP_MIB: u64 = 64;

/// The cached ext4 image of a layer's tree, made when missing.
pub fn ensure_base(
    cache: &Path,
    layer_key: &str,
    base: &Tree,
    ids: &DiskIds,
    size_mib: u64,
    epoch: u64,
    usage: disk::RootUse,
) -> anyhow::Result<PathBuf> {
    let version = mke2fs_version()?;
    let mut h = Sha256::new();
    h.update(format!(
        "pigsty ext4 base v1\nlayer {layer_key}\nuuid {}\nsize {size_mib}\nepoch {epoch}\n{version}\n",
        ids.root_fs
    ));
    if usage == disk::RootUse::ReadOnly {
        h.update(b"read-only: no journal\n");
    }
    let key = hex::encode(h.finalize());
    let dir = cache.join("ext4");
    let path = dir.join(format!("{key}.ext4"));
    if path.is_file() {
        tracing::info!(base = %key, "ext4 base cached");
        // Touched on use: bases left unused for BASE_MAX_IDLE are dropped.
        if let Ok(f) = std::fs::File::options().write(true).open(&path) {
            let _ = f.set_modified(std::time::SystemTime::now());
        }
        drop_idle_bases(&dir);
        return Ok(path);
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let work = tempfile::Builder::new()
        .prefix(".base-")
        .tempdir_in(&dir)
        .with_context(|| format!("scratch directory in {}", dir.display()))?;
    let root = work.path().join("root");
    super::step("extracting the layer for its ext4 base", || {
        base.extract(&root, epoch)
    })?;
    let img = work.path().join("root.ext4");
    super::step("mke2fs -d (ext4 base of the layer)", || {
        disk::make_ext4(&root, &img, ids, size_mib, epoch, usage)
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

/// Size of the root filesystem for `tree` on top of `base`, in MiB: the base's files
/// with room for metadata, and what the node adds in steps of [`ROOM_STEP_MIB`], so
/// the size (and the cached base) changes only when a node adds much more.
pub fn size_mib(base: &Tree, tree: &Tree) -> u64 {
    let used = |t: &Tree| -> u64 {
        t.entries
            .values()
            .map(|e| match &e.kind {
                Kind::File(d) => (d.len() as u64).div_ceil(4096).max(1) * 4096,
                _ => 4096,
            })
            .sum()
    };
    let (b, t) = (used(base), used(tree));
    let added_mib = t.saturating_sub(b).div_ceil(1 << 20);
    let room = added_mib.div_ceil(ROOM_STEP_MIB).max(1) * ROOM_STEP_MIB;
    (b * 13 / 10) / (1 << 20) + 256 + room
}

/// A debugfs script that turns the base image into the node's root.
pub struct Patch {
    /// Contents of the files to write, in the order the script names them
    /// (`<dir>/<index>`).
    files: Vec<Data>,
    script: String,
    /// Paths changed, for the log.
    pub changed: usize,
}

impl Patch {
    /// The changes from `base` to `tree`; `None` when debugfs cannot apply them as the
    /// full format would (hard links involved, or awkward paths).
    pub fn diff(base: &Tree, tree: &Tree, epoch: u64) -> Option<Patch> {
        let link_targets: BTreeSet<PathKey> = base
            .entries
            .values()
            .filter_map(|e| match &e.kind {
                Kind::Hardlink(t) => Some(PathKey::new(t)),
                _ => None,
            })
            .collect();
        let mut removed = Vec::new();
        let mut created = Vec::new();
        let mut restamped = Vec::new();
        let keys: BTreeSet<&PathKey> = base.entries.keys().chain(tree.entries.keys()).collect();
        for key in keys {
            match (base.entries.get(key), tree.entries.get(key)) {
                (Some(b), None) => removed.push((key, b)),
                (None, Some(t)) => created.push((key, t)),
                (Some(b), Some(t)) if same_object(b, t) => {
                    if !same_stamp(b, t, epoch) {
                        restamped.push((key, t));
                    }
                    continue;
                }
                (Some(b), Some(t)) => {
                    removed.push((key, b));
                    created.push((key, t));
                }
                (None, None) => continue,
            }
            let involved = |e: &Entry| matches!(e.kind, Kind::Hardlink(_));
            if base.entries.get(key).is_some_and(involved)
                || tree.entries.get(key).is_some_and(involved)
                || link_targets.contains(key)
            {
                return None;
            }
        }
        let mut patch = Patch {
            files: Vec::new(),
            script: String::new(),
            changed: removed.len() + created.len() + restamped.len(),
        };
        // Children before their directories.
        for (key, entry) in removed.iter().rev() {
            let path = quoted(&key.as_path())?;
            let cmd = if matches!(entry.kind, Kind::Dir) {
                "rmdir"
            } else {
                "rm"
            };
            let _ = writeln!(patch.script, "{cmd} {path}");
        }
        let mut parents = BTreeSet::new();
        for (key, entry) in &created {
            let full = key.as_path();
            let (parent, name) = full.rsplit_once('/').unwrap_or(("", full.as_str()));
            let _ = writeln!(patch.script, "cd {}", quoted(&format!("/{parent}"))?);
            let name = quoted(name)?;
            match &entry.kind {
                Kind::Dir => {
                    let _ = writeln!(patch.script, "mkdir {name}");
                }
                Kind::File(data) => {
                    let _ = writeln!(patch.script, "write @FILES@/{} {name}", patch.files.len());
                    patch.files.push(data.clone());
                }
                Kind::Symlink(target) => {
                    let _ = writeln!(patch.script, "symlink {name} {}", quoted(target)?);
                }
                Kind::Hardlink(_) => return None,
            }
            parents.insert(PathKey::new(parent));
        }
        for (key, _) in &removed {
            let full = key.as_path();
            parents.insert(PathKey::new(full.rsplit_once('/').map_or("", |(p, _)| p)));
        }
        let _ = writeln!(patch.script, "cd /");
        for (key, entry) in created.iter().chain(&restamped) {
            patch.stamp(&key.as_path(), entry, epoch)?;
        }
        // Linking and unlinking names changed these directories.
        for key in parents {
            let entry = tree.entries.get(&key);
            match entry {
                Some(e) => patch.stamp(&key.as_path(), e, epoch)?,
                None if key.as_path().is_empty() => patch.stamp_root(epoch),
                None => {}
            }
        }
        Some(patch)
    }

    /// Owner, mode and times of one path as the full format would have them: mtime
    /// from the tree (clamped), atime and ctime at the epoch (see `disk::clamp_ctimes`).
    fn stamp(&mut self, path: &str, e: &Entry, epoch: u64) -> Option<()> {
        let ty = match e.kind {
            Kind::Dir => 0o040000,
            Kind::File(_) => 0o100000,
            Kind::Symlink(_) => 0o120000,
            Kind::Hardlink(_) => return None,
        };
        let mode = if matches!(e.kind, Kind::Symlink(_)) {
            0o777
        } else {
            e.mode & 0o7777
        };
        let p = quoted(&format!("/{path}"))?;
        let s = &mut self.script;
        let _ = writeln!(s, "sif {p} mode 0{:o}", ty | mode);
        let _ = writeln!(s, "sif {p} uid {}", e.uid);
        let _ = writeln!(s, "sif {p} gid {}", e.gid);
        let _ = writeln!(s, "sif {p} mtime @{}", e.mtime.min(epoch));
        let _ = writeln!(s, "sif {p} atime @{epoch}");
        let _ = writeln!(s, "sif {p} ctime @{epoch}");
        Some(())
    }

    fn stamp_root(&mut self, epoch: u64) {
        for field in ["mtime", "atime", "ctime"] {
            let _ = writeln!(self.script, "sif <2> {field} @{epoch}");
        }
    }

    /// Apply to the ext4 filesystem in `image` (`file` or `file?offset=N`).
    pub fn apply(&self, image: &str, epoch: u64) -> anyhow::Result<()> {
        let work = tempfile::Builder::new()
            .prefix(".pigsty-patch")
            .tempdir()
            .context("scratch directory for the ext4 patch")?;
        for (i, data) in self.files.iter().enumerate() {
            let p = work.path().join(i.to_string());
            std::fs::write(&p, data.as_slice())
                .with_context(|| format!("writing {}", p.display()))?;
        }
        let files_dir = work.path().to_str().context("scratch path is not UTF-8")?;
        let script = work.path().join("script");
        std::fs::write(&script, self.script.replace("@FILES@", files_dir))
            .with_context(|| format!("writing {}", script.display()))?;
        let out = sys::run(
            Command::new("debugfs")
                .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
                .arg("-w")
                .arg("-f")
                .arg(&script)
                .arg(image),
        )?;
        // debugfs goes on after a failed command and exits 0: its stderr tells.
        let errors: Vec<&str> = std::str::from_utf8(&out.stderr)
            .unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with("debugfs ") && !l.trim().is_empty())
            .collect();
        if !errors.is_empty() {
            bail!(
                "debugfs could not patch the root filesystem: {}",
                errors[..errors.len().min(10)].join("; ")
            );
        }
        Ok(())
    }
}

/// Same kind and content (metadata aside): the entry can stay as the base has it.
fn same_object(a: &Entry, b: &Entry) -> bool {
    match (&a.kind, &b.kind) {
        (Kind::Dir, Kind::Dir) => true,
        (Kind::File(x), Kind::File(y)) => x == y,
        (Kind::Symlink(x), Kind::Symlink(y)) => x == y,
        (Kind::Hardlink(x), Kind::Hardlink(y)) => x == y,
        _ => false,
    }
}

/// Same owner, mode and (clamped) mtime. Extended attributes are not compared: the
/// extracted tree `mke2fs -d` reads carries none either.
fn same_stamp(a: &Entry, b: &Entry, epoch: u64) -> bool {
    (a.mode, a.uid, a.gid, a.mtime.min(epoch)) == (b.mode, b.uid, b.gid, b.mtime.min(epoch))
}

/// A debugfs argument: plain paths only (no quoting to get wrong).
fn quoted(s: &str) -> Option<String> {
    let plain = !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-+:@,=~%".contains(&b));
    plain.then(|| s.to_string())
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

    fn base() -> Tree {
        let mut t = Tree::default();
        t.insert(
            "/etc/hostname",
            Entry::file(b"debian\n".to_vec(), 0o644, 0, 0, 5),
        );
        t.insert(
            "/etc/ssh/ssh_host_rsa_key",
            Entry::file(b"k".to_vec(), 0o600, 0, 0, 5),
        );
        t.insert("/usr/bin/ls", Entry::file(b"ls".to_vec(), 0o755, 0, 0, 5));
        t
    }

    #[test]
    fn diff_names_only_what_changed() {
        let b = base();
        let mut t = b.clone();
        t.insert(
            "/etc/hostname",
            Entry::file(b"pg-1\n".to_vec(), 0o644, 0, 0, 9),
        );
        t.remove("etc/ssh/ssh_host_rsa_key");
        t.insert(
            "/etc/pigsty/node.json",
            Entry::file(b"{}".to_vec(), 0o600, 0, 0, 9),
        );
        t.insert(
            "/etc/localtime",
            Entry::symlink("/usr/share/zoneinfo/UTC", 9),
        );
        let p = Patch::diff(&b, &t, 9).unwrap();
        let s = &p.script;
        assert!(s.contains("rm etc/ssh/ssh_host_rsa_key\n"), "{s}");
        assert!(s.contains("rm etc/hostname\n"), "{s}");
        assert!(s.contains("cd /etc\nmkdir pigsty\n"), "{s}");
        assert!(s.contains("cd /etc/pigsty\nwrite @FILES@/"), "{s}");
        assert!(
            s.contains("symlink localtime /usr/share/zoneinfo/UTC\n"),
            "{s}"
        );
        assert!(
            s.contains("sif /etc/pigsty/node.json mode 0100600\n"),
            "{s}"
        );
        assert!(!s.contains("usr/bin/ls"), "untouched files stay out: {s}");
        assert_eq!(p.files.len(), 2);
    }

    /// Every inode of an ext4 image as a sorted listing: path, mode, owner, mtime,
    /// and content (or link target), read back with debugfs `rdump`.
    fn listing(img: &Path) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let out = tempfile::tempdir().unwrap();
        let st = Command::new("debugfs")
            .arg("-R")
            .arg(format!("rdump / {}", out.path().display()))
            .arg(img)
            .output()
            .unwrap();
        assert!(st.status.success());
        let mut rows = Vec::new();
        let mut stack = vec![out.path().to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                let m = std::fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(out.path()).unwrap().display().to_string();
                let what = if m.is_dir() {
                    stack.push(p.clone());
                    String::from("dir")
                } else if m.file_type().is_symlink() {
                    format!("-> {}", std::fs::read_link(&p).unwrap().display())
                } else {
                    hex::encode(Sha256::digest(std::fs::read(&p).unwrap()))
                };
                rows.push(format!(
                    "{rel} {:o} {}:{} {} {what}",
                    m.mode(),
                    m.uid(),
                    m.gid(),
                    if m.file_type().is_symlink() {
                        0
                    } else {
                        m.mtime()
                    }
                ));
            }
        }
        rows.sort();
        rows
    }

    #[test]
    #[ignore = "needs root (owners in the extracted tree) and e2fsprogs: run by ci/test.sh"]
    fn a_patched_base_holds_what_formatting_the_tree_gives() {
        let dir = tempfile::tempdir().unwrap();
        let ids = DiskIds::from_digest(&"ab".repeat(32));
        let mut b = base();
        b.insert(
            "/var/lib/etcd/default/member",
            Entry::file(b"m".to_vec(), 0o600, 0, 0, 5),
        );
        b.insert("/usr/bin/vi", Entry::symlink("/etc/alternatives/vi", 5));
        let mut t = b.clone();
        t.remove_tree("var/lib/etcd/default");
        t.insert(
            "/etc/hostname",
            Entry::file(b"pg-1\n".to_vec(), 0o644, 0, 0, 9),
        );
        t.insert(
            "/etc/pigsty/node.json",
            Entry::file(vec![1u8; 9000], 0o600, 26, 27, 9),
        );
        t.insert("/usr/bin/vi", Entry::symlink("/usr/bin/nvi", 9));
        t.insert("/usr/bin/ls", Entry::file(b"ls".to_vec(), 0o700, 0, 0, 5));
        let epoch = 9;
        let size = 64;
        let base_img = ensure_base(
            dir.path(),
            "k",
            &b,
            &ids,
            size,
            epoch,
            disk::RootUse::ReadWrite,
        )
        .unwrap();
        let patched = dir.path().join("patched.ext4");
        std::fs::copy(&base_img, &patched).unwrap();
        Patch::diff(&b, &t, epoch)
            .unwrap()
            .apply(patched.to_str().unwrap(), epoch)
            .unwrap();
        let fsck = Command::new("e2fsck")
            .arg("-fn")
            .arg(&patched)
            .output()
            .unwrap();
        assert!(
            fsck.status.success(),
            "{}",
            String::from_utf8_lossy(&fsck.stdout)
        );
        let full_dir = dir.path().join("full");
        t.extract(&full_dir, epoch).unwrap();
        let full = dir.path().join("full.ext4");
        disk::make_ext4(
            &full_dir,
            &full,
            &ids,
            size,
            epoch,
            disk::RootUse::ReadWrite,
        )
        .unwrap();
        assert_eq!(listing(&patched), listing(&full));
    }

    #[test]
    fn hard_links_and_odd_paths_fall_back() {
        let mut b = base();
        b.insert(
            "/usr/bin/dir",
            Entry {
                kind: Kind::Hardlink("usr/bin/ls".into()),
                ..Entry::dir(0o755, 5)
            },
        );
        let mut t = b.clone();
        t.insert("/usr/bin/ls", Entry::file(b"new".to_vec(), 0o755, 0, 0, 5));
        assert!(Patch::diff(&b, &t, 9).is_none(), "a link target changed");
        let mut t = base();
        t.insert("/etc/with space", Entry::file(Vec::new(), 0o644, 0, 0, 5));
        assert!(Patch::diff(&base(), &t, 9).is_none());
    }
}
