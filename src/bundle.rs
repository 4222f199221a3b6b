//! A node bundle as it sits in its slot's bundle partition (docs/updates.md): a
//! 4 KiB header (magic, the tar's length and sha256), then the tar. The builder
//! writes it into a disk and `agent update` into the inactive slot; the node reads
//! it back at boot and uses it only when its digest is the one the slot's boot
//! entry names, so a torn or stale write is never applied.

use std::io::{Read, Seek, SeekFrom, Write};

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

/// The header's size: the tar starts on the next 4 KiB boundary.
pub const HEADER: usize = 4096;
const MAGIC: &[u8; 16] = b"PIGSTY-BUNDLE\0v1";

/// The sha256 (hex) of a bundle tar: what a boot entry names.
pub fn digest(tar: &[u8]) -> String {
    hex::encode(Sha256::digest(tar))
}

/// The header for `tar`.
pub fn header(tar: &[u8]) -> [u8; HEADER] {
    let mut h = [0u8; HEADER];
    h[..16].copy_from_slice(MAGIC);
    h[16..24].copy_from_slice(&(tar.len() as u64).to_le_bytes());
    h[24..56].copy_from_slice(&Sha256::digest(tar));
    h
}

/// Write `tar` with its header at the start of `dev` (a partition, or a file that
/// stands for one), whose size is `capacity` bytes; synced before it returns.
pub fn write(dev: &mut std::fs::File, capacity: u64, tar: &[u8]) -> anyhow::Result<()> {
    let need = (HEADER + tar.len()) as u64;
    if need > capacity {
        bail!(
            "the bundle ({need} bytes with its header) does not fit its partition ({capacity} bytes)"
        );
    }
    // The tar first, then the header that makes it valid: a write cut short leaves
    // the old header naming other bytes, which then fail their digest.
    dev.seek(SeekFrom::Start(HEADER as u64))?;
    dev.write_all(tar).context("writing the bundle")?;
    dev.sync_data().context("syncing the bundle")?;
    dev.seek(SeekFrom::Start(0))?;
    dev.write_all(&header(tar))
        .context("writing the bundle header")?;
    dev.sync_data().context("syncing the bundle header")?;
    Ok(())
}

/// Read the bundle from `dev` and check it: its header, its length against
/// `capacity`, and its sha256 against the header and against `want` (hex, from the
/// boot entry).
pub fn read(dev: &mut impl Read, capacity: u64, want: &str) -> anyhow::Result<Vec<u8>> {
    let mut h = [0u8; HEADER];
    dev.read_exact(&mut h)
        .context("reading the bundle header")?;
    if &h[..16] != MAGIC {
        bail!("no node bundle here (bad magic)");
    }
    let len = u64::from_le_bytes(h[16..24].try_into().expect("8 bytes"));
    if len > capacity.saturating_sub(HEADER as u64) {
        bail!("the bundle header names {len} bytes, more than its partition holds");
    }
    let mut tar = vec![0u8; len as usize];
    dev.read_exact(&mut tar).context("reading the bundle")?;
    let have = digest(&tar);
    if h[24..56] != Sha256::digest(&tar)[..] {
        bail!("the bundle's bytes do not match its header (sha256 {have}): a torn write");
    }
    if !have.eq_ignore_ascii_case(want) {
        bail!("the bundle is sha256 {have}, the boot entry names {want}");
    }
    Ok(tar)
}

/// What the kernel command line says of this boot's slot: `pigsty.slot=a` and
/// `pigsty.bundle=sha256:<hex>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Boot {
    pub slot: char,
    pub bundle: String,
    /// The sha256 of the slot's shared root (`pigsty.root=sha256:<hex>`), when the
    /// entry names it.
    pub root: Option<String>,
}

