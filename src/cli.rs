//! Command-line definitions (clap derive). Parsing only; `commands` does the work.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// Build immutable, bootable node images for PostgreSQL fleets from a Pigsty inventory.
#[derive(Debug, Parser)]
#[command(name = "pigsty", version, propagate_version = true)]
pub struct Cli {
    /// Inventory file. Default: $PIGSTY_INVENTORY, else ./pigsty.yml, else the built-in
    /// singleton inventory.
    #[arg(short = 'i', long, global = true, value_name = "INVENTORY")]
    pub inventory: Option<PathBuf>,

    /// The fleet PKI directory (CA and node certificates). Default: files/pki beside
    /// the inventory file (in the current directory for the built-in inventory).
    #[arg(long, global = true, env = "PIGSTY_PKI", value_name = "DIR")]
    pub pki: Option<PathBuf>,

    /// More log output on stderr (-v info, -vv debug, -vvv trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate or list the inventory.
    #[command(subcommand)]
    Inventory(InventoryCommand),
    /// Show the compiled plan of one node (or every node).
    Plan(PlanArgs),
    /// Write a node's overlay tree: configs, units and /etc/pigsty/node.json.
    Render(RenderArgs),
    /// Run on the node: the first-boot join, and where it stands.
    #[command(subcommand)]
    Agent(AgentCommand),
    /// The fleet's join state, as the nodes reported it to etcd (/pigsty/nodes/).
    Status(StatusArgs),
    /// What an inventory change does to each node (database objects, configuration,
    /// or a new image) and the order a rollout takes the nodes in.
    Diff(DiffArgs),
    /// Take the inventory to every node it changes, in a safe order, over SSH: database
    /// objects and configuration without a reboot, a new root by an A/B update.
    Rollout(RolloutArgs),
    /// Build bootable images of one node (or all nodes) into OUT/<nodename>/.
    BuildImage(BuildImageArgs),
    /// Boot server for the inventory: iPXE scripts by MAC that install each node's
    /// disk from its build (formats pxe and raw) and then boot it from disk, the
    /// builds' artifacts by sha256 (roots and bundles for `agent update` too), and
    /// with --dhcp Debian's dnsmasq as proxy DHCP and TFTP. Runs until SIGINT or
    /// SIGTERM.
    Serve(ServeArgs),
    /// Boot the inventory as qemu VMs on this machine (default: the built-in lab.yml).
    #[command(subcommand)]
    Lab(LabCommand),
    /// The fleet CA and node certificates, in files/pki beside the inventory.
    #[command(subcommand)]
    Pki(PkiCommand),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Where `build-image` wrote the builds (OUT/<nodename>/manifest.json).
    #[arg(long, value_name = "DIR", default_value = "out")]
    pub out: PathBuf,

    /// Address and port of the HTTP server.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:8080")]
    pub listen: std::net::SocketAddr,

    /// The address nodes reach the server at. Default: this machine's address on
    /// the route to each node.
    #[arg(long, value_name = "IP")]
    pub advertise: Option<std::net::IpAddr>,

    /// Start dnsmasq as proxy DHCP and TFTP on --interface (beside the network's
    /// own DHCP server).
    #[arg(long, requires = "interface")]
    pub dhcp: bool,

    /// The interface of the provisioning network (with --dhcp).
    #[arg(long, value_name = "IF")]
    pub interface: Option<String>,

    /// With --dhcp, give the inventory's machines (node_mac) their addresses too,
    /// for a network with no DHCP server of its own; no other machine gets one.
    #[arg(long, requires = "dhcp")]
    pub dhcp_addresses: bool,

    /// With --dhcp-addresses, addresses FIRST-LAST for machines the inventory does
    /// not know, so that they are shown the "unknown machine" script (without it
    /// they get no address at all).
    #[arg(long, value_name = "FIRST-LAST", requires = "dhcp_addresses")]
    pub dhcp_pool: Option<crate::serve::boot::DhcpPool>,

