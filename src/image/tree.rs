//! A root filesystem held in memory: read from a layer tar, changed by the node
//! overlay, written out deterministically (sorted entries, clamped mtimes, numeric
//! owners, no user or group names) as a tar, or extracted into a directory.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

/// The contents of a file: bytes of its own, or a window into a mapped layer file,
/// so that loading a layer copies nothing and an untouched file is never read.
#[derive(Clone)]
pub struct Data(DataRef);

#[derive(Clone)]
enum DataRef {
    Owned(Arc<Vec<u8>>),
    Mapped {
        map: Arc<Mapping>,
        start: usize,
        len: usize,
    },
}

impl Data {
    pub fn as_slice(&self) -> &[u8] {
        match &self.0 {
            DataRef::Owned(v) => v.as_slice(),
            DataRef::Mapped { map, start, len } => &map.bytes()[*start..*start + *len],
        }
    }

    /// Whether both are the very same bytes (a clone), without reading them.
    pub fn same(&self, other: &Data) -> bool {
        match (&self.0, &other.0) {
            (DataRef::Owned(a), DataRef::Owned(b)) => Arc::ptr_eq(a, b),
            (
                DataRef::Mapped {
                    map: a,
                    start: s,
                    len: l,
                },
                DataRef::Mapped {
                    map: b,
                    start: t,
                    len: m,
                },
            ) => Arc::ptr_eq(a, b) && (s, l) == (t, m),
            _ => false,
        }
    }
}

impl From<Vec<u8>> for Data {
    fn from(v: Vec<u8>) -> Data {
        Data(DataRef::Owned(Arc::new(v)))
    }
}

impl std::ops::Deref for Data {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl AsRef<[u8]> for Data {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Data) -> bool {
        self.same(other) || self.as_slice() == other.as_slice()
    }
}

impl Eq for Data {}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Data({} bytes)", self.len())
    }
}

/// A read-only private mapping of a whole file. Layer files are replaced by rename,
/// never rewritten in place, so the mapped bytes do not change under us.
pub struct Mapping(memmap2::Mmap);

