//! `pigsty agent install`: write a node's whole A/B disk (`disk.raw` of `build-image
//! --format raw`) onto its disk, from the node's own image booted over the network
//! (issue 15; docs/pxe.md). The kernel command line `pigsty serve` gives says what:
//! `pigsty.install=URL pigsty.install.sha256=HEX [pigsty.install.report=URL]
//! [pigsty.disk=DEV] [pigsty.reinstall]`.
//!
//! - A disk that holds a `pigsty-data` partition is kept (its data is the node's),
//!   unless the server says reinstall: the installer reports "kept" and the node
//!   boots from it.
//! - A cut write never leaves a disk that boots half an image: the image's first
//!   and last MiB (the protective MBR, both GPT headers and tables) are written
//!   last, after the rest is written and the whole stream's sha256 is right; the
//!   disk's old tables are zeroed first.
//! - A transfer cut in the middle resumes where it stopped (HTTP Range), bounded.
//! - What was written is read back from the device (not the page cache) and
//!   compared by sha256; the zeros not written (a new disk reads zeros) were read
//!   as zeros before they were skipped.

use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::update::Source;

/// The first and last MiB of the image are written last.
const EDGE: u64 = 1 << 20;

/// What `agent install` is asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub image: Source,
    pub sha256: String,
    /// The disk; `None`: the first non-removable disk (see [`pick_disk`]).
    pub disk: Option<PathBuf>,
    /// Write it even over a disk that holds a node's data.
    pub reinstall: bool,
    /// Where to say what was done (`POST`, JSON [`Outcome`]).
    pub report: Option<String>,
    /// The image's block map: only its pieces of data are fetched; the rest of the
    /// disk is zeroed by the disk itself.
    pub map: Option<MapRef>,
}

/// Where a block map is ([`crate::blockmap`]) and its sha256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRef {
    pub source: Source,
    pub sha256: String,
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl Request {
    /// From a kernel command line; `None` when it asks for no install.
    pub fn from_cmdline(cmdline: &str) -> anyhow::Result<Option<Request>> {
        let mut image = None;
        let mut sha = None;
        let mut disk = None;
        let mut report = None;
        let mut reinstall = false;
        let mut map = None;
        let mut map_sha = None;
        for word in cmdline.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "pigsty.install" => image = Some(value.to_string()),
                "pigsty.install.sha256" => sha = Some(value.to_string()),
                "pigsty.install.report" => report = Some(value.to_string()),
                "pigsty.install.map" => map = Some(value.to_string()),
                "pigsty.install.map.sha256" => map_sha = Some(value.to_string()),
                "pigsty.disk" if !value.is_empty() => disk = Some(PathBuf::from(value)),
                "pigsty.reinstall" => reinstall = value.is_empty() || value == "1",
                _ => {}
            }
        }
        let Some(image) = image else {
            return Ok(None);
        };
        let sha256 =
            sha.context("the command line has pigsty.install= but no pigsty.install.sha256=")?;
        if !is_sha256(&sha256) {
            bail!("pigsty.install.sha256={sha256:?} is not a sha256");
        }
        let map = match (map, map_sha) {
            (None, None) => None,
            (Some(url), Some(sha)) if is_sha256(&sha) => Some(MapRef {
                source: Source::parse(&url),
                sha256: sha.to_ascii_lowercase(),
            }),
            (Some(_), Some(sha)) => bail!("pigsty.install.map.sha256={sha:?} is not a sha256"),
            _ => bail!("pigsty.install.map= and pigsty.install.map.sha256= go together"),
        };
        Ok(Some(Request {
            image: Source::parse(&image),
            sha256: sha256.to_ascii_lowercase(),
            disk,
            reinstall,
            report,
            map,
        }))
    }
}

/// What was done, as reported to the server.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Outcome {
    /// `installed`, or `kept` (the disk holds a node's data and no reinstall was asked).
    pub result: String,
    pub disk: String,
    pub sha256: String,
    pub bytes: u64,
    /// Bytes of zeros not written as data: where the disk held zeros already, or
    /// (with a block map) the holes the disk zeroed itself.
    #[serde(default)]
    pub skipped: u64,
    pub secs: f64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
}

