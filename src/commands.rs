//! What each command does: load the inventory, call the library, print the result.
//! stdout carries data (tables, JSON); findings and logs go to stderr.

use std::io::Write;

use anyhow::Context;
use rayon::prelude::*;
use serde::Serialize;

use crate::Error;
use crate::cli::{BuildImageArgs, Cli, Command, InventoryCommand, PlanArgs, RenderArgs};
use crate::compile::{Compiled, compile};
use crate::diag::{self, Finding};
use crate::inventory::{self, LoadError, Loaded, Source};
use crate::model::{Fleet, Node};
use crate::plan::NodePlan;
use crate::render::RenderedFile;

pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), Error> {
    let env = std::env::var("PIGSTY_INVENTORY").ok();
    let cwd = std::env::current_dir().context("reading the current directory")?;
    let mut source = Source::locate(cli.inventory.as_deref(), env.as_deref(), &cwd);
    // The lab boots the built-in lab inventory unless told otherwise.
    if matches!(cli.command, Command::Lab(_))
        && cli.inventory.is_none()
        && env.as_deref().is_none_or(str::is_empty)
    {
        source = Source::BuiltInLab;
    }
    tracing::info!(inventory = %source.name(), "loading inventory");
    match &cli.command {
        Command::Inventory(InventoryCommand::Check(flag)) => check(&source, flag.json, out),
        Command::Inventory(InventoryCommand::Passwords) => {
            let loaded = load(&source)?;
            passwords(&loaded.fleet, out)
        }
        Command::Inventory(InventoryCommand::List(flag)) => {
            let loaded = load(&source)?;
            list(&loaded.fleet, flag.json, out)
        }
        Command::Plan(args) => {
            let loaded = load(&source)?;
            plan(
                certified(&loaded.fleet, &pki_dir(cli, &source, &cwd), false)?.as_ref(),
                args,
                out,
            )
        }
        Command::Render(args) => {
            let loaded = load(&source)?;
            render(
                certified(&loaded.fleet, &pki_dir(cli, &source, &cwd), false)?.as_ref(),
                args,
                out,
            )
        }
        Command::Agent(crate::cli::AgentCommand::Firstboot(args)) => firstboot(args, out),
        Command::Agent(crate::cli::AgentCommand::Status(args)) => agent_status(args, out),
        Command::Agent(crate::cli::AgentCommand::Update(args)) => agent_update(args, out),
        Command::Agent(crate::cli::AgentCommand::Install(args)) => agent_install(args, out),
        Command::Agent(crate::cli::AgentCommand::Bless(args)) => agent_bless(args, out),
        Command::Agent(crate::cli::AgentCommand::Apply(args)) => agent_apply(args, out),
        Command::Agent(crate::cli::AgentCommand::PreInit) => crate::agent::preinit::run(),
        Command::Agent(crate::cli::AgentCommand::HaproxyCheck(args)) => {
            let timeout = std::time::Duration::from_secs(args.timeout.max(1));
            if let Some(server) = &args.until_primary {
                let took = crate::agent::haproxy::wait_primary(
                    &args.config,
                    server,
                    timeout,
                    std::time::Duration::from_secs(args.within),
                )?;
                tracing::info!(
                    "{server} answered as primary after {:.1} s",
                    took.as_secs_f64()
                );
            }
            let set = crate::agent::haproxy::check_now(&args.config, &args.socket, timeout)?;
            if args.json {
                let json = serde_json::to_string_pretty(&set).context("writing JSON")?;
                writeln!(out, "{json}").context("writing to stdout")?;
            } else {
                for s in &set {
                    writeln!(
                        out,
                        "{}/{}: {} (check answered {})",
                        s.service, s.server, s.health, s.answer
                    )
                    .context("writing to stdout")?;
                }
            }
            Ok(())
        }
        Command::Agent(crate::cli::AgentCommand::Tune(args)) => {
            let tuned = crate::agent::tune::tune(&args.root, None)?;
            out.write_all(tuned.summary().as_bytes())
                .context("writing to stdout")?;
            Ok(())
        }
        Command::Status(args) => {
            let loaded = load(&source)?;
            let dir = pki_dir(cli, &source, &cwd);
            fleet_status(
                certified(&loaded.fleet, &dir, false)?.as_ref(),
                &dir,
                args,
                out,
            )
        }
        Command::Diff(args) => {
            let loaded = load(&source)?;
            diff(&loaded.fleet, &pki_dir(cli, &source, &cwd), args, out)
        }
        Command::Rollout(args) => {
            let loaded = load(&source)?;
            rollout(&loaded.fleet, &pki_dir(cli, &source, &cwd), args, out)
        }
        Command::BuildImage(args) => {
            let loaded = load(&source)?;
            check_build_out(&loaded.fleet, args)?;
            build_image(
                certified(&loaded.fleet, &pki_dir(cli, &source, &cwd), true)?.as_ref(),
                args,
                out,
            )
        }
        Command::Serve(args) => {
            let loaded = load(&source)?;
            serve(
                certified(&loaded.fleet, &pki_dir(cli, &source, &cwd), false)?.as_ref(),
                args,
                out,
            )
        }
        Command::Pki(cmd) => {
            let loaded = load(&source)?;
            pki(&loaded.fleet, &pki_dir(cli, &source, &cwd), cmd, out)
        }
        Command::Lab(cmd) => lab(&source, cli.pki.as_deref(), cmd, out),
    }
}

/// Where the fleet's PKI lives: `files/pki` beside the inventory file (Pigsty's
/// place), or in the current directory for the built-in inventories.
fn pki_dir(cli: &Cli, source: &Source, cwd: &std::path::Path) -> std::path::PathBuf {
    if let Some(dir) = cli.pki.as_ref().filter(|d| !d.as_os_str().is_empty()) {
        return dir.clone();
    }
    match source {
        Source::File(path) => crate::pki::dir_beside(path),
        _ => cwd.join("files").join("pki"),
    }
}

/// The fleet with each node's certificate from the fleet CA: created at the first
/// build (`create`), else used when it exists; without one, nodes serve the
/// snakeoil pair they make at first boot.
fn certified<'f>(
    fleet: &'f Fleet,
    dir: &std::path::Path,
    create: bool,
) -> Result<std::borrow::Cow<'f, Fleet>, Error> {
    let pki = if create {
        Some(crate::pki::Pki::open_or_create(dir)?)
    } else {
        crate::pki::Pki::open(dir)?
    };
    match pki {
        Some(pki) => Ok(std::borrow::Cow::Owned(crate::pki::with_certs(
            fleet, &pki, create,
        )?)),
        None => Ok(std::borrow::Cow::Borrowed(fleet)),
    }
}

fn pki(
    fleet: &Fleet,
    dir: &std::path::Path,
    cmd: &crate::cli::PkiCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    use crate::cli::PkiCommand as C;
    match cmd {
        C::List(flag) => {
            let Some(pki) = crate::pki::Pki::open(dir)? else {
                return Err(Error::Usage(format!(
                    "{}: no CA yet (build-image or `pki issue` creates it)",
                    dir.display()
                )));
            };
            let issued = pki.list()?;
            if flag.json {
                return write_json(out, &issued);
            }
            writeln!(out, "CA {}", dir.join("ca/ca.crt").display()).context("writing")?;
            for i in issued {
                let current = fleet
                    .find(&i.node)
                    .is_ok_and(|n| crate::pki::sans_of(n) == i.sans);
                writeln!(
                    out,
                    "{}\t{}\tuntil {}{}",
                    i.node,
                    i.sans.join(","),
                    i.not_after,
                    if current {
                        ""
                    } else {
                        "\t(names differ from the inventory: re-issued at the next build)"
                    }
                )
                .context("writing to stdout")?;
            }
            Ok(())
        }
        C::Issue(args) => {
            let node = fleet
                .find(&args.role)
                .map_err(|e| Error::Usage(e.to_string()))?;
            let pki = crate::pki::Pki::open_or_create(dir)?;
            pki.issue(node)?;
            let i = pki
                .issued(&node.nodename)?
                .context("the certificate just issued")?;
            writeln!(
                out,
                "{}\t{}\tuntil {}",
                i.node,
                i.sans.join(","),
                i.not_after
            )
            .context("writing to stdout")?;
            Ok(())
        }
    }
}

