//! rootfs.tar.zst from pieces: the tar is cut on entry boundaries (see
//! [`Tree::write_tar_pieces`]), each piece compressed as its own zstd frame, and
//! frames cached under `$PIGSTY_CACHE/zstd/` by the sha256 of the piece. A zstd
//! stream may hold many frames, so the file is an ordinary `.tar.zst`; a rebuild that
//! changed a few files compresses only the pieces holding them.
//!
//! The output depends on the tree alone: a frame is the same whether it came from
//! the cache or was compressed just now (one thread per frame, fixed level).

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use super::HashingWriter;
use super::tree::Tree;

/// zstd level of every frame (part of the cache key).
const LEVEL: i32 = 3;
/// Pieces handed to the worker threads at once (bounds memory to about this much
/// tar plus its frames).
const BATCH_BYTES: usize = 128 << 20;
/// The frame cache is trimmed, oldest use first, to this size after each build.
const CACHE_LIMIT: u64 = 4 << 30;

/// Write `tree` as a zstd-compressed tar to `path`; returns its sha256 and size.
pub fn write_rootfs(
    tree: &Tree,
    path: &Path,
    epoch: u64,
    cache: &Path,
) -> anyhow::Result<(String, u64)> {
    let frames = FrameCache::open(cache)?;
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let mut out = HashingWriter::new(BufWriter::with_capacity(1 << 20, file));
    let mut batch: Vec<Vec<u8>> = Vec::new();
    let mut spare: Vec<Vec<u8>> = Vec::new();
    let mut batch_len = 0;
    tree.write_tar_pieces(epoch, |piece| {
        batch_len += piece.len();
        batch.push(std::mem::replace(piece, spare.pop().unwrap_or_default()));
        if batch_len >= BATCH_BYTES {
            frames.write_batch(&batch, &mut out)?;
            spare.extend(batch.drain(..).map(|mut b| {
                b.clear();
                b
            }));
            batch_len = 0;
        }
        Ok(())
    })?;
    frames.write_batch(&batch, &mut out)?;
    let (mut writer, sha256, size) = out.finish();
    writer
        .flush()
        .with_context(|| format!("writing {}", path.display()))?;
    frames.trim(CACHE_LIMIT);
    Ok((sha256, size))
}

struct FrameCache {
    dir: PathBuf,
}

impl FrameCache {
    fn open(cache: &Path) -> anyhow::Result<FrameCache> {
        let dir = cache.join("zstd");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(FrameCache { dir })
    }

    /// Compress (or fetch) the frames of `pieces` in parallel, then write them in order.
    fn write_batch(&self, pieces: &[Vec<u8>], out: &mut impl Write) -> anyhow::Result<()> {
        let frames: Vec<Vec<u8>> = pieces
            .par_iter()
            .map(|p| self.frame(p))
            .collect::<anyhow::Result<_>>()?;
        for f in &frames {
            out.write_all(f).context("writing rootfs.tar.zst")?;
        }
        Ok(())
    }

    fn frame(&self, piece: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut h = Sha256::new();
        h.update(format!(
            "pigsty zstd frame v1 level {LEVEL} zstd {}\n",
            zstd::zstd_safe::version_string()
        ));
        h.update(piece);
        let path = self.dir.join(format!("{}.zst", hex::encode(h.finalize())));
        if let Ok(frame) = std::fs::read(&path) {
            // Touched so trimming drops what was used longest ago.
            if let Ok(f) = File::options().write(true).open(&path) {
                let _ = f.set_modified(std::time::SystemTime::now());
            }
            return Ok(frame);
        }
        let frame = zstd::bulk::compress(piece, LEVEL).context("zstd")?;
        // A frame is written whole or not at all (temp file, then rename).
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        let stored = std::fs::write(&tmp, &frame).and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = stored {
            let _ = std::fs::remove_file(&tmp);
            tracing::debug!("not caching a zstd frame in {}: {e}", self.dir.display());
        }
        Ok(frame)
    }

    /// Remove the frames used longest ago until the cache holds at most `limit` bytes.
    fn trim(&self, limit: u64) {
        let Ok(read) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut frames: Vec<(std::time::SystemTime, u64, PathBuf)> = read
            .flatten()
            .filter_map(|e| {
                let m = e.metadata().ok()?;
                Some((m.modified().ok()?, m.len(), e.path()))
            })
            .collect();
        let mut total: u64 = frames.iter().map(|f| f.1).sum();
        frames.sort();
        for (_, len, path) in frames {
            if total <= limit {
                break;
            }
            if std::fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tree::Entry;
    use super::*;
    use std::io::Read;

    fn sample() -> Tree {
        let mut t = Tree::default();
        for i in 0..400 {
            // Incompressible-ish content so the tar spans several pieces.
            let data: Vec<u8> = (0..40_000u32)
                .map(|j| (j.wrapping_mul(2_654_435_761).wrapping_add(i) >> 13) as u8)
                .collect();
            t.insert(
                &format!("/usr/lib/f{i:04}"),
                Entry::file(data, 0o644, 0, 0, 1),
            );
        }
        t
    }

    #[test]
    fn frames_decode_to_the_plain_tar_and_rebuilds_reuse_them() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        let mut tree = sample();
        let mut plain = Vec::new();
        tree.write_tar(&mut plain, 1).unwrap();
        let mut pieces = 0;
        tree.write_tar_pieces(1, |_: &mut Vec<u8>| {
            pieces += 1;
            Ok(())
        })
        .unwrap();
        assert!(pieces > 2, "only {pieces} piece(s)");

        let a = dir.path().join("a.tar.zst");
        let (sha_a, size_a) = write_rootfs(&tree, &a, 1, &cache).unwrap();
        let bytes = std::fs::read(&a).unwrap();
        assert_eq!(
            (hex::encode(Sha256::digest(&bytes)), bytes.len() as u64),
            (sha_a.clone(), size_a)
        );
        let mut decoded = Vec::new();
        zstd::Decoder::new(bytes.as_slice())
            .unwrap()
            .read_to_end(&mut decoded)
            .unwrap();
        assert!(decoded == plain, "the frames do not decode to the tar");

        // From a warm cache: the same bytes.
        let b = dir.path().join("b.tar.zst");
        assert_eq!(write_rootfs(&tree, &b, 1, &cache).unwrap().0, sha_a);
        // One file changed: one more frame in the cache, not a second set.
        let frames_before = std::fs::read_dir(cache.join("zstd")).unwrap().count();
        tree.insert(
            "/usr/lib/f0200",
            Entry::file(b"changed".to_vec(), 0o644, 0, 0, 1),
        );
        let c = dir.path().join("c.tar.zst");
        write_rootfs(&tree, &c, 1, &cache).unwrap();
        let frames_after = std::fs::read_dir(cache.join("zstd")).unwrap().count();
        assert!(
            frames_after - frames_before <= 2,
            "{frames_before} -> {frames_after} frames"
        );
    }
}
