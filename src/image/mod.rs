//! Images: node plans turned into bootable artifacts. A package layer (mmdebstrap,
//! cached by recipe) plus the node overlay (rendered files, agent, units) gives the
//! root tree; each format is written from it deterministically.

pub mod cloudinit;
pub mod disk;
pub mod ext4base;
pub mod extra;
pub mod layer;
pub mod overlay;
pub mod pxe;
pub mod sources;
pub mod tree;
pub mod zpieces;

use std::collections::HashMap;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::catalog::Catalog;
use crate::compile::Compiled;
use crate::model::{Fleet, Node};
use tree::Tree;

/// Output formats of `build-image`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// rootfs.tar.zst: sorted entries, clamped mtimes, numeric owners.
    Rootfs,
    /// disk.raw, the A/B layout (docs/updates.md): the ESP with systemd-boot and slot
    /// A's entry; root A (the shared root, read-only at run time) and bundle A (the
    /// node's own files); empty root B and bundle B for updates; a data partition
    /// holding every piece of state, grown to the end of the drive at first boot.
    /// With vmlinuz, initrd.img and cmdline (slot A's) for a direct kernel boot.
    Raw,
    /// disk.qcow2: the A/B disk as a qcow2 whose backing file is the shared base disk
    /// of its root, `_roots/<sha256>.ab.raw` in `--out` (one per package set): the
    /// node's own file holds its bundle and its boot entry, about 1 MiB. Ship both, or
    /// flatten it: `qemu-img convert -O qcow2 disk.qcow2 whole.qcow2`. The base disk
    /// is cached (`$PIGSTY_CACHE/ab/`, hard-linked into `--out` when they share a
    /// filesystem). With cmdline (slot A's), and the root's kernel and initrd beside
    /// its base disk, `_roots/<sha256>.vmlinuz` and `.initrd.img`.
    Qcow2,
    /// cloud-init/ (NoCloud meta-data, user-data, network-config) and cidata.img, for a
    /// stock Debian cloud image.
    CloudInit,
    /// pxe/: vmlinuz, initrd.img (live-boot), root.squashfs, boot.ipxe, dnsmasq.conf,
    /// and by-mac/<mac>.ipxe when the inventory gives node_mac.
    Pxe,
    /// bundle.tar, the node's own files, and the shared root it goes over,
    /// `_roots/<sha256>.ext4` in `--out`: one per package set, however many nodes
    /// share it (see docs/updates.md). What `pigsty agent update` takes.
    Bundle,
}

impl Format {
    /// Whether the format is written from the node's root tree (needs a layer).
    pub fn needs_tree(self) -> bool {
        !matches!(self, Format::CloudInit)
    }
}

pub struct BuildOptions {
    pub formats: Vec<Format>,
    pub out: PathBuf,
    pub cache: PathBuf,
    pub offline: bool,
    /// SOURCE_DATE_EPOCH: every timestamp in an artifact is at most this.
    pub epoch: u64,
    /// Host directories copied over every node's root, last (`--extra-tree`).
    pub extra_trees: Vec<PathBuf>,
}

/// Run one long build step under a spinner on stderr (hidden when stderr is not a
/// terminal); the step and its duration also go to the log.
pub fn step<T>(what: &str, f: impl FnOnce() -> anyhow::Result<T>) -> anyhow::Result<T> {
    let bar = indicatif::ProgressBar::new_spinner().with_message(what.to_string());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
    );
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    let start = std::time::Instant::now();
    let result = f();
    bar.finish_and_clear();
    match &result {
        Ok(_) => tracing::info!(
            elapsed_ms = start.elapsed().as_millis() as u64,
            "{what}: done"
        ),
        Err(e) => tracing::warn!("{what}: failed: {e:#}"),
    }
    result
}

/// The default epoch: `$SOURCE_DATE_EPOCH`, else a fixed date (2024-01-01).
pub fn default_epoch() -> u64 {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_704_067_200)
}

