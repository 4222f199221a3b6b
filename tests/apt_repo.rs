//! Package repositories as Pigsty names them, proven with one this test serves
//! itself on loopback: a signed apt repository (`apt-ftparchive` over `.deb` files
//! the test builds, its Release signed with a key the test makes) behind a small
//! HTTP server on 127.0.0.1.
//!
//! - The inventory names it in `repo_upstream` (module pgsql, offering 18) and
//!   `node_repo_modules` picks it: `plan` accepts pg_version 18 and lists it.
//! - build-image's check before any layer: it answers and its index lists
//!   postgresql-18; once the server is gone, the check names the repository and
//!   the packages that needed it.
//! - mmdebstrap builds a layer from the Debian archive and this repository,
//!   trusting only the test's key: the package from it is in the layer.
//!
//! Needs root (mmdebstrap), dpkg-deb, apt-ftparchive, gpg and python3 (the HTTP
//! server); ignored unless asked for (`--include-ignored`; ci/test.sh does).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use pigsty::catalog::Catalog;
use pigsty::image::{layer, sources};
use pigsty::model::Repository;

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A `.deb` with one file, built with dpkg-deb into `pool`.
fn deb(pool: &Path, work: &Path, name: &str) {
    let root = work.join(name);
    std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(root.join(format!("usr/share/{name}"))).unwrap();
    std::fs::write(
        root.join("DEBIAN/control"),
        format!(
            "Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: pigsty test <test@example.invalid>\n\
             Description: pigsty test package\n"
        ),
    )
    .unwrap();
    std::fs::write(
        root.join(format!("usr/share/{name}/probe")),
        "served on loopback\n",
    )
    .unwrap();
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&root)
        .arg(pool.join(format!("{name}_1.0_all.deb"))));
}

/// The repository under `dir/repo`, signed with a key made under `dir/gnupg`;
/// returns the path of the public key.
fn signed_repo(dir: &Path) -> PathBuf {
    let repo = dir.join("repo");
    let pool = repo.join("pool");
    let bin = repo.join("dists/stable/main/binary-amd64");
    std::fs::create_dir_all(&pool).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    // A package to install, and a major's packages that only have to be listed.
    deb(&pool, dir, "pigsty-test-probe");
    deb(&pool, dir, "postgresql-18");
    deb(&pool, dir, "postgresql-client-18");
    let packages = run(Command::new("apt-ftparchive")
        .args(["packages", "pool"])
        .current_dir(&repo));
    std::fs::write(bin.join("Packages"), &packages).unwrap();
    run(Command::new("gzip").arg("-k").arg(bin.join("Packages")));
    let release = run(Command::new("apt-ftparchive")
        .args([
            "-o",
            "APT::FTPArchive::Release::Suite=stable",
            "-o",
            "APT::FTPArchive::Release::Codename=stable",
            "-o",
            "APT::FTPArchive::Release::Components=main",
            "-o",
            "APT::FTPArchive::Release::Architectures=amd64",
            "release",
            "dists/stable",
        ])
        .current_dir(&repo));
    std::fs::write(repo.join("dists/stable/Release"), release).unwrap();
    let home = dir.join("gnupg");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let gpg = |args: &[&str]| {
        run(Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
            .args(args))
    };
    gpg(&[
        "--quick-gen-key",
        "pigsty test repository <test@example.invalid>",
        "ed25519",
        "sign",
        "never",
    ]);
    let inrelease = repo.join("dists/stable/InRelease");
    let release = repo.join("dists/stable/Release");
    gpg(&[
        "--clearsign",
        "-o",
        inrelease.to_str().unwrap(),
        release.to_str().unwrap(),
    ]);
    let key = dir.join("test-repo.asc");
    std::fs::write(&key, gpg(&["--armor", "--export"])).unwrap();
    key
}

/// `python3 -m http.server` on a free loopback port, up when it answers (bounded).
struct Server(Child, u16);

