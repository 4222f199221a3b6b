//! Write a rendered overlay to a directory, all or nothing: the tree is built in a
//! temporary sibling and renamed into place, so a failure leaves no partial tree.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::RenderedFile;

/// The file at the root of a tree `render` wrote: the next render may replace it.
pub const RENDER_MARK: &str = ".pigsty-render";

const RENDER_MARK_TEXT: &str =
    "Written by `pigsty render`: the next `pigsty render --out` to this directory replaces it.\n";

/// Whether the directory `dir` may be replaced: absent, empty, or holding `mark`, the
/// file pigsty leaves in what it writes. A directory holding anything else was not
/// made by pigsty and is never removed; a symbolic link or a file is refused too.
pub fn check_replaceable(dir: &Path, mark: &str) -> Result<(), String> {
    let meta = match fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("{}: {e}", dir.display())),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(format!(
            "{} is a symbolic link: name the directory itself",
            dir.display()
        ));
    }
    if !meta.is_dir() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    let mut entries = fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    if entries.next().is_none() || dir.join(mark).is_file() {
        return Ok(());
    }
    Err(format!(
        "{} holds files pigsty did not write (it has no {mark}); it is not replaced: \
         name a new or empty directory",
        dir.display()
    ))
}

/// Write `files` under `out` (`/etc/x` → `out/etc/x`) with their modes, and
/// [`RENDER_MARK`] at its root. An existing `out` is replaced only once the new tree
/// is complete, and only if [`check_replaceable`] allows it.
pub fn write_tree(files: &[RenderedFile], out: &Path) -> anyhow::Result<()> {
    check_replaceable(out, RENDER_MARK).map_err(anyhow::Error::msg)?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).with_context(|| format!("creating {}", parent.display()))?;
    let name = out
        .file_name()
        .with_context(|| format!("{} has no final path component", out.display()))?
        .to_string_lossy()
        .into_owned();
    let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write_into(files, &tmp).and_then(|()| swap_into_place(&tmp, out));
    if result.is_err() {
        let _ = fs::remove_dir_all(&tmp);
    }
    result
}

fn write_into(files: &[RenderedFile], root: &Path) -> anyhow::Result<()> {
    let _ = fs::remove_dir_all(root);
    fs::DirBuilder::new()
        .mode(0o755)
        .create(root)
        .with_context(|| format!("creating {}", root.display()))?;
    for file in files {
        let rel = file.path.trim_start_matches('/');
        if rel.is_empty() || rel.split('/').any(|c| c == ".." || c.is_empty()) {
            bail!(
                "refusing to write {:?}: not a clean absolute path",
                file.path
            );
        }
        let target = root.join(rel);
        if let Some(dir) = target.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o755)
                .create(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
        }
        // Create with the final mode so a secret is never readable, even briefly.
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode)
            .open(&target)
            .with_context(|| format!("creating {}", target.display()))?;
        f.write_all(&file.content)
            .with_context(|| format!("writing {}", target.display()))?;
        // The umask may have narrowed the mode at creation; set it exactly.
        f.set_permissions(fs::Permissions::from_mode(file.mode))
            .with_context(|| format!("setting mode of {}", target.display()))?;
    }
    fs::write(root.join(RENDER_MARK), RENDER_MARK_TEXT)
        .with_context(|| format!("writing {}", root.join(RENDER_MARK).display()))?;
    Ok(())
}

fn swap_into_place(tmp: &Path, out: &Path) -> anyhow::Result<()> {
    if !out.exists() {
        return fs::rename(tmp, out)
            .with_context(|| format!("moving {} to {}", tmp.display(), out.display()));
    }
    let old = tmp.with_extension("old");
    fs::rename(out, &old).with_context(|| format!("moving aside {}", out.display()))?;
    if let Err(e) = fs::rename(tmp, out) {
        let _ = fs::rename(&old, out);
        return Err(e).with_context(|| format!("moving {} to {}", tmp.display(), out.display()));
    }
    fs::remove_dir_all(&old)
        .with_context(|| format!("removing the previous tree {}", old.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, mode: u32) -> RenderedFile {
        RenderedFile {
            path: path.into(),
            mode,
            owner: "root:root".into(),
            content: b"x\n".to_vec(),
        }
    }

    #[test]
    fn writes_modes_and_replaces_whole_tree() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tree");
        write_tree(&[file("/etc/a", 0o600), file("/etc/b/c", 0o644)], &out).unwrap();
        let mode = |p: &str| fs::metadata(out.join(p)).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode("etc/a"), 0o600);
        assert_eq!(mode("etc/b/c"), 0o644);
        write_tree(&[file("/etc/d", 0o640)], &out).unwrap();
        assert!(!out.join("etc/a").exists(), "old tree replaced");
        assert_eq!(mode("etc/d"), 0o640);
    }

    #[test]
    fn failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("tree");
        let err = write_tree(&[file("/etc/a", 0o600), file("/etc/../x", 0o644)], &out);
        assert!(err.is_err());
        assert!(!out.exists());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no temporary left"
        );
    }

    #[test]
    fn a_directory_pigsty_did_not_write_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let theirs = dir.path().join("theirs");
        fs::create_dir(&theirs).unwrap();
        fs::write(theirs.join("keep"), "x").unwrap();
        let err = write_tree(&[file("/etc/a", 0o600)], &theirs).unwrap_err();
        assert!(err.to_string().contains("did not write"), "{err}");
        assert!(theirs.join("keep").is_file(), "left as it was");
        // Nor a file, nor through a symbolic link.
        let f = dir.path().join("file");
        fs::write(&f, "x").unwrap();
        assert!(write_tree(&[file("/etc/a", 0o600)], &f).is_err());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&theirs, &link).unwrap();
        assert!(check_replaceable(&link, RENDER_MARK).is_err());
        // An empty directory, or one a render wrote, is taken.
        let empty = dir.path().join("empty");
        fs::create_dir(&empty).unwrap();
        write_tree(&[file("/etc/a", 0o600)], &empty).unwrap();
        assert!(empty.join(RENDER_MARK).is_file());
        write_tree(&[file("/etc/b", 0o600)], &empty).unwrap();
        assert!(empty.join("etc/b").is_file() && !empty.join("etc/a").exists());
    }
}
