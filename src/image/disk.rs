//! Bootable disks in the A/B layout (docs/updates.md): a GPT image with an EFI
//! system partition (systemd-boot, each slot's kernel, initrd and loader entry), two
//! root slots and their bundle partitions, and a data partition. Roots are ext4 made
//! by `mke2fs -d` with a fixed UUID, hash seed and timestamps, so the same tree
//! always gives the same bytes.

use std::fs::File;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, bail};

use super::tree::{Kind, Tree};
use crate::sys;

const SECTOR: u64 = 512;
const MIB: u64 = 1024 * 1024;

/// Identifiers of one disk, derived from the node digest so rebuilds are identical.
#[derive(Debug, Clone, Copy)]
pub struct DiskIds {
    pub disk: uuid::Uuid,
    pub esp: uuid::Uuid,
    pub root_part: uuid::Uuid,
    pub root_fs: uuid::Uuid,
    pub esp_volume_id: u32,
}

impl DiskIds {
    pub fn from_digest(digest: &str) -> DiskIds {
        let bytes = hex::decode(digest).unwrap_or_default();
        let id = |n: u8| {
            let mut b = [0u8; 16];
            for (i, v) in b.iter_mut().enumerate() {
                *v = bytes.get(i).copied().unwrap_or(0) ^ n.wrapping_mul(0x9d);
            }
            uuid::Builder::from_random_bytes(b).into_uuid()
        };
        DiskIds {
            disk: id(1),
            esp: id(2),
            root_part: id(3),
            root_fs: id(4),
            esp_volume_id: u32::from_be_bytes([bytes.first().copied().unwrap_or(0), 1, 2, 3]),
        }
    }
}

/// The kernel and initrd the tree boots with (Debian's /vmlinuz and /initrd.img links).
pub struct BootFiles {
    pub kernel: Vec<u8>,
    pub initrd: Vec<u8>,
}

pub fn boot_files(tree: &Tree) -> anyhow::Result<BootFiles> {
    let read = |link: &str| -> anyhow::Result<Vec<u8>> {
        let mut path = link.to_string();
        for _ in 0..8 {
            match tree.get(&path).map(|e| &e.kind) {
                Some(Kind::Symlink(t)) => {
                    path = if t.starts_with('/') {
                        t.clone()
                    } else {
                        format!("{}/{t}", parent(&path))
                    };
                }
                Some(Kind::File(d)) => return Ok(d.to_vec()),
                _ => break,
            }
        }
        bail!("the image has no {link} (is linux-image-amd64 in the base packages?)")
    };
    Ok(BootFiles {
        kernel: read("vmlinuz")?,
        initrd: read("initrd.img")?,
    })
}

fn parent(path: &str) -> &str {
    path.trim_start_matches('/')
        .rsplit_once('/')
        .map_or("", |(p, _)| p)
}

/// Make the ext4 image of a shared root, `size_mib` MiB, from an extracted tree.
///
/// No journal: a shared root is only ever mounted read-only, and the kernel writes
/// the journal superblock of a fresh ext4 (its checksum features) at the first
/// mount, even a read-only one. A slot's bytes must stay the bytes its digest names.
pub fn make_ext4(
    dir: &Path,
    out: &Path,
    ids: &DiskIds,
    size_mib: u64,
    inodes: u64,
    epoch: u64,
) -> anyhow::Result<()> {
    sys::run(
        mke2fs("root", ids.root_fs, epoch)
            .args(["-O", "^has_journal", "-N"])
            .arg(inodes.to_string())
            .arg("-d")
            .arg(dir)
            .arg(out)
            .arg(format!("{size_mib}M")),
    )?;
    clamp_ctimes(out, epoch)
}

