//! `pigsty agent update` on an A/B disk whose partitions are files (the udev links a
//! node has are symlinks here): the new root and bundle land in the slot that is not
//! running, verified, and its loader entry appears last, on trial; a failed or cut
//! update leaves the running slot the only entry. Roots are real ext4 images made
//! with mke2fs; the kernel is read from them with debugfs, as on a node.

use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

mod support;

use pigsty::agent::update::{self, Disk, Request, Source};
use pigsty::bundle;
use pigsty::image::disk;
use sha2::{Digest, Sha256};

const SLOT: u64 = 64 << 20;

struct Fixture {
    _dir: tempfile::TempDir,
    disk: Disk,
    images: PathBuf,
    uuid_a: uuid::Uuid,
    cmdline: String,
    root_a: String,
}

/// An ext4 root holding `boot/vmlinuz-<v>` and `boot/initrd.img-<v>` with `tag` in
/// them; returns its path (named by its sha256) and digest.
fn make_root(dir: &Path, tag: &str, versions: &[&str]) -> (PathBuf, String) {
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("boot")).unwrap();
    for v in versions {
        std::fs::write(
            tree.path().join(format!("boot/vmlinuz-{v}")),
            format!("kernel {v} {tag}"),
        )
        .unwrap();
        std::fs::write(
            tree.path().join(format!("boot/initrd.img-{v}")),
            format!("initrd {v} {tag}"),
        )
        .unwrap();
    }
    std::fs::write(tree.path().join("etc-tag"), tag).unwrap();
    let tmp = dir.join(format!("{tag}.tmp"));
    let ids = disk::DiskIds::from_digest(&hex::encode(Sha256::digest(tag.as_bytes())));
    disk::make_ext4(tree.path(), &tmp, &ids, 8, 1024, 1_700_000_000).unwrap();
    let sha = hex::encode(Sha256::digest(std::fs::read(&tmp).unwrap()));
    let path = dir.join(format!("{sha}.ext4"));
    std::fs::rename(&tmp, &path).unwrap();
    (path, sha)
}

fn bundle_tar(tag: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let body = format!("{{\"tag\":\"{tag}\"}}");
    let mut h = tar::Header::new_gnu();
    h.set_size(body.len() as u64);
    h.set_mode(0o600);
    h.set_cksum();
    b.append_data(&mut h, "etc/pigsty/node.json", body.as_bytes())
        .unwrap();
    b.into_inner().unwrap()
}

fn part(path: &Path, len: u64) {
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
}

fn fixture() -> Fixture {
    fixture_with(&bundle_tar("one"))
}

/// The fixture with `tar_a` as slot A's bundle.
fn fixture_with(tar_a: &[u8]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let (labels, uuids, esp, images) = (
        dir.path().join("by-partlabel"),
        dir.path().join("by-partuuid"),
        dir.path().join("esp"),
        dir.path().join("images"),
    );
    for d in [&labels, &uuids, &esp.join("loader/entries"), &images] {
        std::fs::create_dir_all(d).unwrap();
    }
    // Slot A as build-image writes it: the root, its bundle, its entry.
    let (root_a, sha_a) = make_root(&images, "one", &["6.1.0-1-amd64"]);
    part(&labels.join("pigsty-root-a"), SLOT);
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(labels.join("pigsty-root-a"))
            .unwrap();
        f.write_all(&std::fs::read(&root_a).unwrap()).unwrap();
    }
    part(&labels.join("pigsty-root-b"), SLOT);
    for s in ["a", "b"] {
        part(
            &labels.join(format!("pigsty-bundle-{s}")),
            disk::BUNDLE_MIB << 20,
        );
    }
    {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(labels.join("pigsty-bundle-a"))
            .unwrap();
        bundle::write(&mut f, disk::BUNDLE_MIB << 20, tar_a).unwrap();
    }
    let (uuid_a, uuid_b) = (uuid::Uuid::from_u128(0xa), uuid::Uuid::from_u128(0xb));
    for (u, l) in [(uuid_a, "pigsty-root-a"), (uuid_b, "pigsty-root-b")] {
        std::os::unix::fs::symlink(labels.join(l), uuids.join(u.to_string())).unwrap();
    }
    let cmdline = format!(
        "{} quiet",
        disk::ab_cmdline(uuid_a, 'a', &bundle::digest(tar_a), &sha_a)
    );
    std::fs::write(
        esp.join("loader/entries/pigsty-1-a.conf"),
        disk::ab_entry("pigsty pg-test-1", 'a', 1, &cmdline),
    )
    .unwrap();
    Fixture {
        disk: Disk {
            esp,
            by_label: labels,
            by_partuuid: uuids,
        },
        images,
        uuid_a,
        cmdline,
        root_a: sha_a,
        _dir: dir,
    }
}