/// The disk to install to: the first (by name) whole disk under `sys_block` that is
/// not removable, not a loop, RAM, optical, zram, device-mapper, md or nbd device,
/// and not empty.
pub fn pick_disk(sys_block: &Path) -> anyhow::Result<PathBuf> {
    let skip = ["loop", "ram", "sr", "zram", "dm-", "md", "nbd", "fd"];
    let mut names: Vec<String> = std::fs::read_dir(sys_block)
        .with_context(|| format!("listing {}", sys_block.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !skip.iter().any(|s| n.starts_with(s)))
        .collect();
    names.sort();
    let read = |n: &str, f: &str| {
        std::fs::read_to_string(sys_block.join(n).join(f))
            .map(|s| s.trim().to_string())
            .unwrap_or_default()
    };
    names
        .into_iter()
        .find(|n| read(n, "removable") == "0" && read(n, "size").parse::<u64>().unwrap_or(0) > 0)
        .map(|n| PathBuf::from("/dev").join(n))
        .with_context(|| {
            format!(
                "no disk to install to: no non-removable disk under {}",
                sys_block.display()
            )
        })
}

/// The partition names of the GPT on `disk`; empty when it has none.
pub fn partition_names(disk: &Path) -> Vec<String> {
    let Ok(file) = std::fs::File::open(disk) else {
        return Vec::new();
    };
    let Ok(table) = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(file)
    else {
        return Vec::new();
    };
    table
        .partitions()
        .values()
        .map(|p| p.name.clone())
        .collect()
}

/// Install: see the module's documentation. `progress` gets a line now and then.
pub fn install(
    req: &Request,
    disk: &Path,
    http: &crate::http::Client,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let outcome = |result: &str, bytes: u64, detail: String| Outcome {
        result: result.to_string(),
        disk: disk.display().to_string(),
        sha256: req.sha256.clone(),
        bytes,
        skipped: 0,
        secs: start.elapsed().as_secs_f64(),
        detail,
    };
    let names = partition_names(disk);
    if names.iter().any(|n| n == "pigsty-data") && !req.reinstall {
        return Ok(outcome(
            "kept",
            0,
            format!(
                "{} holds a pigsty-data partition (partitions: {}): kept; \
                 `pigsty serve --reinstall NODE` writes it anew",
                disk.display(),
                names.join(", ")
            ),
        ));
    }
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(disk)
        .with_context(|| format!("opening {}", disk.display()))?;
    let capacity = f.seek(SeekFrom::End(0))?;
    // What is fetched: the image's pieces of data by its block map, or the whole
    // image as one stream.
    let map = match &req.map {
        Some(m) => Some(fetch_map(m, &req.sha256, http)?),
        None => None,
    };
    let mut stream = match &map {
        Some(_) => None,
        None => Some(Stream::open(&req.image, http)?),
    };
    let total = match (&map, &stream) {
        (Some(m), _) => m.size,
        (None, Some(s)) => s.total,
        (None, None) => unreachable!("a map or a stream"),
    };
    if total > capacity {
        bail!(
            "the image is {total} bytes; {} holds {capacity}",
            disk.display()
        );
    }
    if total < 2 * EDGE {
        bail!("the image is {total} bytes: too small to be a disk");
    }
    // No old table survives a cut: zero the disk's first and last MiB first.
    let zeros = vec![0u8; EDGE as usize];
    f.write_all_at(&zeros, 0)?;
    f.write_all_at(&zeros, capacity - EDGE.min(capacity))?;
    f.sync_all()?;
    let mut sink = Sink {
        f: &f,
        head: vec![0u8; EDGE as usize],
        tail: vec![0u8; EDGE as usize],
        tail_at: total - EDGE,
        scratch: vec![0u8; 64 << 10],
        skipped: 0,
        written: Written::default(),
    };
    let mut buf = vec![0u8; 4 << 20];
    let at_disk = || format!("writing {}", disk.display());
    if let Some(map) = &map {
        progress(&format!(
            "writing {} ({} MiB, {} MiB of it data, by its block map) to {}",
            req.image.describe(),
            total >> 20,
            map.data_bytes() >> 20,
            disk.display()
        ));
        // The holes first (the disk zeroes them: no bytes move), then each piece,
        // checked against the map before it is written.
        for (at, len) in map.holes() {
            sink.zero(at, len).with_context(at_disk)?;
        }
        let mut piece = Vec::new();
        let mut done = 0u64;
        for r in &map.ranges {
            fetch_piece(&req.image, r, http, &mut piece)?;
            sink.put(&piece, r.start, false).with_context(at_disk)?;
            if (done + r.len) >> 28 != done >> 28 {
                progress(&format!(
                    "{} of {} MiB of data written",
                    (done + r.len) >> 20,
                    map.data_bytes() >> 20
                ));
            }
            done += r.len;
        }
    } else if let Some(stream) = stream.as_mut() {
        progress(&format!(
            "writing {} ({} MiB) to {}",
            req.image.describe(),
            total >> 20,
            disk.display()
        ));
        let mut hash = Sha256::new();
        let mut pos = 0u64;
        while pos < total {
            let n = stream.read(&mut buf, pos, http)?;
            if n == 0 {
                bail!(
                    "{} ended after {pos} of {total} bytes",
                    req.image.describe()
                );
            }
            hash.update(&buf[..n]);
            sink.put(&buf[..n], pos, true).with_context(at_disk)?;
            let end = pos + n as u64;
            if end >> 28 != pos >> 28 {
                progress(&format!("{} of {} MiB written", end >> 20, total >> 20));
            }
            pos = end;
        }
        let got = hex::encode(hash.finalize());
        if got != req.sha256 {
            bail!(
                "{} is sha256 {got}, not {}: nothing made bootable",
                req.image.describe(),
                req.sha256
            );
        }
    }
    let Sink {
        head,
        tail,
        tail_at,
        skipped,
        written,
        ..
    } = sink;
    f.sync_all()?;
    f.write_all_at(&tail, tail_at)?;
    f.write_all_at(&head, 0)?;
    f.sync_all()
        .with_context(|| format!("syncing {}", disk.display()))?;
    // Read back from the device, not the page cache: what was written, range by
    // range (the zeros skipped were read as zeros before they were skipped, or
    // zeroed by the disk), and the two edges.
    let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    let mut back = Sha256::new();
    for &(start, len) in &written.ranges {
        let mut at = start;
        let end = start + len;
        while at < end {
            let n = ((end - at) as usize).min(buf.len());
            f.read_exact_at(&mut buf[..n], at)
                .with_context(|| format!("reading back {}", disk.display()))?;
            back.update(&buf[..n]);
            at += n as u64;
        }
    }
    let mut edge = vec![0u8; EDGE as usize];
    for (at, want) in [(0, &head), (tail_at, &tail)] {
        f.read_exact_at(&mut edge, at)
            .with_context(|| format!("reading back {}", disk.display()))?;
        if &edge != want {
            bail!(
                "{} reads back otherwise than written at byte {at}: the write did not hold",
                disk.display()
            );
        }
    }
    if back.finalize() != written.hash.finalize() {
        bail!(
            "{} reads back otherwise than written: the write did not hold",
            disk.display()
        );
    }
    progress(&format!(
        "{} holds the image (sha256 {}, read back; {} MiB of zeros not written as data)",
        disk.display(),
        req.sha256,
        skipped >> 20
    ));
    let mut done = outcome("installed", total, String::new());
    done.skipped = skipped;
    Ok(done)
}

/// Where the image's bytes go: its first and last MiB held back (written last),
/// the rest written to the disk as they come.
struct Sink<'a> {
    f: &'a std::fs::File,
    head: Vec<u8>,
    tail: Vec<u8>,
    tail_at: u64,
    scratch: Vec<u8>,
    skipped: u64,
    written: Written,
}