/// `mke2fs -d` copies each source file's ctime (the time of extraction, which user
/// space cannot set) and atime (reading a directory refreshes it). Set both to the
/// epoch on every used inode (they are allocated from the start of the table) with
/// debugfs, which keeps the inode checksums right, under the same fake clock.
fn clamp_ctimes(img: &Path, epoch: u64) -> anyhow::Result<()> {
    let header = sys::run_stdout(Command::new("dumpe2fs").arg("-h").arg(img))?;
    let field = |name: &str| -> anyhow::Result<u64> {
        header
            .lines()
            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().parse::<u64>()))
            .with_context(|| format!("dumpe2fs -h has no `{name}`"))?
            .with_context(|| format!("dumpe2fs -h: bad `{name}`"))
    };
    let used = field("Inode count:")? - field("Free inodes:")?;
    let stamp = format!("@{epoch}");
    let mut cmds = String::new();
    for ino in std::iter::once(2).chain(11..=used.max(11)) {
        cmds.push_str(&format!(
            "sif <{ino}> ctime {stamp}\nsif <{ino}> atime {stamp}\n"
        ));
    }
    let script = tempfile::NamedTempFile::new().context("debugfs script")?;
    std::fs::write(script.path(), cmds).context("writing the debugfs script")?;
    sys::run(
        Command::new("debugfs")
            .env("E2FSPROGS_FAKE_TIME", epoch.to_string())
            .arg("-w")
            .arg("-f")
            .arg(script.path())
            .arg(img),
    )?;
    Ok(())
}

/// systemd-boot, from the tree.
fn loader(tree: &Tree) -> anyhow::Result<super::tree::Data> {
    match tree
        .get("usr/lib/systemd/boot/efi/systemd-bootx64.efi")
        .map(|e| &e.kind)
    {
        Some(Kind::File(d)) => Ok(d.clone()),
        _ => bail!("the image has no systemd-boot (add systemd-boot to the base packages)"),
    }
}

/// Write `data` at `offset`, leaving runs of zeros as holes (the image stays sparse).
fn write_sparse(dst: &mut File, data: &[u8], offset: u64) -> anyhow::Result<()> {
    for (i, block) in data.chunks(MIB as usize).enumerate() {
        if block.iter().any(|&b| b != 0) {
            dst.seek(SeekFrom::Start(offset + i as u64 * MIB))?;
            dst.write_all(block)?;
        }
    }
    Ok(())
}

/// Copy the data extents of `src` (SEEK_DATA/SEEK_HOLE) to `dst` at `offset`, in the
/// kernel (copy_file_range): holes stay holes.
fn copy_data_into(dst: &File, src: &Path, offset: u64) -> anyhow::Result<()> {
    use rustix::fs::copy_file_range;
    let src_file = File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let len = src_file.metadata()?.len();
    for (data, end) in crate::blockmap::extents(&src_file, len, src)? {
        let (mut from, mut to) = (data, offset + data);
        while from < end {
            let want = usize::try_from(end - from).unwrap_or(usize::MAX);
            let n = copy_file_range(&src_file, Some(&mut from), dst, Some(&mut to), want)
                .map_err(std::io::Error::from)
                .with_context(|| format!("copying {} into the disk", src.display()))?;
            if n == 0 {
                bail!("{} ended early", src.display());
            }
        }
    }
    Ok(())
}

/// Size of each slot's bundle partition.
pub const BUNDLE_MIB: u64 = 16;
/// Size of a fresh data partition; it grows into the rest of the disk at first boot.
pub const DATA_MIB: u64 = 512;
const AB_ESP_MIB: u64 = 256;

/// What a partition of an A/B disk is filled from.
pub enum Fill<'a> {
    /// Bytes (the ESP), written sparsely.
    Bytes(&'a [u8]),
    /// An image file (a root, a data filesystem), copied by extents.
    File(&'a Path),
    /// Nothing yet: zeros (a hole) of this many bytes.
    Empty(u64),
}

/// One GPT partition of an A/B disk.
pub struct Part<'a> {
    pub label: &'a str,
    pub kind: gpt::partition_types::Type,
    pub guid: uuid::Uuid,
    pub fill: Fill<'a>,
    /// The partition's least size in bytes (a root slot has room to grow).
    pub min: u64,
}

