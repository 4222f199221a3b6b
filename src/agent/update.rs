//! A/B updates on the node (docs/updates.md): `pigsty agent update` writes a shared
//! root and a node bundle into the slot that is not running and makes it the next
//! boot on trial (a systemd-boot entry with a boot counter); `pigsty agent bless`
//! keeps a trial boot once the node is healthy, or reboots it so that the counter
//! runs out and systemd-boot falls back to the other slot.
//!
//! The ESP's loader entries are the record of what each slot holds: an entry's
//! options name the slot's root and bundle digests, and its file name its
//! generation and, while on trial, its boot counter ([`disk::ab_entry_name`]).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::bundle::{self, Boot};
use crate::image::disk;
use crate::sys;

/// Where the ESP is mounted while the agent reads or changes its entries: a
/// directory of each process's own below this (the join and pigsty-bless may read
/// it at the same moment; one's unmount must not pull it from under the other).
pub const ESP_MOUNT: &str = "/run/pigsty/esp";
const ENTRIES: &str = "loader/entries";
/// The most a node bundle may be (its partition's size).
const BUNDLE_MAX: u64 = disk::BUNDLE_MIB << 20;

/// The partitions of an A/B disk and its mounted ESP. On a node they are the
/// udev links of the GPT labels; tests use files that stand for partitions.
#[derive(Debug, Clone)]
pub struct Disk {
    /// The ESP's mount point.
    pub esp: PathBuf,
    /// A directory of partitions by GPT label (`/dev/disk/by-partlabel`).
    pub by_label: PathBuf,
    /// A directory of partitions by GPT partition UUID (`/dev/disk/by-partuuid`).
    pub by_partuuid: PathBuf,
}

impl Disk {
    /// This machine's disk, its ESP mounted by [`mount_esp`].
    pub fn node(esp: &EspMount) -> Disk {
        Disk {
            esp: esp.dir.clone(),
            by_label: PathBuf::from("/dev/disk/by-partlabel"),
            by_partuuid: PathBuf::from("/dev/disk/by-partuuid"),
        }
    }

    pub fn root_part(&self, slot: char) -> PathBuf {
        self.by_label.join(format!("pigsty-root-{slot}"))
    }

    pub fn bundle_part(&self, slot: char) -> PathBuf {
        self.by_label.join(format!("pigsty-bundle-{slot}"))
    }

    /// The GPT partition UUID of a partition, found among the by-partuuid links.
    fn partuuid(&self, part: &Path) -> anyhow::Result<String> {
        let want = std::fs::canonicalize(part)
            .with_context(|| format!("no partition {}", part.display()))?;
        for e in std::fs::read_dir(&self.by_partuuid)
            .with_context(|| format!("reading {}", self.by_partuuid.display()))?
        {
            let e = e?;
            if std::fs::canonicalize(e.path()).is_ok_and(|p| p == want) {
                return Ok(e.file_name().to_string_lossy().into_owned());
            }
        }
        bail!(
            "{} has no link in {}",
            part.display(),
            self.by_partuuid.display()
        )
    }
}

/// One of the ESP's slot entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub file: String,
    pub generation: u64,
    pub slot: char,
    /// Boots left while on trial (systemd-boot counts them down); None once blessed.
    pub tries_left: Option<u32>,
    pub tries_done: Option<u32>,
    pub options: String,
}

impl Entry {
    /// The entry's file name without its counter, as a blessed entry is named.
    pub fn blessed_name(&self) -> String {
        disk::ab_entry_name(self.generation, self.slot, None)
    }

    fn option(&self, key: &str) -> Option<&str> {
        self.options
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    }

    /// The bundle digest the entry names.
    pub fn bundle(&self) -> Option<&str> {
        self.option("pigsty.bundle")
            .and_then(|v| v.strip_prefix("sha256:"))
    }

    /// The root digest the entry names.
    pub fn root(&self) -> Option<&str> {
        self.option("pigsty.root")
            .and_then(|v| v.strip_prefix("sha256:"))
    }