impl Server {
    fn start(dir: &Path) -> Server {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--directory",
            ])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "the test's HTTP server did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Server(child, port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn inventory(port: u16, key: &Path) -> String {
    format!(
        "all:
  children:
    etcd: {{ hosts: {{ 10.78.0.11: {{ etcd_seq: 1 }} }}, vars: {{ etcd_cluster: etcd }} }}
    pg-r: {{ hosts: {{ 10.78.0.11: {{ pg_seq: 1, pg_role: primary }} }}, vars: {{ pg_cluster: pg-r }} }}
  vars:
    admin_ip: 10.78.0.11
    pg_version: 18
    # The test repository serves a stand-in postgresql-18 and nothing else, so not
    # Pigsty's default template1 extensions (pg_repack is a package of its own).
    pg_default_extensions: []
    node_repo_modules: node,pgsql
    repo_upstream:
      - {{ name: base, module: node, releases: [12, 13], baseurl: {{ default: 'http://deb.debian.org/debian ${{distro_codename}} main' }} }}
      - {{ name: loopback, module: pgsql, releases: [13], arch: [x86_64], key: '{key}', pg_versions: [18],
           baseurl: {{ default: 'http://127.0.0.1:{port} stable main' }} }}
",
        key = key.display()
    )
}

#[test]
#[ignore = "needs root, dpkg-deb, apt-ftparchive, gpg and mmdebstrap: serves a signed repository on loopback and builds a small layer"]
fn a_signed_repository_on_loopback_feeds_plan_check_and_layer() {
    support::require_root("mmdebstrap");
    support::require_tools(&[
        "/usr/bin/apt-ftparchive",
        "/usr/bin/gpg",
        "/usr/bin/dpkg-deb",
        "/usr/bin/mmdebstrap",
    ]);
    let dir = tempfile::tempdir().unwrap();
    let key = signed_repo(dir.path());
    let server = Server::start(&dir.path().join("repo"));

    // plan: the repository is the node's, and it offers the major asked for.
    let loaded = pigsty::inventory::load_str("repo.yml", &inventory(server.1, &key))
        .unwrap_or_else(|e| panic!("{e:?}"));
    let node = &loaded.fleet.nodes[0];
    let compiled = pigsty::compile::compile(&loaded.fleet, node).unwrap();
    let repos = &compiled.plan.image.repositories;
    let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["base", "loopback"], "{repos:?}");
    assert!(
        compiled
            .plan
            .packages
            .contains(&"postgresql-18".to_string())
    );
    // Asked for a major nothing offers: refused at its line.
    let err = pigsty::inventory::load_str(
        "repo.yml",
        &inventory(server.1, &key).replace("pg_version: 18", "pg_version: 16"),
    )
    .unwrap_err();
    assert_eq!(
        (err.findings[0].key.as_str(), err.findings[0].line),
        ("pg_version", 7)
    );

    // The check before any layer: it answers and its index lists postgresql-18.
    let catalog = Catalog::debian13();
    let pg = [
        "postgresql-18".to_string(),
        "postgresql-client-18".to_string(),
    ];
    sources::preflight(catalog, repos, &pg).unwrap();
    let missing = ["postgresql-19".to_string()];
    let e = sources::preflight(catalog, repos, &missing)
        .unwrap_err()
        .to_string();
    assert!(e.contains("postgresql-19 is in none"), "{e}");
    // Every package of that major must be listed, not only the server's.
    let ext = [
        "postgresql-18".to_string(),
        "postgresql-18-postgis-3".to_string(),
    ];
    let e = sources::preflight(catalog, repos, &ext)
        .unwrap_err()
        .to_string();
    assert!(e.contains("postgresql-18-postgis-3 is in none"), "{e}");

    // mmdebstrap: the Debian archive and the loopback repository, trusting its key.
    let loopback: Vec<Repository> = repos
        .iter()
        .filter(|r| r.name == "loopback")
        .cloned()
        .collect();
    let cache = dir.path().join("cache");
    let tool = layer::mmdebstrap_version_cached(&cache).unwrap();
    let mut recipe = layer::Recipe::with_sources(catalog, &loopback, &[], 1, &tool);
    recipe.packages = vec!["pigsty-test-probe".into()];
    let tar = layer::ensure(&recipe, &cache, false).unwrap();
    let listing = run(Command::new("tar").arg("-tf").arg(&tar));
    assert!(
        listing.contains("usr/share/pigsty-test-probe/probe"),
        "the package from the loopback repository is in the layer"
    );

    // Gone: the check fails first, naming the repository and what needed it.
    let port = server.1;
    drop(server);
    let e = sources::preflight(catalog, repos, &pg)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("`loopback`") && e.contains(&format!("127.0.0.1:{port}")),
        "{e}"
    );
    assert!(
        e.contains("cannot be reached") && e.contains("postgresql-18"),
        "{e}"
    );
}
