//! The fleet CA and each node's certificate, as Pigsty keeps them in `files/pki/`: the
//! first build creates a CA beside the inventory (its key 0600, never in an image),
//! and each node gets one key pair and a certificate signed by it, naming the node's
//! IP, nodename and every name it answers to. What is issued is kept beside the CA
//! and reused, so two builds of the same inputs are byte-identical; a node whose
//! names changed is issued a new certificate.
//!
//! Layout under the PKI directory (default `<inventory dir>/files/pki`):
//! `ca/ca.key` (0600), `ca/ca.crt`, and per node `nodes/<nodename>.key` (0600),
//! `nodes/<nodename>.crt` and `nodes/<nodename>.json` (what was issued, for `pki list`).

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde::{Deserialize, Serialize};

use crate::model::{Fleet, Node};

/// The CA's common name, Pigsty's `ca_cn` default.
pub const CA_CN: &str = "pigsty-ca";
/// How long a CA lives (Pigsty's CA: 100 years).
const CA_DAYS: i64 = 36_500;
/// How long a node certificate lives: Pigsty's `cert_validity`, 7300d.
const NODE_DAYS: i64 = 7_300;

/// The fleet's CA, opened to issue and read node certificates.
pub struct Pki {
    dir: PathBuf,
    ca_pem: String,
    ca_key: KeyPair,
}

/// One node's key pair and certificate (PEM), with the CA certificate.
pub use crate::model::NodeTls as NodeCert;

/// What was issued to a node (`nodes/<nodename>.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    pub node: String,
    /// Subject alternative names: the IP first, then the names.
    pub sans: Vec<String>,
    /// Issue and expiry dates, RFC 3339 (UTC).
    pub not_before: String,
    pub not_after: String,
    /// The certificate's shape: [`PROFILE`] now. Older ones (a common name, which
    /// etcd's JSON gateway refuses from a client) are issued again.
    #[serde(default)]
    pub profile: u32,
}

/// The shape of node certificates issued now: no common name (names are in the SANs;
/// etcd's gateway refuses a client certificate with one), the nodename as the
/// organizational unit.
pub const PROFILE: u32 = 2;

/// The PKI directory of an inventory file: `files/pki` beside it, as in Pigsty.
pub fn dir_beside(inventory: &Path) -> PathBuf {
    let parent = match inventory.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parent.join("files").join("pki")
}

/// The names a node's certificate carries: its IP, nodename and every other name,
/// then loopback (`127.0.0.1`, `localhost`), as Pigsty's etcd and PostgreSQL
/// certificates: local clients connect there, and etcd checks the address a client
/// certificate connects from (its own gateway connects from loopback). A MinIO
/// member also answers to the names Pigsty's MinIO certificate holds: its
/// `minio_node` (peers reach it by that name in `MINIO_VOLUMES`), the cluster and
/// `minio_domain` (the service name clients such as pgBackRest connect to).
pub fn sans_of(node: &Node) -> Vec<String> {
    let mut sans = vec![node.ip.to_string()];
    let minio = node.minio.iter().flat_map(|m| {
        [
            m.params.minio_node.clone(),
            m.cluster.clone(),
            m.params.minio_domain.clone(),
        ]
    });
    for n in node
        .names()
        .into_iter()
        .chain(minio)
        .chain(["127.0.0.1".into(), "localhost".into()])
    {
        if n.is_empty() {
            continue;
        }
        if !sans.contains(&n) {
            sans.push(n);
        }
    }
    sans
}