    /// On trial with no tries left: systemd-boot passes it over.
    pub fn is_bad(&self) -> bool {
        self.tries_left == Some(0)
    }
}

/// Parse an entry file name: `pigsty-<generation>-<slot>[+<left>[-<done>]].conf`,
/// and the first image's `pigsty-a.conf` (generation 0).
pub fn parse_entry_name(name: &str) -> Option<(u64, char, Option<u32>, Option<u32>)> {
    let stem = name.strip_suffix(".conf")?.strip_prefix("pigsty-")?;
    let (id, counter) = match stem.split_once('+') {
        Some((id, c)) => (id, Some(c)),
        None => (stem, None),
    };
    let (generation, slot) = match id.split_once('-') {
        Some((g, s)) => (g.parse().ok()?, s),
        None => (0, id),
    };
    let slot = match slot {
        "a" => 'a',
        "b" => 'b',
        _ => return None,
    };
    let (left, done) = match counter {
        None => (None, None),
        Some(c) => match c.split_once('-') {
            Some((l, d)) => (Some(l.parse().ok()?), Some(d.parse().ok()?)),
            None => (Some(c.parse().ok()?), Some(0)),
        },
    };
    Some((generation, slot, left, done))
}

/// The slot entries on the ESP, newest generation first.
pub fn entries(esp: &Path) -> anyhow::Result<Vec<Entry>> {
    let dir = esp.join(ENTRIES);
    let mut out = Vec::new();
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let e = e?;
        let file = e.file_name().to_string_lossy().into_owned();
        let Some((generation, slot, tries_left, tries_done)) = parse_entry_name(&file) else {
            continue;
        };
        let text = std::fs::read_to_string(e.path())
            .with_context(|| format!("reading {}", e.path().display()))?;
        let options = text
            .lines()
            .find_map(|l| l.strip_prefix("options"))
            .unwrap_or_default()
            .trim()
            .to_string();
        out.push(Entry {
            file,
            generation,
            slot,
            tries_left,
            tries_done,
            options,
        });
    }
    out.sort_by(|a, b| b.generation.cmp(&a.generation).then(a.file.cmp(&b.file)));
    Ok(out)
}

/// What the node runs and what it would fall back to: `agent status`, and the
/// node's record in etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Slots {
    pub running: Option<SlotInfo>,
    pub fallback: Option<SlotInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct SlotInfo {
    pub slot: String,
    pub generation: u64,
    pub root: String,
    pub bundle: String,
    /// `blessed`, `trial (N tries left)` or `bad` (its tries ran out).
    pub state: String,
}

impl SlotInfo {
    fn of(e: &Entry) -> SlotInfo {
        SlotInfo {
            slot: e.slot.to_string(),
            generation: e.generation,
            root: e.root().unwrap_or_default().to_string(),
            bundle: e.bundle().unwrap_or_default().to_string(),
            state: match e.tries_left {
                None => "blessed".to_string(),
                Some(0) => "bad".to_string(),
                Some(n) => format!("trial ({n} tries left)"),
            },
        }
    }
}

/// The running slot (the entry whose bundle this boot names) and the other slot's
/// newest entry.
pub fn slots(esp: &Path, boot: &Boot) -> anyhow::Result<Slots> {
    let all = entries(esp)?;
    let running = all
        .iter()
        .find(|e| e.slot == boot.slot && e.bundle() == Some(boot.bundle.as_str()));
    let fallback = all.iter().find(|e| e.slot == boot.other());
    Ok(Slots {
        running: running.map(SlotInfo::of),
        fallback: fallback.map(SlotInfo::of),
    })
}

/// Where an update's root or bundle comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Http(String),
    File(PathBuf),
}

impl Source {
    pub fn parse(s: &str) -> Source {
        if s.starts_with("http://") || s.starts_with("https://") {
            Source::Http(s.to_string())
        } else {
            Source::File(PathBuf::from(s.strip_prefix("file://").unwrap_or(s)))
        }
    }