fn lab_dir(d: &crate::cli::LabDir) -> std::path::PathBuf {
    d.dir.clone().unwrap_or_else(crate::lab::default_dir)
}

fn lab(
    source: &Source,
    pki: Option<&std::path::Path>,
    cmd: &crate::cli::LabCommand,
    out: &mut dyn Write,
) -> Result<(), Error> {
    use crate::cli::LabCommand as C;
    use crate::lab::Lab;
    match cmd {
        C::Up(args) => {
            let loaded = load(source)?;
            let opts = crate::lab::UpOptions {
                dir: lab_dir(&args.dir),
                extra_trees: args.extra_tree.clone(),
                accel: args.accel,
                memory_mib: args.memory,
                cpus: args.cpus,
                timeout: std::time::Duration::from_secs(args.timeout),
                cache: crate::image::layer::cache_dir(),
                etcd_access: None,
                pxe: args.pxe.clone(),
            };
            if let Some(tree) = opts.extra_trees.iter().find(|d| !d.is_dir()) {
                return Err(Error::Usage(format!(
                    "--extra-tree {}: not a directory",
                    tree.display()
                )));
            }
            // The lab's own fleet CA (in the lab directory unless --pki says where):
            // its nodes serve certificates from it, as built images do.
            let pki_dir = pki.map_or_else(|| opts.dir.join("pki"), std::path::Path::to_path_buf);
            let fleet = certified(&loaded.fleet, &pki_dir, true)?;
            let mut opts = opts;
            if let Some(pki) = crate::pki::Pki::open(&pki_dir)? {
                opts.etcd_access = crate::pki::operator_access(&fleet, &pki)?;
            }
            let (lab, ready) = crate::lab::up(&fleet, &opts).map_err(|e| {
                if e.to_string().contains("--extra-tree") {
                    Error::Usage(format!("{e:#}"))
                } else {
                    Error::Runtime(e)
                }
            })?;
            writeln!(
                out,
                "lab up: {} node(s) done in {:.1} s (first qemu start to last agent done)",
                lab.state.nodes.len(),
                ready.as_secs_f64()
            )
            .context("writing to stdout")?;
            let (rows, legs) = crate::lab::net::within(&lab.state.netns, || {
                Ok((crate::lab::status(&lab)?, lab.legs()?))
            })?;
            lab_table(&rows, out)?;
            writeln!(
                out,
                "\nwhere the time went (s; boot is qemu start to the agent's first step):\n{}",
                crate::lab::legs_table(&legs)
            )
            .context("writing to stdout")?;
            Ok(())
        }
        C::Status(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let rows = crate::lab::net::within(&lab.state.netns, || crate::lab::status(&lab))?;
            if !args.json {
                writeln!(out, "timing: {}", lab.state.timing).context("writing to stdout")?;
            }
            if args.json {
                return write_json(out, &rows);
            }
            lab_table(&rows, out)
        }
        C::Down(args) => {
            let stopped = crate::lab::down(&lab_dir(&args.dir), args.purge)?;
            writeln!(
                out,
                "lab down: stopped {}",
                if stopped.is_empty() {
                    "nothing".to_string()
                } else {
                    stopped.join(", ")
                }
            )
            .context("writing to stdout")?;
            Ok(())
        }
        C::Reimage(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let pid = lab.reimage(&args.node)?;
            writeln!(out, "{}: reimaged, booting (qemu pid {pid})", args.node)
                .context("writing to stdout")?;
            Ok(())
        }
        C::Kill(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let killed = lab.kill(&args.node)?;
            writeln!(
                out,
                "{}: {}",
                args.node,
                if killed {
                    "powered off"
                } else {
                    "was not running"
                }
            )
            .context("writing to stdout")?;
            Ok(())
        }
        C::Start(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let pid = lab.start(&args.node)?;
            writeln!(out, "{}: booting (qemu pid {pid})", args.node)
                .context("writing to stdout")?;
            Ok(())
        }
        C::Wait(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let took = crate::lab::net::within(&lab.state.netns, || {
                lab.wait_done(std::time::Duration::from_secs(args.timeout))
            })?;
            writeln!(out, "every node done ({:.1} s)", took.as_secs_f64())
                .context("writing to stdout")?;
            Ok(())
        }
        C::Ssh(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let out_ = crate::lab::net::within(&lab.state.netns, || {
                lab.ssh(&args.node, &args.command.join(" "), None)
            })?;
            out.write_all(&out_.stdout).context("writing to stdout")?;
            std::io::stderr().write_all(&out_.stderr).ok();
            if !out_.status.success() {
                return Err(Error::Runtime(anyhow::anyhow!(
                    "{}: the command exited with {}",
                    args.node,
                    out_.status
                )));
            }
            Ok(())
        }
        C::Update(args) => {
            let (lab, fleet) = lab_fleet(source, pki, &lab_dir(&args.dir))?;
            let opts = crate::lab::update::UpdateOptions {
                tries: args.tries,
                trial_timeout: args.trial_timeout,
                reboot: !args.no_reboot,
                bundle: args.bundle.clone(),
            };
            let done = crate::lab::net::within(&lab.state.netns, || {
                lab.update(&fleet, &args.node, &opts)
            })?;
            writeln!(out, "{}: {}", args.node, done.said).context("writing to stdout")?;
            if opts.reboot && !args.no_wait {
                let took = crate::lab::net::within(&lab.state.netns, || {
                    lab.wait_slot_kept(
                        &args.node,
                        &done.bundle,
                        std::time::Duration::from_secs(args.timeout),
                    )
                })?;
                writeln!(
                    out,
                    "{}: kept its new slot (bundle sha256:{}) {:.0} s after the update",
                    args.node,
                    done.bundle,
                    took.as_secs_f64()
                )
                .context("writing to stdout")?;
            }
            Ok(())
        }
        C::Pxe(args) => {
            let (lab, fleet) = lab_fleet(source, pki, &lab_dir(&args.dir))?;
            let done = lab.pxe(
                &fleet,
                &args.node,
                std::time::Duration::from_secs(args.timeout.max(1)),
                args.stranger,
            )?;
            if args.json {
                let json = serde_json::to_string_pretty(&done).context("writing JSON")?;
                writeln!(out, "{json}").context("writing to stdout")?;
                return Ok(());
            }
            if let Some(s) = &done.stranger {
                writeln!(
                    out,
                    "a machine of no node ({}, {}) asked {:.0} s after power-on and was shown \
                     the unknown-machine script, nothing else ({} request(s))",
                    s.mac,
                    s.ip,
                    s.asked_secs,
                    s.requests.len()
                )
                .context("writing to stdout")?;
            }
            writeln!(
                out,
                "{}: installed over the network ({} MiB disk) {:.0} s after power-on, \
                 booting from its disk after {:.0} s; `pigsty lab wait` for its join",
                done.node,
                done.disk_bytes >> 20,
                done.installed_secs,
                done.to_disk_secs
            )
            .context("writing to stdout")?;
            Ok(())
        }
        C::Apply(args) => {
            let (lab, fleet) = lab_fleet(source, pki, &lab_dir(&args.dir))?;
            let (bundle, said) =
                crate::lab::net::within(&lab.state.netns, || lab.apply(&fleet, &args.node))?;
            writeln!(
                out,
                "{}: took in bundle sha256:{bundle} without a reboot",
                args.node
            )
            .context("writing to stdout")?;
            writeln!(out, "{said}").context("writing to stdout")?;
            Ok(())
        }
        C::Diff(args) => {
            let (lab, fleet) = lab_fleet(source, pki, &lab_dir(&args.dir))?;
            let compiled = compile_all(&fleet, &fleet.source)?;
            let reported = crate::lab::net::within(&lab.state.netns, || {
                crate::agent::read_fleet(
                    &lab.etcd_endpoints(),
                    std::time::Duration::from_secs(5),
                    &lab.etcd_access()?,
                )
            })?;
            let digests = reported
                .into_iter()
                .map(|(name, state)| (name, state.plan_digest))
                .collect();
            let rows = crate::diff::running(&crate::diff::sides(&fleet, &compiled), &digests);
            if args.json {
                return write_json(out, &rows);
            }
            out.write_all(crate::diff::describe_running(&rows).as_bytes())
                .context("writing to stdout")?;
            Ok(())
        }
        C::Rollout(args) => {
            let (lab, fleet) = lab_fleet(source, pki, &lab_dir(&args.dir))?;
            let compiled = compile_all(&fleet, &fleet.source)?;
            // Every node's bundle and root built out here, where a root not cached yet
            // can be fetched; inside the lab's network the rollout finds them cached.
            let mut opts = lab.rollout_options(&fleet, &compiled)?;
            opts.dry_run = args.dry_run;
            opts.parallel = args.parallel;
            opts.node_timeout = std::time::Duration::from_secs(args.timeout.max(1));
            let report = crate::lab::net::within(&lab.state.netns, || {
                crate::rollout::rollout(
                    &fleet,
                    &compiled,
                    &crate::rollout::Reach {
                        endpoints: lab.etcd_endpoints(),
                        access: lab.etcd_access()?,
                    },
                    &opts,
                )
            })?;
            print_rollout(&report, args.json, out)
        }
        C::Logs(args) => {
            let lab = Lab::open(&lab_dir(&args.dir))?;
            let text = crate::lab::logs(&lab, &args.node, args.unit.as_deref())?;
            out.write_all(text.as_bytes())
                .context("writing to stdout")?;
            Ok(())
        }
    }
}