    /// Install NODE's disk again at its next network boot, even over its data.
    #[arg(long, value_name = "NODE")]
    pub reinstall: Vec<String>,

    /// Print what each node would get and exit.
    #[arg(long)]
    pub check: bool,

    /// Machine-readable JSON on stdout (with --check).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PkiCommand {
    /// The CA and every node certificate issued: names, dates.
    List(JsonFlag),
    /// Issue a node a new key pair and certificate (creating the CA if there is none).
    Issue(PkiIssueArgs),
}

#[derive(Debug, Args)]
pub struct PkiIssueArgs {
    /// The node: its nodename, IP or any name it answers to.
    #[arg(long, value_name = "NAME")]
    pub role: String,
}

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Build missing images, boot every node and wait until every agent is done.
    Up(LabUpArgs),
    /// Each node's VM, join state, Patroni role and REST API, etcd health and
    /// haproxy's primary, and whether the node is healthy.
    Status(LabStatusArgs),
    /// Stop every VM of the lab and remove its network namespace.
    Down(LabDownArgs),
    /// Reimage a node: power it off, fresh disk from its image, boot it (no wait).
    Reimage(LabNodeArgs),
    /// Power-cut a node (SIGKILL its VM).
    Kill(LabNodeArgs),
    /// Boot a node from its current disk (no wait).
    Start(LabNodeArgs),
    /// Wait until every agent reports done.
    Wait(LabWaitArgs),
    /// Print a node's journal (kept on the host, also after the VM is gone).
    Logs(LabLogsArgs),
    /// Run a command on a node as its admin user, over SSH with the lab's operator
    /// key (which `lab up` adds to every node's node_admin_pk_list).
    Ssh(LabSshArgs),
    /// Give a node its new image from the inventory given: its
    /// bundle (and root, when its packages changed) built and copied to it, `pigsty
    /// agent update --reboot` run there, then a wait until it reports the new slot
    /// kept.
    Update(LabUpdateArgs),
    /// Reinstall a node over the network, as bare metal with `pigsty serve`: an empty
    /// disk, the NIC booted first (qemu's iPXE), the node's build (raw and pxe)
    /// served from inside the lab's network with dnsmasq giving it its address; waits
    /// until its installer reports the disk written and it boots from it.
    Pxe(LabPxeArgs),
    /// Take a node's new bundle, built from the inventory, in without a reboot:
    /// copied to it and `pigsty agent apply` run there (refused when it needs a boot).
    Apply(LabNodeArgs),
    /// Which lab nodes run another image than the inventory compiles to (as the lab
    /// builds it: its CA, its operator key), from the plan digests they report.
    Diff(LabStatusArgs),
    /// `pigsty rollout` on the lab, from inside its network: the lab's operator key,
    /// CA, layer cache and extra trees; bundles built into <lab>/updates.
    Rollout(LabRolloutArgs),
}

#[derive(Debug, Args)]
pub struct LabSshArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// The node (nodename).
    pub node: String,

    /// The command, run by the admin user's shell.
    #[arg(trailing_var_arg = true, required = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LabUpdateArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// The node (nodename).
    pub node: String,

    /// Boots the new slot gets before the node falls back.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub tries: u32,

    /// How long each boot of the new slot may take to become healthy.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub trial_timeout: u64,

    /// Give up waiting for the node to keep its new slot after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 1500)]
    pub timeout: u64,

    /// Write the slot but do not reboot into it (nor wait).
    #[arg(long)]
    pub no_reboot: bool,

    /// Reboot into the new slot but do not wait for it to be kept.
    #[arg(long)]
    pub no_wait: bool,

    /// Ship this node bundle (over the node's running root) instead of one built
    /// from the inventory: a hand-made or a deliberately broken one, say.
    #[arg(long, value_name = "FILE")]
    pub bundle: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LabDir {
    /// The lab's directory: images, disks, console logs, lab.json. Default: $PIGSTY_LAB,
    /// else ~/.cache/pigsty/lab.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct LabUpArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// Copy this host directory over every node's root (repeatable): MinIO members need
    /// a server at DIR/usr/local/bin/minio.
    #[arg(long, value_name = "DIR")]
    pub extra_tree: Vec<PathBuf>,

    /// How qemu runs the guests.
    #[arg(long, value_enum, default_value = "auto")]
    pub accel: crate::lab::vm::Accel,

    /// Memory of each VM, MiB.
    #[arg(long, value_name = "MIB", default_value_t = 1536)]
    pub memory: u32,

    /// vCPUs of each VM.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub cpus: u32,

    /// Give up waiting for the agents after SECS, naming each node and step not done.
    #[arg(long, value_name = "SECS", default_value_t = 1200)]
    pub timeout: u64,

    /// Boot NODE from the network onto an empty disk (as `lab pxe` does) instead of
    /// from its image's disk (repeatable; a node already running is left as it is).
    #[arg(long, value_name = "NODE")]
    pub pxe: Vec<String>,
}

