//! `pigsty agent install` against disks that are files, images served over loopback
//! by the artifact server (and, for a cut transfer, by a small server here that
//! cuts its first answer). No root needed: a disk is any file it may write.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pigsty::agent::install::{self, Outcome, Request};
use pigsty::agent::update::Source;
use sha2::{Digest, Sha256};

const MIB: usize = 1 << 20;

/// Bytes that differ everywhere (so a piece written at the wrong place shows).
fn image_bytes(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut block = Sha256::digest(b"pigsty install test").to_vec();
    while out.len() < len {
        out.extend_from_slice(&block);
        block = Sha256::digest(&block).to_vec();
    }
    out.truncate(len);
    out
}

fn sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn http() -> pigsty::http::Client {
    pigsty::http::client(Duration::from_secs(3), Duration::from_secs(30)).unwrap()
}

/// A disk file of `len` bytes filled with `fill`.
fn disk(dir: &Path, name: &str, len: usize, fill: u8) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, vec![fill; len]).unwrap();
    p
}

fn served(image: &Path, hex: &str) -> (pigsty::serve::Server, String) {
    let mut a = pigsty::serve::Artifacts::default();
    a.add(hex, image, None);
    let server = pigsty::serve::Server::start("127.0.0.1:0".parse().unwrap(), a).unwrap();
    let url = server.url("127.0.0.1".parse().unwrap(), hex);
    (server, url)
}

#[test]
fn an_image_is_written_verified_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image_bytes(5 * MIB + 4096);
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, &bytes).unwrap();
    let hex = sha(&bytes);
    let (server, url) = served(&image, &hex);
    let target = disk(dir.path(), "vda", 8 * MIB, 0xee);
    let req = Request {
        image: Source::Http(url),
        sha256: hex.clone(),
        disk: None,
        reinstall: false,
        report: None,
        map: None,
    };
    let mut lines = Vec::new();
    let done =
        install::install(&req, &target, &http(), &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(done.result, "installed");
    assert_eq!(done.bytes, bytes.len() as u64);
    let got = std::fs::read(&target).unwrap();
    assert_eq!(got.len(), 8 * MIB, "the disk keeps its size");
    assert_eq!(&got[..bytes.len()], &bytes[..], "the disk holds the image");
    // The disk's old last MiB (where an old backup GPT would be) is zeroed.
    assert!(got[7 * MIB..].iter().all(|b| *b == 0));
    assert!(lines.iter().any(|l| l.contains("read back")), "{lines:?}");
    let (sent, size) = server.served(&hex);
    assert_eq!(size, bytes.len() as u64);
    assert!(sent >= size, "the whole image came from the server: {sent}");
}

#[test]
fn a_disk_holding_a_nodes_data_is_kept_unless_reinstall_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    // A disk with an A/B-like table: an ESP and pigsty-data.
    let target = dir.path().join("vda");
    pigsty::image::disk::make_gpt_parts(
        &target,
        &[
            pigsty::image::disk::Part {
                label: "esp",
                kind: gpt::partition_types::EFI,
                guid: uuid::Uuid::from_u128(1),
                fill: pigsty::image::disk::Fill::Empty(MIB as u64),
                min: 0,
            },
            pigsty::image::disk::Part {
                label: "pigsty-data",
                kind: gpt::partition_types::LINUX_FS,
                guid: uuid::Uuid::from_u128(2),
                fill: pigsty::image::disk::Fill::Bytes(b"the node's data"),
                min: 4 * MIB as u64,
            },
        ],
        uuid::Uuid::from_u128(3),
    )
    .unwrap();
    let before = std::fs::read(&target).unwrap();
    assert!(install::partition_names(&target).contains(&"pigsty-data".to_string()));
    let bytes = image_bytes(3 * MIB);
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, &bytes).unwrap();
    let mut req = Request {
        image: Source::File(image),
        sha256: sha(&bytes),
        disk: Some(target.clone()),
        reinstall: false,
        report: None,
        map: None,
    };
    let kept = install::install(&req, &target, &http(), &mut |_| {}).unwrap();
    assert_eq!(kept.result, "kept", "{kept:?}");
    assert!(kept.detail.contains("pigsty-data"), "{}", kept.detail);
    assert_eq!(std::fs::read(&target).unwrap(), before, "nothing written");
    req.reinstall = true;
    let done = install::install(&req, &target, &http(), &mut |_| {}).unwrap();
    assert_eq!(done.result, "installed");
    assert_eq!(&std::fs::read(&target).unwrap()[..bytes.len()], &bytes[..]);
}