/// A lab and the inventory's fleet as the lab builds it: the lab's CA (created when
/// missing) and its operator key, which every lab image carries.
fn lab_fleet(
    source: &Source,
    pki: Option<&std::path::Path>,
    dir: &std::path::Path,
) -> Result<(crate::lab::Lab, Fleet), Error> {
    let lab = crate::lab::Lab::open(dir)?;
    let loaded = load(source)?;
    let pki_dir = pki.map_or_else(|| dir.join("pki"), std::path::Path::to_path_buf);
    let fleet = certified(&loaded.fleet, &pki_dir, true)?;
    let key = crate::lab::update::ensure_ssh_key(dir)?;
    Ok((lab, crate::lab::update::with_operator_key(&fleet, &key)))
}

fn lab_table(rows: &[crate::lab::StatusRow], out: &mut dyn Write) -> Result<(), Error> {
    let table: Vec<[String; 12]> = rows
        .iter()
        .map(|r| {
            [
                r.node.clone(),
                r.ip.clone(),
                r.vm.clone(),
                r.cpu.map(|c| format!("{c:.2}")).unwrap_or_default(),
                r.join.clone(),
                r.role.clone(),
                r.state.clone(),
                r.lag.map(|l| l.to_string()).unwrap_or_default(),
                r.rest.clone(),
                r.etcd.clone(),
                r.haproxy.clone(),
                r.health.clone(),
            ]
        })
        .collect();
    write_table(
        out,
        [
            "NODE", "IP", "VM", "CPU", "JOIN", "ROLE", "STATE", "LAG", "REST", "ETCD", "HAPROXY",
            "HEALTH",
        ],
        &table,
    )
}

/// Render an error for stderr: findings with snippets, or a one-line message.
pub fn describe_error(err: &Error) -> String {
    match err {
        Error::Invalid(inv) => {
            let errors = inv.findings.iter().filter(|f| f.is_error()).count();
            format!(
                "{}error: {} is invalid: {errors} error(s)\n",
                diag::render(&inv.findings, inv.text.as_deref()),
                inv.file
            )
        }
        Error::Usage(msg) => format!("error: {msg}\n"),
        Error::Render(e) => format!("error: {e}\n"),
        Error::Runtime(e) => format!("error: {e:#}\n"),
        Error::Differs => String::new(),
    }
}

fn load(source: &Source) -> Result<Loaded, Error> {
    let loaded = load_quiet(source)?;
    if !loaded.warnings.is_empty() {
        eprint!("{}", diag::render(&loaded.warnings, Some(&loaded.text)));
    }
    Ok(loaded)
}

/// Load an inventory; its warnings are the caller's to show.
fn load_quiet(source: &Source) -> Result<Loaded, Error> {
    inventory::load(source).map_err(|e| match e {
        LoadError::Invalid(inv) => Error::Invalid(inv),
        io @ LoadError::Io { .. } => Error::Runtime(io.into()),
        refused @ LoadError::Refused { .. } => Error::Usage(refused.to_string()),
    })
}

/// A refusal found while rendering a node, as a finding at the variable it names
/// (else at the host key) of the inventory.
fn render_finding(fleet: &Fleet, node: &Node, e: &crate::render::RenderError) -> Finding {
    let (key, loc) = node.source.locate(&e.reason);
    Finding::error(
        &fleet.source,
        loc,
        key.unwrap_or(node.nodename.as_str()),
        format!("{} cannot be written for {}: {}", e.file, e.node, e.reason),
    )
}

/// Compile one node; a value its files cannot carry is exit 2 at its inventory line.
fn compile_at(fleet: &Fleet, node: &Node) -> Result<Compiled, Error> {
    compile(fleet, node).map_err(|e| {
        Error::Invalid(diag::Invalid {
            file: fleet.source.clone(),
            findings: vec![render_finding(fleet, node, &e)],
            text: std::fs::read_to_string(&fleet.source).ok(),
        })
    })
}

/// Load an inventory and render every node, so `inventory check` refuses what a
/// render would: each failure is a finding at its line.
fn load_and_render(source: &Source) -> Result<Loaded, LoadError> {
    let loaded = inventory::load(source)?;
    let fleet = &loaded.fleet;
    let mut errors: Vec<Finding> = fleet
        .nodes
        .par_iter()
        .filter_map(|n| {
            compile(fleet, n)
                .err()
                .map(|e| render_finding(fleet, n, &e))
        })
        .collect();
    if errors.is_empty() {
        return Ok(loaded);
    }
    errors.sort();
    let mut findings = loaded.warnings;
    findings.extend(errors);
    Err(LoadError::Invalid(diag::Invalid {
        file: loaded.fleet.source.clone(),
        findings,
        text: Some(loaded.text),
    }))
}

fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> Result<(), Error> {
    serde_json::to_writer_pretty(&mut *out, value).context("writing JSON to stdout")?;
    writeln!(out).context("writing to stdout")?;
    Ok(())
}