fn request(root: Source, bundle: Source) -> Request {
    Request {
        root: Some(root),
        root_sha256: None,
        bundle,
        bundle_sha256: None,
        tries: 3,
        trial_secs: 600,
    }
}

/// A request that names no root to fetch (the running slot's is meant).
fn without_root(bundle: &Path) -> Request {
    Request {
        root: None,
        ..request(
            Source::File("/x".into()),
            Source::File(bundle.to_path_buf()),
        )
    }
}

fn client() -> pigsty::http::Client {
    pigsty::http::client(
        std::time::Duration::from_secs(5),
        std::time::Duration::from_secs(30),
    )
    .unwrap()
}

fn entry_names(esp: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(esp.join("loader/entries"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// The first `len` bytes of a partition, hashed.
fn head_sha(path: &Path, len: u64) -> String {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .unwrap()
        .take(len)
        .read_to_end(&mut buf)
        .unwrap();
    hex::encode(Sha256::digest(&buf))
}

#[test]
fn an_update_writes_the_other_slot_and_puts_it_on_trial() {
    let fx = fixture();
    let (root_b, sha_b) = make_root(&fx.images, "two", &["6.1.0-1-amd64", "6.1.0-10-amd64"]);
    let tar_b = bundle_tar("two");
    let bundle_file = fx.images.join("bundle.tar");
    std::fs::write(&bundle_file, &tar_b).unwrap();

    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(
            Source::File(root_b.clone()),
            Source::File(bundle_file.clone()),
        ),
        &client(),
    )
    .unwrap();
    assert_eq!((done.slot, done.generation), ('b', 2));
    assert_eq!(done.entry, "pigsty-2-b+3.conf");
    assert_eq!(done.root, sha_b);
    assert_eq!(done.bundle, bundle::digest(&tar_b));
    // The slot holds the root's bytes, the bundle reads back under its digest.
    let len = std::fs::metadata(&root_b).unwrap().len();
    assert_eq!(done.root_bytes, len);
    assert_eq!(
        head_sha(&fx.disk.root_part('b'), len),
        sha_b,
        "root B's bytes"
    );
    assert_eq!(update::ext4_len(&fx.disk.root_part('b')).unwrap(), len);
    pigsty::agent::preinit::read_partition(&fx.disk.bundle_part('b'), &done.bundle).unwrap();
    // The newest kernel of the new root, and an entry that names all of it.
    let esp = &fx.disk.esp;
    assert_eq!(
        std::fs::read_to_string(esp.join("pigsty/b/vmlinuz")).unwrap(),
        "kernel 6.1.0-10-amd64 two"
    );
    assert_eq!(
        std::fs::read_to_string(esp.join("pigsty/b/initrd.img")).unwrap(),
        "initrd 6.1.0-10-amd64 two"
    );
    assert_eq!(entry_names(esp), ["pigsty-1-a.conf", "pigsty-2-b+3.conf"]);
    let entries = update::entries(esp).unwrap();
    let b = &entries[0];
    assert_eq!((b.slot, b.tries_left), ('b', Some(3)));
    assert_eq!(b.bundle(), Some(done.bundle.as_str()));
    assert_eq!(b.root(), Some(sha_b.as_str()));
    assert!(
        b.options
            .contains(&format!("root=PARTUUID={}", uuid::Uuid::from_u128(0xb))),
        "{}",
        b.options
    );
    assert!(b.options.contains("pigsty.trial=600"), "{}", b.options);
    // The running entry's own options (quiet) carry over; its slot's do not.
    assert!(b.options.contains(" quiet"), "{}", b.options);
    assert!(!b.options.contains("pigsty.slot=a"), "{}", b.options);

    // What the node reports: A runs, kept; B is on trial.
    let boot = bundle::Boot::from_cmdline(&fx.cmdline).unwrap().unwrap();
    let slots = update::slots(esp, &boot).unwrap();
    let running = slots.running.unwrap();
    assert_eq!(
        (running.slot.as_str(), running.state.as_str()),
        ("a", "blessed")
    );
    assert_eq!(running.root, fx.root_a);
    let fallback = slots.fallback.unwrap();
    assert_eq!(fallback.state, "trial (3 tries left)");

    // Booted into B (systemd-boot counted one try) and healthy: kept.
    std::fs::rename(
        esp.join("loader/entries/pigsty-2-b+3.conf"),
        esp.join("loader/entries/pigsty-2-b+2-1.conf"),
    )
    .unwrap();
    let cmd_b = format!(
        "{} quiet",
        disk::ab_cmdline(uuid::Uuid::from_u128(0xb), 'b', &done.bundle, &sha_b)
    );
    let boot_b = bundle::Boot::from_cmdline(&cmd_b).unwrap().unwrap();
    let trial = update::trial_entry(esp, &boot_b).unwrap().unwrap();
    assert_eq!((trial.tries_left, trial.tries_done), (Some(2), Some(1)));
    assert_eq!(update::bless_entry(esp, &trial).unwrap(), "pigsty-2-b.conf");
    assert_eq!(update::trial_entry(esp, &boot_b).unwrap(), None);
    assert_eq!(entry_names(esp), ["pigsty-1-a.conf", "pigsty-2-b.conf"]);
    let _ = fx.uuid_a;
}

#[test]
fn the_same_root_is_copied_from_the_running_slot_not_fetched() {
    let fx = fixture();
    let tar = bundle_tar("config change");
    let bundle_file = fx.images.join("bundle.tar");
    std::fs::write(&bundle_file, &tar).unwrap();
    // The source names the running root but does not exist: it must not be read.
    let gone = fx.images.join(format!("gone/{}.ext4", fx.root_a));
    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(gone), Source::File(bundle_file.clone())),
        &client(),
    )
    .unwrap();
    assert_eq!(done.root_from, "copied from slot a");
    // No root at all: the running slot's, too.
    let again = update::update(
        &fx.disk,
        &fx.cmdline,
        &without_root(&bundle_file),
        &client(),
    )
    .unwrap();
    // Generations only grow: the replaced entry of slot B was generation 2.
    assert_eq!(
        (again.root.as_str(), again.generation),
        (fx.root_a.as_str(), 3)
    );
    // A digest other than the running root's needs a root to fetch.
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            root_sha256: Some("22".repeat(32)),
            ..without_root(&bundle_file)
        },
        &client(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("give --root"), "{err:#}");
    let len = update::ext4_len(&fx.disk.root_part('a')).unwrap();
    assert_eq!(head_sha(&fx.disk.root_part('b'), len), fx.root_a);
    assert_eq!(
        std::fs::read_to_string(fx.disk.esp.join("pigsty/b/vmlinuz")).unwrap(),
        "kernel 6.1.0-1-amd64 one"
    );
}