#[derive(Debug, Args)]
pub struct LabStatusArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabRolloutArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// Build, ask each node what changes and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Run up to N PostgreSQL clusters (or other nodes) side by side.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,

    /// Bound of each node's step and of each wait after it.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub timeout: u64,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabDownArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// Also remove the VMs' disks (consoles, journals and images stay).
    #[arg(long)]
    pub purge: bool,
}

#[derive(Debug, Args)]
pub struct LabNodeArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// The node: its nodename or IP.
    #[arg(value_name = "NODE")]
    pub node: String,
}

#[derive(Debug, Args)]
pub struct LabPxeArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// The node: its nodename or IP.
    #[arg(value_name = "NODE")]
    pub node: String,

    /// Give up after SECS without the install reported and the node back on its disk.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub timeout: u64,

    /// Also boot a machine of no node (an empty disk, a MAC the inventory does not
    /// give) from the network beside it: it must be shown the "unknown machine"
    /// script and given nothing else.
    #[arg(long)]
    pub stranger: bool,

    /// Print what was done as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LabLogsArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// The node: its nodename or IP.
    #[arg(value_name = "NODE")]
    pub node: String,

    /// Only this unit's entries (`patroni` means patroni.service; `kernel` the kernel's).
    #[arg(value_name = "UNIT")]
    pub unit: Option<String>,
}

#[derive(Debug, Args)]
pub struct LabWaitArgs {
    #[command(flatten)]
    pub dir: LabDir,

    /// Give up after SECS, naming each node and step not done.
    #[arg(long, value_name = "SECS", default_value_t = 1200)]
    pub timeout: u64,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["role", "all"])))]
pub struct BuildImageArgs {
    /// Any name of the node (see `plan --role`).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,

    /// Build every node of the inventory.
    #[arg(long)]
    pub all: bool,

    /// Output formats (repeat or comma-separate).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "rootfs")]
    pub format: Vec<crate::image::Format>,

    /// Output directory; each node's artifacts go to OUT/<nodename>/.
    #[arg(long, value_name = "DIR", default_value = "images-out")]
    pub out: PathBuf,

    /// Build from the layer cache alone; fail naming any missing layer.
    #[arg(long)]
    pub offline: bool,

    /// Copy this host directory over each node's root, last (repeatable): e.g. a
    /// MinIO-compatible server at DIR/usr/local/bin/minio, which Debian does not ship.
    #[arg(long, value_name = "DIR")]
    pub extra_tree: Vec<PathBuf>,

    /// Build even though the inventory keeps Pigsty's published default passwords
    /// (refused otherwise; `pigsty inventory passwords` makes strong ones).
    #[arg(long)]
    pub allow_default_passwords: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["role", "all"])))]
pub struct RenderArgs {
    /// Any name of the node (see `plan --role`).
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,

    /// Render every node, each into DIR/<nodename>/.
    #[arg(long)]
    pub all: bool,

