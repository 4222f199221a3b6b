//! `pigsty agent pre-init`: the first process of a node booted from a slot
//! (docs/updates.md). The initrd has mounted the slot's shared root read-only and
//! runs `/usr/lib/pigsty/init`, which runs this. It makes the node's root and hands
//! over to systemd:
//!
//! 1. the slot's bundle partition is read and checked against the digest the boot
//!    entry names (`pigsty.bundle=sha256:...`), then unpacked into a tmpfs;
//! 2. the data partition is mounted;
//! 3. the node's root is an overlay, read-only, of the bundle over the shared root;
//! 4. each state path the bundle lists (`/etc/pigsty/state-paths`: `/var`, `/pg`,
//!    `/data`, ...) gets an overlay whose upper directory is on the data partition,
//!    so what the node writes there survives updates and fallbacks; the machine-id is
//!    kept there too;
//! 5. /dev, /proc, /sys and /run move into the new root, which becomes `/`, and
//!    systemd starts.
//!
//! Any failure before systemd starts (a bundle that does not match, a missing
//! partition) is said on the console, and the machine reboots after a pause: boot
//! counting then falls back to the other slot. A boot without `pigsty.slot` (a
//! root that is not a slot: a PXE live set, a rootfs tar) starts systemd at once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use rustix::mount::{MountFlags, UnmountFlags};

use crate::bundle::{self, Boot};

/// Where the state of a node lives on its data partition.
pub const DATA_PARTITION: &str = "/dev/disk/by-partlabel/pigsty-data";
/// The list of state paths in a bundle.
pub const STATE_PATHS: &str = "etc/pigsty/state-paths";

const RUN: &str = "/run/pigsty";
const NEW_ROOT: &str = "/mnt";
const INIT: &str = "/sbin/init";

/// Make the node's root and exec systemd; never returns.
pub fn run() -> ! {
    if let Err(e) = setup() {
        console(&format!("pigsty pre-init: {e:#}"));
        console("pigsty pre-init: rebooting in 10 s (boot counting falls back to the other slot)");
        std::thread::sleep(Duration::from_secs(10));
        let _ = rustix::system::reboot(rustix::system::RebootCommand::Restart);
        // Not PID 1 (a test): end here.
        std::process::exit(1);
    }
    let err = std::os::unix::process::CommandExt::exec(&mut std::process::Command::new(INIT));
    console(&format!("pigsty pre-init: exec {INIT}: {err}"));
    std::process::exit(1)
}

fn console(line: &str) {
    eprintln!("{line}");
    if let Ok(mut c) = std::fs::OpenOptions::new().write(true).open("/dev/kmsg") {
        let _ = std::io::Write::write_all(&mut c, format!("{line}\n").as_bytes());
    }
}