/// A running slot whose bytes are no longer the root its digest names (a kernel
/// once wrote a journal superblock into a read-only slot): its copy is refused, and
/// the root is fetched from the source given instead, or the update stops.
#[test]
fn a_running_slot_that_changed_is_not_copied_the_root_is_fetched() {
    let fx = fixture();
    let tar = bundle_tar("config change");
    let bundle_file = fx.images.join("bundle.tar");
    std::fs::write(&bundle_file, &tar).unwrap();
    let slot_a = fx.disk.root_part('a');
    let len = update::ext4_len(&slot_a).unwrap();
    {
        // One byte past the superblock, inside the filesystem.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&slot_a)
            .unwrap();
        f.seek(std::io::SeekFrom::Start(len - 4096)).unwrap();
        f.write_all(b"changed").unwrap();
    }
    // No source to fetch from: the update stops, naming the copy.
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &without_root(&bundle_file),
        &client(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains("copying the running slot's root"),
        "{err:#}"
    );
    // With the root as built: fetched, and slot B holds exactly it.
    let built = fx.images.join(format!("{}.ext4", fx.root_a));
    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(built.clone()), Source::File(bundle_file)),
        &client(),
    )
    .unwrap();
    assert_eq!(done.root_from, built.display().to_string());
    assert_eq!(head_sha(&fx.disk.root_part('b'), len), fx.root_a);
}