/// Write a GPT disk of `parts`, in order, each 1 MiB aligned; returns each
/// partition's byte offset.
pub fn make_gpt_parts(out: &Path, parts: &[Part], disk: uuid::Uuid) -> anyhow::Result<Vec<u64>> {
    let align = MIB / SECTOR;
    let mut layout = Vec::new();
    let mut next = align;
    for p in parts {
        let len = match &p.fill {
            Fill::Bytes(b) => b.len() as u64,
            Fill::File(f) => std::fs::metadata(f)
                .with_context(|| format!("reading {}", f.display()))?
                .len(),
            Fill::Empty(n) => *n,
        }
        .max(p.min);
        let sectors = len.div_ceil(SECTOR).div_ceil(align) * align;
        layout.push((next, sectors));
        next += sectors;
    }
    let total = next * SECTOR + 2 * MIB;
    let mut file = super::rw_file(out)?;
    file.set_len(total)?;
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(
        u32::try_from(total / SECTOR - 1).unwrap_or(u32::MAX),
    );
    mbr.overwrite_lba0(&mut file)
        .context("writing the protective MBR")?;
    let mut gpt = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, Some(disk))
        .context("creating the GPT")?;
    for (i, (p, (first, sectors))) in parts.iter().zip(&layout).enumerate() {
        gpt.add_partition_at(p.label, i as u32 + 1, *first, *sectors, p.kind.clone(), 0)?;
    }
    let mut table = gpt.take_partitions();
    for (i, p) in parts.iter().enumerate() {
        if let Some(e) = table.get_mut(&(i as u32 + 1)) {
            e.part_guid = p.guid;
        }
    }
    gpt.update_partitions(table)?;
    let mut file = gpt.write().context("writing the GPT")?;
    let mut offsets = Vec::new();
    for (p, (first, _)) in parts.iter().zip(&layout) {
        let at = first * SECTOR;
        match &p.fill {
            Fill::Bytes(b) => write_sparse(&mut file, b, at)?,
            Fill::File(f) => copy_data_into(&file, f, at)?,
            Fill::Empty(_) => {}
        }
        offsets.push(at);
    }
    file.sync_all()?;
    Ok(offsets)
}

/// The kernel command line of slot `slot` of an A/B disk: its root partition, the
/// pre-init, and the digest of the bundle paired with it.
pub fn ab_cmdline(
    root_part: uuid::Uuid,
    slot: char,
    bundle_sha256: &str,
    root_sha256: &str,
) -> String {
    format!(
        "root=PARTUUID={root_part} ro init=/usr/lib/pigsty/init pigsty.slot={slot} \
         pigsty.bundle=sha256:{bundle_sha256} pigsty.root=sha256:{root_sha256} panic=10 \
         console=tty0 console=ttyS0,115200 net.ifnames=0 systemd.show_status=1"
    )
}

/// The file name of a slot's loader entry: `pigsty-<generation>-<slot>.conf`, with
/// systemd-boot's boot counter (`+<tries>`) while it is on trial. systemd-boot
/// boots the first entry in its order that matches `default pigsty-*`: ids in
/// descending version order, entries with no tries left last. So the newest
/// generation boots, and a trial that used up its tries gives way to the older one.
pub fn ab_entry_name(generation: u64, slot: char, tries: Option<u32>) -> String {
    match tries {
        Some(n) => format!("pigsty-{generation}-{slot}+{n}.conf"),
        None => format!("pigsty-{generation}-{slot}.conf"),
    }
}

/// A slot's loader entry (Boot Loader Specification type 1).
pub fn ab_entry(title: &str, slot: char, generation: u64, cmdline: &str) -> String {
    format!(
        "title {title} (slot {slot}, generation {generation})\nlinux /pigsty/{slot}/vmlinuz\n\
         initrd /pigsty/{slot}/initrd.img\noptions {cmdline}\n"
    )
}

/// The ESP's loader.conf of an A/B disk (see [`ab_entry_name`]).
pub const AB_LOADER_CONF: &str = "default pigsty-*\ntimeout 0\nconsole-mode keep\n";