#[test]
fn a_wrong_image_leaves_no_bootable_disk() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image_bytes(4 * MIB);
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, &bytes).unwrap();
    let target = disk(dir.path(), "vda", 6 * MIB, 0xee);
    let req = Request {
        image: Source::File(image),
        sha256: "00".repeat(32),
        disk: None,
        reinstall: false,
        report: None,
        map: None,
    };
    let err = install::install(&req, &target, &http(), &mut |_| {}).unwrap_err();
    let msg = format!("{err:#}");
    assert!(msg.contains("nothing made bootable"), "{msg}");
    let got = std::fs::read(&target).unwrap();
    assert!(
        got[..MIB].iter().all(|b| *b == 0),
        "the first MiB (protective MBR, primary GPT) stays zeroed"
    );
    assert!(
        got[3 * MIB..4 * MIB].iter().all(|b| *b == 0xee),
        "the image's last MiB (its backup GPT) is not written"
    );
    assert_eq!(
        &got[MIB..3 * MIB],
        &bytes[MIB..3 * MIB],
        "the middle was written before the sha256 was known"
    );
    // A disk too small is refused before anything is written.
    let small = disk(dir.path(), "vdb", 2 * MIB, 0xee);
    let req = Request {
        sha256: sha(&bytes),
        ..req
    };
    let err = install::install(&req, &small, &http(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("holds"), "{err:#}");
    assert!(std::fs::read(&small).unwrap().iter().all(|b| *b == 0xee));
}

#[test]
fn zeros_a_disk_holds_already_are_not_written_again() {
    let dir = tempfile::tempdir().unwrap();
    // An image of data, then 4 MiB of zeros, then data.
    let mut bytes = image_bytes(2 * MIB);
    bytes.extend(vec![0u8; 4 * MIB]);
    bytes.extend(image_bytes(2 * MIB));
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, &bytes).unwrap();
    let req = Request {
        image: Source::File(image),
        sha256: sha(&bytes),
        disk: None,
        reinstall: false,
        report: None,
        map: None,
    };
    // A new disk (zeros): the zeros are skipped, and it holds the image.
    let fresh = disk(dir.path(), "vda", 9 * MIB, 0);
    let done = install::install(&req, &fresh, &http(), &mut |_| {}).unwrap();
    assert_eq!(done.skipped, 4 * MIB as u64, "{done:?}");
    assert_eq!(&std::fs::read(&fresh).unwrap()[..bytes.len()], &bytes[..]);
    // A used disk: zeros where it holds something else are written.
    let used = disk(dir.path(), "vdb", 9 * MIB, 0xee);
    let done = install::install(&req, &used, &http(), &mut |_| {}).unwrap();
    assert_eq!(done.skipped, 0);
    assert_eq!(&std::fs::read(&used).unwrap()[..bytes.len()], &bytes[..]);
}