    /// Directory to write the tree into (replaced whole, only once complete).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum InventoryCommand {
    /// Validate the inventory: exit 0 when valid, 2 when not (every error is listed).
    Check(JsonFlag),
    /// One row per node: ip, nodename, roles, modules.
    List(JsonFlag),
    /// Strong random passwords for every Pigsty default password the inventory still
    /// uses (as Pigsty's `configure -g`), as YAML for `all.vars`, with the lines that
    /// set a default explicitly.
    Passwords,
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["role", "all"])))]
pub struct PlanArgs {
    /// Any name of the node: pg instance (pg-test-1), etcd member (etcd-1), MinIO member
    /// (minio-1), infra name (infra-1), redis node, nodename, or IP.
    #[arg(long, value_name = "NAME")]
    pub role: Option<String>,

    /// Plan every node of the inventory.
    #[arg(long)]
    pub all: bool,

    /// Machine-readable JSON on stdout (an array with --all).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Join this node into its clusters, in order (run once by pigsty-firstboot.service).
    Firstboot(FirstbootArgs),
    /// Where the first-boot join stands on this node.
    Status(AgentStatusArgs),
    /// Size the machine-dependent settings (PostgreSQL memory, workers and WAL, the
    /// kernel's shared memory) for this machine: run at every boot by pigsty-tune.service.
    Tune(TuneArgs),
    /// Write a new shared root and node bundle into the A/B slot that is not running
    /// and make it the next boot, on trial: it is kept once the node is healthy on it,
    /// else the node falls back to the slot it runs now by itself.
    Update(UpdateArgs),
    /// Take in a new node bundle now, without a reboot, when every file that differs
    /// is one a running node can take in (configuration, database objects): the
    /// changed files are bound over the running ones, the services that read them
    /// reload or restart, the join runs again; the slot that is not running gets the
    /// same root and the new bundle for the next boot.
    Apply(ApplyArgs),
    /// Write this node's whole A/B disk (`disk.raw`) onto its disk, from its image
    /// booted over the network (pigsty-install.service runs it with --from-cmdline,
    /// as `pigsty serve` asks). A disk that holds a node's data is kept unless a
    /// reinstall is asked; the image's partition tables are written last, so a cut
    /// install never leaves a disk that boots half an image.
    Install(InstallArgs),
    /// Run every health check of this node's HAProxy now and set each server's
    /// health from its answer at once (through the admin socket), rather than after
    /// `rise` checks: what `pigsty rollout` asks of every member after a switchover.
    HaproxyCheck(HaproxyCheckArgs),
    /// Keep this boot's slot if it is on trial and the node is healthy within the
    /// trial's bound, else reboot so that the other slot boots (run at every boot by
    /// pigsty-bless.service).
    Bless(BlessArgs),
    /// Make this node's root from its slot and start systemd: the first process of a
    /// node booted from an A/B slot (the kernel runs it through /usr/lib/pigsty/init).
    /// Not for interactive use.
    #[command(name = "pre-init", hide = true)]
    PreInit,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// The shared root: an http(s) URL or a file, named `<sha256>.ext4` as
    /// `build-image --format bundle` writes it under `_roots/` (else give
    /// --root-sha256). Not fetched when the running slot holds the same root;
    /// omitted, the running slot's root (a change of the node's files only).
    #[arg(long, value_name = "URL|FILE")]
    pub root: Option<String>,

    /// The root's sha256, when its name does not say it.
    #[arg(long, value_name = "HEX")]
    pub root_sha256: Option<String>,

    /// The node bundle (`<out>/<node>/bundle.tar` of `build-image --format bundle`).
    #[arg(long, value_name = "URL|FILE")]
    pub bundle: String,

    /// The bundle's sha256, checked when given.
    #[arg(long, value_name = "HEX")]
    pub bundle_sha256: Option<String>,

    /// Boots the new slot gets before systemd-boot gives up on it.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub tries: u32,

