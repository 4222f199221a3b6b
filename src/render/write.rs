//! Write a rendered overlay to a directory, all or nothing: the tree is built in a
//! temporary sibling and renamed into place, so a failure leaves no partial tree.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use super::RenderedFile;

/// Write `files` under `out` (`/etc/x` → `out/etc/x`) with their modes. An existing
/// `out` is replaced only once the new tree is complete.
pub fn write_tree(files: &[RenderedFile], out: &Path) -> anyhow::Result<()> {
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
}