impl Mapping {
    pub fn open(path: &Path) -> anyhow::Result<Mapping> {
        let file =
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        // SAFETY: memmap2's one requirement is that the file is not changed while
        // mapped; layer files are only ever replaced by rename (see above).
        let map = unsafe { memmap2::Mmap::map(&file) }
            .with_context(|| format!("mapping {}", path.display()))?;
        Ok(Mapping(map))
    }

    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

/// What a path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File(Data),
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
            kind: Kind::File(data.into()),
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
            tree.add_tar_entry(entry.context("reading layer tar entry")?, |e| {
                let mut data = Vec::with_capacity(e.size() as usize);
                e.read_to_end(&mut data)?;
                Ok(data.into())
            })?;
        }
        Ok(tree)
    }

    /// Read an uncompressed tar file (a cached layer) without copying file contents:
    /// they stay in the page cache, mapped, until something reads them.
    pub fn from_tar_file(path: &Path) -> anyhow::Result<Tree> {
        let map = Arc::new(Mapping::open(path)?);
        let mut archive = tar::Archive::new(std::io::Cursor::new(map.bytes()));
        let mut tree = Tree::default();
        for entry in archive.entries_with_seek().context("reading layer tar")? {
            tree.add_tar_entry(entry.context("reading layer tar entry")?, |e| {
                let start = usize::try_from(e.raw_file_position()).unwrap_or(usize::MAX);
                let len = usize::try_from(e.size()).unwrap_or(usize::MAX);
                if start
                    .checked_add(len)
                    .is_none_or(|end| end > map.bytes().len())
                {
                    bail!("entry runs past the end of the file");
                }
                Ok(Data(DataRef::Mapped {
                    map: map.clone(),
                    start,
                    len,
                }))
            })?;
        }
        Ok(tree)
    }

    fn add_tar_entry<R: Read>(
        &mut self,
        mut entry: tar::Entry<'_, R>,
        contents: impl FnOnce(&mut tar::Entry<'_, R>) -> anyhow::Result<Data>,
    ) -> anyhow::Result<()> {
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let key = PathKey::new(&path);
        if key.0.is_empty() {
            return Ok(());
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
                Kind::File(contents(&mut entry).with_context(|| format!("reading {path}"))?)
            }
            tar::EntryType::Symlink => Kind::Symlink(link.unwrap_or_default()),
            tar::EntryType::Link => {
                Kind::Hardlink(PathKey::new(&link.unwrap_or_default()).as_path())
            }
            _ => return Ok(()),
        };
        let xattrs = read_xattrs(&mut entry)?;
        self.entries.insert(
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
        Ok(())
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
    pub fn write_tar(&self, mut out: impl Write, epoch: u64) -> anyhow::Result<()> {
        self.write_tar_pieces(epoch, |piece| out.write_all(piece).context("writing tar"))?;
        out.flush().context("flushing tar")
    }

    /// The same tar as [`Tree::write_tar`], handed over in pieces that end on entry
    /// boundaries. Where a piece ends depends on the paths (and a size bound), not on
    /// file contents, so the stretches of a tree a rebuild left alone come out as
    /// the same pieces: a cache keyed by a piece's bytes can reuse its compression.
    ///
    /// `piece` gets the buffer; it may swap in another (empty) one to keep the bytes,
    /// which saves the allocator from mapping fresh pages for every piece.
    pub fn write_tar_pieces(
        &self,
        epoch: u64,
        mut piece: impl FnMut(&mut Vec<u8>) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let mut builder = tar::Builder::new(Vec::new());
        builder.mode(tar::HeaderMode::Complete);
        for (key, entry) in self.normalised_links() {
            append_entry(&mut builder, &key, &entry, epoch)?;
            let len = builder.get_ref().len();
            if len >= PIECE_MIN && (piece_ends_after(&key) || len >= PIECE_MAX) {
                piece(builder.get_mut())?;
                builder.get_mut().clear();
            }
        }
        // The end-of-archive blocks close the last piece.
        piece(&mut builder.into_inner().context("finishing tar")?)
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
    let t = rustix::fs::Timespec {
        tv_sec: i64::try_from(mtime).unwrap_or(i64::MAX),
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: t,
        last_modification: t,
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(std::io::Error::from)
    .with_context(|| format!("setting times of {}", path.display()))
}

fn set_mtime(path: &Path, mtime: u64) -> anyhow::Result<()> {
    let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(mtime);
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .with_context(|| format!("setting times of {}", path.display()))
}

/// Pieces of [`Tree::write_tar_pieces`]: at least this long unless last...
const PIECE_MIN: usize = 4 << 20;
/// ...and cut at the next entry once this long, whatever its path.
const PIECE_MAX: usize = 64 << 20;

/// Whether a piece may end after `key`: one path in 64, chosen by a hash of the path
/// (FNV-1a), so boundaries stay put when contents change.
fn piece_ends_after(key: &PathKey) -> bool {
    let hash = key.0.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 64 == 0
}

fn append_entry(
    builder: &mut tar::Builder<Vec<u8>>,
    key: &PathKey,
    entry: &Entry,
    epoch: u64,
) -> anyhow::Result<()> {
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
    .with_context(|| format!("writing {path} to tar"))
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

    #[test]
    fn a_mapped_tar_file_reads_like_a_stream() {
        let mut t = Tree::default();
        t.insert("/etc/a", Entry::file(b"alpha".to_vec(), 0o644, 0, 0, 5));
        t.insert(
            "/usr/lib/big",
            Entry::file(vec![7u8; 70_000], 0o755, 0, 0, 5),
        );
        t.insert("/usr/lib/empty", Entry::file(Vec::new(), 0o600, 3, 4, 5));
        t.insert("/bin", Entry::symlink("usr/bin", 5));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar");
        t.write_tar(std::fs::File::create(&path).unwrap(), 10)
            .unwrap();
        let streamed = Tree::from_tar(std::fs::File::open(&path).unwrap()).unwrap();
        let mapped = Tree::from_tar_file(&path).unwrap();
        assert_eq!(streamed.entries, mapped.entries);
        assert_eq!(
            mapped.get("usr/lib/big").unwrap().kind,
            Kind::File(vec![7u8; 70_000].into())
        );
        // A clone shares the bytes; equal bytes elsewhere are equal, not the same.
        let copy = mapped.clone();
        let (Kind::File(a), Kind::File(b)) = (
            &mapped.get("etc/a").unwrap().kind,
            &copy.get("etc/a").unwrap().kind,
        ) else {
            panic!("etc/a is a file")
        };
        assert!(a.same(b));
        assert!(!a.same(&b"alpha".to_vec().into()) && *a == Data::from(b"alpha".to_vec()));
    }
}