/// A root served over HTTP (a one-request server on loopback).
#[test]
fn a_root_and_bundle_are_fetched_over_http() {
    let fx = fixture();
    let (root_b, sha_b) = make_root(&fx.images, "three", &["6.1.0-2-amd64"]);
    let tar = bundle_tar("three");
    let files = [
        (
            format!("/roots/{sha_b}.ext4"),
            std::fs::read(&root_b).unwrap(),
        ),
        ("/pg-test-1/bundle.tar".to_string(), tar.clone()),
    ];
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        for _ in 0..2 {
            let (mut s, _) = listener.accept().unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let line = String::from_utf8_lossy(&req).into_owned();
            let path = line
                .split_whitespace()
                .nth(1)
                .unwrap_or_default()
                .to_string();
            let body = files.iter().find(|(p, _)| *p == path).map(|(_, b)| b);
            match body {
                Some(b) => {
                    write!(
                        s,
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        b.len()
                    )
                    .unwrap();
                    s.write_all(b).unwrap();
                }
                None => write!(s, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n").unwrap(),
            }
        }
    });
    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            bundle_sha256: Some(bundle::digest(&tar)),
            ..request(
                Source::parse(&format!("http://{addr}/roots/{sha_b}.ext4")),
                Source::parse(&format!("http://{addr}/pg-test-1/bundle.tar")),
            )
        },
        &client(),
    )
    .unwrap();
    server.join().unwrap();
    assert_eq!(done.root, sha_b);
    assert!(
        done.root_from.starts_with("http://127.0.0.1:"),
        "{}",
        done.root_from
    );
    let len = std::fs::metadata(&root_b).unwrap().len();
    assert_eq!(head_sha(&fx.disk.root_part('b'), len), sha_b);
}

/// A root that is not what its name says, a bundle with the wrong digest, a root
/// cut short (a download or power cut mid-write): each fails, and slot B has no
/// entry, so the next boot is slot A's.
#[test]
fn a_failed_update_leaves_the_running_slot_the_only_entry() {
    let fx = fixture();
    let (root_b, _) = make_root(&fx.images, "four", &["6.1.0-3-amd64"]);
    let tar = bundle_tar("four");
    let bundle_file = fx.images.join("bundle.tar");
    std::fs::write(&bundle_file, &tar).unwrap();
    // First a good update: slot B gets an entry.
    update::update(
        &fx.disk,
        &fx.cmdline,
        &request(
            Source::File(root_b.clone()),
            Source::File(bundle_file.clone()),
        ),
        &client(),
    )
    .unwrap();
    assert_eq!(entry_names(&fx.disk.esp).len(), 2);

    // A root cut short under the name of a whole one (another root than the one
    // slot B's entry names: that one it holds already).
    let (root_c, sha_c) = make_root(&fx.images, "five", &["6.1.0-4-amd64"]);
    let bytes = std::fs::read(&root_c).unwrap();
    let cut_dir = fx.images.join("cut");
    std::fs::create_dir_all(&cut_dir).unwrap();
    let cut = cut_dir.join(format!("{sha_c}.ext4"));
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(cut), Source::File(bundle_file.clone())),
        &client(),
    )
    .unwrap_err();
    assert!(
        format!("{err:#}").contains(&format!("not {sha_c}")),
        "{err:#}"
    );
    assert_eq!(entry_names(&fx.disk.esp), ["pigsty-1-a.conf"]);

    // A bundle whose digest is not the one asked for.
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            bundle_sha256: Some("00".repeat(32)),
            ..request(
                Source::File(root_b.clone()),
                Source::File(bundle_file.clone()),
            )
        },
        &client(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("not 0000"), "{err:#}");
    assert_eq!(entry_names(&fx.disk.esp), ["pigsty-1-a.conf"]);

    // A root with no digest to check it by is refused before anything changes.
    let unnamed = fx.images.join("root.ext4");
    std::fs::copy(&root_b, &unnamed).unwrap();
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(unnamed), Source::File(bundle_file.clone())),
        &client(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("--root-sha256"), "{err:#}");

    // A root too big for the slot.
    let big = fx.images.join("big.ext4");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(SLOT + 4096).unwrap();
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            root_sha256: Some("11".repeat(32)),
            ..request(Source::File(big), Source::File(bundle_file.clone()))
        },
        &client(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("holds"), "{err:#}");
    assert_eq!(entry_names(&fx.disk.esp), ["pigsty-1-a.conf"]);

    // And a second update after all that succeeds, one generation on.
    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(root_b), Source::File(bundle_file)),
        &client(),
    )
    .unwrap();
    assert_eq!(done.generation, 2);
    assert_eq!(
        entry_names(&fx.disk.esp),
        ["pigsty-1-a.conf", "pigsty-2-b+3.conf"]
    );
}