/// Write `bytes` to `path` with `mode`, atomically (a temporary sibling renamed).
fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().context("a PKI path has a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(bytes)
        .and_then(|()| f.set_permissions(std::fs::Permissions::from_mode(mode)))
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("moving {} into place", path.display()))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// The start of today (UTC): certificate dates are whole days.
fn today() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc().replace_time(time::Time::MIDNIGHT)
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Pki {
    /// Open the PKI in `dir`; None when it has no CA yet.
    pub fn open(dir: &Path) -> anyhow::Result<Option<Pki>> {
        let (key_path, cert_path) = (dir.join("ca/ca.key"), dir.join("ca/ca.crt"));
        if !key_path.exists() && !cert_path.exists() {
            return Ok(None);
        }
        let meta = std::fs::metadata(&key_path)
            .with_context(|| format!("{}: the CA has a certificate but no key", dir.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}): the CA key must be 0600",
                key_path.display(),
                meta.permissions().mode() & 0o777
            );
        }
        let ca_key = KeyPair::from_pem(&read(&key_path)?)
            .with_context(|| format!("reading the CA key {}", key_path.display()))?;
        let ca_pem = read(&cert_path)?;
        Ok(Some(Pki {
            dir: dir.to_path_buf(),
            ca_pem,
            ca_key,
        }))
    }

    /// Open the PKI in `dir`, creating its CA if there is none.
    pub fn open_or_create(dir: &Path) -> anyhow::Result<Pki> {
        if let Some(pki) = Pki::open(dir)? {
            return Ok(pki);
        }
        let ca_key = KeyPair::generate().context("generating the CA key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, CA_CN);
        dn.push(DnType::OrganizationName, "pigsty");
        params.distinguished_name = dn;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = today();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(CA_DAYS);
        let cert = params
            .self_signed(&ca_key)
            .context("signing the CA certificate")?;
        write_file(
            &dir.join("ca/ca.key"),
            ca_key.serialize_pem().as_bytes(),
            0o600,
        )?;
        write_file(&dir.join("ca/ca.crt"), cert.pem().as_bytes(), 0o644)?;
        Ok(Pki {
            dir: dir.to_path_buf(),
            ca_pem: cert.pem(),
            ca_key,
        })
    }

    /// The CA certificate (PEM).
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    fn node_path(&self, node: &str, ext: &str) -> PathBuf {
        self.dir.join("nodes").join(format!("{node}.{ext}"))
    }

    /// What was issued to `nodename`, if anything.
    pub fn issued(&self, nodename: &str) -> anyhow::Result<Option<Issued>> {
        let path = self.node_path(nodename, "json");
        if !path.exists() {
            return Ok(None);
        }
        let text = read(&path)?;
        serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("reading {}", path.display()))
    }

    /// Every node certificate issued, by nodename.
    pub fn list(&self) -> anyhow::Result<Vec<Issued>> {
        let dir = self.dir.join("nodes");
        let mut out = Vec::new();
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(out);
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(node) = name.strip_suffix(".json") {
                out.extend(self.issued(node)?);
            }
        }
        out.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(out)
    }

    /// The certificate issued before to the node, if it names its current IP and
    /// names.
    pub fn current(&self, node: &Node) -> anyhow::Result<Option<NodeCert>> {
        let kept = self.issued(&node.nodename)?;
        if kept.is_none_or(|i| i.sans != sans_of(node) || i.profile != PROFILE) {
            return Ok(None);
        }
        Ok(Some(NodeCert {
            ca: self.ca_pem.clone(),
            cert: read(&self.node_path(&node.nodename, "crt"))?,
            key: read(&self.node_path(&node.nodename, "key"))?,
        }))
    }

    /// The node's certificate: the current one, else a new one (issued and kept).
    pub fn node(&self, node: &Node) -> anyhow::Result<NodeCert> {
        match self.current(node)? {
            Some(c) => Ok(c),
            None => self.issue(node),
        }
    }

    /// Issue the node a new key pair and certificate, replacing what it had.
    pub fn issue(&self, node: &Node) -> anyhow::Result<NodeCert> {
        let sans = sans_of(node);
        let names = sans
            .iter()
            .map(|s| match s.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => s.clone().try_into().map(SanType::DnsName),
            })
            .collect::<Result<_, _>>()
            .with_context(|| format!("{}: a name a certificate cannot carry", node.nodename))?;
        // Servers (PostgreSQL, etcd, MinIO, Patroni) and clients of each other.
        let (out, params) = self
            .sign(
                &node.nodename,
                names,
                vec![
                    KeyUsagePurpose::DigitalSignature,
                    KeyUsagePurpose::KeyEncipherment,
                ],
                vec![
                    ExtendedKeyUsagePurpose::ServerAuth,
                    ExtendedKeyUsagePurpose::ClientAuth,
                ],
            )
            .with_context(|| format!("signing {}'s certificate", node.nodename))?;
        let issued = Issued {
            node: node.nodename.clone(),
            sans,
            not_before: rfc3339(params.not_before),
            not_after: rfc3339(params.not_after),
            profile: PROFILE,
        };
        write_file(
            &self.node_path(&node.nodename, "key"),
            out.key.as_bytes(),
            0o600,
        )?;
        write_file(
            &self.node_path(&node.nodename, "crt"),
            out.cert.as_bytes(),
            0o644,
        )?;
        let mut json = serde_json::to_vec_pretty(&issued)?;
        json.push(b'\n');
        write_file(&self.node_path(&node.nodename, "json"), &json, 0o644)?;
        Ok(out)
    }
}

impl Pki {
    /// A client identity for the operator's tools (`pigsty status`, the lab): a key
    /// pair and a client-only certificate kept in `clients/<name>.{key,crt}`, issued
    /// once. It carries no SAN and no common name: it proves only that its holder has
    /// the CA's trust; etcd still asks for a user and password.
    pub fn client(&self, name: &str) -> anyhow::Result<NodeCert> {
        let (key_path, crt_path) = (
            self.dir.join("clients").join(format!("{name}.key")),
            self.dir.join("clients").join(format!("{name}.crt")),
        );
        if key_path.exists() && crt_path.exists() {
            return Ok(NodeCert {
                ca: self.ca_pem.clone(),
                cert: read(&crt_path)?,
                key: read(&key_path)?,
            });
        }
        let (out, _) = self
            .sign(
                name,
                Vec::new(),
                vec![KeyUsagePurpose::DigitalSignature],
                vec![ExtendedKeyUsagePurpose::ClientAuth],
            )
            .with_context(|| format!("signing the client certificate {name}"))?;
        write_file(&key_path, out.key.as_bytes(), 0o600)?;
        write_file(&crt_path, out.cert.as_bytes(), 0o644)?;
        Ok(out)
    }
}