    /// The last component of the URL or path (a root's is `<sha256>.ext4`).
    fn file_name(&self) -> String {
        let s = match self {
            Source::Http(u) => u.split(['?', '#']).next().unwrap_or_default().to_string(),
            Source::File(p) => p.to_string_lossy().into_owned(),
        };
        s.rsplit('/').next().unwrap_or_default().to_string()
    }

    /// A reader of the whole source and its length when known.
    fn open(&self, http: &crate::http::Client) -> anyhow::Result<(Box<dyn Read>, Option<u64>)> {
        match self {
            Source::File(p) => {
                let f =
                    std::fs::File::open(p).with_context(|| format!("opening {}", p.display()))?;
                let len = f.metadata().ok().filter(|m| m.is_file()).map(|m| m.len());
                Ok((Box::new(f), len))
            }
            Source::Http(url) => {
                let resp = http.get(url).send().with_context(|| format!("GET {url}"))?;
                let status = resp.status();
                if !status.is_success() {
                    bail!("GET {url}: HTTP {}", status.as_u16());
                }
                let len = resp.content_length();
                Ok((Box::new(resp), len))
            }
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Http(u) => u.clone(),
            Source::File(p) => p.display().to_string(),
        }
    }
}

/// What `agent update` is asked to do.
#[derive(Debug, Clone)]
pub struct Request {
    /// None: the running slot's root (a change of node files only).
    pub root: Option<Source>,
    /// The root's sha256; else its file name must be `<sha256>.ext4`.
    pub root_sha256: Option<String>,
    pub bundle: Source,
    pub bundle_sha256: Option<String>,
    /// Boots the new slot gets before systemd-boot gives up on it.
    pub tries: u32,
    /// How long each trial boot may take to become healthy (`pigsty.trial=` on the
    /// entry, which `agent bless` keeps).
    pub trial_secs: u64,
}

/// What an update did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub slot: char,
    pub generation: u64,
    pub entry: String,
    pub root: String,
    pub bundle: String,
    /// `copied from slot a` (the running slot holds that root) or the source.
    pub root_from: String,
    pub root_bytes: u64,
}

/// The root's sha256: from the request, from its content-addressed name, or (no
/// root given) the running slot's.
fn wanted_root(req: &Request, boot: &Boot) -> anyhow::Result<String> {
    if let Some(hex) = &req.root_sha256 {
        if !bundle::is_sha256(hex) {
            bail!("--root-sha256 {hex}: expected 64 hex digits");
        }
        return Ok(hex.to_ascii_lowercase());
    }
    let Some(root) = &req.root else {
        return boot.root.clone().context(
            "no --root given, and this boot's entry names no root digest (pigsty.root=): \
             give the root to write",
        );
    };
    let name = root.file_name();
    match name.strip_suffix(".ext4") {
        Some(hex) if bundle::is_sha256(hex) => Ok(hex.to_ascii_lowercase()),
        _ => bail!(
            "the root {} is not named <sha256>.ext4 (as build-image --format bundle names \
             roots): give its digest with --root-sha256",
            root.describe()
        ),
    }
}

/// Write the update into the slot that is not running and make it the next boot,
/// on trial. `cmdline` is this boot's kernel command line.
pub fn update(
    disk: &Disk,
    cmdline: &str,
    req: &Request,
    http: &crate::http::Client,
) -> anyhow::Result<Outcome> {
    booted_slot(cmdline)?;
    // The bundle first: a few MiB, and a wrong one refused before GiBs are written.
    let tar = read_bundle(&req.bundle, http)?;
    update_with_bundle(disk, cmdline, req, &tar, http)
}

/// The slot this node booted from, or why it cannot be changed in place.
pub fn booted_slot(cmdline: &str) -> anyhow::Result<Boot> {
    match Boot::from_cmdline(cmdline)? {
        Some(boot) => Ok(boot),
        None => bail!(
            "this node did not boot from an A/B slot (no pigsty.slot on its command line): \
             a node booted from a PXE live set, a rootfs tar or a cloud-init seed changes by \
             a reimage; install it from an A/B disk (build-image --format raw or qcow2) to \
             update it in place"
        ),
    }
}