#[test]
fn a_node_not_booted_from_a_slot_is_told_to_reimage() {
    let fx = fixture();
    let err = update::update(
        &fx.disk,
        "root=UUID=x ro quiet",
        &request(
            Source::File("/nonexistent".into()),
            Source::File("/x".into()),
        ),
        &client(),
    )
    .unwrap_err();
    let err = format!("{err:#}");
    assert!(
        err.contains("reimage") && err.contains("--format raw"),
        "{err}"
    );
}

/// A second update to the root the other slot's entry already names (a bundle
/// change after an earlier update, or after a fallback) writes only the bundle: the
/// root is neither fetched (its source does not exist here) nor copied.
#[test]
fn a_root_the_target_slot_already_holds_is_not_written_again() {
    let fx = fixture();
    let (root_b, sha_b) = make_root(&fx.images, "two", &["6.1.0-1-amd64"]);
    let first = fx.images.join("first.tar");
    std::fs::write(&first, bundle_tar("two")).unwrap();
    update::update(
        &fx.disk,
        &fx.cmdline,
        &request(Source::File(root_b), Source::File(first)),
        &client(),
    )
    .unwrap();
    let second = fx.images.join("second.tar");
    std::fs::write(&second, bundle_tar("three")).unwrap();
    let done = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            root_sha256: Some(sha_b.clone()),
            ..request(
                Source::File(fx.images.join("gone.ext4")),
                Source::File(second),
            )
        },
        &client(),
    )
    .unwrap();
    assert_eq!(done.root_bytes, 0, "{}", done.root_from);
    assert!(
        done.root_from.contains("already in slot b"),
        "{}",
        done.root_from
    );
    assert_eq!(done.entry, "pigsty-3-b+3.conf");
    pigsty::agent::preinit::read_partition(&fx.disk.bundle_part('b'), &done.bundle).unwrap();
    // Without an entry naming it (the first update's is gone while the slot is
    // written), the root must come from somewhere: the missing source fails.
    std::fs::remove_file(fx.disk.esp.join("loader/entries").join(&done.entry)).unwrap();
    let third = fx.images.join("third.tar");
    std::fs::write(&third, bundle_tar("four")).unwrap();
    let err = update::update(
        &fx.disk,
        &fx.cmdline,
        &Request {
            root_sha256: Some(sha_b),
            ..request(
                Source::File(fx.images.join("gone.ext4")),
                Source::File(third),
            )
        },
        &client(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("gone.ext4"), "{err:#}");
}

/// A plain node's bundle as a build splits it off: its rendered files and its
/// image.json (owned by root here); returns the tar and the plan's digest.
fn node_bundle(ntp: &str, crontab: bool) -> (Vec<u8>, String) {
    let cron = if crontab {
        "    node_crontab: [ '0 1 * * * root true' ]\n"
    } else {
        ""
    };
    let inv = format!(
        "all:\n  children:\n    nodes:\n      hosts: {{ 127.0.21.1: {{ nodename: plain-1 }} }}\n  vars:\n    node_ntp_servers: [ 'pool {ntp} iburst' ]\n{cron}"
    );
    let loaded = pigsty::inventory::load_str("inv.yml", &inv).unwrap();
    let c = pigsty::compile::compile(&loaded.fleet, &loaded.fleet.nodes[0]).unwrap();
    let mut files: Vec<(String, u32, Vec<u8>)> = c
        .files
        .iter()
        .map(|f| (f.path.clone(), f.mode, f.content.clone()))
        .collect();
    files.push((
        pigsty::plan::IDENTITY_PATH.to_string(),
        0o644,
        c.plan.identity().to_json(),
    ));
    files.sort();
    let mut b = tar::Builder::new(Vec::new());
    for (path, mode, content) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(content.len() as u64);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(0);
        h.set_cksum();
        b.append_data(&mut h, path.trim_start_matches('/'), content.as_slice())
            .unwrap();
    }
    (b.into_inner().unwrap(), c.plan.digest)
}

