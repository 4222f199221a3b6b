//! The block map of a sparse disk image (as bmaptool's `.bmap`, in JSON): where the
//! image holds data, with the sha256 of each piece, so an installer fetches and
//! writes only those pieces and has the disk zero the rest (issue 15; docs/pxe.md).
//! A node's `disk.raw` is GiBs of which most is holes (slot B, free space), and a
//! live installer under emulation moves about 15 MiB/s: the map cuts an install
//! to the bytes of data.
//!
//! `build-image --format raw` writes it beside the disk as [`FILE`]; `pigsty serve`
//! names it on the installer's command line with its sha256, so each piece is
//! checked against a digest the server vouched for, and the map names the sha256
//! of the whole image it describes.

use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The map's file name beside `disk.raw`.
pub const FILE: &str = "disk.map.json";

/// Pieces start and end on this boundary (the image's end aside): a multiple of
/// every disk's logical block, as the kernel's zeroing of the gaps needs.
pub const ALIGN: u64 = 64 << 10;
/// Data closer than this is one piece (the zeros between are sent): fewer requests.
const MERGE: u64 = 1 << 20;
/// The largest piece: what an installer holds in memory to check before writing.
pub const PIECE: u64 = 16 << 20;

/// Where a disk image holds data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockMap {
    /// The image's length in bytes.
    pub size: u64,
    /// The sha256 of the whole image (its holes read as zeros).
    pub sha256: String,
    /// The pieces of data, ascending and apart; everything else reads zeros.
    pub ranges: Vec<Range>,
}

/// One piece of data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub start: u64,
    pub len: u64,
    pub sha256: String,
}

impl BlockMap {
    /// The map of the image at `path`, from its extents (SEEK_DATA / SEEK_HOLE),
    /// reading only its data.
    pub fn of_file(path: &Path) -> anyhow::Result<BlockMap> {
        let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let size = f.metadata()?.len();
        let spans = pieces(&merge(&extents(&f, size, path)?, size));
        let mut whole = Sha256::new();
        let mut buf = vec![0u8; PIECE as usize];
        let mut ranges = Vec::with_capacity(spans.len());
        let mut pos = 0u64;
        for (start, len) in spans {
            feed_zeros(&mut whole, start - pos);
            let piece = &mut buf[..len as usize];
            f.read_exact_at(piece, start)
                .with_context(|| format!("reading {}", path.display()))?;
            whole.update(&*piece);
            ranges.push(Range {
                start,
                len,
                sha256: hex::encode(Sha256::digest(&*piece)),
            });
            pos = start + len;
        }
        feed_zeros(&mut whole, size - pos);
        Ok(BlockMap {
            size,
            sha256: hex::encode(whole.finalize()),
            ranges,
        })
    }

    /// Parse and check a map: pieces ascending, apart, aligned, within the image,
    /// none larger than [`PIECE`], every digest a sha256.
    pub fn parse(bytes: &[u8]) -> anyhow::Result<BlockMap> {
        let map: BlockMap = serde_json::from_slice(bytes).context("reading the block map")?;
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&map.sha256) {
            bail!("the block map's sha256 {:?} is not a sha256", map.sha256);
        }
        let mut end = 0u64;
        for r in &map.ranges {
            let stop = r.start.saturating_add(r.len);
            if r.len == 0
                || r.len > PIECE
                || r.start < end
                || stop > map.size
                || r.start % ALIGN != 0
                || (stop % ALIGN != 0 && stop != map.size)
                || !hex(&r.sha256)
            {
                bail!(
                    "the block map's piece at byte {} ({} bytes) is not a piece of a {}-byte image",
                    r.start,
                    r.len,
                    map.size
                );
            }
            end = stop;
        }
        Ok(map)
    }

    /// The bytes of data (what is sent).
    pub fn data_bytes(&self) -> u64 {
        self.ranges.iter().map(|r| r.len).sum()
    }

    /// The stretches between the pieces (and after the last): what reads zeros.
    pub fn holes(&self) -> Vec<(u64, u64)> {
        let mut holes = Vec::new();
        let mut pos = 0u64;
        for r in &self.ranges {
            if r.start > pos {
                holes.push((pos, r.start - pos));
            }
            pos = r.start + r.len;
        }
        if self.size > pos {
            holes.push((pos, self.size - pos));
        }
        holes
    }
}

/// The data extents `(start, end)` of `f`, as the filesystem keeps them
/// (SEEK_DATA / SEEK_HOLE); also what the disk writer copies.
pub(crate) fn extents(
    f: &std::fs::File,
    size: u64,
    path: &Path,
) -> anyhow::Result<Vec<(u64, u64)>> {
    use rustix::fs::{SeekFrom, seek};
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match seek(f, SeekFrom::Data(pos)) {
            Ok(d) => d,
            Err(rustix::io::Errno::NXIO) => break, // only a hole is left
            Err(e) => {
                return Err(std::io::Error::from(e))
                    .with_context(|| format!("finding the data of {}", path.display()));
            }
        };
        let end = seek(f, SeekFrom::Hole(data)).unwrap_or(size).min(size);
        if end > data {
            out.push((data, end));
        }
        pos = end.max(data + 1);
    }
    Ok(out)
}