/// Read a node bundle (at most its partition's size).
pub fn read_bundle(src: &Source, http: &crate::http::Client) -> anyhow::Result<Vec<u8>> {
    read_all(src, http, BUNDLE_MAX)
}

/// [`update`] with the bundle already read (`req.bundle` only names it).
pub fn update_with_bundle(
    disk: &Disk,
    cmdline: &str,
    req: &Request,
    tar: &[u8],
    http: &crate::http::Client,
) -> anyhow::Result<Outcome> {
    let boot = booted_slot(cmdline)?;
    if req.tries == 0 {
        bail!("--tries 0: the new slot needs at least one boot");
    }
    let bundle_sha = bundle::digest(tar);
    if let Some(want) = &req.bundle_sha256
        && !want.eq_ignore_ascii_case(&bundle_sha)
    {
        bail!(
            "the bundle {} is sha256 {bundle_sha}, not {want}",
            req.bundle.describe()
        );
    }
    let target = boot.other();
    let want_root = wanted_root(req, &boot)?;
    let same_root = boot.root.as_deref() == Some(want_root.as_str());
    if !same_root && req.root.is_none() {
        bail!(
            "the root sha256:{want_root} is not the running slot's ({}): give --root to fetch it",
            boot.root.as_deref().unwrap_or("unnamed")
        );
    }
    let all = entries(&disk.esp)?;
    let running = all
        .iter()
        .find(|e| e.slot == boot.slot && e.bundle() == Some(boot.bundle.as_str()))
        .cloned();

    // The target slot holds the root already when its entry names it: an entry is
    // written only after its slot's root was written and read back under its digest,
    // and removed before a byte of the slot changes (a fallback's bad entry too).
    let held = all
        .iter()
        .any(|e| e.slot == target && e.root() == Some(want_root.as_str()));

    // 1. The target slot stops being bootable before a byte of it changes: a power
    //    cut from here on leaves the running slot the only entry.
    for e in all.iter().filter(|e| e.slot == target) {
        let path = disk.esp.join(ENTRIES).join(&e.file);
        std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
    }
    sync_dir(&disk.esp.join(ENTRIES))?;

    // 2. The root: copied from the running slot when it is the same root (a change
    //    of node files only), else fetched.
    let root_dev = disk.root_part(target);
    if !held {
        eprintln!(
            "pigsty agent update: writing root sha256:{want_root} into slot {target} ({})",
            root_dev.display()
        );
    }
    let copied = if held {
        Some((format!("already in slot {target} (its entry named it)"), 0))
    } else if same_root {
        let src = disk.root_part(boot.slot);
        let copy = ext4_len(&src).and_then(|len| {
            let f =
                std::fs::File::open(&src).with_context(|| format!("opening {}", src.display()))?;
            write_verified(Box::new(f.take(len)), Some(len), &root_dev, &want_root)
        });
        match copy {
            Ok(n) => Some((format!("copied from slot {}", boot.slot), n)),
            // The running slot no longer holds the bytes its digest names: fetch the
            // root when a source was given, else refuse.
            Err(e) if req.root.is_some() => {
                eprintln!(
                    "pigsty agent update: slot {} does not hold its root as built ({e:#}): fetching it",
                    boot.slot
                );
                None
            }
            Err(e) => return Err(e.context("copying the running slot's root")),
        }
    } else {
        None
    };
    let (root_from, root_bytes) = match copied {
        Some(done) => done,
        None => {
            let src = req.root.as_ref().context("no root to fetch")?;
            let (r, len) = src.open(http)?;
            let n = write_verified(r, len, &root_dev, &want_root)
                .with_context(|| format!("writing the root from {}", src.describe()))?;
            (src.describe(), n)
        }
    };

    // 3. The bundle, into the slot's bundle partition, read back under its digest.
    let bundle_dev = disk.bundle_part(target);
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&bundle_dev)
            .with_context(|| format!("opening {}", bundle_dev.display()))?;
        let capacity = f.seek(SeekFrom::End(0))?;
        bundle::write(&mut f, capacity, tar)
            .with_context(|| format!("writing {}", bundle_dev.display()))?;
    }
    super::preinit::read_partition(&bundle_dev, &bundle_sha)?;

    // 4. The new root's kernel and initrd into the ESP, then its entry, on trial.
    let (kernel, initrd) = boot_files(&root_dev)?;
    let slot_dir = disk.esp.join("pigsty").join(target.to_string());
    std::fs::create_dir_all(&slot_dir)?;
    write_synced(&slot_dir.join("vmlinuz"), &kernel)?;
    write_synced(&slot_dir.join("initrd.img"), &initrd)?;
    let partuuid = disk.partuuid(&root_dev)?;
    let uuid: uuid::Uuid = partuuid
        .parse()
        .with_context(|| format!("partition UUID {partuuid}"))?;
    let standard = format!(
        "{} pigsty.trial={}",
        disk::ab_cmdline(uuid, target, &bundle_sha, &want_root),
        req.trial_secs
    );
    let cmdline = match &running {
        Some(r) => carry_options(&r.options, &standard),
        None => standard,
    };
    let generation = all.iter().map(|e| e.generation).max().unwrap_or(0) + 1;
    let title = running
        .as_ref()
        .and_then(|r| title_of(&disk.esp.join(ENTRIES).join(&r.file)))
        .unwrap_or_else(|| "pigsty".to_string());
    let text = disk::ab_entry(&title, target, generation, &cmdline);
    let name = disk::ab_entry_name(generation, target, Some(req.tries));
    let dir = disk.esp.join(ENTRIES);
    let tmp = dir.join(format!(".{name}.tmp"));
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, dir.join(&name)).with_context(|| format!("naming {name}"))?;
    sync_dir(&dir)?;
    Ok(Outcome {
        slot: target,
        generation,
        entry: name,
        root: want_root,
        bundle: bundle_sha,
        root_from,
        root_bytes,
    })
}

