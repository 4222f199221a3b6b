//! A root filesystem held in memory: read from a layer tar, changed by the node
//! overlay, written out deterministically (sorted entries, clamped mtimes, numeric
//! owners, no user or group names) as a tar, or extracted into a directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Arc<Vec<u8>>),
    Symlink(String),
    /// A hard link to another path of the tree (normalised on write so the target
    /// always comes first).
    Hardlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub mode: u32,
    pub uid: u64,
    pub gid: u64,
    pub mtime: u64,
    /// Extended attributes (`security.capability` on ping, say), kept from the layer.
    pub xattrs: Vec<(String, Vec<u8>)>,
}

impl Entry {
    pub fn file(data: Vec<u8>, mode: u32, uid: u64, gid: u64, mtime: u64) -> Entry {
        Entry {
            kind: Kind::File(Arc::new(data)),
            mode,
            uid,
            gid,
            mtime,
            xattrs: Vec::new(),
        }
    }

    pub fn dir(mode: u32, mtime: u64) -> Entry {
        Entry {
            kind: Kind::Dir,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
        }
    }

    pub fn symlink(target: &str, mtime: u64) -> Entry {
        Entry {
            kind: Kind::Symlink(target.to_string()),
            mode: 0o777,
            uid: 0,
            gid: 0,
            mtime,
            xattrs: Vec::new(),
        }
    }
}

/// Paths relative to the root, without a leading `/` (`etc/hosts`), ordered component
/// by component so a directory's contents follow it directly (`a`, `a/b`, `a.b`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathKey(Vec<u8>);

impl PathKey {
    pub fn new(path: &str) -> PathKey {
        let clean = path
            .trim_start_matches("./")
            .trim_start_matches('/')
            .trim_end_matches('/');
        PathKey(
            clean
                .bytes()
                .map(|b| if b == b'/' { 0 } else { b })
                .collect(),
        )
    }

    pub fn as_path(&self) -> String {
        self.0
            .iter()
            .map(|&b| if b == 0 { '/' } else { b as char })
            .collect::<String>()
    }
}

#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub entries: BTreeMap<PathKey, Entry>,
}

