//! Extra trees (`build-image --extra-tree DIR`): host directories copied over the
//! node's root last, as mkosi's `ExtraTrees=` does. This is how an image gets what
//! Debian does not package, such as a MinIO-compatible server at
//! `DIR/usr/local/bin/minio`.
//!
//! Files keep their permission bits; everything is owned by root and stamped with the
//! build's epoch, so the image depends on the tree's contents only. The tree's digest
//! goes into the manifest.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::tree::{Entry, Tree};

/// A host directory read into memory, with its digest.
#[derive(Debug, Clone)]
pub struct ExtraTree {
    pub source: PathBuf,
    /// `(path in the image, entry)`, sorted by path.
    pub entries: Vec<(String, Entry)>,
    /// sha256 over every path, kind, mode and content.
    pub sha256: String,
}

impl ExtraTree {
    /// Read `dir`. Refuses anything but directories, regular files and symlinks, and
    /// files that are not readable.
    pub fn read(dir: &Path, epoch: u64) -> anyhow::Result<ExtraTree> {
        let meta =
            std::fs::metadata(dir).with_context(|| format!("extra tree {}", dir.display()))?;
        if !meta.is_dir() {
            bail!("extra tree {}: not a directory", dir.display());
        }
        let mut entries = Vec::new();
        let mut stack = vec![PathBuf::new()];
        while let Some(rel) = stack.pop() {
            let here = dir.join(&rel);
            let mut children: Vec<_> = std::fs::read_dir(&here)
                .with_context(|| format!("reading {}", here.display()))?
                .collect::<Result<_, _>>()
                .with_context(|| format!("reading {}", here.display()))?;
            children.sort_by_key(|e| e.file_name());
            for child in children {
                let rel_child = rel.join(child.file_name());
                let Some(name) = rel_child.to_str() else {
                    bail!(
                        "extra tree {}: {} is not valid UTF-8",
                        dir.display(),
                        rel_child.display()
                    );
                };
                let image_path = format!("/{name}");
                let path = child.path();
                let m = std::fs::symlink_metadata(&path)
                    .with_context(|| format!("reading {}", path.display()))?;
                let mode = m.permissions().mode() & 0o7777;
                let ft = m.file_type();
                let entry = if ft.is_dir() {
                    stack.push(rel_child.clone());
                    Entry::dir(mode, epoch)
                } else if ft.is_symlink() {
                    let target = std::fs::read_link(&path)
                        .with_context(|| format!("reading link {}", path.display()))?;
                    Entry::symlink(&target.to_string_lossy(), epoch)
                } else if ft.is_file() {
                    let data = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    // Set-id bits from a user's tree are not carried into an image.
                    Entry::file(data, mode & 0o1777, 0, 0, epoch)
                } else {
                    bail!(
                        "extra tree {}: {} is not a file, directory or symlink (mode {:o})",
                        dir.display(),
                        rel_child.display(),
                        m.mode()
                    );
                };
                entries.push((image_path, entry));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let mut h = Sha256::new();
        for (path, e) in &entries {
            h.update(path.as_bytes());
            h.update([0]);
            h.update(e.mode.to_be_bytes());
            match &e.kind {
                super::tree::Kind::File(d) => {
                    h.update(b"f");
                    h.update((d.len() as u64).to_be_bytes());
                    h.update(d.as_slice());
                }
                super::tree::Kind::Symlink(t) => {
                    h.update(b"l");
                    h.update(t.as_bytes());
                    h.update([0]);
                }
                _ => h.update(b"d"),
            }
        }
        Ok(ExtraTree {
            source: dir.to_path_buf(),
            entries,
            sha256: hex::encode(h.finalize()),
        })
    }

    /// Copy over `tree`: a directory already in the image keeps its mode and owner.
    pub fn apply(&self, tree: &mut Tree) {
        for (path, entry) in &self.entries {
            if matches!(entry.kind, super::tree::Kind::Dir) && tree.get(path).is_some() {
                continue;
            }
            tree.insert(path, entry.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_files_links_and_modes_and_digests_content() {
        let dir = tempfile::tempdir().unwrap();
        let bin = dir.path().join("usr/local/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::write(bin.join("minio"), b"#!/bin/sh\n").unwrap();
        std::fs::set_permissions(bin.join("minio"), std::fs::Permissions::from_mode(0o4755))
            .unwrap();
        std::os::unix::fs::symlink("minio", bin.join("rustfs")).unwrap();
        let a = ExtraTree::read(dir.path(), 7).unwrap();
        let paths: Vec<&str> = a.entries.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/usr",
                "/usr/local",
                "/usr/local/bin",
                "/usr/local/bin/minio",
                "/usr/local/bin/rustfs"
            ]
        );
        let minio = &a.entries[3].1;
        assert_eq!(minio.mode, 0o755, "setuid is dropped");
        assert_eq!((minio.uid, minio.gid, minio.mtime), (0, 0, 7));

        let mut tree = Tree::default();
        tree.insert("/usr", Entry::dir(0o700, 1));
        a.apply(&mut tree);
        assert_eq!(tree.get("/usr").unwrap().mode, 0o700);
        assert!(tree.get("/usr/local/bin/rustfs").is_some());

        std::fs::write(bin.join("minio"), b"#!/bin/sh\nexit 1\n").unwrap();
        let b = ExtraTree::read(dir.path(), 7).unwrap();
        assert_ne!(a.sha256, b.sha256);
    }

    #[test]
    fn refuses_a_missing_dir_or_a_fifo() {
        let dir = tempfile::tempdir().unwrap();
        let err = ExtraTree::read(&dir.path().join("nope"), 0).unwrap_err();
        assert!(format!("{err:#}").contains("nope"));
        let fifo = dir.path().join("p");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let err = ExtraTree::read(dir.path(), 0).unwrap_err();
        assert!(format!("{err:#}").contains("not a file"), "{err:#}");
    }
}