impl Boot {
    /// None on a node that does not boot from slots (one root, no bundle).
    pub fn from_cmdline(cmdline: &str) -> anyhow::Result<Option<Boot>> {
        let arg = |key: &str| {
            cmdline
                .split_whitespace()
                .find_map(|w| w.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
        };
        let (slot, bundle) = match (arg("pigsty.slot"), arg("pigsty.bundle")) {
            (None, None) => return Ok(None),
            (Some(s), Some(b)) => (s, b),
            _ => bail!(
                "the kernel command line names pigsty.slot or pigsty.bundle without the other"
            ),
        };
        let slot = match slot {
            "a" => 'a',
            "b" => 'b',
            other => bail!("pigsty.slot={other}: a slot is a or b"),
        };
        let sha = |key: &str, value: &str| -> anyhow::Result<String> {
            let Some(hex) = value.strip_prefix("sha256:") else {
                bail!("{key}={value}: expected sha256:<hex>");
            };
            if !is_sha256(hex) {
                bail!("{key}={value}: expected 64 hex digits");
            }
            Ok(hex.to_ascii_lowercase())
        };
        Ok(Some(Boot {
            slot,
            bundle: sha("pigsty.bundle", bundle)?,
            root: arg("pigsty.root")
                .map(|r| sha("pigsty.root", r))
                .transpose()?,
        }))
    }

    /// The other slot: where an update goes, and what a failed boot falls back to.
    pub fn other(&self) -> char {
        other_slot(self.slot)
    }

    /// The slot's bundle partition, by its GPT label.
    pub fn bundle_partition(&self) -> String {
        format!("/dev/disk/by-partlabel/pigsty-bundle-{}", self.slot)
    }
}

/// The slot that is not `slot`.
pub fn other_slot(slot: char) -> char {
    if slot == 'a' { 'b' } else { 'a' }
}

/// Whether `hex` is a sha256 in hex (64 digits).
pub fn is_sha256(hex: &str) -> bool {
    hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(size: u64) -> std::fs::File {
        let f = tempfile::tempfile().unwrap();
        f.set_len(size).unwrap();
        f
    }

    #[test]
    fn a_written_bundle_reads_back_only_under_its_digest() {
        let tar = b"a tar, say".repeat(100);
        let mut dev = device(1 << 20);
        write(&mut dev, 1 << 20, &tar).unwrap();
        dev.seek(SeekFrom::Start(0)).unwrap();
        assert_eq!(read(&mut dev, 1 << 20, &digest(&tar)).unwrap(), tar);
        dev.seek(SeekFrom::Start(0)).unwrap();
        let other = digest(b"another bundle");
        let err = read(&mut dev, 1 << 20, &other).unwrap_err().to_string();
        assert!(err.contains("the boot entry names"), "{err}");
    }

    #[test]
    fn torn_and_oversized_bundles_are_refused() {
        let tar = vec![7u8; 10_000];
        let mut dev = device(1 << 20);
        write(&mut dev, 1 << 20, &tar).unwrap();
        // A later write cut after its tar: the old header, new bytes.
        dev.seek(SeekFrom::Start(HEADER as u64)).unwrap();
        dev.write_all(&[8u8; 10_000]).unwrap();
        dev.seek(SeekFrom::Start(0)).unwrap();
        let err = read(&mut dev, 1 << 20, &digest(&tar))
            .unwrap_err()
            .to_string();
        assert!(err.contains("torn write"), "{err}");
        // Empty, and too big for its partition.
        let mut blank = device(1 << 20);
        assert!(
            read(&mut blank, 1 << 20, &digest(&tar))
                .unwrap_err()
                .to_string()
                .contains("bad magic")
        );
        let mut small = device(8192);
        let err = write(&mut small, 8192, &tar).unwrap_err().to_string();
        assert!(err.contains("does not fit"), "{err}");
        let mut dev = device(1 << 20);
        write(&mut dev, 1 << 20, &tar).unwrap();
        dev.seek(SeekFrom::Start(0)).unwrap();
        let err = read(&mut dev, 8192, &digest(&tar)).unwrap_err().to_string();
        assert!(err.contains("more than its partition holds"), "{err}");
    }

    #[test]
    fn the_command_line_names_the_slot_and_its_bundle() {
        let hex = "ab".repeat(32);
        let boot = Boot::from_cmdline(&format!(
            "root=PARTLABEL=pigsty-root-b ro pigsty.slot=b pigsty.bundle=sha256:{hex} quiet"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(boot.slot, 'b');
        assert_eq!(boot.bundle, hex);
        assert_eq!(boot.root, None);
        assert_eq!(boot.other(), 'a');
        let root = "cd".repeat(32);
        let with_root = Boot::from_cmdline(&format!(
            "pigsty.slot=a pigsty.bundle=sha256:{hex} pigsty.root=sha256:{root}"
        ))
        .unwrap()
        .unwrap();
        assert_eq!(with_root.root.as_deref(), Some(root.as_str()));
        assert_eq!(
            boot.bundle_partition(),
            "/dev/disk/by-partlabel/pigsty-bundle-b"
        );
        assert_eq!(Boot::from_cmdline("root=UUID=x ro").unwrap(), None);
        for bad in [
            "pigsty.slot=a",
            "pigsty.slot=c pigsty.bundle=sha256:00",
            &format!("pigsty.slot=a pigsty.bundle={hex}"),
            "pigsty.slot=a pigsty.bundle=sha256:abc",
            &format!("pigsty.slot=a pigsty.bundle=sha256:{hex} pigsty.root=sha256:12"),
        ] {
            assert!(Boot::from_cmdline(bad).is_err(), "{bad}");
        }
    }
}