#[derive(Debug, Clone, Serialize)]
pub struct Artifact {
    pub name: String,
    pub sha256: String,
    pub size: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Manifest {
    pub node: String,
    pub ip: String,
    pub inventory: String,
    pub tool: String,
    pub plan_digest: String,
    pub source_date_epoch: u64,
    pub layer: LayerRef,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_trees: Vec<ExtraRef>,
    pub formats: Vec<Format>,
    pub cmdline: Option<String>,
    /// The shared root the node bundle goes over (format `bundle`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub root: Option<RootRef>,
    pub artifacts: Vec<Artifact>,
}

/// A shared root image in `--out`: `_roots/<sha256>.ext4`.
#[derive(Debug, Clone, Serialize)]
pub struct RootRef {
    pub path: String,
    pub sha256: String,
    pub size: u64,
}

/// Where shared roots go in `--out`: `_` cannot begin a nodename, so no node's
/// directory can take the name.
pub const ROOTS_DIR: &str = "_roots";

/// A shared root: its tree (for splitting node bundles off), its image in the cache,
/// and where it is in `--out` (format `bundle`).
struct SharedRoot {
    tree: Tree,
    cached: PathBuf,
    image: RootRef,
}

impl Format {
    /// Whether the format needs the node's shared root and bundle.
    fn needs_root(self) -> bool {
        matches!(self, Format::Bundle | Format::Raw | Format::Qcow2)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ExtraRef {
    pub source: String,
    pub sha256: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct LayerRef {
    pub key: String,
    pub packages: Vec<String>,
}

/// Build the images of `nodes`, each with what compile made of it. Nodes with the
/// same package set share one layer, built (or read) once.
pub fn build(
    fleet: &Fleet,
    nodes: &[(&Node, Compiled)],
    opts: &BuildOptions,
) -> anyhow::Result<Vec<Manifest>> {
    let needs_tree = opts.formats.iter().any(|f| f.needs_tree());
    let tool = match (needs_tree, opts.offline) {
        (false, _) => String::new(),
        (true, true) => "offline".to_string(),
        (true, false) => layer::mmdebstrap_version_cached(&opts.cache)?,
    };
    let agent = agent_binary()?;
    let extras = opts
        .extra_trees
        .iter()
        .map(|d| extra::ExtraTree::read(d, opts.epoch))
        .collect::<anyhow::Result<Vec<_>>>()?;
    if needs_tree && !opts.offline {
        preflight_missing(nodes, opts, &tool)?;
    }
    let mut layers: HashMap<String, Arc<Tree>> = HashMap::new();
    let mut roots: HashMap<String, Arc<SharedRoot>> = HashMap::new();
    let mut ab_bases: HashMap<String, Arc<AbBase>> = HashMap::new();
    let mut manifests = Vec::new();
    for (node, compiled) in nodes {
        let catalog = Catalog::base(&compiled.plan.image.name)?;
        let tool = if needs_tree {
            tool_for(&tool, opts, catalog, compiled)?
        } else {
            tool.clone()
        };
        let recipe = recipe(catalog, compiled, opts.epoch, &tool);
        let key = recipe.key();
        let base = match layers.get(&key) {
            _ if !needs_tree => Arc::new(Tree::default()),
            Some(t) => t.clone(),
            None => {
                let path = step(&format!("layer {}", &key[..12]), || {
                    layer::ensure(&recipe, &opts.cache, opts.offline)
                })?;
                let t = Arc::new(step("reading the layer", || read_layer(&path))?);
                layers.insert(key.clone(), t.clone());
                t
            }
        };
        let layer_ref = LayerRef {
            key,
            packages: recipe.packages.clone(),
        };
        let root = match roots.get(&layer_ref.key) {
            _ if !opts.formats.iter().any(|f| f.needs_root()) => None,
            Some(r) => Some(r.clone()),
            None => {
                let r = Arc::new(step(
                    &format!("shared root of layer {}", &layer_ref.key[..12]),
                    || shared_root(&base, &layer_ref.key, &agent, &extras, opts),
                )?);
                roots.insert(layer_ref.key.clone(), r.clone());
                Some(r)
            }
        };
        let ab_base = match &root {
            Some(r) if opts.formats.contains(&Format::Qcow2) => {
                match ab_bases.get(&r.image.sha256) {
                    Some(b) => Some(b.clone()),
                    None => {
                        let b = Arc::new(step(
                            &format!("A/B base disk of root {}", &r.image.sha256[..12]),
                            || ab_base(r, opts),
                        )?);
                        ab_bases.insert(r.image.sha256.clone(), b.clone());
                        Some(b)
                    }
                }
            }
            _ => None,
        };
        let added = Added {
            agent: &agent,
            extras: &extras,
            root: root.as_deref(),
            ab_base: ab_base.as_deref(),
        };
        manifests.push(build_node(
            fleet, node, compiled, &base, layer_ref, &added, opts,
        )?);
    }
    Ok(manifests)
}

/// Offline builds cannot ask mmdebstrap its version: use the one recorded with a
/// cached layer of the same package set.
/// The layer recipe of a compiled node: its base, repositories and packages.
fn recipe(catalog: &Catalog, compiled: &Compiled, epoch: u64, tool: &str) -> layer::Recipe {
    let repos = &compiled.plan.image.repositories;
    layer::Recipe::with_sources(catalog, repos, &compiled.plan.packages, epoch, tool)
}

/// Before any layer is built: the repositories of every node whose layer must be
/// built answer and offer its PostgreSQL major (checked once per repository set).
fn preflight_missing(
    nodes: &[(&Node, Compiled)],
    opts: &BuildOptions,
    tool: &str,
) -> anyhow::Result<()> {
    let mut checked = std::collections::HashSet::new();
    for (node, compiled) in nodes {
        let catalog = Catalog::base(&compiled.plan.image.name)?;
        let r = recipe(catalog, compiled, opts.epoch, tool);
        if layer::layer_path(&opts.cache, &r.key()).is_file() {
            continue;
        }
        let repos = &compiled.plan.image.repositories;
        // preflight picks the packages only other repositories give (beyond_base).
        let packages = &compiled.plan.packages;
        if checked.insert((
            serde_json::to_string(repos).unwrap_or_default(),
            packages.clone(),
        )) {
            sources::preflight(catalog, repos, packages)
                .with_context(|| format!("checking the repositories of {}", node.nodename))?;
        }
    }
    Ok(())
}

fn tool_for(
    tool: &str,
    opts: &BuildOptions,
    catalog: &Catalog,
    compiled: &Compiled,
) -> anyhow::Result<String> {
    if tool != "offline" {
        return Ok(tool.to_string());
    }
    let dir = opts.cache.join("layers");
    for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                let recorded = v["tool"].as_str().unwrap_or_default();
                let candidate = recipe(catalog, compiled, opts.epoch, recorded);
                if p.file_stem()
                    .is_some_and(|s| s.to_string_lossy() == candidate.key())
                {
                    return Ok(recorded.to_string());
                }
            }
        }
    }
    let r = recipe(catalog, compiled, opts.epoch, "?");
    anyhow::bail!(
        "--offline: no cached layer in {} holds this package set ({})",
        dir.display(),
        r.packages.join(" ")
    )
}

fn read_layer(path: &Path) -> anyhow::Result<Tree> {
    Tree::from_tar_file(path).with_context(|| format!("reading layer {}", path.display()))
}

/// What every node's tree gets on top of its layer besides its own files, and the
/// shared root of its layer when node bundles are asked for.
struct Added<'a> {
    agent: &'a [u8],
    extras: &'a [extra::ExtraTree],
    root: Option<&'a SharedRoot>,
    /// The shared base disk of the root (format qcow2).
    ab_base: Option<&'a AbBase>,
}