#[derive(Serialize)]
struct CheckReport<'a> {
    file: String,
    valid: bool,
    nodes: usize,
    errors: Vec<&'a Finding>,
    warnings: Vec<&'a Finding>,
}

fn check(source: &Source, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let result = load_and_render(source);
    let (findings, nodes, invalid) = match &result {
        Ok(l) => (&l.warnings, l.fleet.nodes.len(), None),
        Err(LoadError::Invalid(inv)) => (&inv.findings, 0, Some(inv)),
        Err(io @ LoadError::Io { .. }) => return Err(Error::Runtime(anyhow::anyhow!("{io}"))),
        Err(refused @ LoadError::Refused { .. }) => {
            return Err(Error::Usage(refused.to_string()));
        }
    };
    if json {
        let (errors, warnings) = findings.iter().partition(|f| f.is_error());
        write_json(
            out,
            &CheckReport {
                file: source.name(),
                valid: invalid.is_none(),
                nodes,
                errors,
                warnings,
            },
        )?;
        return match invalid {
            // The report is already on stdout; exit 2 without repeating it on stderr.
            Some(inv) => Err(Error::Usage(format!("{} is invalid", inv.file))),
            None => Ok(()),
        };
    }
    match result {
        Ok(loaded) => {
            if !loaded.warnings.is_empty() {
                eprint!("{}", diag::render(&loaded.warnings, Some(&loaded.text)));
            }
            writeln!(
                out,
                "{}: valid, {nodes} node(s), {} warning(s)",
                source.name(),
                loaded.warnings.len()
            )
            .context("writing to stdout")?;
            Ok(())
        }
        Err(LoadError::Invalid(inv)) => Err(Error::Invalid(inv)),
        Err(io) => Err(Error::Runtime(io.into())),
    }
}

#[derive(Serialize)]
struct ListRow<'a> {
    ip: String,
    nodename: &'a str,
    node_cluster: &'a str,
    roles: Vec<String>,
    modules: Vec<&'static str>,
    names: Vec<String>,
}

fn list(fleet: &Fleet, json: bool, out: &mut dyn Write) -> Result<(), Error> {
    let rows: Vec<ListRow> = fleet
        .nodes
        .iter()
        .map(|n| ListRow {
            ip: n.ip.to_string(),
            nodename: &n.nodename,
            node_cluster: &n.node_cluster,
            roles: n.roles(),
            modules: n.modules.iter().map(|m| m.as_str()).collect(),
            names: n.names(),
        })
        .collect();
    if json {
        return write_json(out, &rows);
    }
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.ip.clone(),
                r.nodename.to_string(),
                r.roles.join(","),
                r.modules.join(","),
            ]
        })
        .collect();
    write_table(out, ["IP", "NODENAME", "ROLES", "MODULES"], &table)
}

fn write_table<const N: usize>(
    out: &mut dyn Write,
    head: [&str; N],
    rows: &[[String; N]],
) -> Result<(), Error> {
    let mut widths = head.map(str::len);
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let mut line = |cells: Vec<&str>| -> Result<(), Error> {
        let text: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        writeln!(out, "{}", text.join("  ").trim_end()).context("writing to stdout")?;
        Ok(())
    };
    line(head.to_vec())?;
    for row in rows {
        line(row.iter().map(String::as_str).collect())?;
    }
    Ok(())
}

/// The node `--role` names, or every node.
fn selected<'a>(fleet: &'a Fleet, role: Option<&str>) -> Result<Vec<&'a Node>, Error> {
    match role {
        Some(name) => Ok(vec![
            fleet.find(name).map_err(|e| Error::Usage(e.to_string()))?,
        ]),
        None => Ok(fleet.nodes.iter().collect()),
    }
}

fn plan(fleet: &Fleet, args: &PlanArgs, out: &mut dyn Write) -> Result<(), Error> {
    let nodes = selected(fleet, args.role.as_deref())?;
    // Nodes compile independently: spread them over the cores.
    let plans: Vec<NodePlan> = nodes
        .into_par_iter()
        .map(|n| {
            let compiled = compile_at(fleet, n)?;
            for w in &compiled.warnings {
                tracing::warn!("{w}");
            }
            Ok(compiled.plan)
        })
        .collect::<Result<_, Error>>()?;
    match (args.json, args.all) {
        (true, true) => write_json(out, &plans),
        (true, false) => write_json(out, &plans[0]),
        (false, _) => plans.iter().try_for_each(|p| describe_plan(p, out)),
    }
}

/// `pigsty diff`: against another inventory (`--against`, offline), else against what
/// the nodes report to etcd.
fn diff(
    fleet: &Fleet,
    pki: &std::path::Path,
    args: &crate::cli::DiffArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let new_fleet = certified(fleet, pki, false)?;
    let new_compiled = compile_all(&new_fleet, &fleet.source)?;
    let new_sides = crate::diff::sides(&new_fleet, &new_compiled);
    let differs = match &args.against {
        Some(path) => {
            if !path.is_file() {
                return Err(Error::Usage(format!(
                    "--against {}: no such inventory file",
                    path.display()
                )));
            }
            // Its warnings are the nodes' of yesterday: not repeated.
            let mut old = load_quiet(&Source::File(path.clone()))?.fleet;
            let old_name = old.source.clone();
            // node.json names the inventory file: the old one is read under this name.
            old.source = fleet.source.clone();
            let old_fleet = certified(&old, pki, false)?;
            let old_compiled = compile_all(&old_fleet, &old_name)?;
            let old_sides = crate::diff::sides(&old_fleet, &old_compiled);
            let result = crate::diff::diff(&old_name, &old_sides, &new_sides);
            if args.json {
                write_json(out, &result)?;
            } else {
                out.write_all(crate::diff::describe(&result).as_bytes())
                    .context("writing to stdout")?;
            }
            !result.is_empty()
        }
        None => {
            let (endpoints, access) = etcd_reach(&new_fleet, pki, &args.endpoint)?;
            let timeout = std::time::Duration::from_secs(5);
            let reported = crate::agent::read_fleet(&endpoints, timeout, &access)?;
            let digests: std::collections::BTreeMap<String, String> = reported
                .into_iter()
                .map(|(name, state)| (name, state.plan_digest))
                .collect();
            let result = crate::diff::running(&new_sides, &digests);
            if args.json {
                write_json(out, &result)?;
            } else {
                out.write_all(crate::diff::describe_running(&result).as_bytes())
                    .context("writing to stdout")?;
            }
            result.iter().any(|r| r.state != crate::diff::Running::Same)
        }
    };
    if args.exit_code && differs {
        return Err(Error::Differs);
    }
    Ok(())
}

/// `pigsty rollout`: the inventory to every node it changes (crate::rollout).
fn rollout(
    fleet: &Fleet,
    pki: &std::path::Path,
    args: &crate::cli::RolloutArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let fleet = certified(fleet, pki, false)?;
    let compiled = compile_all(&fleet, &fleet.source)?;
    let (endpoints, access) = etcd_reach(&fleet, pki, &args.endpoint)?;
    let identity = match args.identity.strip_prefix("~/") {
        Some(rest) => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(rest),
        None => std::path::PathBuf::from(&args.identity),
    };
    if !identity.is_file() {
        return Err(Error::Usage(format!(
            "--identity {}: no such key file",
            identity.display()
        )));
    }
    let opts = crate::rollout::Options {
        dry_run: args.dry_run,
        parallel: args.parallel,
        identity,
        ssh_port: args.ssh_port,
        listen: args.listen,
        out: args.out.clone(),
        cache: crate::image::layer::cache_dir(),
        offline: args.offline,
        extra_trees: args.extra_tree.clone(),
        lag_bytes: args.max_lag,
        node_timeout: std::time::Duration::from_secs(args.timeout.max(1)),
        poll: std::time::Duration::from_secs(2),
    };
    let report = crate::rollout::rollout(
        &fleet,
        &compiled,
        &crate::rollout::Reach { endpoints, access },
        &opts,
    )?;
    print_rollout(&report, args.json, out)
}