/// The running entry's options with the slot's own keys replaced: options a user
/// or the image added stay.
fn carry_options(running: &str, standard: &str) -> String {
    const OWN: [&str; 6] = [
        "root=",
        "init=",
        "pigsty.slot=",
        "pigsty.bundle=",
        "pigsty.root=",
        "pigsty.trial=",
    ];
    let mut out: Vec<&str> = standard.split_whitespace().collect();
    for w in running.split_whitespace() {
        if !OWN.iter().any(|k| w.starts_with(k)) && !out.contains(&w) {
            out.push(w);
        }
    }
    out.join(" ")
}

/// The title an entry gives its node (`pigsty pg-test-1`), without the slot part.
fn title_of(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let t = text.lines().find_map(|l| l.strip_prefix("title "))?;
    Some(t.split(" (slot").next().unwrap_or(t).trim().to_string())
}

/// Stream `from` into the partition `dev`, then read back from the device (not the
/// page cache) what was written and hash it: it must be `want`. Returns the bytes
/// written.
///
/// One hash, of the read-back: it proves both that the source was the root named
/// and that the write held, and hashing a root again in flight cost as much as
/// the copy itself where the CPU is slow (a minute per GiB under emulation).
fn write_verified(
    mut from: Box<dyn Read>,
    len: Option<u64>,
    dev: &Path,
    want: &str,
) -> anyhow::Result<u64> {
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {}", dev.display()))?;
    let capacity = f.seek(SeekFrom::End(0))?;
    if let Some(n) = len
        && n > capacity
    {
        bail!(
            "the root is {n} bytes; the slot {} holds {capacity}",
            dev.display()
        );
    }
    f.seek(SeekFrom::Start(0))?;
    let mut buf = vec![0u8; 4 << 20];
    let mut written = 0u64;
    loop {
        let n = from.read(&mut buf).context("reading the root")?;
        if n == 0 {
            break;
        }
        if written + n as u64 > capacity {
            bail!(
                "the root is more than the {capacity} bytes the slot {} holds",
                dev.display()
            );
        }
        f.write_all(&buf[..n])
            .with_context(|| format!("writing {}", dev.display()))?;
        let before = written >> 28;
        written += n as u64;
        // A line every 256 MiB: an update of GiBs says it is alive.
        if written >> 28 != before {
            eprintln!(
                "pigsty agent update: {} MiB of the root written{}",
                written >> 20,
                len.map(|l| format!(" (of {})", l >> 20))
                    .unwrap_or_default()
            );
        }
    }
    if let Some(n) = len
        && n != written
    {
        bail!("the root ended after {written} of its {n} bytes");
    }
    f.sync_all()
        .with_context(|| format!("syncing {}", dev.display()))?;
    // Read back: what the device holds now, not what the page cache remembers.
    let _ = rustix::fs::fadvise(&f, 0, None, rustix::fs::Advice::DontNeed);
    f.seek(SeekFrom::Start(0))?;
    let mut back = Sha256::new();
    let mut left = written;
    while left > 0 {
        let n = (left as usize).min(buf.len());
        f.read_exact(&mut buf[..n])
            .with_context(|| format!("reading back {}", dev.display()))?;
        back.update(&buf[..n]);
        left -= n as u64;
    }
    let back = hex::encode(back.finalize());
    if back != want {
        bail!(
            "{} holds sha256 {back} after the write, not {want}: the root read was not \
             the one named, or the write did not hold",
            dev.display()
        );
    }
    Ok(written)
}