/// The shared root of a layer: the layer, what every node gets alike and the extra
/// trees, as an ext4 image in `--out/_roots/`, named by its sha256. The image is
/// made once per root and cached (an ext4 base keyed by the layer, the agent and the
/// epoch), so a fleet's build writes one per package set.
fn shared_root(
    base: &Tree,
    layer_key: &str,
    agent: &[u8],
    extras: &[extra::ExtraTree],
    opts: &BuildOptions,
) -> anyhow::Result<SharedRoot> {
    let mut tree = base.clone();
    overlay::apply_shared(&mut tree, agent, opts.epoch);
    let mut key = Sha256::new();
    key.update(format!(
        "pigsty shared root v1\nlayer {layer_key}\nepoch {}\n",
        opts.epoch
    ));
    key.update(Sha256::digest(agent));
    for x in extras {
        x.apply(&mut tree);
        key.update(format!("extra {}\n", x.sha256));
    }
    let key = hex::encode(key.finalize());
    let ids = disk::DiskIds::from_digest(&key);
    let size = ext4base::size_mib(&tree);
    let cached = ext4base::ensure_base(&opts.cache, &key, &tree, &ids, size, opts.epoch)?;
    // Its digest, kept beside it: a root is GiBs, hashed once.
    let digest_file = cached.with_extension("ext4.sha256");
    let (sha256, size) = match std::fs::read_to_string(&digest_file).ok().and_then(|t| {
        let (sha, size) = t.trim().split_once(' ')?;
        Some((sha.to_string(), size.parse().ok()?))
    }) {
        Some(known) => known,
        None => {
            let (sha, size) = hash_file(&cached)?;
            std::fs::write(&digest_file, format!("{sha} {size}\n"))
                .with_context(|| format!("writing {}", digest_file.display()))?;
            (sha, size)
        }
    };
    let dir = opts.out.join(ROOTS_DIR);
    let name = format!("{sha256}.ext4");
    let dest = dir.join(&name);
    if opts.formats.contains(&Format::Bundle) && !dest.is_file() {
        ext4base::link_or_copy(&cached, &dest).context("the shared root")?;
    }
    Ok(SharedRoot {
        tree,
        cached,
        image: RootRef {
            path: format!("{ROOTS_DIR}/{name}"),
            sha256,
            size,
        },
    })
}