fn setup() -> anyhow::Result<()> {
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let Some(boot) = Boot::from_cmdline(&cmdline)? else {
        return Ok(());
    };
    console(&format!(
        "pigsty pre-init: slot {}, bundle sha256:{}",
        boot.slot, boot.bundle
    ));
    let run = Path::new(RUN);
    let bundle_dir = run.join("bundle");
    let data_dir = run.join("data");
    std::fs::create_dir_all(&bundle_dir)?;
    std::fs::create_dir_all(&data_dir)?;

    // 1. The bundle, checked, into a tmpfs of its own.
    let dev = wait_for(Path::new(&boot.bundle_partition()), Duration::from_secs(30))?;
    let tar = read_partition(&dev, &boot.bundle)?;
    rustix::mount::mount(
        "tmpfs",
        &bundle_dir,
        "tmpfs",
        MountFlags::NOSUID,
        c"mode=0755",
    )
    .context("mounting the bundle's tmpfs")?;
    unpack(&tar, &bundle_dir)?;

    // 2. The data partition.
    let data = wait_for(Path::new(DATA_PARTITION), Duration::from_secs(30))?;
    rustix::mount::mount(&data, &data_dir, "ext4", MountFlags::NOATIME, None)
        .with_context(|| format!("mounting {} on {}", data.display(), data_dir.display()))?;
    // Into the rest of the disk, when there is more of it (first boot on a larger
    // drive). A failure leaves the partition as it was: the node still boots.
    match grow_data(&data) {
        Ok(Some(said)) => console(&format!("pigsty pre-init: {said}")),
        Ok(None) => {}
        Err(e) => console(&format!(
            "pigsty pre-init: growing the data partition: {e:#} (left as it is)"
        )),
    }

    // 3. The node's root: the bundle over the shared root, read-only.
    let lower = format!("lowerdir={}:/", bundle_dir.display());
    overlay(NEW_ROOT, &lower, MountFlags::RDONLY).context("the node's root")?;

    // 4. State on the data partition.
    let paths = std::fs::read_to_string(bundle_dir.join(STATE_PATHS)).unwrap_or_default();
    for path in state_paths(&paths)? {
        let target = Path::new(NEW_ROOT).join(path.trim_start_matches('/'));
        let state = data_dir.join("state").join(path.trim_start_matches('/'));
        let (upper, work) = (state.join("upper"), state.join("work"));
        std::fs::create_dir_all(&upper)?;
        std::fs::create_dir_all(&work)?;
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            target.display(),
            upper.display(),
            work.display()
        );
        overlay(&target, &opts, MountFlags::empty()).with_context(|| format!("state {path}"))?;
    }
    machine_id(&data_dir)?;

    // 5. Into the new root.
    for m in ["/dev", "/proc", "/sys", "/run"] {
        let to = Path::new(NEW_ROOT).join(&m[1..]);
        rustix::mount::mount_move(m, &to).with_context(|| format!("moving {m}"))?;
    }
    rustix::process::chdir(NEW_ROOT).context("chdir to the new root")?;
    rustix::process::pivot_root(".", "mnt").context("pivot_root")?;
    rustix::process::chdir("/").context("chdir /")?;
    rustix::mount::unmount("/mnt", UnmountFlags::DETACH).context("detaching the old root")?;
    Ok(())
}

/// Grow the data partition `part` (mounted) to the end of its disk: the GPT
/// rewritten for the disk's size, the kernel told (`partx`), the ext4 grown online
/// (`resize2fs`). Says what it did, or None when the partition fills the disk.
fn grow_data(part: &Path) -> anyhow::Result<Option<String>> {
    let name = part
        .file_name()
        .context("the data partition's name")?
        .to_string_lossy()
        .into_owned();
    let sys = Path::new("/sys/class/block").join(&name);
    let number: u32 = std::fs::read_to_string(sys.join("partition"))
        .with_context(|| format!("{} is not a partition", part.display()))?
        .trim()
        .parse()?;
    let parent = std::fs::canonicalize(&sys)?
        .parent()
        .and_then(|p| p.file_name())
        .context("the data partition's disk")?
        .to_string_lossy()
        .into_owned();
    let disk = Path::new("/dev").join(&parent);
    let Some((n, old, new)) = crate::image::disk::grow_last_partition(&disk)? else {
        return Ok(None);
    };
    if n != number {
        bail!("partition {n}, not the data partition ({number}), is the last of {parent}");
    }
    crate::sys::run(
        std::process::Command::new("/usr/bin/partx")
            .args(["-u", "--nr", &n.to_string()])
            .arg(&disk),
    )?;
    crate::sys::run(std::process::Command::new("/usr/sbin/resize2fs").arg(part))?;
    Ok(Some(format!(
        "data partition {} grown from {} MiB to {} MiB",
        part.display(),
        old / 2048,
        new / 2048
    )))
}

/// The state paths a bundle lists: absolute, one per line, no `..`.
pub fn state_paths(text: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        if !line.starts_with('/') || line == "/" || line.split('/').any(|c| c == ".." || c == ".") {
            bail!("state path `{line}` is not an absolute path below /");
        }
        out.push(line.to_string());
    }
    Ok(out)
}