/// Extents widened to [`ALIGN`] (within `size`), those closer than [`MERGE`] joined.
fn merge(extents: &[(u64, u64)], size: u64) -> Vec<(u64, u64)> {
    let mut out: Vec<(u64, u64)> = Vec::new();
    for &(start, end) in extents {
        let start = start / ALIGN * ALIGN;
        let end = end.div_ceil(ALIGN).saturating_mul(ALIGN).min(size);
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_add(MERGE) => last.1 = last.1.max(end),
            _ => out.push((start, end)),
        }
    }
    out
}

/// Spans `(start, end)` cut into pieces `(start, len)` of at most [`PIECE`].
fn pieces(spans: &[(u64, u64)]) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for &(mut start, end) in spans {
        while start < end {
            let len = (end - start).min(PIECE);
            out.push((start, len));
            start += len;
        }
    }
    out
}

/// Hash `n` zero bytes.
fn feed_zeros(h: &mut Sha256, mut n: u64) {
    static ZEROS: [u8; 64 << 10] = [0; 64 << 10];
    while n > 0 {
        let k = n.min(ZEROS.len() as u64) as usize;
        h.update(&ZEROS[..k]);
        n -= k as u64;
    }
}

/// Read at most `limit` bytes of `r` (a map is small; a server sending more is wrong).
pub fn read_limited(r: impl Read, limit: u64) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    r.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        bail!("the block map is over {limit} bytes");
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sparse image: data at 0, at 5 MiB + 100 (unaligned), 40 MiB of data at
    /// 64 MiB, and a hole to its end.
    fn sparse(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("disk.raw");
        let f = std::fs::File::create(&path).unwrap();
        f.set_len(200 << 20).unwrap();
        f.write_all_at(b"head", 0).unwrap();
        f.write_all_at(b"middle", (5 << 20) + 100).unwrap();
        let big: Vec<u8> = (0..40u32 << 20).map(|i| (i % 251) as u8 | 1).collect();
        f.write_all_at(&big, 64 << 20).unwrap();
        path
    }

    #[test]
    fn a_sparse_image_maps_to_its_data_and_its_whole_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = sparse(dir.path());
        let map = BlockMap::of_file(&path).unwrap();
        let (whole, size) = crate::image::hash_file(&path).unwrap();
        assert_eq!(map.size, size);
        assert_eq!(map.sha256, whole);
        // Each piece's digest is of those bytes of the image.
        let bytes = std::fs::read(&path).unwrap();
        for r in &map.ranges {
            let piece = &bytes[r.start as usize..(r.start + r.len) as usize];
            assert_eq!(r.sha256, hex::encode(Sha256::digest(piece)));
        }
        // Every byte outside the pieces is zero, and the data is in pieces.
        for (at, len) in map.holes() {
            assert!(
                bytes[at as usize..(at + len) as usize]
                    .iter()
                    .all(|&b| b == 0)
            );
        }
        for at in [0usize, (5 << 20) + 100, 64 << 20, (104 << 20) - 1] {
            assert!(
                map.ranges
                    .iter()
                    .any(|r| r.start as usize <= at && at < (r.start + r.len) as usize),
                "byte {at} is in no piece: {map:?}"
            );
        }
        // The 40 MiB run is cut into pieces no larger than PIECE; most is not sent.
        assert!(map.ranges.iter().all(|r| r.len <= PIECE));
        assert!(map.data_bytes() < 50 << 20, "{}", map.data_bytes());
        let back = BlockMap::parse(&serde_json::to_vec(&map).unwrap()).unwrap();
        assert_eq!(back, map);
    }

    #[test]
    fn a_map_that_overlaps_or_runs_past_its_image_is_refused() {
        let good = |ranges: Vec<Range>| BlockMap {
            size: 1 << 20,
            sha256: "a".repeat(64),
            ranges,
        };
        let r = |start, len| Range {
            start,
            len,
            sha256: "b".repeat(64),
        };
        for (bad, why) in [
            (good(vec![r(0, ALIGN), r(0, ALIGN)]), "overlap"),
            (good(vec![r(ALIGN, ALIGN), r(0, ALIGN)]), "out of order"),
            (good(vec![r(0, 2 << 20)]), "past the end"),
            (good(vec![r(100, ALIGN)]), "unaligned"),
            (good(vec![r(0, 0)]), "empty"),
        ] {
            let json = serde_json::to_vec(&bad).unwrap();
            assert!(BlockMap::parse(&json).is_err(), "{why} was taken");
        }
        let ok = good(vec![r(0, ALIGN), r(4 * ALIGN, 1 << 19)]);
        assert_eq!(
            BlockMap::parse(&serde_json::to_vec(&ok).unwrap())
                .unwrap()
                .holes(),
            vec![
                (ALIGN, 3 * ALIGN),
                ((4 * ALIGN) + (1 << 19), (1 << 20) - 4 * ALIGN - (1 << 19))
            ]
        );
    }
}