/// The ESP of an A/B disk: systemd-boot, and slot A's kernel, initrd and entry
/// (generation 1, blessed: it is the only slot so far). Slot B's appear with its
/// first update.
pub fn make_ab_esp(
    tree: &Tree,
    boot: &BootFiles,
    volume_id: u32,
    title: &str,
    cmdline: &str,
) -> anyhow::Result<Vec<u8>> {
    let loader = loader(tree)?;
    let entry = ab_entry(title, 'a', 1, cmdline);
    let name = format!("loader/entries/{}", ab_entry_name(1, 'a', None));
    let files: [(&str, &[u8]); 6] = [
        ("EFI/BOOT/BOOTX64.EFI", &loader),
        ("EFI/systemd/systemd-bootx64.efi", &loader),
        ("loader/loader.conf", AB_LOADER_CONF.as_bytes()),
        (&name, entry.as_bytes()),
        ("pigsty/a/vmlinuz", &boot.kernel),
        ("pigsty/a/initrd.img", &boot.initrd),
    ];
    fat_volume(AB_ESP_MIB, volume_id, &files)
}

/// Grow the last partition of the GPT disk `dev` (a block device, or a file standing
/// for one) into the space after it, as far as the disk's end less its backup table,
/// in whole MiB: the data partition of an A/B disk on a larger drive (or a larger
/// qcow2 over the image). The headers are written anew for the device's size, the
/// partitions as they were. Returns the partition's number and its old and new size
/// in sectors, or None when there is under 1 MiB to gain.
pub fn grow_last_partition(dev: &Path) -> anyhow::Result<Option<(u32, u64, u64)>> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev)
        .with_context(|| format!("opening {}", dev.display()))?;
    let sectors = {
        let mut f = &file;
        f.seek(SeekFrom::End(0))? / SECTOR
    };
    let old = gpt::GptConfig::new()
        .writable(false)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .open_from_device(file.try_clone()?)
        .with_context(|| format!("reading the GPT of {}", dev.display()))?;
    let parts = old.partitions().clone();
    let guid = *old.guid();
    drop(old);
    let Some((&last_id, last)) = parts.iter().max_by_key(|(_, p)| p.first_lba) else {
        return Ok(None);
    };
    let align = MIB / SECTOR;
    // The backup table (32 sectors of entries) and header end the disk.
    let last_usable = sectors.saturating_sub(34);
    let old_len = last.last_lba + 1 - last.first_lba;
    let new_len = (last_usable + 1 - last.first_lba) / align * align;
    if new_len < old_len + align {
        return Ok(None);
    }
    let mbr = gpt::mbr::ProtectiveMBR::with_lb_size(u32::try_from(sectors - 1).unwrap_or(u32::MAX));
    let mut f = file.try_clone()?;
    mbr.overwrite_lba0(&mut f)
        .context("writing the protective MBR")?;
    let mut disk = gpt::GptConfig::new()
        .writable(true)
        .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
        .create_from_device(file, Some(guid))
        .context("new GPT headers")?;
    for (&id, p) in &parts {
        let len = if id == last_id {
            new_len
        } else {
            p.last_lba + 1 - p.first_lba
        };
        disk.add_partition_at(
            &p.name,
            id,
            p.first_lba,
            len,
            p.part_type_guid.clone(),
            p.flags,
        )
        .with_context(|| format!("partition {id}"))?;
    }
    let mut table = disk.take_partitions();
    for (id, p) in &parts {
        if let Some(e) = table.get_mut(id) {
            e.part_guid = p.part_guid;
        }
    }
    disk.update_partitions(table)?;
    let file = disk.write().context("writing the GPT")?;
    file.sync_all()?;
    Ok(Some((last_id, old_len, new_len)))
}

/// The ESP of a shared A/B base disk: [`make_ab_esp`] without a slot entry, which
/// each node's disk adds ([`add_ab_entry`]).
pub fn make_ab_esp_base(tree: &Tree, boot: &BootFiles, volume_id: u32) -> anyhow::Result<Vec<u8>> {
    let loader = loader(tree)?;
    let files: [(&str, &[u8]); 5] = [
        ("EFI/BOOT/BOOTX64.EFI", &loader),
        ("EFI/systemd/systemd-bootx64.efi", &loader),
        ("loader/loader.conf", AB_LOADER_CONF.as_bytes()),
        ("pigsty/a/vmlinuz", &boot.kernel),
        ("pigsty/a/initrd.img", &boot.initrd),
    ];
    fat_volume(AB_ESP_MIB, volume_id, &files)
}