impl Pki {
    /// A new key pair and a certificate for it signed by the CA: subject
    /// `O=pigsty, OU=<unit>` (no CN: etcd's gateway refuses client certificates that
    /// have one), valid from yesterday for `NODE_DAYS`. Returns the params for dates.
    fn sign(
        &self,
        unit: &str,
        names: Vec<SanType>,
        usages: Vec<KeyUsagePurpose>,
        extended: Vec<ExtendedKeyUsagePurpose>,
    ) -> anyhow::Result<(NodeCert, CertificateParams)> {
        let key = KeyPair::generate().context("generating a key")?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "pigsty");
        dn.push(DnType::OrganizationalUnitName, unit);
        params.distinguished_name = dn;
        params.subject_alt_names = names;
        params.key_usages = usages;
        params.extended_key_usages = extended;
        params.use_authority_key_identifier_extension = true;
        let now = today();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(NODE_DAYS);
        let issuer = Issuer::from_ca_cert_pem(&self.ca_pem, &self.ca_key)
            .context("reading the CA certificate")?;
        let cert = params.signed_by(&key, &issuer)?;
        let out = NodeCert {
            ca: self.ca_pem.clone(),
            cert: cert.pem(),
            key: key.serialize_pem(),
        };
        Ok((out, params))
    }
}

/// The client identity of the operator's tools.
pub const OPERATOR: &str = "pigsty-admin";

/// How the operator's tools reach a certified fleet's etcd (cluster `etcd`): TLS with
/// the operator's client certificate, as root. None when the fleet has no certificates
/// (its etcd then speaks plain http) or no etcd.
pub fn operator_access(
    fleet: &Fleet,
    pki: &Pki,
) -> anyhow::Result<Option<crate::agent::etcd::AccessFiles>> {
    if fleet.nodes.iter().any(|n| n.tls.is_none()) {
        return Ok(None);
    }
    let Some(root) = fleet
        .etcd_members("etcd")
        .first()
        .and_then(|m| m.etcd.as_ref())
        .map(|e| e.params.etcd_root_password.clone())
    else {
        return Ok(None);
    };
    pki.client(OPERATOR)?;
    let path = |p: PathBuf| p.to_string_lossy().into_owned();
    Ok(Some(crate::agent::etcd::AccessFiles {
        ca: path(pki.dir.join("ca/ca.crt")),
        cert: path(pki.dir.join("clients").join(format!("{OPERATOR}.crt"))),
        key: path(pki.dir.join("clients").join(format!("{OPERATOR}.key"))),
        user: "root".into(),
        password: root,
    }))
}

/// The fleet with each node's certificate from `pki`. With `issue` (a build), a node
/// without a current one is issued one; without (`render`, `plan`, which write nothing
/// beside the inventory), it has none and serves the snakeoil pair.
///
/// A fleet is secured as a whole or not at all: etcd's members and clients must agree
/// on https and on who holds a certificate, so unless every node has a current
/// certificate, none gets one.
pub fn with_certs(fleet: &Fleet, pki: &Pki, issue: bool) -> anyhow::Result<Fleet> {
    let mut out = fleet.clone();
    let mut all = true;
    for n in &mut out.nodes {
        let cert = if issue {
            Some(pki.node(n)?)
        } else {
            pki.current(n)?
        };
        all &= cert.is_some();
        n.tls = cert.map(std::sync::Arc::new);
    }
    if !all {
        for n in &mut out.nodes {
            n.tls = None;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A MinIO member's certificate names what Pigsty's does: its `minio_node` (the
    /// volume list's name for it), the cluster and `minio_domain`, besides loopback.
    #[test]
    fn minio_members_carry_their_names() {
        let inv = "all:
  children:
    minio:
      hosts: { 10.10.10.11: { minio_seq: 1 } }
      vars: { minio_cluster: s3, minio_domain: s3.example.com }
";
        let fleet = crate::inventory::load_str("m.yml", inv).unwrap().fleet;
        assert_eq!(
            sans_of(&fleet.nodes[0]),
            [
                "10.10.10.11",
                "node-10-10-10-11",
                "s3-1",
                "s3-1.pigsty",
                "s3",
                "s3.example.com",
                "127.0.0.1",
                "localhost"
            ]
        );
    }
}