impl Sink<'_> {
    /// The image's bytes `chunk` at `pos`; `skip_zeros`: not the blocks of zeros
    /// the disk holds already.
    fn put(&mut self, chunk: &[u8], pos: u64, skip_zeros: bool) -> std::io::Result<()> {
        let end = pos + chunk.len() as u64;
        let mut at = pos;
        while at < end {
            let i = (at - pos) as usize;
            if at < EDGE {
                let stop = end.min(EDGE);
                let j = (stop - pos) as usize;
                self.head[at as usize..stop as usize].copy_from_slice(&chunk[i..j]);
                at = stop;
            } else if at >= self.tail_at {
                let j = (end - pos) as usize;
                let (a, b) = ((at - self.tail_at) as usize, (end - self.tail_at) as usize);
                self.tail[a..b].copy_from_slice(&chunk[i..j]);
                at = end;
            } else {
                let stop = end.min(self.tail_at);
                let piece = &chunk[i..(stop - pos) as usize];
                if skip_zeros {
                    self.skipped +=
                        write_unless_zero(self.f, piece, at, &mut self.scratch, &mut self.written)?;
                } else {
                    self.written.write(self.f, piece, at)?;
                }
                at = stop;
            }
        }
        Ok(())
    }

    /// Make `len` bytes at `at` read zeros (the edges are zeros until written last):
    /// the disk zeroes them itself (`fallocate` ZERO_RANGE: a block device's WRITE
    /// ZEROES, or the kernel writes zeros for it); where that is not supported,
    /// the blocks that do not read zeros are written.
    fn zero(&mut self, at: u64, len: u64) -> std::io::Result<()> {
        use rustix::fs::{FallocateFlags, fallocate};
        let (start, end) = (at.max(EDGE), (at + len).min(self.tail_at));
        if start >= end {
            return Ok(());
        }
        self.skipped += end - start;
        let flags = FallocateFlags::ZERO_RANGE | FallocateFlags::KEEP_SIZE;
        match fallocate(self.f, flags, start, end - start) {
            Ok(()) => Ok(()),
            Err(rustix::io::Errno::OPNOTSUPP | rustix::io::Errno::INVAL) => {
                let mut pos = start;
                while pos < end {
                    let n = (end - pos).min(ZEROS.len() as u64);
                    let mut w = Written::default();
                    write_unless_zero(
                        self.f,
                        &ZEROS[..n as usize],
                        pos,
                        &mut self.scratch,
                        &mut w,
                    )?;
                    pos += n;
                }
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Fetch the block map, check it against its sha256 and that it is the map of
/// the image asked for.
fn fetch_map(
    m: &MapRef,
    image_sha256: &str,
    http: &crate::http::Client,
) -> anyhow::Result<crate::blockmap::BlockMap> {
    const LIMIT: u64 = 16 << 20;
    let bytes = match &m.source {
        Source::File(p) => {
            let f = std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
            crate::blockmap::read_limited(f, LIMIT)
        }
        Source::Http(url) => {
            let resp = http.get(url).send().with_context(|| format!("GET {url}"))?;
            let code = resp.status().as_u16();
            if code != 200 {
                bail!("GET {url}: HTTP {code}");
            }
            crate::blockmap::read_limited(resp, LIMIT)
        }
    }
    .with_context(|| format!("reading the block map {}", m.source.describe()))?;
    let got = hex::encode(Sha256::digest(&bytes));
    if got != m.sha256 {
        bail!(
            "the block map {} is sha256 {got}, not {}: nothing written",
            m.source.describe(),
            m.sha256
        );
    }
    let map = crate::blockmap::BlockMap::parse(&bytes)
        .with_context(|| format!("the block map {}", m.source.describe()))?;
    if map.sha256 != image_sha256 {
        bail!(
            "the block map {} is of image {}, not {image_sha256}: nothing written",
            m.source.describe(),
            map.sha256
        );
    }
    Ok(map)
}

/// Fetch one piece of the image into `buf` (HTTP Range, or a read of a file) and
/// check it against the map: a cut request is tried again (bounded); a piece
/// with another digest is an error.
fn fetch_piece(
    source: &Source,
    r: &crate::blockmap::Range,
    http: &crate::http::Client,
    buf: &mut Vec<u8>,
) -> anyhow::Result<()> {
    let len = usize::try_from(r.len).context("a piece larger than memory")?;
    let mut last = String::new();
    for attempt in 0..=Stream::ATTEMPTS {
        if attempt > 0 {
            eprintln!(
                "pigsty agent install: {} piece at byte {} cut ({last}); again",
                source.describe(),
                r.start
            );
            std::thread::sleep(Duration::from_secs(1));
        }
        buf.clear();
        let got: anyhow::Result<()> = match source {
            Source::File(p) => std::fs::File::open(p)
                .and_then(|f| {
                    buf.resize(len, 0);
                    f.read_exact_at(buf, r.start)
                })
                .with_context(|| format!("reading {}", p.display())),
            Source::Http(url) => (|| {
                let range = format!("bytes={}-{}", r.start, r.start + r.len - 1);
                let resp = http
                    .get(url)
                    .header("Range", range)
                    .send()
                    .with_context(|| format!("GET {url}"))?;
                let code = resp.status().as_u16();
                if code != 206 {
                    bail!("GET {url} (bytes {}+{}): HTTP {code}", r.start, r.len);
                }
                resp.take(r.len).read_to_end(buf)?;
                Ok(())
            })(),
        };
        match got {
            Ok(()) if buf.len() == len => {
                let sha = hex::encode(Sha256::digest(&buf[..]));
                if sha != r.sha256 {
                    bail!(
                        "{}: the piece at byte {} is sha256 {sha}, its block map says {}: \
                         nothing made bootable",
                        source.describe(),
                        r.start,
                        r.sha256
                    );
                }
                return Ok(());
            }
            Ok(()) => last = format!("{} of {len} bytes", buf.len()),
            Err(e) => last = format!("{e:#}"),
        }
    }
    bail!(
        "{}: the piece at byte {} failed {} times; last: {last}",
        source.describe(),
        r.start,
        Stream::ATTEMPTS + 1
    )
}

/// Write `piece` at `at`, but not the 64 KiB blocks of zeros where the disk reads
/// zeros already (most of an A/B disk is zeros: slot B, free space; a new disk
/// reads zeros). Returns the bytes not written.
fn write_unless_zero(
    f: &std::fs::File,
    piece: &[u8],
    at: u64,
    scratch: &mut [u8],
    written: &mut Written,
) -> std::io::Result<u64> {
    const BLOCK: usize = 64 << 10;
    let mut skipped = 0u64;
    let mut pending = 0usize;
    let mut i = 0usize;
    while i < piece.len() {
        let j = (i + BLOCK).min(piece.len());
        let block = &piece[i..j];
        let skip = is_zero(block) && {
            let there = &mut scratch[..block.len()];
            f.read_exact_at(there, at + i as u64).is_ok() && is_zero(there)
        };
        if skip {
            if pending < i {
                written.write(f, &piece[pending..i], at + pending as u64)?;
            }
            skipped += block.len() as u64;
            pending = j;
        }
        i = j;
    }
    if pending < piece.len() {
        written.write(f, &piece[pending..], at + pending as u64)?;
    }
    Ok(skipped)
}

/// What was written between the edges: its ranges (ascending, merged) and the
/// sha256 of their bytes in order, for the read-back.
#[derive(Default)]
struct Written {
    ranges: Vec<(u64, u64)>,
    hash: Sha256,
}

impl Written {
    fn write(&mut self, f: &std::fs::File, bytes: &[u8], at: u64) -> std::io::Result<()> {
        f.write_all_at(bytes, at)?;
        self.hash.update(bytes);
        let len = bytes.len() as u64;
        match self.ranges.last_mut() {
            Some((start, l)) if *start + *l == at => *l += len,
            _ => self.ranges.push((at, len)),
        }
        Ok(())
    }
}

/// 64 KiB of zeros to compare with.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// Whether every byte is zero: compared with [`ZEROS`] (memcmp, fast in every build
/// profile; the agent in a lab image is a debug build).
fn is_zero(bytes: &[u8]) -> bool {
    bytes.chunks(ZEROS.len()).all(|c| c == &ZEROS[..c.len()])
}

/// Tell the server what was done (bounded retries: the server may be restarting).
pub fn report(url: &str, outcome: &Outcome, http: &crate::http::Client) -> anyhow::Result<()> {
    let mut last = String::new();
    for attempt in 0..5u32 {
        if attempt > 0 {
            std::thread::sleep(Duration::from_secs(2));
        }
        match http.post(url).json(outcome).send() {
            Ok(r) if r.status().is_success() => return Ok(()),
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = format!("{e:#}"),
        }
    }
    bail!("POST {url}: {last}")
}

/// The image as a stream that resumes after a cut (HTTP Range), at most
/// [`Stream::ATTEMPTS`] times.
struct Stream {
    source: Source,
    reader: Option<Box<dyn Read>>,
    total: u64,
    resumed: u32,
}

impl Stream {
    const ATTEMPTS: u32 = 8;

    fn open(source: &Source, http: &crate::http::Client) -> anyhow::Result<Stream> {
        let (reader, total) = Stream::from(source, 0, http)?;
        let total = total.with_context(|| {
            format!(
                "{} does not say its length: an install needs it",
                source.describe()
            )
        })?;
        Ok(Stream {
            source: source.clone(),
            reader: Some(reader),
            total,
            resumed: 0,
        })
    }

    fn from(
        source: &Source,
        at: u64,
        http: &crate::http::Client,
    ) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
        match source {
            Source::File(p) => {
                let mut f =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                let len = f.metadata()?.len();
                f.seek(SeekFrom::Start(at))?;
                Ok((Box::new(f), Some(len)))
            }
            Source::Http(url) => {
                let mut get = http.get(url);
                if at > 0 {
                    get = get.header("Range", format!("bytes={at}-"));
                }
                let resp = get.send().with_context(|| format!("GET {url}"))?;
                let code = resp.status().as_u16();
                match (at, code) {
                    (0, 200) => {
                        let len = resp.content_length();
                        Ok((Box::new(resp), len))
                    }
                    (_, 206) => Ok((Box::new(resp), None)),
                    (_, code) => bail!("GET {url} (from byte {at}): HTTP {code}"),
                }
            }
        }
    }

    /// Read at `pos` (the bytes read so far); after a cut, from `pos` again.
    fn read(
        &mut self,
        buf: &mut [u8],
        pos: u64,
        http: &crate::http::Client,
    ) -> anyhow::Result<usize> {
        let want = buf.len().min((self.total - pos) as usize);
        loop {
            if self.reader.is_none() {
                match Stream::from(&self.source, pos, http) {
                    Ok((r, _)) => self.reader = Some(r),
                    Err(e) => {
                        self.retry(pos, &format!("{e:#}"))?;
                        continue;
                    }
                }
            }
            let Some(reader) = self.reader.as_mut() else {
                continue;
            };
            match reader.read(&mut buf[..want]) {
                Ok(0) => {
                    self.reader = None;
                    self.retry(pos, "the stream ended early")?;
                }
                Ok(n) => return Ok(n),
                Err(e) => {
                    self.reader = None;
                    self.retry(pos, &e.to_string())?;
                }
            }
        }
    }

    fn retry(&mut self, pos: u64, why: &str) -> anyhow::Result<()> {
        self.resumed += 1;
        if self.resumed > Stream::ATTEMPTS {
            bail!(
                "{}: cut at byte {pos} and {} resumes failed; last: {why}",
                self.source.describe(),
                Stream::ATTEMPTS
            );
        }
        eprintln!(
            "pigsty agent install: {} cut at byte {pos} ({why}); resuming",
            self.source.describe()
        );
        std::thread::sleep(Duration::from_secs(1));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_says_what_to_install() {
        let sha = "ab".repeat(32);
        let r = Request::from_cmdline(&format!(
            "console=ttyS0 boot=live pigsty.install=http://10.0.0.1:8080/sha256/{sha} \
             pigsty.install.sha256={sha} pigsty.install.report=http://10.0.0.1:8080/installed/52-54-00-00-00-01 \
             pigsty.install.map=http://10.0.0.1:8080/sha256/{map} pigsty.install.map.sha256={map} \
             pigsty.disk=/dev/vdb pigsty.reinstall",
            map = "cd".repeat(32)
        ))
        .unwrap()
        .unwrap();
        assert_eq!(
            r.map,
            Some(MapRef {
                source: Source::Http(format!("http://10.0.0.1:8080/sha256/{}", "cd".repeat(32))),
                sha256: "cd".repeat(32),
            })
        );
        assert_eq!(
            r.image,
            Source::Http(format!("http://10.0.0.1:8080/sha256/{sha}"))
        );
        assert_eq!(r.sha256, sha);
        assert_eq!(r.disk, Some(PathBuf::from("/dev/vdb")));
        assert!(r.reinstall);
        assert!(r.report.unwrap().ends_with("/installed/52-54-00-00-00-01"));
        assert_eq!(Request::from_cmdline("console=ttyS0 quiet").unwrap(), None);
        assert!(Request::from_cmdline("pigsty.install=http://x/y").is_err());
        assert!(
            Request::from_cmdline("pigsty.install=http://x/y pigsty.install.sha256=zz").is_err()
        );
        // A map without its digest is refused, not fetched unchecked.
        assert!(
            Request::from_cmdline(&format!(
                "pigsty.install=http://x/y pigsty.install.sha256={sha} pigsty.install.map=http://x/m"
            ))
            .is_err()
        );
    }

    #[test]
    fn the_first_fixed_disk_is_picked() {
        let dir = tempfile::tempdir().unwrap();
        let dev = |name: &str, removable: &str, size: &str| {
            let d = dir.path().join(name);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join("removable"), removable).unwrap();
            std::fs::write(d.join("size"), size).unwrap();
        };
        dev("loop0", "0", "100");
        dev("sr0", "1", "100");
        dev("vdb", "0", "2048");
        dev("sda", "1", "2048");
        dev("vda", "0", "0");
        assert_eq!(pick_disk(dir.path()).unwrap(), PathBuf::from("/dev/vdb"));
        let empty = tempfile::tempdir().unwrap();
        assert!(pick_disk(empty.path()).is_err());
    }
}