/// Add slot A's entry (generation 1, blessed) to a base ESP ([`make_ab_esp_base`])
/// without copying it: returns the sectors that change, as (offset in the ESP,
/// bytes) runs.
pub fn add_ab_entry(esp: &[u8], entry: &str) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
    let mut cow = CowDisk::new(esp);
    {
        let fs = fatfs::FileSystem::new(&mut cow, fatfs::FsOptions::new())
            .context("opening the base ESP")?;
        let root = fs.root_dir();
        if root.open_dir("loader/entries").is_err() {
            root.create_dir("loader/entries")
                .context("ESP: mkdir loader/entries")?;
        }
        let name = format!("loader/entries/{}", ab_entry_name(1, 'a', None));
        let mut f = root
            .create_file(&name)
            .with_context(|| format!("ESP: creating {name}"))?;
        f.truncate()?;
        f.write_all(entry.as_bytes())
            .with_context(|| format!("ESP: writing {name}"))?;
        drop(f);
        drop(root);
        fs.unmount().context("closing the ESP")?;
    }
    Ok(cow.runs())
}

/// A disk image read from `base` with the sectors written to it kept apart, so a
/// change to a large image costs only what changes.
pub struct CowDisk<'a> {
    base: &'a [u8],
    pos: u64,
    dirty: std::collections::BTreeMap<u64, Box<[u8; SECTOR as usize]>>,
}

impl<'a> CowDisk<'a> {
    pub fn new(base: &'a [u8]) -> CowDisk<'a> {
        CowDisk {
            base,
            pos: 0,
            dirty: std::collections::BTreeMap::new(),
        }
    }

    fn sector(&self, n: u64) -> [u8; SECTOR as usize] {
        if let Some(s) = self.dirty.get(&n) {
            return **s;
        }
        let mut out = [0u8; SECTOR as usize];
        let at = (n * SECTOR) as usize;
        if at < self.base.len() {
            let end = (at + SECTOR as usize).min(self.base.len());
            out[..end - at].copy_from_slice(&self.base[at..end]);
        }
        out
    }

    /// The sectors written that differ from the base, merged into runs.
    pub fn runs(&self) -> Vec<(u64, Vec<u8>)> {
        let mut out: Vec<(u64, Vec<u8>)> = Vec::new();
        for (&n, data) in &self.dirty {
            let at = n * SECTOR;
            let base = self
                .base
                .get(at as usize..(at + SECTOR) as usize)
                .unwrap_or(&[]);
            if base == &data[..] {
                continue;
            }
            match out.last_mut() {
                Some((start, bytes)) if *start + bytes.len() as u64 == at => {
                    bytes.extend_from_slice(&data[..]);
                }
                _ => out.push((at, data.to_vec())),
            }
        }
        out
    }
}

impl std::io::Read for CowDisk<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let len = self.base.len() as u64;
        if self.pos >= len || buf.is_empty() {
            return Ok(0);
        }
        let (n, off) = (self.pos / SECTOR, (self.pos % SECTOR) as usize);
        let sector = self.sector(n);
        let take = buf
            .len()
            .min(SECTOR as usize - off)
            .min((len - self.pos) as usize);
        buf[..take].copy_from_slice(&sector[off..off + take]);
        self.pos += take as u64;
        Ok(take)
    }
}

impl Write for CowDisk<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.pos >= self.base.len() as u64 {
            return Err(std::io::Error::other("write past the end of the disk"));
        }
        let (n, off) = (self.pos / SECTOR, (self.pos % SECTOR) as usize);
        let mut sector = self.sector(n);
        let take = buf.len().min(SECTOR as usize - off);
        sector[off..off + take].copy_from_slice(&buf[..take]);
        self.dirty.insert(n, Box::new(sector));
        self.pos += take as u64;
        Ok(take)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Seek for CowDisk<'_> {
    fn seek(&mut self, to: SeekFrom) -> std::io::Result<u64> {
        let len = self.base.len() as i128;
        let at = match to {
            SeekFrom::Start(n) => i128::from(n),
            SeekFrom::End(d) => len + i128::from(d),
            SeekFrom::Current(d) => i128::from(self.pos) + i128::from(d),
        };
        self.pos = u64::try_from(at).map_err(|_| std::io::Error::other("seek before the start"))?;
        Ok(self.pos)
    }
}