fn build_node(
    fleet: &Fleet,
    node: &Node,
    compiled: &Compiled,
    base: &Tree,
    layer: LayerRef,
    added: &Added,
    opts: &BuildOptions,
) -> anyhow::Result<Manifest> {
    let (agent, extras) = (added.agent, added.extras);
    let mut tree = base.clone();
    if opts.formats.iter().any(|f| f.needs_tree()) {
        let overlay = overlay::Overlay {
            plan: &compiled.plan,
            files: &compiled.files,
            agent,
            epoch: opts.epoch,
        };
        overlay.apply(&mut tree)?;
        for x in extras {
            x.apply(&mut tree);
        }
    }
    std::fs::create_dir_all(&opts.out)
        .with_context(|| format!("creating {}", opts.out.display()))?;
    let final_dir = opts.out.join(&node.nodename);
    let tmp = opts
        .out
        .join(format!(".{}.tmp-{}", node.nodename, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)?;
    let mut hashed = HashMap::new();
    let written = Written {
        dir: &tmp,
        hashed: &mut hashed,
    };
    // The node's own files over its shared root: the bundle, and the A/B disks that
    // carry it in slot A.
    let disks = match added.root {
        Some(root) => step(&format!("{}: node bundle", node.nodename), || {
            use std::os::unix::fs::OpenOptionsExt;
            let mut tar = Vec::new();
            overlay::split(&root.tree, &tree)?.write_tar(&mut tar, opts.epoch)?;
            if opts.formats.contains(&Format::Bundle) {
                std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(tmp.join("bundle.tar"))
                    .and_then(|mut f| std::io::Write::write_all(&mut f, &tar))
                    .context("writing bundle.tar")?;
            }
            let mut cmdline = None;
            let mut raw_digest = None;
            if opts.formats.contains(&Format::Raw) {
                let (line, digest) = write_ab_disk(node, root, &tar, &tmp, opts)?;
                cmdline = Some(line);
                raw_digest = Some(digest);
            }
            if let Some(base) = added.ab_base {
                let line = write_ab_qcow2(node, base, &tar, &tmp)?;
                if cmdline.is_none() {
                    // disk.raw's own line (its partitions are the node's) wins.
                    std::fs::write(tmp.join("cmdline"), format!("{line}\n"))?;
                    cmdline = Some(line);
                }
            }
            Ok((cmdline, raw_digest))
        }),
        None => Ok((None, None)),
    };
    let result = disks
        .and_then(|(cmdline, raw_digest)| {
            write_formats(node, compiled, agent, &tree, written, opts)?;
            Ok((cmdline, raw_digest))
        })
        .and_then(|(cmdline, raw_digest)| {
            // disk.raw was hashed as its block map was made.
            if let Some(digest) = raw_digest {
                hashed.insert("disk.raw".to_string(), digest);
            }
            let mut artifacts = Vec::new();
            step(&format!("{}: hashing the artifacts", node.nodename), || {
                for name in list_files(&tmp)? {
                    let (sha256, size) = match hashed.remove(&name) {
                        Some(known) => known,
                        None => hash_file(&tmp.join(&name))?,
                    };
                    artifacts.push(Artifact { name, sha256, size });
                }
                Ok(())
            })?;
            let manifest = Manifest {
                node: node.nodename.clone(),
                ip: node.ip.to_string(),
                inventory: fleet.source.clone(),
                tool: concat!("pigsty ", env!("CARGO_PKG_VERSION")).to_string(),
                plan_digest: compiled.plan.digest.clone(),
                source_date_epoch: opts.epoch,
                layer,
                extra_trees: extras
                    .iter()
                    .map(|x| ExtraRef {
                        source: x.source.display().to_string(),
                        sha256: x.sha256.clone(),
                    })
                    .collect(),
                formats: opts.formats.clone(),
                cmdline,
                root: added.root.map(|r| r.image.clone()),
                artifacts,
            };
            let mut text = serde_json::to_vec_pretty(&manifest)?;
            text.push(b'\n');
            std::fs::write(tmp.join("manifest.json"), text)?;
            owner_only(&tmp)?;
            replace_dir(&tmp, &final_dir)?;
            Ok(manifest)
        });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

/// The directory a build writes into, and the digests of the artifacts hashed as
/// they were written (so they are not read back).
struct Written<'a> {
    dir: &'a Path,
    hashed: &'a mut HashMap<String, (String, u64)>,
}

/// Write the formats made from the node's whole tree into `out.dir`: the cloud-init
/// seed, rootfs.tar.zst and the PXE set.
fn write_formats(
    node: &Node,
    compiled: &Compiled,
    agent: &[u8],
    tree: &Tree,
    out: Written<'_>,
    opts: &BuildOptions,
) -> anyhow::Result<()> {
    let dir = out.dir;
    let formats = &opts.formats;
    if formats.contains(&Format::CloudInit) {
        step(&format!("{}: cloud-init seed", node.nodename), || {
            let seed = cloudinit::seed(node, &compiled.plan, &compiled.files, agent)?;
            cloudinit::write(dir, &seed)
        })?;
    }
    if formats.contains(&Format::Rootfs) {
        let digest = step(&format!("{}: rootfs.tar.zst", node.nodename), || {
            zpieces::write_rootfs(tree, &dir.join("rootfs.tar.zst"), opts.epoch, &opts.cache)
        })?;
        out.hashed.insert("rootfs.tar.zst".to_string(), digest);
    }
    if formats.contains(&Format::Pxe) {
        step(&format!("{}: PXE set", node.nodename), || {
            let boot = disk::boot_files(tree)?;
            pxe::write(dir, node, tree, &boot, opts.epoch)
        })?;
    }
    Ok(())
}

/// disk.raw: the A/B layout of docs/updates.md, slot A holding the shared root and
/// the node's bundle, slot B empty, and a fresh data partition; with the kernel and
/// initrd of the root and slot A's command line (`cmdline`, returned) for a direct
/// kernel boot. Beside it, its block map ([`crate::blockmap`]), for an install over
/// the network; returned with the disk's sha256 and length, taken as it was made.
fn write_ab_disk(
    node: &Node,
    root: &SharedRoot,
    bundle_tar: &[u8],
    dir: &Path,
    opts: &BuildOptions,
) -> anyhow::Result<(String, (String, u64))> {
    use disk::{Fill, Part};
    use gpt::partition_types::{EFI, LINUX_FS, LINUX_ROOT_X64};
    let seed = hex::encode(Sha256::digest(
        format!("pigsty ab disk\n{}\n{}", node.nodename, node.ip).as_bytes(),
    ));
    let guid = |n: u8| disk::DiskIds::from_digest(&seed).disk.as_u128() ^ u128::from(n);
    let guid = |n: u8| uuid::Builder::from_random_bytes(guid(n).to_be_bytes()).into_uuid();
    let boot = disk::boot_files(&root.tree)?;
    let work = tempfile::Builder::new()
        .prefix(".pigsty-ab")
        .tempdir_in(dir)?;
    let bundle_img = work.path().join("bundle-a");
    {
        let mut f = rw_file(&bundle_img)?;
        let capacity = disk::BUNDLE_MIB << 20;
        f.set_len(capacity)?;
        crate::bundle::write(&mut f, capacity, bundle_tar)?;
    }
    let data_img = work.path().join("data.ext4");
    disk::make_data_fs(&data_img, guid(7), disk::DATA_MIB, opts.epoch)?;
    let cmdline = disk::ab_cmdline(
        guid(2),
        'a',
        &crate::bundle::digest(bundle_tar),
        &root.image.sha256,
    );
    let esp = disk::make_ab_esp(
        &root.tree,
        &boot,
        u32::from_be_bytes(guid(1).as_bytes()[..4].try_into().unwrap_or_default()),
        &format!("pigsty {}", node.nodename),
        &cmdline,
    )?;
    let slot = disk::root_slot_bytes(std::fs::metadata(&root.cached)?.len());
    let parts = [
        Part {
            label: "ESP",
            kind: EFI,
            guid: guid(1),
            fill: Fill::Bytes(&esp),
            min: 0,
        },
        Part {
            label: "pigsty-root-a",
            kind: LINUX_ROOT_X64,
            guid: guid(2),
            fill: Fill::File(&root.cached),
            min: slot,
        },
        Part {
            label: "pigsty-bundle-a",
            kind: LINUX_FS,
            guid: guid(3),
            fill: Fill::File(&bundle_img),
            min: 0,
        },
        Part {
            label: "pigsty-root-b",
            kind: LINUX_ROOT_X64,
            guid: guid(4),
            fill: Fill::Empty(slot),
            min: 0,
        },
        Part {
            label: "pigsty-bundle-b",
            kind: LINUX_FS,
            guid: guid(5),
            fill: Fill::Empty(disk::BUNDLE_MIB << 20),
            min: 0,
        },
        Part {
            label: "pigsty-data",
            kind: LINUX_FS,
            guid: guid(6),
            fill: Fill::File(&data_img),
            min: 0,
        },
    ];
    let raw = dir.join("disk.raw");
    disk::make_gpt_parts(&raw, &parts, guid(0))?;
    let map = crate::blockmap::BlockMap::of_file(&raw)?;
    std::fs::write(
        dir.join(crate::blockmap::FILE),
        serde_json::to_vec(&map).context("the block map as JSON")?,
    )?;
    std::fs::write(dir.join("cmdline"), format!("{cmdline}\n"))?;
    std::fs::write(dir.join("vmlinuz"), &boot.kernel)?;
    std::fs::write(dir.join("initrd.img"), &boot.initrd)?;
    Ok((cmdline, (map.sha256, map.size)))
}

/// The shared base disk of a root (format qcow2): the A/B layout with the root
/// in slot A, the ESP without a slot entry, empty bundles and a fresh data
/// partition, identified by the root; and where a node's own bytes go in it.
struct AbBase {
    /// `_roots/<sha256>.ab.raw`, relative to a node's directory in `--out`.
    backing: String,
    root_sha: String,
    root_a: uuid::Uuid,
    esp: Vec<u8>,
    esp_offset: u64,
    bundle_a_offset: u64,
}

fn ab_base(root: &SharedRoot, opts: &BuildOptions) -> anyhow::Result<AbBase> {
    use disk::{Fill, Part};
    use gpt::partition_types::{EFI, LINUX_FS, LINUX_ROOT_X64};
    let sha = &root.image.sha256;
    let seed = hex::encode(Sha256::digest(format!("pigsty ab base\n{sha}").as_bytes()));
    let guid = |n: u8| disk::DiskIds::from_digest(&seed).disk.as_u128() ^ u128::from(n);
    let guid = |n: u8| uuid::Builder::from_random_bytes(guid(n).to_be_bytes()).into_uuid();
    let boot = disk::boot_files(&root.tree)?;
    let esp = disk::make_ab_esp_base(
        &root.tree,
        &boot,
        u32::from_be_bytes(guid(1).as_bytes()[..4].try_into().unwrap_or_default()),
    )?;
    let slot = disk::root_slot_bytes(std::fs::metadata(&root.cached)?.len());
    // Cached by what its bytes come from: the root, the ESP (its loader, kernel and
    // initrd), the data filesystem's maker and size, and the layout's sizes.
    let key = hex::encode(Sha256::digest(
        format!(
            "pigsty ab base v1\nroot {sha}\nesp {}\nslot {slot}\nbundle {} MiB\ndata {} MiB\n\
             epoch {}\n{}\n",
            hex::encode(Sha256::digest(&esp)),
            disk::BUNDLE_MIB,
            disk::DATA_MIB,
            opts.epoch,
            ext4base::mke2fs_version()?,
        )
        .as_bytes(),
    ));
    let (cached, offsets) = ext4base::ensure_ab_base(&opts.cache, &key, |work| {
        let data_img = work.join("data.ext4");
        disk::make_data_fs(&data_img, guid(7), disk::DATA_MIB, opts.epoch)?;
        let part = |label, kind, n, fill, min| Part {
            label,
            kind,
            guid: guid(n),
            fill,
            min,
        };
        let parts = [
            part("ESP", EFI, 1, Fill::Bytes(&esp), 0),
            part(
                "pigsty-root-a",
                LINUX_ROOT_X64,
                2,
                Fill::File(&root.cached),
                slot,
            ),
            part(
                "pigsty-bundle-a",
                LINUX_FS,
                3,
                Fill::Empty(disk::BUNDLE_MIB << 20),
                0,
            ),
            part("pigsty-root-b", LINUX_ROOT_X64, 4, Fill::Empty(slot), 0),
            part(
                "pigsty-bundle-b",
                LINUX_FS,
                5,
                Fill::Empty(disk::BUNDLE_MIB << 20),
                0,
            ),
            part("pigsty-data", LINUX_FS, 6, Fill::File(&data_img), 0),
        ];
        disk::make_gpt_parts(&work.join("base.raw"), &parts, guid(0))
    })?;
    let (Some(&esp_offset), Some(&bundle_a_offset)) = (offsets.first(), offsets.get(2)) else {
        anyhow::bail!(
            "the cached A/B base disk {} has no partition offsets",
            cached.display()
        );
    };
    let dir = opts.out.join(ROOTS_DIR);
    let name = format!("{sha}.ab.raw");
    ext4base::link_or_copy(&cached, &dir.join(&name)).context("the A/B base disk")?;
    // The root's kernel and initrd, for a direct kernel boot of its nodes' disks
    // (with each node's `cmdline`).
    for (file, bytes) in [("vmlinuz", &boot.kernel), ("initrd.img", &boot.initrd)] {
        let path = dir.join(format!("{sha}.{file}"));
        if std::fs::metadata(&path).map(|m| m.len()).ok() != Some(bytes.len() as u64) {
            std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        }
    }
    Ok(AbBase {
        backing: format!("../{ROOTS_DIR}/{name}"),
        root_sha: sha.clone(),
        root_a: guid(2),
        esp,
        esp_offset,
        bundle_a_offset,
    })
}

/// disk.qcow2 over the root's base disk: the node's slot A entry (the few ESP
/// sectors it changes) and its bundle, written with qemu-io. Returns slot A's
/// command line.
fn write_ab_qcow2(
    node: &Node,
    base: &AbBase,
    bundle_tar: &[u8],
    dir: &Path,
) -> anyhow::Result<String> {
    let cmdline = disk::ab_cmdline(
        base.root_a,
        'a',
        &crate::bundle::digest(bundle_tar),
        &base.root_sha,
    );
    let entry = disk::ab_entry(&format!("pigsty {}", node.nodename), 'a', 1, &cmdline);
    let mut runs: Vec<(u64, Vec<u8>)> = disk::add_ab_entry(&base.esp, &entry)?
        .into_iter()
        .map(|(at, b)| (base.esp_offset + at, b))
        .collect();
    let mut bundle = crate::bundle::header(bundle_tar).to_vec();
    // The tar after its header, as bundle::write lays it out.
    bundle.extend_from_slice(bundle_tar);
    bundle.resize(bundle.len().div_ceil(512) * 512, 0);
    runs.push((base.bundle_a_offset, bundle));
    let disk = dir.join("disk.qcow2");
    crate::sys::run(
        std::process::Command::new("qemu-img")
            .args([
                "create",
                "-q",
                "-f",
                "qcow2",
                "-F",
                "raw",
                "-b",
                &base.backing,
            ])
            .arg(&disk),
    )?;
    let work = tempfile::tempdir()?;
    let mut io = std::process::Command::new("qemu-io");
    io.args(["-f", "qcow2"]).arg(&disk);
    for (i, (at, bytes)) in runs.iter().enumerate() {
        let src = work.path().join(format!("run-{i}"));
        std::fs::write(&src, bytes)?;
        io.arg("-c").arg(format!(
            "write -q -s {} {at} {}",
            src.display(),
            bytes.len()
        ));
    }
    crate::sys::run(&mut io).context("writing the node's bytes into its qcow2")?;
    Ok(cmdline)
}

/// Counts bytes and hashes them on their way to `inner`.
pub(crate) struct HashingWriter<W> {
    inner: W,
    hash: Sha256,
    size: u64,
}

impl<W: std::io::Write> HashingWriter<W> {
    pub(crate) fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
            size: 0,
        }
    }

    /// The writer back, with the sha256 (hex) and size of what went through.
    pub(crate) fn finish(self) -> (W, String, u64) {
        (self.inner, hex::encode(self.hash.finalize()), self.size)
    }
}