/// Mount points of this thread's mount namespace at `path`.
fn mounts_at(path: &Path) -> usize {
    let info = std::fs::read_to_string("/proc/thread-self/mountinfo").unwrap();
    let want = path.canonicalize().unwrap();
    info.lines()
        .filter(|l| l.split(' ').nth(4).is_some_and(|m| Path::new(m) == want))
        .count()
}

/// `agent apply` on a running node (its root a directory, its disk files): a changed
/// file is bound over the running one and its unit restarted, the join runs again
/// under the new bundle, the slot that is not running gets the same root and the
/// new bundle on trial; a second apply replaces the first's mount; the same bundle
/// again does nothing; a bundle with a new file is refused, nothing written. The
/// unit restarted is a stand-in process (`sleep`) named chrony.service: what is
/// checked is that the agent restarts the unit whose file changed.
#[test]
#[ignore = "needs root: bind mounts, in a mount namespace of the test's own"]
fn apply_binds_changed_files_restarts_their_units_and_writes_the_next_slot() {
    support::require_root("bind mounts in a mount namespace of its own");
    // This thread's own mount namespace, private: nothing here reaches the host's.
    unsafe {
        rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNS).unwrap();
    }
    rustix::mount::mount_change(
        "/",
        rustix::mount::MountPropagationFlags::PRIVATE | rustix::mount::MountPropagationFlags::REC,
    )
    .unwrap();

    let (tar_a, _) = node_bundle("one.example", false);
    let fx = fixture_with(&tar_a);
    let root = tempfile::tempdir().unwrap();
    let root = root.path();
    pigsty::agent::preinit::unpack(&tar_a, root).unwrap();
    let services = support::processes::Processes::new(root);
    services.define(
        "chrony.service",
        support::processes::ProcessSpec {
            program: "/bin/sleep".into(),
            args: vec!["3600".into()],
            log: root.join("chrony.log"),
            ..Default::default()
        },
    );
    use pigsty::agent::service::ServiceManager;
    services.start("chrony.service").unwrap();
    let mut opts = pigsty::agent::Options::new(root);
    opts.wait = std::time::Duration::from_secs(20);
    opts.bundle = Some(bundle::digest(&tar_a));
    assert!(pigsty::agent::firstboot(&opts, &services).unwrap().done);
    let chrony_pid = || services.pid("chrony.service").expect("chrony.service runs");
    let before = chrony_pid();

    let apply_with = |tar: &[u8], check: bool| {
        let file = fx.images.join(format!("{}.tar", bundle::digest(tar)));
        std::fs::write(&file, tar).unwrap();
        pigsty::agent::apply::apply(
            &opts,
            &services,
            &fx.disk,
            &fx.cmdline,
            &pigsty::agent::apply::Request {
                bundle: Source::File(file),
                bundle_sha256: None,
                tries: 3,
                trial_secs: 600,
                check,
            },
            &client(),
        )
    };
    let apply = |tar: &[u8]| apply_with(tar, false);
    let chrony = root.join("etc/chrony/chrony.conf");

    // 0. --check: what would change and what takes it in; nothing is touched.
    let (tar_b, plan_b) = node_bundle("two.example", false);
    let checked = apply_with(&tar_b, true).unwrap();
    assert!(!checked.needs_boot);
    assert_eq!(checked.was, bundle::digest(&tar_a));
    assert_eq!(
        checked
            .files
            .iter()
            .map(|f| f.path.as_str())
            .collect::<Vec<_>>(),
        ["/etc/chrony/chrony.conf", "/etc/pigsty/image.json"]
    );
    assert_eq!((checked.slot, checked.state.is_none()), (None, true));
    assert!(
        std::fs::read_to_string(&chrony)
            .unwrap()
            .contains("one.example"),
        "a check changes no file"
    );
    assert_eq!(mounts_at(&chrony), 0);
    assert_eq!(chrony_pid(), before, "a check restarts nothing");

    // 1. New NTP servers: chrony.conf bound over, chrony restarted, the join again.
    let done = apply(&tar_b).unwrap();
    let changed: Vec<(&str, String)> = done
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.effect.to_string()))
        .collect();
    assert_eq!(
        changed,
        [
            ("/etc/chrony/chrony.conf", "restart chrony".to_string()),
            (
                "/etc/pigsty/image.json",
                "none (read when used)".to_string()
            )
        ]
    );
    assert!(
        std::fs::read_to_string(&chrony)
            .unwrap()
            .contains("two.example")
    );
    assert_eq!(mounts_at(&chrony), 1);
    assert_ne!(chrony_pid(), before, "chrony.service was restarted");
    let state = done.state.unwrap();
    assert!(state.done, "{}", state.summary());
    assert_eq!(state.bundle, bundle::digest(&tar_b));
    assert_eq!(state.plan_digest, plan_b, "the new image.json is reported");
    // The next boot: slot b, the running root, the new bundle, on trial.
    assert_eq!(done.slot, Some('b'));
    assert_eq!(
        entry_names(&fx.disk.esp),
        ["pigsty-1-a.conf", "pigsty-2-b+3.conf"]
    );
    pigsty::agent::preinit::read_partition(&fx.disk.bundle_part('b'), &bundle::digest(&tar_b))
        .expect("slot b holds the new bundle");
    let root_len = update::ext4_len(&fx.disk.root_part('a')).unwrap();
    assert_eq!(head_sha(&fx.disk.root_part('b'), root_len), fx.root_a);

    // 2. Again: the earlier mount is replaced, not stacked; slot b rewritten.
    let (tar_c, _) = node_bundle("three.example", false);
    let done = apply(&tar_c).unwrap();
    assert_eq!(done.slot, Some('b'));
    assert!(
        std::fs::read_to_string(&chrony)
            .unwrap()
            .contains("three.example")
    );
    assert_eq!(mounts_at(&chrony), 1);
    let live = root.join(pigsty::agent::apply::LIVE_DIR);
    let mounted: Vec<String> = std::fs::read_dir(&live)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|d| mounts_at(d) > 0)
        .map(|d| d.display().to_string())
        .collect();
    assert_eq!(mounted.len(), 1, "one bundle tree mounted: {mounted:?}");

    // 3. The same bundle: nothing to do.
    let entries = entry_names(&fx.disk.esp);
    let done = apply(&tar_c).unwrap();
    assert_eq!(done.slot, None);
    assert_eq!(entry_names(&fx.disk.esp), entries);

    // 4. A new file (a crontab) needs a boot: refused before anything is written.
    let (tar_d, _) = node_bundle("three.example", true);
    let err = format!("{:#}", apply(&tar_d).unwrap_err());
    assert!(
        err.contains("/etc/crontab Added") && err.contains("needs a boot"),
        "{err}"
    );
    assert_eq!(entry_names(&fx.disk.esp), entries);
    assert!(!root.join("etc/crontab").exists());
    // What a rollout asks first: the check says a boot is needed, and why.
    let checked = apply_with(&tar_d, true).unwrap();
    assert!(checked.needs_boot);
    assert!(
        checked.actions[0].contains("/etc/crontab Added"),
        "{:?}",
        checked.actions
    );
}

