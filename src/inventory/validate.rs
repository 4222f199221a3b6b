//! From the group tree to the typed fleet: resolve each host's variables in Ansible's
//! precedence order, read identities and parameters, and check the rules that span
//! the whole inventory. Every problem is collected; nothing stops at the first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::{Arc, OnceLock};

use rustc_hash::FxHashMap;

use super::groups::{Host, Scope, Tree, VarDef};
use super::reader::{ReadCache, Resolved, Step, VarReader, Vars};
use super::yaml::{self, Key};
use crate::catalog::{Catalog, DEFAULT_BASE};
use crate::diag::{Finding, Loc, did_you_mean};
use crate::model::*;

fn defaults() -> &'static [VarDef] {
    static DEFAULTS: OnceLock<Vec<VarDef>> = OnceLock::new();
    DEFAULTS.get_or_init(|| {
        let text = include_str!("../model/defaults.yml");
        let root = yaml::parse(text)
            .ok()
            .flatten()
            .expect("built-in defaults.yml is valid YAML (checked by a unit test)");
        root.as_map()
            .unwrap_or_default()
            .iter()
            .map(|(k, v)| VarDef {
                key: k.clone(),
                value: Arc::new(v.clone()),
            })
            .collect()
    })
}

/// `pg_version`'s default on each base: the newest major the base ships.
fn base_pg_version(base: &str) -> Option<&'static Arc<yaml::Node>> {
    static BY_BASE: OnceLock<HashMap<&'static str, Arc<yaml::Node>>> = OnceLock::new();
    BY_BASE
        .get_or_init(|| {
            Catalog::all()
                .iter()
                .map(|c| {
                    let node = yaml::Node {
                        value: yaml::Value::Int(i64::from(c.newest_pg())),
                        loc: Loc::default(),
                    };
                    (c.name.as_str(), Arc::new(node))
                })
                .collect()
        })
        .get(base)
}

fn default_vars() -> &'static FxHashMap<&'static str, Resolved<'static>> {
    static MAP: OnceLock<FxHashMap<&'static str, Resolved<'static>>> = OnceLock::new();
    MAP.get_or_init(|| {
        defaults()
            .iter()
            .map(|d| {
                let r = Resolved {
                    value: &d.value,
                    scope: Scope::Default,
                };
                (d.key.name.as_str(), r)
            })
            .collect()
    })
}

fn known_params() -> &'static HashSet<&'static str> {
    static KNOWN: OnceLock<HashSet<&'static str>> = OnceLock::new();
    KNOWN.get_or_init(|| {
        // Pigsty's parameters (ours too), for did-you-mean on typos.
        super::unimplemented::params()
            .iter()
            .map(|p| p.name.as_str())
            .chain(typed_keys())
            .chain(defaults().iter().map(|d| d.key.name.as_str()))
            .collect()
    })
}

/// Validate the whole tree into nodes. Findings (errors and warnings) are appended.
pub fn validate(
    tree: &Tree,
    file: &str,
    dir: Option<&std::path::Path>,
    findings: &mut Vec<Finding>,
) -> Vec<Node> {
    check_var_names(tree, file, findings);
    super::unimplemented::check(tree, file, findings);
    let mut nodes = Vec::with_capacity(tree.hosts.len());
    let mut password_use: BTreeMap<&'static str, (Loc, usize)> = BTreeMap::new();
    let mut locs = KeyLocs::new();
    for host in read_hosts(tree, file, dir) {
        findings.extend(host.findings);
        for (key, loc) in host.default_passwords {
            password_use.entry(key).or_insert((loc, 0)).1 += 1;
        }
        locs.extend(host.locs);
        nodes.extend(host.node);
    }
    check_fleet(&nodes, &locs, tree, file, findings);
    if let Some((_, (loc, _))) = password_use.first_key_value() {
        let keys: Vec<String> = password_use
            .iter()
            .map(|(k, (_, n))| format!("{k} ({n} node(s))"))
            .collect();
        findings.push(
            Finding::warning(
                file,
                *loc,
                "passwords",
                format!("Pigsty's default passwords are in use: {}", keys.join(", ")),
            )
            .with_help("set passwords of your own in all.vars before building images"),
        );
    }
    dedupe(findings);
    nodes
}