impl<W: std::io::Write> std::io::Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// A new file opened for reading and writing (fatfs reads what it writes).
pub(crate) fn rw_file(path: &Path) -> anyhow::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))
}

/// The agent baked into images: the running executable, without debug sections when
/// `strip` is at hand (a debug build carries hundreds of MiB of them).
fn agent_binary() -> anyhow::Result<Vec<u8>> {
    let exe = std::env::current_exe().context("locating the pigsty executable")?;
    let tmp = tempfile::NamedTempFile::new().context("scratch file for the agent")?;
    let stripped = crate::sys::has_tool("strip")
        && crate::sys::succeeds(
            std::process::Command::new("strip")
                .arg("--strip-debug")
                .arg("-o")
                .arg(tmp.path())
                .arg(&exe),
        );
    let path = if stripped {
        tmp.path().to_path_buf()
    } else {
        exe
    };
    std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
}

/// Every file under `dir`, as relative paths, sorted.
fn list_files(dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut names = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)?.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(rel) = p.strip_prefix(dir) {
                names.push(rel.to_string_lossy().into_owned());
            }
        }
    }
    names.sort();
    Ok(names)
}

/// sha256 (hex) and size of a file, read in 1 MiB blocks.
pub(crate) fn hash_file(path: &Path) -> anyhow::Result<(String, u64)> {
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        h.update(&buf[..n]);
    }
    Ok((hex::encode(h.finalize()), size))
}