/// A small source, whole, refused past `max` bytes.
fn read_all(src: &Source, http: &crate::http::Client, max: u64) -> anyhow::Result<Vec<u8>> {
    let (r, len) = src.open(http)?;
    if len.is_some_and(|n| n > max) {
        bail!(
            "{} is {} bytes; a bundle holds at most {max}",
            src.describe(),
            len.unwrap_or_default()
        );
    }
    let mut out = Vec::new();
    r.take(max + 1)
        .read_to_end(&mut out)
        .with_context(|| format!("reading {}", src.describe()))?;
    if out.len() as u64 > max {
        bail!("{} is more than {max} bytes", src.describe());
    }
    Ok(out)
}

/// The length of the ext4 filesystem at the start of `dev`, from its superblock
/// (a slot is larger than the root it holds).
pub fn ext4_len(dev: &Path) -> anyhow::Result<u64> {
    let mut f = std::fs::File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
    let mut sb = [0u8; 1024];
    f.seek(SeekFrom::Start(1024))?;
    f.read_exact(&mut sb)
        .with_context(|| format!("reading the superblock of {}", dev.display()))?;
    let u32_at = |o: usize| u32::from_le_bytes(sb[o..o + 4].try_into().expect("4 bytes"));
    if u16::from_le_bytes([sb[0x38], sb[0x39]]) != 0xEF53 {
        bail!("{} holds no ext4 filesystem", dev.display());
    }
    let block = 1024u64 << u32_at(0x18);
    let mut blocks = u64::from(u32_at(0x4));
    // INCOMPAT_64BIT: the high half of the block count.
    if u32_at(0x60) & 0x80 != 0 {
        blocks |= u64::from(u32_at(0x150)) << 32;
    }
    Ok(blocks * block)
}

/// The kernel and initrd of the root in `dev`, read with debugfs (no mount):
/// `/boot/vmlinuz-<version>` and its `/boot/initrd.img-<version>`, the newest.
pub fn boot_files(dev: &Path) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let out = sys::run(
        Command::new("debugfs")
            .arg("-R")
            .arg("ls -p /boot")
            .arg(dev),
    )?;
    let listing = String::from_utf8_lossy(&out.stdout);
    let mut versions: Vec<String> = listing
        .lines()
        .filter_map(|l| l.split('/').nth(5))
        .filter_map(|n| n.strip_prefix("vmlinuz-"))
        .map(str::to_string)
        .collect();
    versions.sort_by(|a, b| version_cmp(a, b));
    let Some(version) = versions.pop() else {
        bail!("the root in {} has no /boot/vmlinuz-*", dev.display());
    };
    let work = tempfile::tempdir()?;
    let read = |name: &str| -> anyhow::Result<Vec<u8>> {
        let to = work.path().join(name);
        sys::run(
            Command::new("debugfs")
                .arg("-R")
                .arg(format!("dump /boot/{name} {}", to.display()))
                .arg(dev),
        )?;
        std::fs::read(&to).with_context(|| format!("/boot/{name} of the root in {}", dev.display()))
    };
    let kernel = read(&format!("vmlinuz-{version}"))?;
    let initrd = read(&format!("initrd.img-{version}"))?;
    Ok((kernel, initrd))
}