    /// How long each boot of the new slot may take to become healthy before it
    /// reboots (the bound `agent bless` keeps).
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub trial_timeout: u64,

    /// Reboot into the new slot once it is written.
    #[arg(long)]
    pub reboot: bool,

    /// Give up one HTTP request (the whole transfer) after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub request_timeout: u64,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Read what to do from the kernel command line (`pigsty.install=URL
    /// pigsty.install.sha256=HEX [pigsty.install.map=URL pigsty.install.map.sha256=HEX]
    /// [pigsty.install.report=URL] [pigsty.disk=DEV] [pigsty.reinstall]`); nothing
    /// to do when it names no install.
    #[arg(long, conflicts_with_all = ["image", "sha256", "map", "map_sha256"])]
    pub from_cmdline: bool,

    /// The disk image: an http(s) URL or a file (`disk.raw` of `build-image --format raw`).
    #[arg(
        long,
        value_name = "URL|FILE",
        required_unless_present = "from_cmdline"
    )]
    pub image: Option<String>,

    /// The image's sha256, checked before the disk is made bootable.
    #[arg(long, value_name = "HEX", required_unless_present = "from_cmdline")]
    pub sha256: Option<String>,

    /// The disk to write. Default: the first non-removable disk.
    #[arg(long, value_name = "DEV")]
    pub disk: Option<PathBuf>,

    /// The image's block map (`disk.map.json` beside `disk.raw`): only its pieces
    /// of data are fetched, the rest of the disk is zeroed by the disk.
    #[arg(long, value_name = "URL|FILE", requires = "map_sha256")]
    pub map: Option<String>,

    /// The block map's sha256.
    #[arg(long, value_name = "HEX", requires = "map")]
    pub map_sha256: Option<String>,

    /// Write it even over a disk that holds a pigsty-data partition.
    #[arg(long)]
    pub reinstall: bool,

    /// POST what was done (JSON) to this URL.
    #[arg(long, value_name = "URL")]
    pub report: Option<String>,

    /// Reboot once the disk is written (or kept).
    #[arg(long)]
    pub reboot: bool,

    /// Give up one HTTP request (the whole transfer) after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 3600)]
    pub request_timeout: u64,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ApplyArgs {
    /// The node bundle (`<out>/<node>/bundle.tar` of `build-image --format bundle`).
    #[arg(long, value_name = "URL|FILE")]
    pub bundle: String,

    /// The bundle's sha256, checked when given.
    #[arg(long, value_name = "HEX")]
    pub bundle_sha256: Option<String>,

    /// Boots the slot written for the next boot gets before systemd-boot gives up on it.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub tries: u32,

    /// How long that boot may take to become healthy.
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub trial_timeout: u64,

    /// Bound of each wait of the join that runs again.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub timeout: u64,

    /// Give up one HTTP request (the whole transfer) after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 600)]
    pub request_timeout: u64,

    /// Only compare with the running bundle: print what differs and what would take
    /// it in (or that only a boot would), change nothing.
    #[arg(long)]
    pub check: bool,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BlessArgs {
    /// Seconds to wait for the node to become healthy when the trial's entry names
    /// no bound (pigsty.trial=SECS).
    #[arg(long, value_name = "SECS", default_value_t = 1800)]
    pub timeout: u64,

    /// Say what would be done; change nothing and never reboot.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct HaproxyCheckArgs {
    /// HAProxy's configuration (its `listen` sections with HTTP checks are read).
    #[arg(long, value_name = "FILE", default_value = "/etc/haproxy/haproxy.cfg")]
    pub config: PathBuf,

    /// HAProxy's admin socket.
    #[arg(long, value_name = "PATH", default_value = "/run/haproxy/admin.sock")]
    pub socket: PathBuf,

    /// Each check's bound, seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3)]
    pub timeout: u64,

    /// First wait until SERVER (an instance, as HAProxy names its servers) answers 200
    /// to its `/primary` check, asked every half second, then check every server: a
    /// rollout starts this on each member just before a switchover to SERVER.
    #[arg(long, value_name = "SERVER")]
    pub until_primary: Option<String>,

    /// How long --until-primary waits at most, seconds.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 120,
        requires = "until_primary"
    )]
    pub within: u64,

    /// Print what was set as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct TuneArgs {
    /// The node's root directory: node.json and the rendered configs are under it; the
    /// kernel is set only when it is `/`.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