/// `pigsty serve`: the boot server for the inventory, until SIGINT or SIGTERM.
fn serve(fleet: &Fleet, args: &crate::cli::ServeArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::serve::{self, fleet as boot_fleet};
    for name in &args.reinstall {
        if !fleet.nodes.iter().any(|n| &n.nodename == name) {
            return Err(Error::Usage(format!(
                "--reinstall {name}: no such node in {}",
                fleet.source
            )));
        }
    }
    let compiled = compile_all(fleet, &fleet.source)?;
    let state_dir = boot_fleet::state_dir(&args.out);
    let mut scripts = serve::Scripts::default();
    if !args.check {
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        scripts.keep_state_in(&state_dir.join("installed.json"))?;
    } else if let Ok(bytes) = std::fs::read(state_dir.join("installed.json")) {
        scripts.done = serde_json::from_slice(&bytes).unwrap_or_default();
    }
    // Asked to install again: forget that it was.
    let reinstall_macs: Vec<String> = fleet
        .nodes
        .iter()
        .filter(|n| args.reinstall.contains(&n.nodename))
        .filter_map(|n| n.node.node_mac.as_deref().and_then(serve::boot::hexhyp))
        .collect();
    scripts.done.retain(|mac, _| !reinstall_macs.contains(mac));
    let prepared = boot_fleet::prepare(fleet, &compiled, &args.out, &scripts.done)?;
    if args.check {
        if args.json {
            return write_json(out, &prepared.entries);
        }
        for e in &prepared.entries {
            writeln!(
                out,
                "{:<16} {:<15} {:<17} {:<10} {}",
                e.node,
                e.ip,
                if e.mac.is_empty() { "-" } else { &e.mac },
                e.state,
                e.detail
            )
            .context("writing to stdout")?;
        }
        return Ok(());
    }
    for e in &prepared.entries {
        match e.state.as_str() {
            "install" | "installed" | "kept" => {
                eprintln!("serve: {} ({}, {}): {}", e.node, e.ip, e.mac, e.state);
            }
            _ => eprintln!("serve: {} ({}): {}: {}", e.node, e.ip, e.state, e.detail),
        }
    }
    let server = serve::Server::start_with(
        args.listen,
        prepared.artifacts.clone(),
        Some(serve::Scripts::default()),
    )?;
    let port = server.addr().port();
    let advertise = args.advertise;
    let base = move |node: &Node| -> anyhow::Result<String> {
        let ip = match advertise {
            Some(ip) => ip,
            None => serve::source_address_towards(std::net::IpAddr::V4(node.ip))?,
        };
        Ok(match ip {
            std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
            v4 => format!("http://{v4}:{port}"),
        })
    };
    let mut built = boot_fleet::scripts(fleet, &prepared, &base, &args.reinstall)?;
    built.done = scripts.done.clone();
    built.state_file = scripts.state_file.clone();
    // The state as it is now (a reinstall forgot a node).
    built.save()?;
    server.set_scripts(built);
    let dnsmasq = match (&args.dhcp, &args.interface) {
        (true, Some(interface)) => {
            let hosts: Vec<serve::boot::DhcpHost> = if args.dhcp_addresses {
                fleet
                    .nodes
                    .iter()
                    .filter_map(|n| {
                        let mac = n.node.node_mac.as_deref().and_then(serve::boot::hexhyp)?;
                        Some(serve::boot::DhcpHost {
                            mac: mac.replace('-', ":"),
                            ip: n.ip,
                            name: n.nodename.clone(),
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            let leases = serve::boot::Leases {
                hosts,
                pool: args.dhcp_pool,
            };
            Some(serve::dhcp::Dnsmasq::start(
                interface, port, &state_dir, &leases,
            )?)
        }
        _ => None,
    };
    writeln!(
        out,
        "serving on http://{} ({} artifact(s)){}; iPXE clients start at /boot.ipxe; \
         stop with SIGINT or SIGTERM",
        server.addr(),
        prepared.artifacts.len(),
        dnsmasq
            .as_ref()
            .map(|d| format!(
                ", dnsmasq pid {} (proxy DHCP, TFTP) at {}",
                d.pid().unwrap_or(0),
                d.address
            ))
            .unwrap_or_default()
    )
    .context("writing to stdout")?;
    out.flush().context("writing to stdout")?;
    let signal = wait_for_stop()?;
    eprintln!("serve: {signal}: stopping");
    drop(dnsmasq);
    drop(server);
    Ok(())
}

/// Block until SIGINT or SIGTERM; which one came.
fn wait_for_stop() -> anyhow::Result<&'static str> {
    use tokio::signal::unix::{SignalKind, signal};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .context("a runtime to wait for signals")?;
    rt.block_on(async {
        let mut term = signal(SignalKind::terminate()).context("waiting for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("waiting for SIGINT")?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<&'static str>(2);
        let tx2 = tx.clone();
        tokio::spawn(async move {
            term.recv().await;
            let _ = tx.send("SIGTERM").await;
        });
        tokio::spawn(async move {
            int.recv().await;
            let _ = tx2.send("SIGINT").await;
        });
        rx.recv().await.context("the signal waits ended")
    })
}

/// The rollout's final table (or JSON); a rollout that stopped is exit 1 naming
/// where.
fn print_rollout(
    report: &crate::rollout::Report,
    json: bool,
    out: &mut dyn Write,
) -> Result<(), Error> {
    if json {
        write_json(out, report)?;
    } else {
        out.write_all(crate::rollout::describe(report).as_bytes())
            .context("writing to stdout")?;
    }
    match &report.stopped {
        Some(s) => Err(Error::Runtime(anyhow::anyhow!(
            "the rollout stopped at {} ({}): {}",
            s.node,
            s.step,
            s.why
        ))),
        None => Ok(()),
    }
}

/// Compile every node of a fleet; a value its files cannot carry is exit 2 at its
/// line of `file`.
fn compile_all(fleet: &Fleet, file: &str) -> Result<Vec<Compiled>, Error> {
    fleet
        .nodes
        .par_iter()
        .map(|n| {
            compile(fleet, n).map_err(|e| {
                let mut finding = render_finding(fleet, n, &e);
                finding.file = file.to_string();
                Error::Invalid(diag::Invalid {
                    file: file.to_string(),
                    findings: vec![finding],
                    text: std::fs::read_to_string(file).ok(),
                })
            })
        })
        .collect()
}

fn describe_plan(plan: &NodePlan, out: &mut dyn Write) -> Result<(), Error> {
    let modules: Vec<&str> = plan.modules.iter().map(|m| m.as_str()).collect();
    let mut text = format!(
        "node      {} {} ({})\nmodules   {}\nimage     {} {}\npackages  {}\nservices  {}\njoin\n",
        plan.node.nodename,
        plan.node.ip,
        plan.node.roles.join(", "),
        modules.join(" "),
        plan.image.name,
        plan.image.architecture,
        plan.packages.join(" "),
        plan.services.join(" "),
    );
    for step in &plan.join {
        let after = if step.after.is_empty() {
            String::new()
        } else {
            let after: Vec<&str> = step.after.iter().map(|a| a.as_str()).collect();
            format!(" (after {})", after.join(", "))
        };
        text.push_str(&format!("  {:<14} {}{after}\n", step.id, step.action));
    }
    text.push_str(&format!(
        "files     {}\ndigest    {}\n",
        plan.files.len(),
        plan.digest
    ));
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

fn render(fleet: &Fleet, args: &RenderArgs, out: &mut dyn Write) -> Result<(), Error> {
    let (files, summary) = match &args.role {
        Some(name) => {
            let node = fleet.find(name).map_err(|e| Error::Usage(e.to_string()))?;
            let compiled = compile_at(fleet, node)?;
            let summary = format!("{}: wrote {} file(s)", node.nodename, compiled.files.len());
            (compiled.files, summary)
        }
        None => {
            // One tree per node under DIR/<nodename>/, written as one atomic tree.
            let per_node: Vec<Vec<RenderedFile>> = fleet
                .nodes
                .par_iter()
                .map(|n| {
                    let mut files = compile_at(fleet, n)?.files;
                    for f in &mut files {
                        f.path = format!("/{}{}", n.nodename, f.path);
                    }
                    Ok(files)
                })
                .collect::<Result<_, Error>>()?;
            let files: Vec<RenderedFile> = per_node.into_iter().flatten().collect();
            let summary = format!(
                "{} node(s): wrote {} file(s)",
                fleet.nodes.len(),
                files.len()
            );
            (files, summary)
        }
    };
    crate::render::write::check_replaceable(&args.out, crate::render::write::RENDER_MARK)
        .map_err(Error::Usage)?;
    crate::render::write::write_tree(&files, &args.out)?;
    writeln!(out, "{summary} to {}", args.out.display()).context("writing to stdout")?;
    Ok(())
}

/// Each node's build replaces out/<nodename>: only a directory an earlier build wrote
/// (it holds manifest.json). Checked before anything is created, the PKI included.
fn check_build_out(fleet: &Fleet, args: &BuildImageArgs) -> Result<(), Error> {
    let nodes = selected(fleet, args.role.as_deref())?;
    for n in &nodes {
        crate::render::write::check_replaceable(&args.out.join(&n.nodename), "manifest.json")
            .map_err(Error::Usage)?;
    }
    if !args.allow_default_passwords {
        let findings = default_password_findings(fleet, &nodes);
        if !findings.is_empty() {
            return Err(Error::Invalid(diag::Invalid {
                file: fleet.source.clone(),
                findings,
                text: std::fs::read_to_string(&fleet.source).ok(),
            }));
        }
    }
    Ok(())
}

/// A strong password: 24 characters from 62, about 143 bits from the OS's generator.
fn strong_password() -> anyhow::Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::new();
    while out.len() < 24 {
        let mut buf = [0u8; 32];
        getrandom::getrandom(&mut buf)
            .map_err(|e| anyhow::anyhow!("reading the OS's random generator: {e}"))?;
        // 248 = 4 * 62: bytes above it are dropped, so every character is equally likely.
        out.extend(
            buf.iter()
                .filter(|b| **b < 248)
                .map(|b| ALPHABET[usize::from(*b) % 62] as char),
        );
    }
    out.truncate(24);
    Ok(out)
}

/// `inventory passwords`: a strong password for each default one in use.
fn passwords(fleet: &Fleet, out: &mut dyn Write) -> Result<(), Error> {
    let mut keys: Vec<&'static str> = Vec::new();
    let mut explicit: Vec<String> = Vec::new();
    for n in &fleet.nodes {
        for key in n.default_passwords() {
            if !keys.contains(&key) {
                keys.push(key);
            }
            if let Some((loc, _)) = n.source.vars.get(key) {
                let at = format!("{}:{}: {key}", fleet.source, loc.line);
                if !explicit.contains(&at) {
                    explicit.push(at);
                }
            }
        }
    }
    if keys.is_empty() {
        writeln!(out, "# no default password is in use").context("writing to stdout")?;
        return Ok(());
    }
    keys.sort_by_key(|k| {
        crate::model::DEFAULT_PASSWORDS
            .iter()
            .position(|(d, _)| d == k)
    });
    let mut text = String::from(
        "# Strong passwords for the Pigsty defaults this inventory still uses: put them\n# under all.vars.\n",
    );
    if !explicit.is_empty() {
        text.push_str("# These lines set a default themselves; change the value there:\n");
        for e in &explicit {
            text.push_str(&format!("#   {e}\n"));
        }
    }
    text.push_str("all:\n  vars:\n");
    for key in keys {
        text.push_str(&format!("    {key}: {}\n", strong_password()?));
    }
    out.write_all(text.as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

/// Each of Pigsty's published default passwords the selected nodes' images would
/// carry, at the line that sets it (the host's, when the built-in default applies).
/// A PostgreSQL node whose cluster's etcd password is derived from a default etcd root
/// password counts too: anyone could derive it.
fn default_password_findings(fleet: &Fleet, nodes: &[&Node]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut add = |n: &Node, key: &str, why: String| {
        let loc = n
            .source
            .vars
            .get(key)
            .map_or(n.source.host, |(loc, _)| *loc);
        if seen.insert((key.to_string(), loc.line, loc.col)) {
            findings.push(Finding::error(&fleet.source, loc, key, why));
        }
    };
    for n in nodes {
        for key in n.default_passwords() {
            add(
                n,
                key,
                format!(
                    "{key} of {} is Pigsty's published default; set a strong one (`pigsty inventory passwords`), or pass --allow-default-passwords",
                    n.nodename
                ),
            );
        }
        if let Some(pg) =
            n.pg.as_ref()
                .filter(|p| p.params.pg_etcd_password.is_empty())
        {
            let cluster = n.etcd.as_ref().map_or("etcd", |e| e.cluster.as_str());
            let root = fleet.etcd_members(cluster);
            if let Some(m) = root.first()
                && m.default_passwords().contains(&"etcd_root_password")
            {
                add(
                    m,
                    "etcd_root_password",
                    format!(
                        "etcd_root_password of {} is Pigsty's published default, and {}'s etcd password is derived from it; set a strong one, or pass --allow-default-passwords",
                        m.nodename, pg.cluster
                    ),
                );
            }
        }
    }
    findings
}

fn build_image(fleet: &Fleet, args: &BuildImageArgs, out: &mut dyn Write) -> Result<(), Error> {
    let nodes = selected(fleet, args.role.as_deref())?;
    let compiled: Vec<(&Node, Compiled)> = nodes
        .into_par_iter()
        .map(|n| {
            let c = compile_at(fleet, n)?;
            for w in &c.warnings {
                tracing::warn!("{w}");
            }
            Ok((n, c))
        })
        .collect::<Result<_, Error>>()?;
    let opts = crate::image::BuildOptions {
        formats: args.format.clone(),
        out: args.out.clone(),
        cache: crate::image::layer::cache_dir(),
        offline: args.offline,
        epoch: crate::image::default_epoch(),
        extra_trees: args.extra_tree.clone(),
    };
    let manifests = crate::image::build(fleet, &compiled, &opts)?;
    for m in manifests {
        for a in &m.artifacts {
            writeln!(out, "{}\t{}\t{}\t{}", m.node, a.name, a.size, a.sha256)
                .context("writing to stdout")?;
        }
    }
    Ok(())
}

/// This boot's slot, when the node runs on this machine (`--root /`) and booted from
/// an A/B slot.
fn this_boot(root: &std::path::Path) -> anyhow::Result<Option<crate::bundle::Boot>> {
    if root != std::path::Path::new("/") {
        return Ok(None);
    }
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    crate::bundle::Boot::from_cmdline(&cmdline)
}

/// What the slots hold, read from the ESP (mounted for the while).
fn read_slots(boot: &crate::bundle::Boot) -> anyhow::Result<crate::agent::update::Slots> {
    let esp = crate::agent::update::mount_esp()?;
    crate::agent::update::slots(esp.dir(), boot)
}

fn firstboot(args: &crate::cli::FirstbootArgs, out: &mut dyn Write) -> Result<(), Error> {
    let mut opts = crate::agent::Options::new(&args.root);
    opts.wait = std::time::Duration::from_secs(args.timeout);
    opts.request = std::time::Duration::from_secs(args.request_timeout.max(1));
    if let Some(boot) = this_boot(&args.root)? {
        opts.slots = read_slots(&boot)
            .map_err(|e| tracing::warn!("reading the slots from the ESP: {e:#}"))
            .ok();
        opts.bundle = Some(boot.bundle);
    }
    let services = crate::agent::service::Systemd {
        root: args.root.clone(),
    };
    let state = crate::agent::firstboot(&opts, &services)?;
    out.write_all(state.summary().as_bytes())
        .context("writing to stdout")?;
    Ok(())
}

fn agent_status(args: &crate::cli::AgentStatusArgs, out: &mut dyn Write) -> Result<(), Error> {
    let store = crate::agent::state::Store::new(&args.root);
    let state = store.load()?;
    if args.json {
        return write_json(out, &state);
    }
    let head = match (state.done, state.current.as_str()) {
        (true, _) => "first boot: done".to_string(),
        (false, "") => "first boot: not started".to_string(),
        (false, step) => format!("first boot: at step {step}"),
    };
    writeln!(out, "{head}").context("writing to stdout")?;
    out.write_all(state.summary().as_bytes())
        .context("writing to stdout")?;
    if let Some(slots) = &state.slots {
        for (what, s) in [("running", &slots.running), ("fallback", &slots.fallback)] {
            match s {
                Some(s) => writeln!(
                    out,
                    "{what:<9} slot {} (generation {}, {}): root sha256:{} bundle sha256:{}",
                    s.slot, s.generation, s.state, s.root, s.bundle
                ),
                None => writeln!(out, "{what:<9} none"),
            }
            .context("writing to stdout")?;
        }
    }
    if !state.plan_digest.is_empty() {
        writeln!(out, "plan      sha256:{}", state.plan_digest).context("writing to stdout")?;
    }
    Ok(())
}

fn agent_update(args: &crate::cli::UpdateArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::agent::update;
    let req = update::Request {
        root: args.root.as_deref().map(update::Source::parse),
        root_sha256: args.root_sha256.clone(),
        bundle: update::Source::parse(&args.bundle),
        bundle_sha256: args.bundle_sha256.clone(),
        tries: args.tries,
        trial_secs: args.trial_timeout,
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let http = transfer_client(args.request_timeout)?;
    let done = {
        let esp = update::mount_esp()?;
        update::update(&update::Disk::node(&esp), &cmdline, &req, &http)?
    };
    writeln!(
        out,
        "slot {} written: root sha256:{} ({} bytes, {}), bundle sha256:{}; next boot: {} \
         (on trial: {} tries, {} s each to become healthy)",
        done.slot,
        done.root,
        done.root_bytes,
        done.root_from,
        done.bundle,
        done.entry,
        args.tries,
        args.trial_timeout
    )
    .context("writing to stdout")?;
    if args.reboot {
        writeln!(out, "rebooting").context("writing to stdout")?;
        reboot()?;
    }
    Ok(())
}

/// The HTTP client of the agent's transfers (roots, bundles, disks): connects
/// bounded by 10 s, each whole request by `request_timeout` seconds.
fn transfer_client(request_timeout: u64) -> anyhow::Result<crate::http::Client> {
    crate::http::client(
        std::time::Duration::from_secs(10),
        std::time::Duration::from_secs(request_timeout.max(1)),
    )
}

/// `systemctl reboot`.
fn reboot() -> anyhow::Result<()> {
    crate::sys::run(std::process::Command::new("systemctl").arg("reboot"))?;
    Ok(())
}

fn agent_install(args: &crate::cli::InstallArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::agent::install;
    let req = if args.from_cmdline {
        let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
        match install::Request::from_cmdline(&cmdline)? {
            Some(mut r) => {
                r.disk = args.disk.clone().or(r.disk);
                r.reinstall |= args.reinstall;
                r.report = args.report.clone().or(r.report);
                r
            }
            None => {
                writeln!(out, "the kernel command line asks for no install")
                    .context("writing to stdout")?;
                return Ok(());
            }
        }
    } else {
        let (Some(image), Some(sha)) = (&args.image, &args.sha256) else {
            return Err(Error::Usage(
                "--image and --sha256 (or --from-cmdline)".into(),
            ));
        };
        let map = match (&args.map, &args.map_sha256) {
            (Some(m), Some(hex)) => Some(install::MapRef {
                source: crate::agent::update::Source::parse(m),
                sha256: hex.to_ascii_lowercase(),
            }),
            _ => None,
        };
        install::Request {
            image: crate::agent::update::Source::parse(image),
            sha256: sha.to_ascii_lowercase(),
            disk: args.disk.clone(),
            reinstall: args.reinstall,
            report: args.report.clone(),
            map,
        }
    };
    let disk = match &req.disk {
        Some(d) => d.clone(),
        None => install::pick_disk(std::path::Path::new("/sys/block"))?,
    };
    let http = transfer_client(args.request_timeout)?;
    let done = install::install(&req, &disk, &http, &mut |line| {
        eprintln!("pigsty agent install: {line}");
    });
    let done = match done {
        Ok(d) => d,
        Err(e) => {
            if let Some(url) = &req.report {
                let failed = install::Outcome {
                    result: "failed".into(),
                    disk: disk.display().to_string(),
                    sha256: req.sha256.clone(),
                    bytes: 0,
                    skipped: 0,
                    secs: 0.0,
                    detail: format!("{e:#}"),
                };
                if let Err(r) = install::report(url, &failed, &http) {
                    eprintln!("pigsty agent install: reporting the failure: {r:#}");
                }
            }
            return Err(e.into());
        }
    };
    if let Some(url) = &req.report {
        install::report(url, &done, &http)?;
    }
    if args.json {
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&done).context("JSON")?
        )
        .context("writing to stdout")?;
    } else {
        writeln!(
            out,
            "{}: {} ({} bytes, {:.1}s){}",
            done.disk,
            done.result,
            done.bytes,
            done.secs,
            if done.detail.is_empty() {
                String::new()
            } else {
                format!(": {}", done.detail)
            }
        )
        .context("writing to stdout")?;
    }
    if args.reboot {
        writeln!(out, "rebooting").context("writing to stdout")?;
        reboot()?;
    }
    Ok(())
}

fn agent_apply(args: &crate::cli::ApplyArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::agent::{apply, update};
    let req = apply::Request {
        bundle: update::Source::parse(&args.bundle),
        bundle_sha256: args.bundle_sha256.clone(),
        tries: args.tries,
        trial_secs: args.trial_timeout,
        check: args.check,
    };
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let http = transfer_client(args.request_timeout)?;
    let root = std::path::PathBuf::from("/");
    let mut opts = crate::agent::Options::new(&root);
    opts.wait = std::time::Duration::from_secs(args.timeout);
    let services = crate::agent::service::Systemd { root };
    let done = {
        let esp = update::mount_esp()?;
        apply::apply(
            &opts,
            &services,
            &update::Disk::node(&esp),
            &cmdline,
            &req,
            &http,
        )?
    };
    if args.json {
        return write_json(out, &done);
    }
    for f in &done.files {
        writeln!(out, "{} {:?}: {}", f.path, f.change, f.effect).context("writing to stdout")?;
    }
    for a in &done.actions {
        writeln!(out, "{a}").context("writing to stdout")?;
    }
    Ok(())
}

fn agent_bless(args: &crate::cli::BlessArgs, out: &mut dyn Write) -> Result<(), Error> {
    use crate::agent::update;
    let root = std::path::Path::new("/");
    let cmdline = std::fs::read_to_string("/proc/cmdline").context("reading /proc/cmdline")?;
    let Some(boot) = crate::bundle::Boot::from_cmdline(&cmdline)? else {
        writeln!(out, "not booted from an A/B slot: nothing to keep").context("writing")?;
        return Ok(());
    };
    let services = crate::agent::service::Systemd {
        root: root.to_path_buf(),
    };
    // Set only in a trial entry's options.
    let trial_bound = update::trial_secs(&cmdline);
    let on_trial = trial_bound.is_some();
    let trial = match update::mount_esp().and_then(|m| update::trial_entry(m.dir(), &boot)) {
        Ok(t) => t,
        // Booted from a trial entry (its options say so) and unable to read the ESP:
        // this slot cannot be kept, so boot counting must go on.
        Err(e) if on_trial && !args.dry_run => {
            return trial_failed(out, &boot, None, &format!("reading the ESP: {e:#}"));
        }
        Err(e) => return Err(e.into()),
    };
    let Some(entry) = trial else {
        // Nothing to record either: the join puts the slots in its state when it
        // starts, and writing the state file here would race it.
        writeln!(out, "slot {}: kept already (not on trial)", boot.slot).context("writing")?;
        return Ok(());
    };
    let limit = trial_bound.unwrap_or(args.timeout);
    writeln!(
        out,
        "slot {} on trial ({}): waiting up to {limit} s for the node to be healthy",
        boot.slot, entry.file
    )
    .context("writing")?;
    let health = update::wait_healthy(
        std::time::Duration::from_secs(limit),
        std::time::Duration::from_secs(5),
        || crate::agent::node_health(root, &boot.bundle, &services),
    );
    match health {
        Ok(()) if args.dry_run => {
            writeln!(out, "healthy: would keep slot {}", boot.slot).context("writing")?;
        }
        Ok(()) => {
            // A few tries, 5 s apart (the ESP may be busy): a healthy slot that cannot
            // be kept is rebooted like an unhealthy one, or it would stay on trial.
            let mut kept = Err(anyhow::anyhow!("not tried"));
            for attempt in 0..3 {
                if attempt > 0 {
                    std::thread::sleep(std::time::Duration::from_secs(5));
                }
                kept = update::mount_esp().and_then(|m| update::bless_entry(m.dir(), &entry));
                if kept.is_ok() {
                    break;
                }
            }
            let kept = match kept {
                Ok(k) => k,
                Err(e) => {
                    let why = format!("healthy, but keeping {} failed: {e:#}", entry.file);
                    return trial_failed(out, &boot, Some(&entry), &why);
                }
            };
            writeln!(out, "healthy: slot {} kept ({kept})", boot.slot).context("writing")?;
            record(&boot, &services);
        }
        Err(why) if args.dry_run => {
            writeln!(out, "{why}: would reboot").context("writing")?;
        }
        Err(why) => return trial_failed(out, &boot, Some(&entry), &why),
    }
    Ok(())
}

/// A trial boot that cannot be kept: say why and reboot, so that boot counting
/// goes on (and falls back to the other slot once the tries are used up).
fn trial_failed(
    out: &mut dyn Write,
    boot: &crate::bundle::Boot,
    entry: Option<&crate::agent::update::Entry>,
    why: &str,
) -> Result<(), Error> {
    let left = match entry.and_then(|e| e.tries_left) {
        Some(n) => format!("{} tries", n.saturating_sub(1)),
        None => "its remaining tries".to_string(),
    };
    writeln!(
        out,
        "{why}: rebooting ({left} of slot {} left; then slot {} boots)",
        boot.slot,
        boot.other()
    )
    .context("writing")?;
    reboot()?;
    Err(anyhow::anyhow!("slot {} not kept: {why}", boot.slot).into())
}

/// What the slots hold, into the state file and etcd (best effort: a node keeps its
/// slot whether or not it can say so).
fn record(boot: &crate::bundle::Boot, services: &dyn crate::agent::service::ServiceManager) {
    let opts = crate::agent::Options::new("/");
    let result = read_slots(boot).and_then(|s| crate::agent::record_slots(&opts, services, s));
    if let Err(e) = result {
        tracing::warn!("recording the slots: {e:#}");
    }
}

/// Rows whose agent is done but whose node is out of a cluster become `unhealthy`.
fn mark_unhealthy(
    fleet: &Fleet,
    live: &crate::agent::fleet::Live,
    rows: &mut [crate::agent::FleetRow],
) {
    for row in rows.iter_mut().filter(|r| r.state == "done") {
        let Some(node) = fleet.nodes.iter().find(|n| n.nodename == row.nodename) else {
            continue;
        };
        let problems = crate::agent::fleet::problems(node, live);
        if !problems.is_empty() {
            row.state = "unhealthy".into();
            row.note = format!("joined, but now: {}", problems.join("; "));
        }
    }
}

/// `pigsty status`: with a fleet CA, etcd is reached over TLS with the operator's
/// client certificate (issued beside the CA) as root.
/// How an admin machine reaches the fleet's etcd: the endpoints given, else the
/// inventory's members; as the operator over TLS when the fleet has a CA.
fn etcd_reach(
    fleet: &Fleet,
    pki_dir: &std::path::Path,
    given: &[String],
) -> Result<(Vec<String>, crate::agent::etcd::Access), Error> {
    let files = match crate::pki::Pki::open(pki_dir)? {
        Some(pki) => crate::pki::operator_access(fleet, &pki)?,
        None => None,
    };
    let access = crate::agent::etcd::load_access(files.as_ref())?;
    let endpoints: Vec<String> = if given.is_empty() {
        fleet
            .etcd_members("etcd")
            .iter()
            .filter_map(|n| access.url_of(n))
            .collect()
    } else {
        given.to_vec()
    };
    Ok((endpoints, access))
}

fn fleet_status(
    fleet: &Fleet,
    pki_dir: &std::path::Path,
    args: &crate::cli::StatusArgs,
    out: &mut dyn Write,
) -> Result<(), Error> {
    let (endpoints, access) = etcd_reach(fleet, pki_dir, &args.endpoint)?;
    let timeout = std::time::Duration::from_secs(5);
    let reported = crate::agent::read_fleet(&endpoints, timeout, &access)?;
    let mut rows = crate::agent::fleet_rows(fleet, &reported);
    // A node done long ago may have fallen out of its clusters since.
    match crate::agent::fleet::read_live(fleet, &endpoints, timeout, &access) {
        Ok(live) => mark_unhealthy(fleet, &live, &mut rows),
        Err(e) => tracing::warn!("reading the clusters' live membership: {e:#}"),
    }
    if args.json {
        return write_json(out, &rows);
    }
    let table: Vec<[String; 4]> = rows
        .iter()
        .map(|r| {
            [
                r.nodename.clone(),
                r.ip.clone(),
                r.state.clone(),
                r.note.clone(),
            ]
        })
        .collect();
    write_table(out, ["NODE", "IP", "STATE", "NOTE"], &table)
}