/// Compare kernel versions by their numeric runs (`6.12.9` < `6.12.10`).
fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let key = |s: &str| -> Vec<(u64, String)> {
        s.split(|c: char| !c.is_ascii_digit())
            .zip(s.split(|c: char| c.is_ascii_digit()))
            .map(|(n, t)| (n.parse().unwrap_or(0), t.to_string()))
            .collect()
    };
    key(a).cmp(&key(b))
}

fn write_synced(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    f.sync_all()
        .with_context(|| format!("syncing {}", path.display()))
}

fn sync_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("syncing {}", dir.display()))
}

/// The trial's bound this boot's command line names (`pigsty.trial=SECS`).
pub fn trial_secs(cmdline: &str) -> Option<u64> {
    cmdline
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pigsty.trial="))
        .and_then(|v| v.parse().ok())
}

/// Whether the boot of the running slot is on trial: its entry still counts tries.
pub fn trial_entry(esp: &Path, boot: &Boot) -> anyhow::Result<Option<Entry>> {
    Ok(entries(esp)?.into_iter().find(|e| {
        e.slot == boot.slot && e.bundle() == Some(boot.bundle.as_str()) && e.tries_left.is_some()
    }))
}

/// Keep the running slot: its entry loses its counter (what systemd-bless-boot
/// does), so systemd-boot boots it from now on without counting.
pub fn bless_entry(esp: &Path, entry: &Entry) -> anyhow::Result<String> {
    let dir = esp.join(ENTRIES);
    let to = entry.blessed_name();
    std::fs::rename(dir.join(&entry.file), dir.join(&to))
        .with_context(|| format!("renaming {} to {to}", entry.file))?;
    sync_dir(&dir)?;
    Ok(to)
}

/// What a look at a node's health found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Healthy,
    /// Not yet, and why: it may still become healthy.
    NotYet(String),
    /// Not on this boot, and why (the join stopped at a failure): waiting out the
    /// bound would change nothing.
    Never(String),
}

/// Wait, bounded by `limit`, for `healthy` to say yes (polled every `every`); the
/// last reason it gave when it never did, or at once the reason it never will.
pub fn wait_healthy(
    limit: Duration,
    every: Duration,
    mut healthy: impl FnMut() -> anyhow::Result<Health>,
) -> Result<(), String> {
    let start = Instant::now();
    let mut last: String;
    loop {
        match healthy() {
            Ok(Health::Healthy) => return Ok(()),
            Ok(Health::Never(why)) => return Err(why),
            Ok(Health::NotYet(why)) => last = why,
            Err(e) => last = format!("{e:#}"),
        }
        if start.elapsed() + every > limit {
            return Err(format!("not healthy within {limit:?}: {last}"));
        }
        std::thread::sleep(every);
    }
}

/// Mount the ESP (vfat) at a directory of this process's own below [`ESP_MOUNT`].
pub fn mount_esp() -> anyhow::Result<EspMount> {
    let dir = Path::new(ESP_MOUNT).join(std::process::id().to_string());
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dev = std::fs::canonicalize("/dev/disk/by-partlabel/ESP")
        .context("the ESP (/dev/disk/by-partlabel/ESP)")?;
    let flags = rustix::mount::MountFlags::NOSUID | rustix::mount::MountFlags::NODEV;
    // EBUSY while another process mounts it at that moment: a few tries, bounded.
    let mut tries = 0;
    loop {
        match rustix::mount::mount(&dev, &dir, "vfat", flags, c"umask=0077") {
            Ok(()) => break,
            Err(rustix::io::Errno::BUSY) if tries < 10 => {
                tries += 1;
                std::thread::sleep(std::time::Duration::from_millis(300));
            }
            Err(e) => {
                let _ = std::fs::remove_dir(&dir);
                return Err(e)
                    .with_context(|| format!("mounting {} on {}", dev.display(), dir.display()));
            }
        }
    }
    Ok(EspMount { dir })
}