/// Serves `bytes`; its first answer stops after `cut` bytes of the body, later
/// answers honour `Range: bytes=N-`. Records each request's Range header.
fn cutting_server(bytes: Vec<u8>, cut: usize) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    std::thread::spawn(move || {
        for (i, conn) in listener.incoming().take(10).enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut from = 0usize;
            let mut range = String::from("-");
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    range = v.trim().to_string();
                    from = range.trim_end_matches('-').parse().unwrap_or(0);
                }
            }
            seen.lock().unwrap().push(range);
            let body = &bytes[from..];
            let head = if from == 0 {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                )
            } else {
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {from}-{}/{}\r\nConnection: close\r\n\r\n",
                    body.len(),
                    bytes.len() - 1,
                    bytes.len()
                )
            };
            let _ = conn.write_all(head.as_bytes());
            let send = if i == 0 { &body[..cut] } else { body };
            let _ = conn.write_all(send);
            let _ = conn.flush();
            // Dropping the connection cuts the first answer short.
        }
    });
    (addr, ranges)
}

#[test]
fn a_cut_transfer_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image_bytes(6 * MIB);
    let hex = sha(&bytes);
    let cut = 2 * MIB + 12345;
    let (addr, ranges) = cutting_server(bytes.clone(), cut);
    let target = disk(dir.path(), "vda", 6 * MIB, 0);
    let req = Request {
        image: Source::Http(format!("http://{addr}/disk.raw")),
        sha256: hex,
        disk: None,
        reinstall: false,
        report: None,
        map: None,
    };
    let done = install::install(&req, &target, &http(), &mut |_| {}).unwrap();
    assert_eq!(done.result, "installed");
    assert_eq!(std::fs::read(&target).unwrap(), bytes);
    let ranges = ranges.lock().unwrap().clone();
    assert_eq!(ranges[0], "-", "the first request asks for the whole image");
    assert!(
        ranges[1..]
            .iter()
            .any(|r| r.trim_end_matches('-').parse::<usize>().unwrap_or(0) > 0),
        "the transfer resumed from where it was cut: {ranges:?}"
    );
}

/// The command, as pigsty-install.service runs it but with flags: JSON out, and the
/// outcome POSTed to the report URL.
#[test]
fn the_command_reports_what_it_did() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = image_bytes(3 * MIB);
    let image = dir.path().join("disk.raw");
    std::fs::write(&image, &bytes).unwrap();
    let target = disk(dir.path(), "vda", 4 * MIB, 0);
    // A report sink: one POST, its body kept.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let sink = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        conn.set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut reader = BufReader::new(conn.try_clone().unwrap());
        let mut len = 0usize;
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line.trim().is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        reader.read_exact(&mut body).unwrap();
        conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .unwrap();
        (first, body)
    });
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["agent", "install", "--json", "--image"])
        .arg(&image)
        .args(["--sha256", &sha(&bytes), "--disk"])
        .arg(&target)
        .args([
            "--report",
            &format!("http://{addr}/installed/52-54-00-00-00-01"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Outcome = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(printed.result, "installed");
    let (first, body) = sink.join().unwrap();
    assert!(
        first.starts_with("POST /installed/52-54-00-00-00-01 "),
        "{first}"
    );
    let reported: Outcome = serde_json::from_slice(&body).unwrap();
    assert_eq!(reported, printed);
    assert_eq!(&std::fs::read(&target).unwrap()[..bytes.len()], &bytes[..]);

    // No image, no sha: a usage error (exit 2).
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .args(["agent", "install", "--disk"])
        .arg(&target)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A sparse image of 24 MiB: data in its first 2 MiB, 3 MiB at 9 MiB, and its last
/// MiB (a backup GPT's place); holes between.
fn sparse_image(path: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let len = 24 * MIB;
    let f = std::fs::File::create(path).unwrap();
    f.set_len(len as u64).unwrap();
    let mut bytes = vec![0u8; len];
    for (at, n) in [(0, 2 * MIB), (9 * MIB, 3 * MIB), (23 * MIB, MIB)] {
        let piece = image_bytes(n + at)[at..].to_vec();
        f.write_all_at(&piece, at as u64).unwrap();
        bytes[at..at + n].copy_from_slice(&piece);
    }
    bytes
}

/// `disk.raw` and its block map served; the request asks for the install by the map.
fn served_with_map(dir: &Path) -> (Vec<u8>, pigsty::serve::Server, Request, String) {
    let image = dir.join("disk.raw");
    let bytes = sparse_image(&image);
    let map = pigsty::blockmap::BlockMap::of_file(&image).unwrap();
    assert_eq!(
        map.sha256,
        sha(&bytes),
        "the map names the whole image's digest"
    );
    let map_json = serde_json::to_vec(&map).unwrap();
    let map_path = dir.join(pigsty::blockmap::FILE);
    std::fs::write(&map_path, &map_json).unwrap();
    let (hex, map_hex) = (sha(&bytes), sha(&map_json));
    let mut a = pigsty::serve::Artifacts::default();
    a.add(&hex, &image, None);
    a.add(&map_hex, &map_path, None);
    let server = pigsty::serve::Server::start("127.0.0.1:0".parse().unwrap(), a).unwrap();
    let ip = "127.0.0.1".parse().unwrap();
    let req = Request {
        image: Source::Http(server.url(ip, &hex)),
        sha256: hex.clone(),
        disk: None,
        reinstall: false,
        report: None,
        map: Some(install::MapRef {
            source: Source::Http(server.url(ip, &map_hex)),
            sha256: map_hex,
        }),
    };
    (bytes, server, req, hex)
}

#[test]
fn by_its_block_map_only_the_data_is_sent_and_the_holes_are_zeroed() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, server, req, hex) = served_with_map(dir.path());
    // A used disk: every hole must read zeros afterwards, not what it held.
    let target = disk(dir.path(), "vda", 32 * MIB, 0xee);
    let mut lines = Vec::new();
    let done =
        install::install(&req, &target, &http(), &mut |l| lines.push(l.to_string())).unwrap();
    assert_eq!(done.result, "installed", "{done:?}");
    let got = std::fs::read(&target).unwrap();
    assert_eq!(&got[..bytes.len()], &bytes[..], "the disk holds the image");
    assert!(
        got[31 * MIB..].iter().all(|b| *b == 0),
        "the disk's old last MiB is zeroed"
    );
    let (sent, size) = server.served(&hex);
    assert_eq!(size, bytes.len() as u64);
    assert!(
        sent <= 7 * MIB as u64,
        "only the pieces of data were sent: {sent} of {size} bytes"
    );
    assert!(done.skipped >= 15 * MIB as u64, "{done:?}");
    assert!(lines.iter().any(|l| l.contains("block map")), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("read back")), "{lines:?}");
}