/// The size of a root slot for a root of `len` bytes: half as much again, rounded
/// up to 64 MiB, so that a later root with more packages still fits the slot.
pub fn root_slot_bytes(len: u64) -> u64 {
    (len + len / 2).div_ceil(64 * MIB) * 64 * MIB
}

/// A FAT32 volume of `mib` MiB holding `files`, in memory.
fn fat_volume(mib: u64, volume_id: u32, files: &[(&str, &[u8])]) -> anyhow::Result<Vec<u8>> {
    let mut file = std::io::Cursor::new(vec![0u8; (mib * MIB) as usize]);
    let opts = fatfs::FormatVolumeOptions::new()
        .fat_type(fatfs::FatType::Fat32)
        .volume_id(volume_id)
        .volume_label(*b"PIGSTY-ESP ");
    fatfs::format_volume(&mut file, opts).context("formatting the ESP")?;
    file.seek(SeekFrom::Start(0))?;
    let fs =
        fatfs::FileSystem::new(&mut file, fatfs::FsOptions::new()).context("opening the ESP")?;
    let root = fs.root_dir();
    for (path, data) in files {
        let (dirs, _) = path.rsplit_once('/').unwrap_or(("", path));
        let mut acc = String::new();
        for d in dirs.split('/') {
            acc = if acc.is_empty() {
                d.to_string()
            } else {
                format!("{acc}/{d}")
            };
            if root.open_dir(&acc).is_err() {
                root.create_dir(&acc)
                    .with_context(|| format!("ESP: mkdir {acc}"))?;
            }
        }
        let mut f = root
            .create_file(path)
            .with_context(|| format!("ESP: creating {path}"))?;
        f.truncate()?;
        f.write_all(data)
            .with_context(|| format!("ESP: writing {path}"))?;
    }
    drop(root);
    fs.unmount().context("closing the ESP")?;
    Ok(file.into_inner())
}

/// mke2fs with what every filesystem of ours gets: 4 KiB blocks, no reserved blocks,
/// its label, and a UUID that is also its directory hash seed, under a fake clock
/// (`epoch`), so the same inputs give the same bytes.
fn mke2fs(label: &str, uuid: uuid::Uuid, epoch: u64) -> Command {
    let mut cmd = Command::new("mke2fs");
    cmd.env("E2FSPROGS_FAKE_TIME", epoch.to_string())
        .args([
            "-q", "-F", "-t", "ext4", "-b", "4096", "-m", "0", "-L", label,
        ])
        .arg("-U")
        .arg(uuid.to_string())
        .arg("-E")
        .arg(format!(
            "hash_seed={uuid},lazy_itable_init=0,lazy_journal_init=0,root_owner=0:0"
        ));
    cmd
}

