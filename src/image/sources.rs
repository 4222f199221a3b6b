//! The package repositories a layer is built from: their signing keys, the
//! `mmdebstrap` source lines, and the check made before any layer is built that
//! every repository answers and that the PostgreSQL major the node asks for is in
//! one of their package indexes.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::model::Repository;

/// Keys this tool ships, by the names the catalogs use.
const KEYS: &[(&str, &str)] = &[
    ("pgdg", include_str!("../../images/keys/pgdg.asc")),
    ("pigsty", include_str!("../../images/keys/pigsty.asc")),
];

/// The archive keyring the host's mmdebstrap trusts for Debian itself.
const DEBIAN_KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// The armored (or binary) key that signs `repo`, or `None` for Debian's own.
fn key_bytes(repo: &Repository) -> anyhow::Result<Option<Vec<u8>>> {
    match repo.key.as_deref() {
        None => bail!(
            "repository `{}` ({}) names no signing key: give its entry in repo_upstream a \
             `key` (pgdg, pigsty, or the path of the repository's public key)",
            repo.name,
            repo.deb_line()
        ),
        Some("debian") => Ok(None),
        Some(name) => match KEYS.iter().find(|(k, _)| *k == name) {
            Some((_, text)) => Ok(Some(text.as_bytes().to_vec())),
            None => std::fs::read(name)
                .map(Some)
                .with_context(|| format!("reading the key of repository `{}`: {name}", repo.name)),
        },
    }
}

/// sha256 of the key that signs `repo` (`debian`: the keyring's name).
pub fn key_sha(repo: &Repository) -> anyhow::Result<String> {
    Ok(match key_bytes(repo)? {
        None => "debian".to_string(),
        Some(bytes) => hex::encode(Sha256::digest(bytes)),
    })
}

/// The mmdebstrap source argument of `repo`, its key written into `dir`.
pub fn mirror_arg(repo: &Repository, dir: &Path) -> anyhow::Result<String> {
    let keyfile: PathBuf = match key_bytes(repo)? {
        None => DEBIAN_KEYRING.into(),
        Some(bytes) => {
            let ext = if bytes.starts_with(b"-----BEGIN") {
                "asc"
            } else {
                "gpg"
            };
            let path = dir.join(format!("{}.{ext}", repo.name));
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
            path
        }
    };
    let rest = repo.deb_line();
    let rest = rest.strip_prefix("deb ").unwrap_or(&rest);
    Ok(format!("deb [signed-by={}] {rest}", keyfile.display()))
}

/// The index files of a repository, as apt fetches them.
fn dist_url(repo: &Repository, file: &str) -> String {
    if repo.suite.ends_with('/') {
        // A flat repository (`URI ./`): its files sit under the suite path.
        format!("{}/{}{file}", repo.uri, repo.suite)
    } else {
        format!("{}/dists/{}/{file}", repo.uri, repo.suite)
    }
}

/// Packages of a node that only the repositories beyond the base's archive can
/// give, as far as the catalogs know: those of a PostgreSQL major the base does not
/// ship (`postgresql-18`, `postgresql-client-18`, `postgresql-18-postgis-3`), and
/// Grafana (Pigsty's `infra` repository).
fn beyond_base(base: &Catalog, packages: &[String]) -> Vec<String> {
    packages
        .iter()
        .filter(|p| {
            let major = p
                .strip_prefix("postgresql-")
                .and_then(|rest| rest.split('-').find_map(|w| w.parse::<u32>().ok()));
            major.is_some_and(|m| !base.pg_versions.contains(&m))
                || base.feature("grafana").contains(p)
        })
        .cloned()
        .collect()
}