/// What reading one host gave: its node (None when it has errors), its findings, and
/// what the fleet-wide checks need of it.
struct HostRead {
    node: Option<Node>,
    findings: Vec<Finding>,
    /// Pigsty's default passwords the node uses, each with where it is set.
    default_passwords: Vec<(&'static str, Loc)>,
    locs: Vec<((Ipv4Addr, &'static str), Loc)>,
}

/// Read every host, in the tree's order. Hosts read independently, so they are split
/// into one run of neighbours per core (neighbours share their groups, and so most of
/// a [`ReadCache`]); the findings come out in the order one pass would give them.
fn read_hosts(tree: &Tree, file: &str, dir: Option<&std::path::Path>) -> Vec<HostRead> {
    use rayon::prelude::*;
    let per_core = tree
        .hosts
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .max(1);
    tree.hosts
        .par_chunks(per_core)
        .flat_map_iter(|hosts| {
            let mut cache = ReadCache::default();
            hosts
                .iter()
                .map(|host| read_host(tree, host, file, dir, &mut cache))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn read_host(
    tree: &Tree,
    host: &Host,
    file: &str,
    dir: Option<&std::path::Path>,
    cache: &mut ReadCache,
) -> HostRead {
    let mut findings = Vec::new();
    let groups = tree.host_groups(host);
    check_one_cluster_each(tree, host, &groups, file, &mut findings);
    let vars = resolve(tree, host, &groups);
    let mut reader = VarReader {
        cache,
        file,
        dir,
        host_loc: host.key.loc,
        ip: &host.key.name,
        vars: &vars,
        findings: &mut findings,
    };
    let in_group = |name: &str| groups.iter().any(|&g| tree.groups[g].name == name);
    let membership = Membership {
        infra: in_group("infra"),
        etcd: in_group("etcd"),
    };
    let mut default_passwords = Vec::new();
    let mut locs = Vec::new();
    let node = read_node(&mut reader, &host.key, membership);
    if let Some(node) = &node {
        // What the node's services would use, as build-image checks it
        // (`Node::default_passwords`): Grafana's only with Grafana, haproxy's only
        // with haproxy.
        for key in node.default_passwords() {
            default_passwords.push((key, reader.loc(key)));
        }
        for key in IDENTITY_KEYS
            .iter()
            .copied()
            .chain(["pg_rto", "pg_parameters", ""])
        {
            locs.push(((node.ip, key), reader.loc(key)));
        }
    }
    HostRead {
        node,
        findings,
        default_passwords,
        locs,
    }
}

/// A host listed in two groups that name different clusters of one module would be
/// merged into one of them by precedence, silently: refused at the second group's
/// definition.
fn check_one_cluster_each(
    tree: &Tree,
    host: &Host,
    groups: &[usize],
    file: &str,
    findings: &mut Vec<Finding>,
) {
    for key in ["pg_cluster", "redis_cluster", "minio_cluster"] {
        let mut first: Option<(&str, String, u32)> = None;
        for &g in groups {
            let group = &tree.groups[g];
            if group.name == "all" {
                continue;
            }
            let Some(def) = group.vars.iter().find(|d| d.key.name == key) else {
                continue;
            };
            let value = def.value.scalar_text().unwrap_or_default().into_owned();
            match &first {
                None => first = Some((group.name.as_str(), value, def.key.loc.line)),
                Some((g1, v1, line)) if *v1 != value => {
                    findings.push(Finding::error(
                        file,
                        def.key.loc,
                        key,
                        format!(
                            "host {} is in two {key}s: `{v1}` (group `{g1}`, line {line}) and \
                             `{value}` (group `{}`); a host belongs to one cluster of a module",
                            host.key.name, group.name
                        ),
                    ));
                }
                Some(_) => {}
            }
        }
    }
}

/// Variables of one host: defaults < all.vars < groups (shallow first) < host vars.
/// `groups` is the host's groups in precedence order ([`Tree::host_groups`]).
fn resolve<'a>(tree: &'a Tree, host: &'a Host, groups: &[usize]) -> Vars<'a> {
    let mut own = FxHashMap::default();
    let mut put = |defs: &'a [VarDef], scope: Scope| {
        for d in defs {
            own.insert(
                d.key.name.as_str(),
                Resolved {
                    value: &d.value,
                    scope,
                },
            );
        }
    };
    for &g in groups {
        let group = &tree.groups[g];
        let scope = if group.name == "all" {
            Scope::All
        } else {
            Scope::Group(g)
        };
        put(&group.vars, scope);
    }
    put(&host.vars, Scope::Host);
    if !own.contains_key("pg_version") {
        let base = own
            .get("node_base")
            .and_then(|r| r.value.scalar_text())
            .map_or(DEFAULT_BASE.to_string(), |b| b.into_owned());
        // An unknown base is reported at node_base; the default's major stands in.
        if let Some(value) = base_pg_version(&base).or_else(|| base_pg_version(DEFAULT_BASE)) {
            own.insert(
                "pg_version",
                Resolved {
                    value,
                    scope: Scope::Default,
                },
            );
        }
    }
    Vars {
        own,
        defaults: default_vars(),
    }
}

/// Unknown variable names that are one or two edits from a known one are typos.
fn check_var_names(tree: &Tree, file: &str, findings: &mut Vec<Finding>) {
    let known = known_params();
    for def in tree.definitions() {
        let name = def.key.name.as_str();
        if known.contains(name) {
            continue;
        }
        if let Some(s) = did_you_mean(name, known.iter().copied()) {
            findings.push(
                Finding::error(
                    file,
                    def.key.loc,
                    name,
                    format!("unknown parameter `{name}`"),
                )
                .with_help(format!("did you mean `{s}`?")),
            );
        }
    }
}

/// Where each identity variable of each node was written ("" = the host key).
type KeyLocs = HashMap<(Ipv4Addr, &'static str), Loc>;

#[derive(Clone, Copy)]
struct Membership {
    infra: bool,
    etcd: bool,
}

fn read_node(r: &mut VarReader<'_>, key: &Key, member: Membership) -> Option<Node> {
    let ip: Option<Ipv4Addr> = key.name.parse().ok();
    if ip.is_none() {
        r.error(
            key.loc,
            &key.name,
            format!(
                "host key `{}` is not an IPv4 address (Pigsty identifies hosts by IP)",
                key.name
            ),
        );
    }
    let params = NodeParams::read(r);
    let infra = member.infra.then(|| read_infra(r)).flatten();
    let etcd = member.etcd.then(|| read_etcd(r)).flatten();
    let pg = r.is_set("pg_cluster").then(|| read_pg(r)).flatten();
    let minio = r.is_set("minio_cluster").then(|| read_minio(r)).flatten();
    let redis = r.is_set("redis_cluster").then(|| read_redis(r)).flatten();
    let nodename_var = r.get::<Option<String>>("nodename").flatten();
    let cluster_var = r.get::<Option<String>>("node_cluster").flatten();
    // Every part is read before bailing out, so all problems of the host are reported.
    let (ip, params) = (ip?, params?);
    check_node_vip(r, &params);
    let base = check_base(r, &params.node_base);
    let repos = base.and_then(|c| super::repos::resolve(r, c, &params));
    let mut pg = pg;
    if let (Some(catalog), Some(repos), Some(pg)) = (base, &repos, &mut pg) {
        // Unset, pg_version is the newest major the node's repositories offer.
        let user_set = r
            .var("pg_version")
            .is_some_and(|v| v.scope != Scope::Default);
        if !user_set && let Some(&newest) = super::repos::offered(repos).last() {
            pg.params.pg_version = newest;
        }
        if !check_pg_version(r, catalog, repos, pg.params.pg_version) {
            return None;
        }
        pg.packages = super::packages::resolve(r, catalog, &pg.params, repos)?;
    }
    let node_cron = check_crontab(r, "node_crontab", &params.node_crontab, true);
    if let Some(pg) = &mut pg {
        let pg_cron = check_crontab(r, "pg_crontab", &pg.params.pg_crontab, false);
        super::baseline::read(r, &mut pg.params)?;
        pg_cron?;
    }
    node_cron?;
    let repos = repos?;
    if let Some(i) = &infra {
        check_grafana(r, i, &repos);
    }
    let failed = |want: bool, got: bool| want && !got;
    if failed(member.infra, infra.is_some())
        || failed(member.etcd, etcd.is_some())
        || failed(r.is_set("pg_cluster"), pg.is_some())
        || failed(r.is_set("minio_cluster"), minio.is_some())
        || failed(r.is_set("redis_cluster"), redis.is_some())
    {
        return None;
    }
    let nodename = match (&pg, params.node_id_from_pg.0, nodename_var) {
        (Some(pg), true, _) => pg.name.clone(),
        (_, _, Some(n)) => n,
        _ => format!("node-{}", ip.to_string().replace('.', "-")),
    };
    let node_cluster = cluster_var
        .or_else(|| pg.as_ref().map(|p| p.cluster.clone()))
        .unwrap_or_else(|| "nodes".to_string());
    let mut modules = BTreeSet::from([Module::Node]);
    for (on, m) in [
        (infra.is_some(), Module::Infra),
        (etcd.is_some(), Module::Etcd),
        (pg.is_some(), Module::Pgsql),
        (redis.is_some(), Module::Redis),
        (minio.is_some(), Module::Minio),
    ] {
        if on {
            modules.insert(m);
        }
    }
    let node = Node {
        ip,
        nodename,
        node_cluster,
        modules,
        node: params,
        infra,
        etcd,
        pg,
        minio,
        redis,
        repos,
        tls: None,
        source: crate::model::NodeSource {
            host: key.loc,
            vars: std::sync::Arc::new(
                r.vars
                    .own
                    .iter()
                    .filter(|(_, v)| v.scope != Scope::Default)
                    .map(|(k, v)| (k.to_string(), (v.value.loc, v.value.strings())))
                    .collect(),
            ),
        },
    };
    super::rules::check_node(r, &node).then_some(node)
}

/// Grafana comes from the repository Pigsty names for it (module `infra`, Pigsty's own
/// repository); an infra node built without that repository has no Grafana: said.
fn check_grafana(r: &mut VarReader<'_>, i: &InfraMember, repos: &[crate::model::Repository]) {
    if !i.params.grafana_enabled.0 || crate::model::grafana_repo(repos).is_some() {
        return;
    }
    let loc = r.loc("grafana_enabled");
    let modules = r.get::<String>("node_repo_modules").unwrap_or_default();
    r.warn(
        loc,
        "grafana_enabled",
        format!(
            "{} gets no Grafana: Debian does not package it, and it comes from Pigsty's \
             `infra` repository, which node_repo_modules `{modules}` leaves out; add \
             `infra` to node_repo_modules (Pigsty's default, `local`, has it) or set \
             grafana_enabled: false",
            i.name
        ),
    );
}

/// A node VIP (`vip_enabled`, keepalived) needs its address and a VRRP router id.
fn check_node_vip(r: &mut VarReader<'_>, p: &NodeParams) {
    if let Some(vrid) = p.vip_vrid
        && !(1..=254).contains(&vrid)
    {
        let loc = r.loc("vip_vrid");
        r.error(
            loc,
            "vip_vrid",
            format!("vip_vrid {vrid} is outside 1 to 254 (a VRRP virtual router id)"),
        );
    }
    if !p.vip_enabled.0 {
        return;
    }
    for (key, missing, what) in [
        (
            "vip_address",
            p.vip_address.is_none(),
            "the VIP, an IPv4 address",
        ),
        (
            "vip_vrid",
            p.vip_vrid.is_none(),
            "a VRRP virtual router id, 1 to 254, unique on the VLAN",
        ),
    ] {
        if missing {
            let loc = r.loc("vip_enabled");
            r.error(loc, key, format!("vip_enabled needs {key} ({what})"));
        }
    }
    let iface = p.vip_interface.trim();
    let ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if iface != "auto" && (iface.is_empty() || iface.len() > 15 || !iface.chars().all(ok)) {
        let loc = r.loc("vip_interface");
        r.error(
            loc,
            "vip_interface",
            format!(
                "vip_interface `{iface}` is not `auto` or an interface name (letters, digits, `.`, `_`, `-`; at most 15)"
            ),
        );
    }
    if p.vip_auth_pass
        .chars()
        .any(|c| c.is_whitespace() || c == '"' || c == '\\' || c.is_control())
    {
        let loc = r.loc("vip_auth_pass");
        r.error(
            loc,
            "vip_auth_pass",
            "vip_auth_pass may not hold blanks, quotes, backslashes or control characters (keepalived.conf words)".to_string(),
        );
    }
}

/// `node_base` names one of the bases this tool builds.
fn check_base(r: &mut VarReader<'_>, name: &str) -> Option<&'static Catalog> {
    let found = Catalog::named(name);
    if found.is_none() {
        let loc = r.loc("node_base");
        let names = Catalog::names();
        let mut finding = Finding::error(
            r.file,
            loc,
            "node_base",
            format!(
                "unknown base `{name}`: this pigsty builds {}",
                names.join(", ")
            ),
        );
        if let Some(s) = did_you_mean(name, names.iter().copied()) {
            finding = finding.with_help(format!("did you mean `{s}`?"));
        }
        r.findings.push(finding);
    }
    found
}

/// An image holds exactly the major the inventory asks for, so a major none of
/// the node's repositories offers is refused at the line that asks for it.
fn check_pg_version(
    r: &mut VarReader<'_>,
    catalog: &Catalog,
    repos: &[Repository],
    version: u32,
) -> bool {
    let offered = super::repos::offered(repos);
    if offered.contains(&version) {
        return true;
    }
    let loc = r.loc("pg_version");
    let list = |v: &BTreeSet<u32>| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    let names: Vec<&str> = repos.iter().map(|x| x.name.as_str()).collect();
    let elsewhere: Vec<String> = catalog
        .repositories
        .iter()
        .filter(|x| x.pg_versions.contains(&version))
        .map(|x| format!("`{}` (module {})", x.name, x.module))
        .collect();
    let mut finding = Finding::error(
        r.file,
        loc,
        "pg_version",
        format!(
            "pg_version {version} is not offered by the repositories of this node on {} ({}), \
             which offer PostgreSQL {}",
            catalog.name,
            names.join(", "),
            list(&offered)
        ),
    );
    finding = finding.with_help(if elsewhere.is_empty() {
        format!(
            "use pg_version {} (or leave it unset for the newest)",
            list(&offered)
        )
    } else {
        format!(
            "use pg_version {}, or add the repository module that has {version} to \
             node_repo_modules: {}",
            list(&offered),
            elsewhere.join(", ")
        )
    });
    r.findings.push(finding);
    false
}

fn read_infra(r: &mut VarReader<'_>) -> Option<InfraMember> {
    let seq: Option<u32> = r.get("infra_seq");
    let params = InfraParams::read(r);
    let seq = seq?;
    Some(InfraMember {
        seq,
        name: format!("infra-{seq}"),
        params: params?,
    })
}

fn read_etcd(r: &mut VarReader<'_>) -> Option<EtcdMember> {
    let cluster: Option<String> = r.get("etcd_cluster");
    let seq: Option<u32> = r.get("etcd_seq");
    let params = EtcdParams::read(r);
    let cluster = cluster?;
    if cluster != "etcd" {
        let loc = r.loc("etcd_cluster");
        r.error(
            loc,
            "etcd_cluster",
            format!("members of the group `etcd` must have etcd_cluster `etcd`, found `{cluster}`"),
        );
        return None;
    }
    let seq = seq?;
    let params = params?;
    let (beat, election) = (params.etcd_heartbeat_interval, params.etcd_election_timeout);
    // etcd refuses to start otherwise; say so at check time, at the line that sets it.
    if beat == 0 || u64::from(election) < 5 * u64::from(beat) {
        let loc = r.loc("etcd_election_timeout");
        r.error(
            loc,
            "etcd_election_timeout",
            format!(
                "etcd needs an election timeout of at least 5 heartbeats: \
                 etcd_election_timeout {election} ms, etcd_heartbeat_interval {beat} ms"
            ),
        );
        return None;
    }
    Some(EtcdMember {
        name: format!("{cluster}-{seq}"),
        cluster,
        seq,
        params,
    })
}

/// A PostgreSQL cluster name: Pigsty's rule, and not `root` (etcd's root user).
fn valid_cluster_name(name: &str) -> bool {
    name != "root" && super::rules::is_cluster_name(name)
}

/// What each of Pigsty's other `pg_mode` kernels is, for the refusal.
const PG_MODES: &[(&str, &str)] = &[
    ("citus", "Citus distributed PostgreSQL"),
    ("mssql", "Babelfish (SQL Server compatibility)"),
    ("mysql", "OpenHalo (MySQL compatibility)"),
    ("ivory", "IvorySQL (Oracle compatibility)"),
    ("pgtde", "Percona PostgreSQL with TDE"),
    ("polar", "PolarDB for PostgreSQL"),
    ("gpsql", "Greenplum / Cloudberry"),
    ("agens", "AgensGraph"),
    ("oriole", "OrioleDB"),
    ("pgedge", "pgEdge"),
];

/// Images hold Debian's PostgreSQL: Pigsty's other kernels are refused by name.
fn check_pg_mode(r: &mut VarReader<'_>) -> bool {
    let mode = r.get::<Option<String>>("pg_mode").flatten();
    let Some(mode) = mode.filter(|m| m != "pgsql") else {
        return true;
    };
    let what = PG_MODES
        .iter()
        .find(|(m, _)| *m == mode)
        .map_or("an unknown mode".to_string(), |(_, w)| w.to_string());
    let loc = r.loc("pg_mode");
    r.findings.push(
        Finding::error(
            r.file,
            loc,
            "pg_mode",
            format!(
                "pg_mode `{mode}` ({what}) is not supported: images hold Debian's PostgreSQL \
                 (pg_mode: pgsql) only"
            ),
        )
        .with_help("remove pg_mode (or set it to pgsql) to build plain PostgreSQL nodes"),
    );
    false
}

fn read_pg(r: &mut VarReader<'_>) -> Option<PgInstance> {
    if !check_pg_mode(r) {
        return None;
    }
    let cluster: Option<String> = r.get("pg_cluster");
    let seq: Option<u32> = r.get("pg_seq");
    let role: Option<PgRole> = r.get("pg_role");
    let params = PgParams::read(r);
    let cluster = cluster?;
    if !valid_cluster_name(&cluster) {
        let loc = r.loc("pg_cluster");
        r.error(
            loc,
            "pg_cluster",
            format!("`{cluster}` is not a valid cluster name: expected letters, digits and `-` (matching ^[A-Za-z0-9-]+$), and not `root`"),
        );
        return None;
    }
    let params = params?;
    check_pg_params(r, &params);
    let seq = seq?;
    Some(PgInstance {
        name: format!("{cluster}-{seq}"),
        cluster,
        seq,
        role: role?,
        params,
        packages: Vec::new(),
    })
}

/// Rules on PGSQL parameters that types alone do not express.
fn check_pg_params(r: &mut VarReader<'_>, p: &PgParams) {
    // Pigsty falls back to `norm` for a name its plans lack; we say so instead.
    if let crate::model::PgRto::Plan(name) = &p.pg_rto
        && !p.pg_rto_plan.contains_key(name)
    {
        let loc = r.loc("pg_rto");
        let known: Vec<&str> = p.pg_rto_plan.keys().map(String::as_str).collect();
        r.error(
            loc,
            "pg_rto",
            format!(
                "pg_rto `{name}` is not an entry of pg_rto_plan (which has: {})",
                known.join(", ")
            ),
        );
    }
    if p.pg_vip_enabled.0 && !is_ipv4_cidr(&p.pg_vip_address) {
        let loc = r.loc("pg_vip_address");
        r.error(
            loc,
            "pg_vip_address",
            format!(
                "pg_vip_enabled needs an IPv4 CIDR address like 10.10.10.2/24, found `{}`",
                p.pg_vip_address
            ),
        );
    }
    for (i, user) in p.pg_users.iter().enumerate() {
        if !valid_role_name(&user.name) {
            let loc = r.loc_in("pg_users", &[Step::Item(i), Step::Field("name")]);
            r.error(
                loc,
                &format!("pg_users[{i}].name"),
                format!(
                    "`{}` is not a valid role name: expected ^[a-z_][a-z0-9_@.-]{{0,62}}$",
                    user.name
                ),
            );
        }
    }
    let mut ports: HashMap<u16, &str> = HashMap::new();
    for svc in &p.pg_default_services {
        ports.insert(svc.port, &svc.name);
    }
    for (i, svc) in p.pg_services.iter().enumerate() {
        if let Some(other) = ports.insert(svc.port, &svc.name) {
            let loc = r.loc_in("pg_services", &[Step::Item(i), Step::Field("port")]);
            r.error(
                loc,
                &format!("pg_services[{i}].port"),
                format!(
                    "port {} of service `{}` is already used by service `{other}`",
                    svc.port, svc.name
                ),
            );
        }
    }
}

fn valid_role_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
    first_ok
        && name.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_@.-".contains(c))
}

fn is_ipv4_cidr(s: &str) -> bool {
    let Some((ip, len)) = s.split_once('/') else {
        return false;
    };
    ip.parse::<Ipv4Addr>().is_ok() && len.parse::<u8>().is_ok_and(|l| l <= 32)
}

fn read_minio(r: &mut VarReader<'_>) -> Option<MinioMember> {
    let cluster: Option<String> = r.get("minio_cluster");
    let seq: Option<u32> = r.get("minio_seq");
    let params = MinioParams::read(r);
    if r.var("minio_cluster")
        .is_some_and(|v| v.scope == Scope::All)
    {
        let loc = r.loc("minio_cluster");
        r.error(
            loc,
            "minio_cluster",
            "minio_cluster must be set in the MinIO group's vars, not in all.vars (it would make every node a MinIO member)",
        );
        return None;
    }
    let (cluster, seq) = (cluster?, seq?);
    let params = params?;
    let node_pattern = r
        .pattern("minio_node", "minio_seq")
        .unwrap_or_else(|| params.minio_node.clone());
    Some(MinioMember {
        name: format!("{cluster}-{seq}"),
        cluster,
        seq,
        node_pattern,
        params,
    })
}

fn read_redis(r: &mut VarReader<'_>) -> Option<RedisNode> {
    let cluster: Option<String> = r.get("redis_cluster");
    let node: Option<u32> = r.get("redis_node");
    let instances: Option<BTreeMap<u16, RedisInstance>> = r.get("redis_instances");
    let params = RedisParams::read(r);
    let (cluster, node, instances) = (cluster?, node?, instances?);
    let mut replicas = BTreeMap::new();
    let mut ok = true;
    for (port, inst) in instances {
        let replica_of = match inst.replica_of.as_deref().map(parse_ip_port) {
            None => None,
            Some(Some(upstream)) => Some(upstream),
            Some(None) => {
                let loc = r
                    .var("redis_instances")
                    .and_then(|v| v.value.get(&port.to_string()))
                    .map(|i| i.get("replica_of").unwrap_or(i).loc)
                    .unwrap_or_else(|| r.loc("redis_instances"));
                r.error(
                    loc,
                    &format!("redis_instances.{port}.replica_of"),
                    format!(
                        "expected 'IP PORT' such as '10.10.10.10 6379', found `{}`",
                        inst.replica_of.unwrap_or_default()
                    ),
                );
                ok = false;
                continue;
            }
        };
        let name = format!("{cluster}-{node}-{port}");
        replicas.insert(port, RedisReplica { name, replica_of });
    }
    let params = params?;
    ok.then(|| RedisNode {
        name: format!("{cluster}-{node}"),
        cluster,
        node,
        instances: replicas,
        params,
    })
}

fn parse_ip_port(s: &str) -> Option<(Ipv4Addr, u16)> {
    let mut parts = s.split_whitespace();
    let ip = parts.next()?.parse().ok()?;
    let port = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((ip, port))
}

/// Rules across nodes: unique names and seqs, one primary per cluster, contiguous
/// MinIO seqs.
fn check_fleet(
    nodes: &[Node],
    locs: &KeyLocs,
    tree: &Tree,
    file: &str,
    findings: &mut Vec<Finding>,
) {
    // Point at the variable's own definition where it has one, else at the host key.
    let at = |n: &Node, key: &'static str| {
        locs.get(&(n.ip, key))
            .or_else(|| locs.get(&(n.ip, "")))
            .copied()
            .unwrap_or_default()
    };
    let mut err = |n: &Node, key: &'static str, loc_key: &'static str, msg: String| {
        findings.push(Finding::error(file, at(n, loc_key), key, msg))
    };

    let mut names: HashMap<&str, &Node> = HashMap::new();
    for n in nodes {
        if let Some(prev) = names.insert(&n.nodename, n) {
            err(
                n,
                "nodename",
                "nodename",
                format!("nodename `{}` is also used by {}", n.nodename, prev.ip),
            );
        }
    }
    let mut pg: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    let mut minio: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for n in nodes {
        if let Some(p) = &n.pg {
            pg.entry(&p.cluster).or_default().push(n);
        }
        if let Some(m) = &n.minio {
            minio.entry(&m.cluster).or_default().push(m.seq);
        }
    }
    // Unique seqs per (module, cluster).
    let mut used: HashMap<(String, u32), Ipv4Addr> = HashMap::new();
    for n in nodes {
        let ids = [
            n.infra
                .as_ref()
                .map(|i| ("infra_seq", "infra".to_string(), i.seq)),
            n.etcd
                .as_ref()
                .map(|e| ("etcd_seq", e.cluster.clone(), e.seq)),
            n.pg.as_ref().map(|p| ("pg_seq", p.cluster.clone(), p.seq)),
            n.minio
                .as_ref()
                .map(|m| ("minio_seq", m.cluster.clone(), m.seq)),
            n.redis
                .as_ref()
                .map(|r| ("redis_node", r.cluster.clone(), r.node)),
        ];
        for (key, cluster, seq) in ids.into_iter().flatten() {
            if let Some(prev) = used.insert((format!("{key}/{cluster}"), seq), n.ip) {
                err(
                    n,
                    key,
                    key,
                    format!("{key} {seq} in cluster `{cluster}` is already used by {prev}"),
                );
            }
        }
    }
    for (cluster, members) in &pg {
        let primaries: Vec<&&Node> = members
            .iter()
            .filter(|n| n.pg.as_ref().is_some_and(|p| p.role == PgRole::Primary))
            .collect();
        match primaries.len() {
            1 => {}
            0 => err(
                members[0],
                "pg_role",
                "pg_role",
                format!(
                    "cluster `{cluster}` has no primary: exactly one instance needs pg_role primary"
                ),
            ),
            _ => {
                for extra in &primaries[1..] {
                    err(
                        extra,
                        "pg_role",
                        "pg_role",
                        format!(
                            "cluster `{cluster}` has more than one primary (also {})",
                            primaries[0].ip
                        ),
                    );
                }
            }
        }
    }
    check_dcs_timing(nodes, &at, file, findings);
    check_cluster_wide(nodes, &at, file, findings);
    check_redis_clusters(nodes, &at, file, findings);
    let no_exporter: Vec<&Node> = nodes
        .iter()
        .filter(|n| {
            n.node.node_base == crate::model::NO_PGBOUNCER_EXPORTER_BASE
                && n.pg.as_ref().is_some_and(|p| {
                    p.params.pgbouncer_enabled.0 && p.params.pgbouncer_exporter_enabled.0
                })
        })
        .collect();
    if let Some(first) = no_exporter.first() {
        findings.push(
            Finding::warning(
                file,
                at(first, "node_base"),
                "pgbouncer_exporter_enabled",
                format!(
                    "{} PGSQL node(s) on debian12 run no pgbouncer exporter, and Prometheus \
                     gets no pgbouncer target for them: Debian 12's prometheus-pgbouncer-exporter \
                     (1.7) fails on its pgbouncer 1.18 (`KeyError: 'total_requests'` in SHOW \
                     STATS), and no other is packaged for Debian 12",
                    no_exporter.len()
                ),
            )
            .with_help("node_base: debian13 runs Debian 13's exporter (0.10); or set pgbouncer_exporter_enabled: false"),
        );
    }
    for (cluster, mut seqs) in minio {
        seqs.sort_unstable();
        seqs.dedup();
        let contiguous = seqs.windows(2).all(|w| w[1] == w[0] + 1);
        if !contiguous {
            let list: Vec<String> = seqs.iter().map(u32::to_string).collect();
            findings.push(Finding::error(
                file,
                tree.group(cluster)
                    .map(|g| tree.groups[g].loc)
                    .unwrap_or_default(),
                "minio_seq",
                format!(
                    "MinIO cluster `{cluster}` needs contiguous minio_seq values, found {}",
                    list.join(", ")
                ),
            ));
        }
    }
}

/// `redis_mode: cluster` needs at least three primaries, each with
/// `redis_cluster_replicas` replicas (`redis-cli --cluster create` refuses fewer), and
/// one mode for the whole cluster.
fn check_redis_clusters(
    nodes: &[Node],
    at: &dyn Fn(&Node, &'static str) -> Loc,
    file: &str,
    findings: &mut Vec<Finding>,
) {
    let mut clusters: BTreeMap<&str, Vec<&Node>> = BTreeMap::new();
    for n in nodes {
        if let Some(r) = &n.redis {
            clusters.entry(&r.cluster).or_default().push(n);
        }
    }
    for (cluster, members) in clusters {
        let first = members[0].redis.as_ref().expect("grouped by redis");
        if let Some(other) = members[1..].iter().find(|n| {
            n.redis
                .as_ref()
                .is_some_and(|r| r.params.redis_mode != first.params.redis_mode)
        }) {
            findings.push(Finding::error(
                file,
                at(other, "redis_mode"),
                "redis_mode",
                format!(
                    "redis cluster `{cluster}` mixes modes: {} is {}, {} is {}",
                    members[0].ip,
                    crate::model::serde_plain(&first.params.redis_mode),
                    other.ip,
                    other
                        .redis
                        .as_ref()
                        .map(|r| crate::model::serde_plain(&r.params.redis_mode))
                        .unwrap_or_default()
                ),
            ));
            continue;
        }
        if first.params.redis_mode != crate::model::RedisMode::Cluster {
            continue;
        }
        let replicas = first.params.redis_cluster_replicas;
        let count: usize = members
            .iter()
            .filter_map(|n| n.redis.as_ref())
            .map(|r| r.instances.len())
            .sum();
        let need = 3 * (replicas as usize + 1);
        if count < need {
            findings.push(Finding::error(
                file,
                at(members[0], "redis_instances"),
                "redis_instances",
                format!(
                    "redis cluster `{cluster}` has {count} instance(s); a Redis Cluster needs at \
                     least 3 primaries, and with redis_cluster_replicas {replicas} that is {need} instances"
                ),
            ));
        }
    }
}

/// The same finding reached through many hosts (a bad `all.vars` value) is shown once.
fn dedupe(findings: &mut Vec<Finding>) {
    let mut seen = HashSet::new();
    findings.retain(|f| seen.insert(f.clone()));
    findings.sort_by_key(|f| (f.line, f.column));
}

/// Patroni keeps its leader key only while etcd answers within `retry_timeout`. When
/// the etcd member that leads Raft goes down, the others elect a new leader after one
/// to two election timeouts (randomised), a split vote costs another round, and
/// nothing can be written until then; a primary whose retry budget runs out first
/// demotes itself, and the cluster has no primary until it is elected again. Seen in
/// the lab: etcd at 5000 ms, retry_timeout 10 s, the node that led Raft powered off,
/// 17 s (a split vote, then a second round) without a Raft leader, the primary
/// demoted. Hence three election timeouts. A warning: Pigsty's own plans meet it with
/// etcd's default timing (1000 ms).
fn check_dcs_timing(
    nodes: &[Node],
    at: &dyn Fn(&Node, &'static str) -> Loc,
    file: &str,
    findings: &mut Vec<Finding>,
) {
    let Some(election_ms) = nodes
        .iter()
        .filter_map(|n| n.etcd.as_ref().map(|e| e.params.etcd_election_timeout))
        .max()
    else {
        return;
    };
    for n in nodes {
        let Some(pg) = &n.pg else { continue };
        if !pg.params.patroni_enabled.0 {
            continue;
        }
        let retry_s = pg.params.rto_timings().retry_timeout;
        if u64::from(retry_s) * 1000 < 3 * u64::from(election_ms) {
            findings.push(
                Finding::warning(
                    file,
                    at(n, "pg_rto"),
                    "pg_rto",
                    format!(
                        "{}: Patroni's retry_timeout {retry_s} s is shorter than three etcd election \
                         timeouts ({} ms each): if the etcd member leading Raft goes down, the \
                         primary can demote itself before etcd has a new leader",
                        pg.name, election_ms
                    ),
                )
                .with_help(
                    "raise retry_timeout in the pg_rto plan (keeping loop_wait + 2 x retry_timeout <= ttl) \
                     or lower etcd_election_timeout",
                ),
            );
        }
    }
}

/// The members of a PostgreSQL cluster should agree on the parameters Patroni keeps
/// for the whole cluster (its DCS configuration: max_connections,
/// max_locks_per_transaction, wal_level, ...). A host's own `pg_parameters` replaces
/// its cluster's whole map (as Ansible's host variables do), so one that sets such a
/// parameter differently, or leaves out one its cluster sets, makes the members'
/// configurations disagree, and the cluster runs whichever was written last.
fn check_cluster_wide(
    nodes: &[Node],
    at: &dyn Fn(&Node, &'static str) -> Loc,
    file: &str,
    findings: &mut Vec<Finding>,
) {
    use std::collections::BTreeMap;
    let wide = |n: &Node| -> BTreeMap<String, String> {
        n.pg.as_ref()
            .map(|pg| {
                pg.params
                    .pg_parameters
                    .iter()
                    .map(|(k, v)| (k.to_ascii_lowercase(), v.0.clone()))
                    .filter(|(k, _)| crate::render::CLUSTER_WIDE.contains(&k.as_str()))
                    .collect()
            })
            .unwrap_or_default()
    };
    type Wide = BTreeMap<String, String>;
    let mut clusters: BTreeMap<&str, Vec<(&Node, Wide)>> = BTreeMap::new();
    for n in nodes {
        if let Some(pg) = &n.pg {
            clusters.entry(&pg.cluster).or_default().push((n, wide(n)));
        }
    }
    let show = |m: &Wide| {
        if m.is_empty() {
            "none".to_string()
        } else {
            m.iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    for (cluster, members) in clusters {
        // The cluster's: what most members say (the first such, on a tie).
        let mut counts: Vec<(&Wide, usize)> = Vec::new();
        for (_, m) in &members {
            match counts.iter_mut().find(|(c, _)| *c == m) {
                Some((_, k)) => *k += 1,
                None => counts.push((m, 1)),
            }
        }
        // (max_by_key takes the last of equals: reversed, the first.)
        let Some(&(most, _)) = counts.iter().rev().max_by_key(|(_, k)| *k) else {
            continue;
        };
        for (n, mine) in members.iter().filter(|(_, m)| m != most) {
            let name = n.pg.as_ref().map_or("", |p| p.name.as_str());
            findings.push(
                Finding::warning(
                    file,
                    at(n, "pg_parameters"),
                    "pg_parameters",
                    format!(
                        "{name}: its cluster-wide PostgreSQL parameters ({}) differ from the rest \
                         of {cluster} ({}): Patroni keeps one value of each for the whole cluster, \
                         so the members' configurations disagree and the last one written wins",
                        show(mine),
                        show(most),
                    ),
                )
                .with_help(
                    "set cluster-wide parameters in the cluster's vars, and repeat them in a \
                     host's own pg_parameters (which replaces the cluster's whole map)",
                ),
            );
        }
    }
}

/// Every line of a crontab parameter is a job cron will run: each bad one is an
/// error at its own line. `None` if any was bad.
fn check_crontab(
    r: &mut VarReader<'_>,
    key: &str,
    lines: &[String],
    with_user: bool,
) -> Option<()> {
    let mut ok = true;
    for (i, line) in lines.iter().enumerate() {
        if let Err(why) = crate::model::CronJob::parse(line, with_user) {
            let loc = r.loc_in(key, &[super::reader::Step::Item(i)]);
            r.error(loc, &format!("{key}[{i}]"), why);
            ok = false;
        }
    }
    ok.then_some(())
}