#[test]
fn a_block_map_or_piece_that_is_not_what_was_named_writes_nothing_bootable() {
    let dir = tempfile::tempdir().unwrap();
    let (bytes, _server, req, _hex) = served_with_map(dir.path());
    // The map is not the one named: refused before the disk is touched.
    let target = disk(dir.path(), "vda", 32 * MIB, 0xee);
    let mut wrong = req.clone();
    if let Some(m) = wrong.map.as_mut() {
        m.sha256 = "0".repeat(64);
    }
    let err = install::install(&wrong, &target, &http(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("block map"), "{err:#}");
    assert!(
        std::fs::read(&target).unwrap().iter().all(|b| *b == 0xee),
        "nothing was written"
    );
    // A map (named rightly) of another image: refused.
    let mut other = req.clone();
    other.sha256 = "1".repeat(64);
    let err = install::install(&other, &target, &http(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("is of image"), "{err:#}");
    // The image changed under its map: the piece's digest differs, and the disk
    // is left with no table to boot (its first MiB zeros).
    use std::os::unix::fs::FileExt;
    let image = dir.path().join("disk.raw");
    std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap()
        .write_all_at(b"changed", (10 * MIB) as u64)
        .unwrap();
    let err = install::install(&req, &target, &http(), &mut |_| {}).unwrap_err();
    assert!(format!("{err:#}").contains("its block map says"), "{err:#}");
    let got = std::fs::read(&target).unwrap();
    assert!(got[..MIB].iter().all(|b| *b == 0), "no table to boot");
    assert_ne!(&got[..MIB], &bytes[..MIB]);
}