/// A trial boot whose join stopped at a failure is not waited on until its bound:
/// the health check says it never will be healthy on this boot, so `agent bless`
/// reboots at once. A join still running is only "not yet".
#[test]
fn a_failed_join_is_never_healthy_a_running_one_not_yet() {
    use pigsty::agent::service::ServiceManager;
    use pigsty::agent::update::Health;
    let bundle = "ab".repeat(32);
    for (script, running) in [("exit 1", false), ("sleep 3600", true)] {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        let services = support::processes::Processes::new(root);
        services.define(
            pigsty::agent::FIRSTBOOT_UNIT,
            support::processes::ProcessSpec {
                program: "/bin/sh".into(),
                args: vec!["-c".into(), script.into()],
                log: root.join("firstboot.log"),
                ..Default::default()
            },
        );
        services.start(pigsty::agent::FIRSTBOOT_UNIT).unwrap();
        // Bounded: the failing one exits at once.
        for _ in 0..100 {
            if services.is_active(pigsty::agent::FIRSTBOOT_UNIT).unwrap() == running {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let health = pigsty::agent::node_health(root, &bundle, &services).unwrap();
        match (running, health) {
            (false, Health::Never(why)) => {
                assert!(why.contains("pigsty-firstboot.service failed"), "{why}")
            }
            (true, Health::NotYet(why)) => assert!(why.contains("not done"), "{why}"),
            (_, other) => panic!("{script}: {other:?}"),
        }
        services.stop(pigsty::agent::FIRSTBOOT_UNIT).unwrap();
    }
}
