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
}

impl Request {
    /// From a kernel command line; `None` when it asks for no install.
    pub fn from_cmdline(cmdline: &str) -> anyhow::Result<Option<Request>> {
        let mut image = None;
        let mut sha = None;
        let mut disk = None;
        let mut report = None;
        let mut reinstall = false;
        for word in cmdline.split_whitespace() {
            let (key, value) = word.split_once('=').unwrap_or((word, ""));
            match key {
                "pigsty.install" => image = Some(value.to_string()),
                "pigsty.install.sha256" => sha = Some(value.to_string()),
                "pigsty.install.report" => report = Some(value.to_string()),
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
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            bail!("pigsty.install.sha256={sha256:?} is not a sha256");
        }
        Ok(Some(Request {
            image: Source::parse(&image),
            sha256: sha256.to_ascii_lowercase(),
            disk,
            reinstall,
            report,
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
    /// Bytes of zeros not written, since the disk held zeros there already.
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
    let mut stream = Stream::open(&req.image, http)?;
    let total = stream.total;
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
    progress(&format!(
        "writing {} ({} MiB) to {}",
        req.image.describe(),
        total >> 20,
        disk.display()
    ));
    let mut head = vec![0u8; EDGE as usize];
    let mut tail = vec![0u8; EDGE as usize];
    let tail_at = total - EDGE;
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 4 << 20];
    let mut scratch = vec![0u8; 64 << 10];
    let mut skipped = 0u64;
    let mut written = Written::default();
    let mut pos = 0u64;
    while pos < total {
        let n = stream.read(&mut buf, pos, http)?;
        if n == 0 {
            bail!(
                "{} ended after {pos} of {total} bytes",
                req.image.describe()
            );
        }
        let chunk = &buf[..n];
        hash.update(chunk);
        let end = pos + n as u64;
        // The parts of the chunk in the head, the middle and the tail.
        let mut at = pos;
        while at < end {
            let i = (at - pos) as usize;
            if at < EDGE {
                let j = (end.min(EDGE) - pos) as usize;
                head[at as usize..end.min(EDGE) as usize].copy_from_slice(&chunk[i..j]);
                at = end.min(EDGE);
            } else if at >= tail_at {
                let j = (end - pos) as usize;
                tail[(at - tail_at) as usize..(end - tail_at) as usize]
                    .copy_from_slice(&chunk[i..j]);
                at = end;
            } else {
                let stop = end.min(tail_at);
                let j = (stop - pos) as usize;
                skipped += write_unless_zero(&f, &chunk[i..j], at, &mut scratch, &mut written)
                    .with_context(|| format!("writing {}", disk.display()))?;
                at = stop;
            }
        }
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
    f.sync_all()?;
    f.write_all_at(&tail, tail_at)?;
    f.write_all_at(&head, 0)?;
    f.sync_all()
        .with_context(|| format!("syncing {}", disk.display()))?;
    // Read back from the device, not the page cache: what was written, range by
    // range (the zeros skipped were read as zeros before they were skipped), and
    // the two edges.
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
        "{} holds the image (sha256 {}, read back; {} MiB of zeros it held already not written)",
        disk.display(),
        req.sha256,
        skipped >> 20
    ));
    let mut done = outcome("installed", total, String::new());
    done.skipped = skipped;
    Ok(done)
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
             pigsty.disk=/dev/vdb pigsty.reinstall"
        ))
        .unwrap()
        .unwrap();
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