#[derive(Debug, Args)]
pub struct FirstbootArgs {
    /// The node's root directory: node.json, the state and env overrides are under it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// Give up any single wait (a peer, a leader, a healthy service) after SECS.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = 600,
        env = "PIGSTY_AGENT_TIMEOUT"
    )]
    pub timeout: u64,

    /// Give up one request to a peer after SECS.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub request_timeout: u64,
}

#[derive(Debug, Args)]
pub struct AgentStatusArgs {
    /// The node's root directory.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,

    /// The state file as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Compare with the inventory the nodes were built from (an earlier version of
    /// this one; its file name is not a change), offline. Default: with the image each
    /// node reports running to etcd (/pigsty/nodes/<name>).
    #[arg(long, value_name = "OLD")]
    pub against: Option<PathBuf>,

    /// etcd client URL to read the nodes' reports from (repeatable; without
    /// --against). Default: the inventory's etcd members.
    #[arg(long, value_name = "URL", conflicts_with = "against")]
    pub endpoint: Vec<String>,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,

    /// Exit 1 when anything changes, 0 when nothing does (as `git diff --exit-code`).
    #[arg(long)]
    pub exit_code: bool,
}

#[derive(Debug, Args)]
pub struct RolloutArgs {
    /// Build, ask each node what changes and print the plan; change nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Run up to N PostgreSQL clusters (or other nodes) side by side; etcd and MinIO
    /// members always go one at a time.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub parallel: usize,

    /// The operator's SSH private key (its public half in node_admin_pk_list).
    #[arg(long, value_name = "FILE", default_value = "~/.ssh/id_ed25519")]
    pub identity: String,

    #[arg(long, value_name = "PORT", default_value_t = 22)]
    pub ssh_port: u16,

    /// Where the artifact server that nodes fetch bundles and roots from listens.
    #[arg(long, value_name = "ADDR:PORT", default_value = "0.0.0.0:0")]
    pub listen: std::net::SocketAddr,

    /// Where bundles and roots are built.
    #[arg(long, value_name = "DIR", default_value = "images-out")]
    pub out: PathBuf,

    /// Build from the layer cache alone.
    #[arg(long)]
    pub offline: bool,

    /// As `build-image --extra-tree` (the nodes' images must have been built with it).
    #[arg(long, value_name = "DIR")]
    pub extra_tree: Vec<PathBuf>,

    /// A replica is back when it streams with at most this lag.
    #[arg(long, value_name = "BYTES", default_value_t = 16 << 20)]
    pub max_lag: u64,

    /// Bound of each node's step and of each wait after it.
    #[arg(long, value_name = "SECS", default_value_t = 900)]
    pub timeout: u64,

    /// etcd client URL to read the nodes' reports from (repeatable). Default: the
    /// inventory's etcd members.
    #[arg(long, value_name = "URL")]
    pub endpoint: Vec<String>,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// etcd client URL to read from (repeatable). Default: the inventory's etcd members.
    #[arg(long, value_name = "URL")]
    pub endpoint: Vec<String>,

    /// Machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn plan_needs_a_target() {
        assert!(Cli::try_parse_from(["pigsty", "plan"]).is_err());
        assert!(Cli::try_parse_from(["pigsty", "plan", "--role", "a", "--all"]).is_err());
        let cli = Cli::try_parse_from([
            "pigsty",
            "-i",
            "x.yml",
            "plan",
            "--role",
            "pg-test-1",
            "--json",
        ])
        .unwrap();
        assert_eq!(cli.inventory, Some(PathBuf::from("x.yml")));
    }
}