/// The ESP mounted by [`mount_esp`]; unmounted (its writes flushed) when dropped.
pub struct EspMount {
    dir: PathBuf,
}

impl EspMount {
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for EspMount {
    fn drop(&mut self) {
        rustix::fs::sync();
        match rustix::mount::unmount(&self.dir, rustix::mount::UnmountFlags::empty()) {
            Ok(()) => {
                let _ = std::fs::remove_dir(&self.dir);
            }
            Err(e) => tracing::warn!("unmounting {}: {e}", self.dir.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_carry_generation_slot_and_counter() {
        assert_eq!(
            parse_entry_name("pigsty-2-b+3.conf"),
            Some((2, 'b', Some(3), Some(0)))
        );
        assert_eq!(
            parse_entry_name("pigsty-12-a+1-2.conf"),
            Some((12, 'a', Some(1), Some(2)))
        );
        assert_eq!(
            parse_entry_name("pigsty-1-a.conf"),
            Some((1, 'a', None, None))
        );
        assert_eq!(
            parse_entry_name("pigsty-a.conf"),
            Some((0, 'a', None, None))
        );
        for other in [
            "debian.conf",
            "pigsty-1-c.conf",
            "pigsty-x-a.conf",
            "pigsty-1-a",
        ] {
            assert_eq!(parse_entry_name(other), None, "{other}");
        }
        let n = disk::ab_entry_name(7, 'b', Some(3));
        assert_eq!(parse_entry_name(&n), Some((7, 'b', Some(3), Some(0))));
    }

    #[test]
    fn options_the_slot_does_not_own_are_carried_over() {
        let got = carry_options(
            "root=PARTUUID=x ro init=/usr/lib/pigsty/init pigsty.slot=a pigsty.bundle=sha256:1 \
             pigsty.root=sha256:2 console=ttyS0 mitigations=off",
            "root=PARTUUID=y ro init=/usr/lib/pigsty/init pigsty.slot=b console=ttyS0",
        );
        assert_eq!(
            got,
            "root=PARTUUID=y ro init=/usr/lib/pigsty/init pigsty.slot=b console=ttyS0 mitigations=off"
        );
    }

    #[test]
    fn kernel_versions_sort_by_their_numbers() {
        let mut v = vec!["6.12.10-amd64", "6.12.9-amd64", "6.1.0-28-amd64"];
        v.sort_by(|a, b| version_cmp(a, b));
        assert_eq!(v, ["6.1.0-28-amd64", "6.12.9-amd64", "6.12.10-amd64"]);
    }

    #[test]
    fn health_waits_are_bounded_and_say_why() {
        let mut n = 0;
        let ok = wait_healthy(Duration::from_secs(5), Duration::from_millis(1), || {
            n += 1;
            Ok(if n < 3 {
                Health::NotYet(format!("try {n}"))
            } else {
                Health::Healthy
            })
        });
        assert_eq!(ok, Ok(()));
        let err = wait_healthy(Duration::from_millis(30), Duration::from_millis(10), || {
            Ok(Health::NotYet("patroni.service is activating".to_string()))
        })
        .unwrap_err();
        assert!(err.contains("not healthy within"), "{err}");
        assert!(err.contains("patroni.service is activating"), "{err}");
        // A join that stopped at a failure ends the wait at its first look, however
        // long the bound.
        let mut looks = 0;
        let err = wait_healthy(Duration::from_secs(3600), Duration::from_secs(60), || {
            looks += 1;
            Ok(Health::Never("the join failed at step etcd".to_string()))
        })
        .unwrap_err();
        assert_eq!((looks, err.as_str()), (1, "the join failed at step etcd"));
    }
}