/// Before any layer is built: every repository of the node answers, and the
/// PostgreSQL server package it asks for is in one of their indexes. Errors name
/// the repository and the packages that needed it.
pub fn preflight(base: &Catalog, repos: &[Repository], packages: &[String]) -> anyhow::Result<()> {
    let http = crate::http::client(Duration::from_secs(10), Duration::from_secs(120))?;
    let needs = beyond_base(base, packages);
    let needed_for = |r: &Repository| -> String {
        if base.is_archive(r) {
            "the base itself".into()
        } else if needs.is_empty() {
            "no package of this node needs it: drop its module from node_repo_modules".into()
        } else {
            format!("this node needs it for {}", needs.join(", "))
        }
    };
    for repo in repos {
        let url = dist_url(repo, "InRelease");
        let reached = crate::http::get(&http, &url).and_then(|(code, _)| match code {
            200 => Ok(()),
            _ => crate::http::get(&http, &dist_url(repo, "Release")).and_then(|(c, _)| {
                if c == 200 {
                    Ok(())
                } else {
                    bail!("HTTP {code} for InRelease, {c} for Release")
                }
            }),
        });
        if let Err(e) = reached {
            bail!(
                "repository `{}` ({}) cannot be reached: {e:#}; {}. Nothing was built.",
                repo.name,
                repo.deb_line(),
                needed_for(repo)
            );
        }
    }
    if needs.is_empty() {
        return Ok(());
    }
    // A major the base does not ship comes, with its extensions, from the others.
    let mut listed = BTreeSet::new();
    for repo in repos.iter().filter(|r| !base.is_archive(r)) {
        listed.extend(index_names(&http, repo, &base.architecture)?);
    }
    let missing: Vec<&String> = needs
        .iter()
        .filter(|p| !listed.contains(p.as_str()))
        .collect();
    if !missing.is_empty() {
        let names: Vec<&str> = repos.iter().map(|r| r.name.as_str()).collect();
        bail!(
            "{} {} in none of this node's repositories ({}): their indexes do not list them. \
             Nothing was built.",
            missing
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            if missing.len() == 1 { "is" } else { "are" },
            names.join(", ")
        );
    }
    Ok(())
}

/// Package names in a repository's index (its first component; `Packages.gz`,
/// else `Packages.xz`, else plain `Packages`).
fn index_names(
    http: &crate::http::Client,
    repo: &Repository,
    arch: &str,
) -> anyhow::Result<BTreeSet<String>> {
    let dir = match repo.components.first() {
        Some(c) => format!("{c}/binary-{arch}/"),
        None => String::new(),
    };
    for (file, unpack) in [
        ("Packages.gz", Unpack::Gzip),
        ("Packages.xz", Unpack::Xz),
        ("Packages", Unpack::Plain),
    ] {
        let url = dist_url(repo, &format!("{dir}{file}"));
        let resp = http
            .get(&url)
            .send()
            .with_context(|| format!("GET {url}"))?;
        if !resp.status().is_success() {
            continue;
        }
        let bytes = resp.bytes().with_context(|| format!("reading {url}"))?;
        let text = unpack
            .text(&bytes)
            .with_context(|| format!("unpacking {url}"))?;
        return Ok(text
            .lines()
            .filter_map(|l| l.strip_prefix("Package: "))
            .map(|p| p.trim().to_string())
            .collect());
    }
    bail!(
        "repository `{}` ({}) has no package index for {arch} under {}",
        repo.name,
        repo.deb_line(),
        dist_url(repo, &dir)
    )
}

enum Unpack {
    Gzip,
    Xz,
    Plain,
}

impl Unpack {
    fn text(&self, bytes: &[u8]) -> anyhow::Result<String> {
        let mut out = String::new();
        match self {
            Unpack::Gzip => {
                flate2::read::GzDecoder::new(bytes).read_to_string(&mut out)?;
            }
            Unpack::Xz => {
                let dir = tempfile::tempdir()?;
                let file = dir.path().join("Packages.xz");
                std::fs::write(&file, bytes)?;
                let run = crate::sys::run(std::process::Command::new("xz").arg("-dc").arg(&file))?;
                out = String::from_utf8_lossy(&run.stdout).into_owned();
            }
            Unpack::Plain => out = String::from_utf8_lossy(bytes).into_owned(),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_lines_and_what_needs_a_repository() {
        let base = Catalog::debian13();
        let pgdg = base.repositories.iter().find(|r| r.name == "pgdg").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let arg = mirror_arg(pgdg, dir.path()).unwrap();
        assert!(arg.starts_with("deb [signed-by="), "{arg}");
        assert!(
            arg.ends_with("pgdg.asc] http://apt.postgresql.org/pub/repos/apt trixie-pgdg main")
        );
        assert_eq!(key_sha(pgdg).unwrap().len(), 64);
        let mut unsigned = pgdg.clone();
        unsigned.key = None;
        assert!(
            key_sha(&unsigned)
                .unwrap_err()
                .to_string()
                .contains("names no signing key")
        );
        let pkgs: Vec<String> = [
            "postgresql-18",
            "postgresql-client-18",
            "postgresql-17",
            "patroni",
            "grafana",
        ]
        .map(String::from)
        .into();
        assert_eq!(
            beyond_base(base, &pkgs),
            ["postgresql-18", "postgresql-client-18", "grafana"]
        );
        let flat = Repository {
            suite: "./".into(),
            ..pgdg.clone()
        };
        assert_eq!(
            dist_url(&flat, "InRelease"),
            "http://apt.postgresql.org/pub/repos/apt/./InRelease"
        );
    }
}