impl Tree {
    /// Read a tar stream (a layer), keeping modes, numeric owners, mtimes and xattrs.
    /// Device nodes are skipped: the booted system mounts devtmpfs.
    pub fn from_tar(reader: impl Read) -> anyhow::Result<Tree> {
        let mut archive = tar::Archive::new(reader);
        let mut tree = Tree::default();
        for entry in archive.entries().context("reading layer tar")? {
            let mut entry = entry.context("reading layer tar entry")?;
            let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
            let key = PathKey::new(&path);
            if key.0.is_empty() {
                continue;
            }
            let header = entry.header();
            let (mode, uid, gid, mtime) = (
                header.mode().context("mode")?,
                header.uid().context("uid")?,
                header.gid().context("gid")?,
                header.mtime().context("mtime")?,
            );
            let link = entry
                .link_name_bytes()
                .map(|l| String::from_utf8_lossy(&l).into_owned());
            let kind = match header.entry_type() {
                tar::EntryType::Directory => Kind::Dir,
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let mut data = Vec::with_capacity(entry.size() as usize);
                    entry
                        .read_to_end(&mut data)
                        .with_context(|| format!("reading {path}"))?;
                    Kind::File(Arc::new(data))
                }
                tar::EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
                tar::EntryType::Link => {
                    Kind::Hardlink(PathKey::new(&link.unwrap_or_default()).as_path())
                }
                _ => continue,
            };
            let xattrs = read_xattrs(&mut entry)?;
            tree.entries.insert(
                key,
                Entry {
                    kind,
                    mode: mode & 0o7777,
                    uid,
                    gid,
                    mtime,
                    xattrs,
                },
            );
        }
        Ok(tree)
    }

    pub fn insert(&mut self, path: &str, entry: Entry) {
        self.ensure_parents(path, entry.mtime);
        self.entries.insert(PathKey::new(path), entry);
    }

    pub fn remove(&mut self, path: &str) {
        self.entries.remove(&PathKey::new(path));
    }

    /// Remove a path and everything below it.
    pub fn remove_tree(&mut self, path: &str) {
        let key = PathKey::new(path);
        let mut prefix = key.0.clone();
        prefix.push(0);
        self.entries
            .retain(|k, _| *k != key && !k.0.starts_with(&prefix));
    }

    pub fn get(&self, path: &str) -> Option<&Entry> {
        self.entries.get(&PathKey::new(path))
    }

    fn ensure_parents(&mut self, path: &str, mtime: u64) {
        let clean = path.trim_start_matches('/');
        let mut acc = String::new();
        let parts: Vec<&str> = clean.split('/').collect();
        for part in &parts[..parts.len().saturating_sub(1)] {
            if !acc.is_empty() {
                acc.push('/');
            }
            acc.push_str(part);
            self.entries
                .entry(PathKey::new(&acc))
                .or_insert_with(|| Entry::dir(0o755, mtime));
        }
    }

    /// Hard links whose target sorts after them are swapped so the data comes first.
    fn normalised_links(&self) -> BTreeMap<PathKey, Entry> {
        let mut out = self.entries.clone();
        for (key, entry) in &self.entries {
            let Kind::Hardlink(target) = &entry.kind else {
                continue;
            };
            let tkey = PathKey::new(target);
            if tkey > *key
                && let Some(t) = out.get(&tkey).cloned()
            {
                out.insert(key.clone(), t);
                let mut link = entry.clone();
                link.kind = Kind::Hardlink(key.as_path());
                out.insert(tkey, link);
            }
        }
        out
    }

    /// Write a tar: entries in path order, mtimes clamped to `epoch`, numeric owners.
    pub fn write_tar(&self, out: impl Write, epoch: u64) -> anyhow::Result<()> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Complete);
        for (key, entry) in self.normalised_links() {
            let path = key.as_path();
            if !entry.xattrs.is_empty() {
                let pax: Vec<(String, &[u8])> = entry
                    .xattrs
                    .iter()
                    .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
                    .collect();
                builder
                    .append_pax_extensions(pax.iter().map(|(k, v)| (k.as_str(), *v)))
                    .with_context(|| format!("writing xattrs of {path}"))?;
            }
            let mut header = tar::Header::new_gnu();
            header.set_mode(entry.mode);
            header.set_uid(entry.uid);
            header.set_gid(entry.gid);
            header.set_mtime(entry.mtime.min(epoch));
            match &entry.kind {
                Kind::Dir => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_size(0);
                    builder.append_data(&mut header, format!("{path}/"), std::io::empty())
                }
                Kind::File(data) => {
                    header.set_entry_type(tar::EntryType::Regular);
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, &path, data.as_slice())
                }
                Kind::Symlink(target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, &path, target)
                }
                Kind::Hardlink(target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, &path, target)
                }
            }
            .with_context(|| format!("writing {path} to tar"))?;
        }
        builder
            .into_inner()
            .context("finishing tar")?
            .flush()
            .context("flushing tar")?;
        Ok(())
    }

    /// Extract into `dir` (which must be empty), with owners, modes and mtimes, for
    /// `mke2fs -d` and `mksquashfs`.
    pub fn extract(&self, dir: &Path, epoch: u64) -> anyhow::Result<()> {
        use std::os::unix::fs::{PermissionsExt, lchown, symlink};
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let mut dirs = Vec::new();
        for (key, entry) in self.normalised_links() {
            let rel = key.as_path();
            let path = dir.join(&rel);
            match &entry.kind {
                Kind::Dir => {
                    std::fs::create_dir_all(&path)
                        .with_context(|| format!("creating {}", path.display()))?;
                    dirs.push((path.clone(), entry.clone()));
                }
                Kind::File(data) => {
                    std::fs::write(&path, data.as_slice())
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Kind::Symlink(target) => {
                    symlink(target, &path)
                        .with_context(|| format!("linking {}", path.display()))?;
                }
                Kind::Hardlink(target) => {
                    std::fs::hard_link(dir.join(target), &path)
                        .with_context(|| format!("linking {}", path.display()))?;
                }
            }
            lchown(&path, Some(entry.uid as u32), Some(entry.gid as u32))
                .with_context(|| format!("chown {}", path.display()))?;
            if let Kind::Symlink(_) = entry.kind {
                set_symlink_mtime(&path, entry.mtime.min(epoch))?;
            }
            if !matches!(entry.kind, Kind::Symlink(_) | Kind::Dir) {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(entry.mode))
                    .with_context(|| format!("chmod {}", path.display()))?;
                set_mtime(&path, entry.mtime.min(epoch))?;
            }
        }
        // Directories last: writing their children changed their mtimes.
        for (path, entry) in dirs.iter().rev() {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(entry.mode))
                .with_context(|| format!("chmod {}", path.display()))?;
            set_mtime(path, entry.mtime.min(epoch))?;
        }
        Ok(())
    }
}