fn overlay(target: impl AsRef<Path>, opts: &str, flags: MountFlags) -> anyhow::Result<()> {
    let data = std::ffi::CString::new(opts).context("overlay options")?;
    rustix::mount::mount(
        "overlay",
        target.as_ref(),
        "overlay",
        flags,
        data.as_c_str(),
    )
    .with_context(|| format!("mount -t overlay -o {opts} {}", target.as_ref().display()))
}

/// Wait (bounded) for a device node udev has not linked yet.
fn wait_for(path: &Path, limit: Duration) -> anyhow::Result<PathBuf> {
    let start = Instant::now();
    loop {
        if let Ok(p) = std::fs::canonicalize(path) {
            return Ok(p);
        }
        if start.elapsed() > limit {
            bail!("{} did not appear within {limit:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The bundle of a partition (or a file standing for one), checked.
pub fn read_partition(dev: &Path, want: &str) -> anyhow::Result<Vec<u8>> {
    use std::io::Seek;
    let mut f = std::fs::File::open(dev).with_context(|| format!("opening {}", dev.display()))?;
    let capacity = f.seek(std::io::SeekFrom::End(0))?;
    f.seek(std::io::SeekFrom::Start(0))?;
    bundle::read(&mut std::io::BufReader::new(f), capacity, want)
        .with_context(|| format!("the node bundle in {}", dev.display()))
}

/// Unpack a bundle tar with its owners and modes.
pub fn unpack(tar: &[u8], dir: &Path) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(tar);
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_overwrite(true);
    archive
        .unpack(dir)
        .with_context(|| format!("unpacking the bundle into {}", dir.display()))
}

/// The node's machine-id, made once and kept on the data partition, bound over the
/// (empty, read-only) /etc/machine-id of the new root.
fn machine_id(data: &Path) -> anyhow::Result<()> {
    let kept = data.join("system/machine-id");
    if !kept.is_file() {
        std::fs::create_dir_all(data.join("system"))?;
        let mut id = [0u8; 16];
        getrandom::getrandom(&mut id).map_err(|e| anyhow::anyhow!("a machine-id: {e}"))?;
        std::fs::write(&kept, format!("{}\n", hex::encode(id)))?;
    }
    let target = Path::new(NEW_ROOT).join("etc/machine-id");
    rustix::mount::mount_bind(&kept, &target).context("binding the machine-id")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_paths_are_absolute_and_below_root() {
        assert_eq!(
            state_paths("# comment\n/var\n\n/pg\n/data\n").unwrap(),
            ["/var", "/pg", "/data"]
        );
        for bad in ["var", "/", "/pg/../etc", "/./x"] {
            assert!(state_paths(bad).is_err(), "{bad}");
        }
    }

    /// The bundle `build-image` writes into a slot unpacks with its modes; one that
    /// does not match the boot entry's digest is never unpacked.
    #[test]
    fn a_bundle_partition_unpacks_only_under_its_digest() {
        let mut tree = crate::image::tree::Tree::default();
        tree.insert(
            "/etc/pigsty/node.json",
            crate::image::tree::Entry::file(b"{}".to_vec(), 0o600, 0, 0, 1),
        );
        let mut tar = Vec::new();
        tree.write_tar(&mut tar, 1).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("bundle-a");
        let mut f = std::fs::File::create(&dev).unwrap();
        f.set_len(1 << 20).unwrap();
        bundle::write(&mut f, 1 << 20, &tar).unwrap();
        let err = read_partition(&dev, &bundle::digest(b"other"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("bundle-a"), "{err}");
        let got = read_partition(&dev, &bundle::digest(&tar)).unwrap();
        let out = dir.path().join("root");
        std::fs::create_dir(&out).unwrap();
        unpack(&got, &out).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(out.join("etc/pigsty/node.json")).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    }
}