/// An empty ext4 data filesystem (label `pigsty-data`), reproducible from `uuid`.
pub fn make_data_fs(out: &Path, uuid: uuid::Uuid, mib: u64, epoch: u64) -> anyhow::Result<()> {
    sys::run(
        mke2fs("pigsty-data", uuid, epoch)
            .arg(out)
            .arg(format!("{mib}M")),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A shared root is only ever mounted read-only, and carries no journal: the
    /// kernel writes a fresh journal's superblock at the first mount, read-only or
    /// not (seen in the lab: slot A's digest changed under a running node, and the
    /// update that copies the running root refused it). The data partition, mounted
    /// read-write, keeps its journal.
    #[test]
    fn a_shared_root_has_no_journal_and_the_data_partition_has_one() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("tree");
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::write(tree.join("etc/hostname"), "x\n").unwrap();
        let ids = DiskIds::from_digest(&"ab".repeat(32));
        let root = dir.path().join("root.ext4");
        make_ext4(&tree, &root, &ids, 16, 1024, 1_700_000_000).unwrap();
        let data = dir.path().join("data.ext4");
        make_data_fs(&data, ids.disk, 16, 1_700_000_000).unwrap();
        for (img, journal) in [(&root, false), (&data, true)] {
            let out = std::process::Command::new("dumpe2fs")
                .arg("-h")
                .arg(img)
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            let features = text
                .lines()
                .find(|l| l.starts_with("Filesystem features:"))
                .unwrap_or_else(|| panic!("dumpe2fs -h {}: {text}", img.display()));
            assert_eq!(
                features.contains("has_journal"),
                journal,
                "{}: {features}",
                img.display()
            );
        }
    }

    /// An entry added through the copy-on-write view, laid over the base, reads back
    /// as a FAT file beside the base's own; the base is untouched.
    #[test]
    fn an_entry_added_over_a_base_esp_changes_a_few_sectors() {
        let files: [(&str, &[u8]); 2] = [
            ("loader/loader.conf", AB_LOADER_CONF.as_bytes()),
            ("pigsty/a/vmlinuz", &[7u8; 300_000]),
        ];
        let base = fat_volume(64, 1, &files).unwrap();
        let entry = ab_entry("pigsty pg-test-1", 'a', 1, "root=PARTUUID=x ro");
        let runs = add_ab_entry(&base, &entry).unwrap();
        let changed: usize = runs.iter().map(|(_, b)| b.len()).sum();
        assert!(changed > 0 && changed < 64 << 10, "{changed} bytes changed");
        let mut disk = base.clone();
        for (at, bytes) in &runs {
            disk[*at as usize..*at as usize + bytes.len()].copy_from_slice(bytes);
        }
        let fs =
            fatfs::FileSystem::new(std::io::Cursor::new(disk), fatfs::FsOptions::new()).unwrap();
        let read = |p: &str| {
            let mut s = Vec::new();
            std::io::Read::read_to_end(&mut fs.root_dir().open_file(p).unwrap(), &mut s).unwrap();
            s
        };
        assert_eq!(read("loader/entries/pigsty-1-a.conf"), entry.as_bytes());
        assert_eq!(read("pigsty/a/vmlinuz"), vec![7u8; 300_000]);
        assert_eq!(read("loader/loader.conf"), AB_LOADER_CONF.as_bytes());
    }

    #[test]
    fn the_last_partition_grows_into_a_larger_disk_and_keeps_its_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("disk.raw");
        let (a, b) = (vec![1u8; 3 * MIB as usize], vec![2u8; 2 * MIB as usize]);
        let parts = [
            Part {
                label: "ESP",
                kind: gpt::partition_types::EFI,
                guid: uuid::Uuid::from_u128(1),
                fill: Fill::Bytes(&a),
                min: 0,
            },
            Part {
                label: "pigsty-data",
                kind: gpt::partition_types::LINUX_FS,
                guid: uuid::Uuid::from_u128(2),
                fill: Fill::Bytes(&b),
                min: 0,
            },
        ];
        let offsets = make_gpt_parts(&out, &parts, uuid::Uuid::from_u128(9)).unwrap();
        let f = std::fs::OpenOptions::new().write(true).open(&out).unwrap();
        f.set_len(f.metadata().unwrap().len() + 10 * MIB).unwrap();
        drop(f);
        let (id, old, new) = grow_last_partition(&out).unwrap().unwrap();
        assert_eq!((id, old), (2, 2 * MIB / SECTOR));
        // The disk's 2 MiB tail and the 10 MiB added, less the backup table.
        assert_eq!(new, 13 * MIB / SECTOR);
        // Read back: both headers valid, names and GUIDs kept, the bytes in place.
        let disk = gpt::GptConfig::new()
            .only_valid_headers(true)
            .logical_block_size(gpt::disk::LogicalBlockSize::Lb512)
            .open(&out)
            .unwrap();
        assert_eq!(*disk.guid(), uuid::Uuid::from_u128(9));
        let p = &disk.partitions()[&2];
        assert_eq!(p.name, "pigsty-data");
        assert_eq!(p.part_guid, uuid::Uuid::from_u128(2));
        assert_eq!(p.last_lba + 1 - p.first_lba, new);
        assert_eq!(disk.partitions()[&1].part_guid, uuid::Uuid::from_u128(1));
        let bytes = std::fs::read(&out).unwrap();
        let at = offsets[1] as usize;
        assert!(bytes[at..at + b.len()].iter().all(|&x| x == 2));
        assert!(
            bytes[offsets[0] as usize..][..a.len()]
                .iter()
                .all(|&x| x == 1)
        );
        assert_eq!(grow_last_partition(&out).unwrap(), None);
    }
}