/// A symlink's own times (std sets times only through a file handle, which follows
/// links): utimensat with AT_SYMLINK_NOFOLLOW.
fn set_symlink_mtime(path: &Path, mtime: u64) -> anyhow::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} holds a NUL byte", path.display()))?;
    let t = libc::timespec {
        tv_sec: mtime as libc::time_t,
        tv_nsec: 0,
    };
    let times = [t, t];
    // SAFETY: `c` is a valid NUL-terminated path and `times` two initialised timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("setting times of {}", path.display()));
    }
    Ok(())
}

fn set_mtime(path: &Path, mtime: u64) -> anyhow::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .with_context(|| format!("setting times of {}", path.display()))
}

fn read_xattrs<R: Read>(entry: &mut tar::Entry<'_, R>) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out = Vec::new();
    if let Some(exts) = entry.pax_extensions().context("reading pax headers")? {
        for ext in exts {
            let ext = ext.context("reading a pax header")?;
            if let Some(name) = ext.key().ok().and_then(|k| k.strip_prefix("SCHILY.xattr.")) {
                out.push((name.to_string(), ext.value_bytes().to_vec()));
            }
        }
    }
    Ok(out)
}

/// Check a tar for the properties a reproducible rootfs needs.
pub fn check_sorted(tree_tar: &[u8]) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(tree_tar);
    let mut last: Option<PathKey> = None;
    for e in archive.entries()? {
        let e = e?;
        let key = PathKey::new(&String::from_utf8_lossy(&e.path_bytes()));
        if let Some(prev) = &last
            && *prev >= key
        {
            bail!("tar not sorted at {}", key.as_path());
        }
        last = Some(key);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_sort_by_component() {
        let mut keys = [PathKey::new("a.b"), PathKey::new("a/b"), PathKey::new("a")];
        keys.sort();
        let shown: Vec<String> = keys.iter().map(PathKey::as_path).collect();
        assert_eq!(shown, ["a", "a/b", "a.b"]);
    }

    #[test]
    fn tar_round_trip_is_sorted_clamped_and_stable() {
        let mut t = Tree::default();
        t.insert(
            "/etc/b",
            Entry::file(b"b".to_vec(), 0o600, 26, 26, 9_999_999_999),
        );
        t.insert("/etc/a", Entry::file(b"a".to_vec(), 0o644, 0, 0, 5));
        t.insert("/usr/bin/x", Entry::file(b"x".to_vec(), 0o755, 0, 0, 5));
        t.insert(
            "/usr/bin/y",
            Entry {
                kind: Kind::Hardlink("usr/bin/z".into()),
                ..Entry::dir(0o755, 5)
            },
        );
        t.insert("/usr/bin/z", Entry::file(b"z".to_vec(), 0o755, 0, 0, 5));
        let mut one = Vec::new();
        t.write_tar(&mut one, 1000).unwrap();
        let mut two = Vec::new();
        t.write_tar(&mut two, 1000).unwrap();
        assert_eq!(one, two);
        check_sorted(&one).unwrap();
        let back = Tree::from_tar(one.as_slice()).unwrap();
        let b = back.get("etc/b").unwrap();
        assert_eq!((b.mode, b.uid, b.mtime), (0o600, 26, 1000));
        assert!(
            matches!(back.get("usr/bin/y").unwrap().kind, Kind::File(_)),
            "data moved to the first path"
        );
        assert_eq!(
            back.get("usr/bin/z").unwrap().kind,
            Kind::Hardlink("usr/bin/y".into())
        );
    }
}