/// The artifacts of a node hold its rendered configuration, passwords and keys
/// included, so each is readable by its owner only (0600). What holds no node data
/// keeps its mode: the manifest (names, sizes, digests), the kernel and its command
/// line, and the agent binary of a cloud-init seed (0755). Walks subdirectories (the
/// cloud-init seed, a PXE set) too.
fn owner_only(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        let path = entry.path();
        let kind = entry.file_type()?;
        if kind.is_dir() {
            owner_only(&path)?;
        } else if kind.is_file()
            && !["manifest.json", "vmlinuz", "cmdline", "pigsty"]
                .iter()
                .any(|n| entry.file_name() == *n)
        {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
                .with_context(|| format!("making {} private", path.display()))?;
        }
    }
    Ok(())
}

/// Move a finished build into place, replacing a previous one only at the end.
fn replace_dir(tmp: &Path, dest: &Path) -> anyhow::Result<()> {
    if dest.exists() {
        let old = tmp.with_extension("old");
        std::fs::rename(dest, &old).with_context(|| format!("moving aside {}", dest.display()))?;
        std::fs::rename(tmp, dest)
            .with_context(|| format!("moving {} into place", dest.display()))?;
        std::fs::remove_dir_all(&old).ok();
        return Ok(());
    }
    std::fs::rename(tmp, dest).with_context(|| format!("moving {} into place", dest.display()))
}
