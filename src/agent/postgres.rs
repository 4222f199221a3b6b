//! Steps after Patroni on the primary: database objects from the rendered SQL files
//! (idempotent: they create what is missing and set the rest to the plan's values).

use std::process::Command;

use anyhow::Context;

use super::Agent;
use super::retry::Attempt;
use crate::plan::StepId;
use crate::plan::node_json::PgInfo;
use crate::sys;

/// node.json's PGSQL section.
fn pg_info(agent: &Agent) -> anyhow::Result<PgInfo> {
    agent.doc.pg.clone().context("node.json has no pg section")
}

/// What both backup steps start with: the PGSQL section once the node is still the
/// primary and its repository answers, or why the step has nothing to do (`Err`).
fn backup_primary(agent: &Agent, step: &str) -> anyhow::Result<Result<PgInfo, String>> {
    let pg = pg_info(agent)?;
    if let Some(why) = replica_now(agent, step, &pg)? {
        return Ok(Err(why));
    }
    wait_repo(agent, step, &pg)?;
    Ok(Ok(pg))
}

/// `pg-users` applies the roles file(s); `pg-databases` the others, in order.
pub fn apply_sql(agent: &mut Agent, id: StepId) -> anyhow::Result<String> {
    let step = id.as_str();
    let pg = pg_info(agent)?;
    if let Some(why) = replica_now(agent, step, &pg)? {
        return Ok(why);
    }
    let files: Vec<&String> = pg
        .sql_files
        .iter()
        .filter(|f| f.contains("role") == (id == StepId::PgUsers))
        .collect();
    for file in &files {
        let path = agent.path(file);
        let shown = path.display().to_string();
        agent
            .opts
            .policy()
            .wait(step, &format!("psql -f {shown}"), &local_pg(&pg), || {
                match sys::run(&mut psql(&pg, &["-f", &shown])) {
                    Ok(_) => Attempt::Ready(()),
                    // Not up yet (a restart, a promotion): try again; SQL errors are final.
                    Err(e) if is_connection_error(&e.to_string()) => Attempt::NotYet(e.to_string()),
                    Err(e) => Attempt::Fatal(e.into()),
                }
            })?;
        agent.checkpoint(&format!("{step}:{file}"))?;
    }
    Ok(format!(
        "applied {}",
        files
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The primary-only steps ask the running server, not the inventory: a designated
/// primary reimaged after a failover rejoins as a replica, and then the roles,
/// databases and backups belong to the node that leads. Some(detail) means skip.
fn replica_now(agent: &Agent, step: &str, pg: &PgInfo) -> anyhow::Result<Option<String>> {
    let answer =
        agent
            .opts
            .policy()
            .wait(
                step,
                "SELECT pg_is_in_recovery()",
                &local_pg(pg),
                || match sys::run_stdout(&mut psql(
                    pg,
                    &["-A", "-t", "-c", "SELECT pg_is_in_recovery()"],
                )) {
                    Ok(out) => Attempt::Ready(out.trim().to_string()),
                    Err(e) if is_connection_error(&format!("{e:#}")) => {
                        Attempt::NotYet(format!("{e:#}"))
                    }
                    Err(e) => Attempt::Fatal(e),
                },
            )?;
    Ok((answer == "t").then(|| replica_skip(&agent.doc.node.nodename, pg.is_primary)))
}

/// Why a primary-only step skips on a member that runs as a replica: every member
/// carries the SQL (so that any of them can lead), the leader applies it.
fn replica_skip(node: &str, designated_primary: bool) -> String {
    if designated_primary {
        format!(
            "skipped: {node} is a replica now (the designated primary rejoined after a \
             failover); the leader holds the roles, databases and backups"
        )
    } else {
        format!("skipped: {node} is a replica; the leader holds the roles, databases and backups")
    }
}

/// psql as the dbsu over the local socket, stopping at the first error.
pub fn psql(pg: &PgInfo, args: &[&str]) -> Command {
    let mut cmd = Command::new("runuser");
    cmd.args([
        "-u",
        &pg.dbsu,
        "--",
        "psql",
        "-X",
        "-q",
        "-v",
        "ON_ERROR_STOP=1",
    ])
    .args([
        "-h",
        &pg.socket_dir,
        "-p",
        &pg.port.to_string(),
        "-d",
        "postgres",
    ])
    .args(args);
    cmd
}

fn local_pg(pg: &PgInfo) -> String {
    format!("{}/.s.PGSQL.{}", pg.socket_dir, pg.port)
}

fn is_connection_error(msg: &str) -> bool {
    [
        "could not connect",
        "connection to server",
        "the database system is",
        // pgBackRest's DbConnectError, whose text goes to its log rather than
        // stderr: the server restarting (a leader lock renewed late and re-taken).
        "(exit status: 56)",
    ]
    .iter()
    .any(|m| msg.contains(m))
}

/// pgBackRest's answer while another pgBackRest process holds the stanza's lock: the
/// server's own archive-push, or a run of an agent killed a moment ago whose child
/// is still finishing. Waiting (bounded) helps; failing at once would not.
fn is_lock_busy(msg: &str) -> bool {
    msg.contains("unable to acquire lock")
}

/// pgBackRest's answer when the server had not archived a WAL segment within
/// `archive-timeout` (error 82). On a node that just booted, PostgreSQL's archiver may
/// still be in its one-minute pause after archive-push failed before the stanza
/// existed, or simply slow; the segment arrives later, so a bounded retry helps.
fn is_archive_timeout(msg: &str) -> bool {
    msg.contains("ERROR: [082]") || msg.contains("was not archived before the")
}

/// Run a pgBackRest command until it succeeds; a busy lock, a server not up yet or a
/// WAL segment not archived yet is retried within the policy, any other failure is
/// final.
fn pgbackrest_until_done(
    agent: &Agent,
    pg: &PgInfo,
    what: &str,
    args: &[&str],
) -> anyhow::Result<()> {
    agent.opts.policy().wait(
        "pgbackrest",
        what,
        &pg.pgbackrest.stanza,
        || match sys::run(&mut pgbackrest_cmd(agent, pg, args)) {
            Ok(out) => {
                // pgBackRest's own timestamped progress (log-level-console), into the
                // journal: where a slow backup spent its time.
                for line in String::from_utf8_lossy(&out.stdout).lines() {
                    if !line.trim().is_empty() {
                        tracing::info!("pgbackrest {what}: {line}");
                    }
                }
                Attempt::Ready(())
            }
            Err(e) => {
                let msg = e.to_string();
                if is_connection_error(&msg) || is_lock_busy(&msg) || is_archive_timeout(&msg) {
                    Attempt::NotYet(msg)
                } else {
                    Attempt::Fatal(e.into())
                }
            }
        },
    )?;
    Ok(())
}

/// pgbackrest as the dbsu with the node's config file.
fn pgbackrest_cmd(agent: &Agent, pg: &PgInfo, args: &[&str]) -> Command {
    let config = agent.path(&pg.pgbackrest.config);
    let mut cmd = Command::new("runuser");
    // A backup is bulk work: it reads and compresses the whole cluster. It yields
    // the CPU to Patroni and etcd, whose late lock renewal would demote the primary.
    cmd.args(["-u", &pg.dbsu, "--", "nice", "-n", "10", "pgbackrest"])
        .arg(format!("--config={}", config.display()))
        .arg(format!("--stanza={}", pg.pgbackrest.stanza))
        .args(args);
    cmd
}

/// Wait until pgBackRest can list its repository (reachable, credentials accepted).
fn wait_repo(agent: &Agent, step: &str, pg: &PgInfo) -> anyhow::Result<()> {
    let what = format!("the pgBackRest repository ({})", pg.pgbackrest.method);
    agent
        .opts
        .policy()
        .wait(step, &what, &pg.pgbackrest.config, || {
            match sys::run(&mut pgbackrest_cmd(agent, pg, &["repo-ls"])) {
                Ok(_) => Attempt::Ready(()),
                Err(e) => Attempt::NotYet(e.to_string()),
            }
        })?;
    Ok(())
}

/// `minio-ready` (a designated primary backing up to a MinIO it is not a member of):
/// the repo answers, as pgBackRest itself sees it.
pub fn repo_ready(agent: &mut Agent) -> anyhow::Result<String> {
    let pg = pg_info(agent)?;
    // Runs before Patroni, so the local server cannot say yet; the leader key can. A
    // replica needs no repository, and the pgbackrest step waits for it on a leader.
    if let Some(leader) = super::patroni::leader_elsewhere(agent, &pg) {
        return Ok(format!(
            "skipped: {leader} leads {} now (the designated primary {} rejoins as a replica); \
             the pgbackrest step waits for the repository if this node ever leads",
            pg.cluster, pg.name
        ));
    }
    wait_repo(agent, "minio-ready", &pg)?;
    Ok("the pgBackRest repository answers".into())
}

#[derive(serde::Deserialize, Default)]
#[serde(default)]
struct StanzaInfo {
    backup: Vec<serde_json::Value>,
}

/// `pgbackrest-stanza`: create the stanza (idempotent) right after the primary
/// starts. PostgreSQL archives from its first segment on, and until the stanza exists
/// every archive-push fails (after three failures the archiver pauses for a minute).
///
/// With the local repository a replica creates its own too, offline (`--no-online`:
/// from its control file), as Pigsty does on every member: after a switchover or a
/// failover it archives into it. Without one, every archive-push of the new primary
/// failed, its WAL piled up in pg_wal, and its next shutdown waited for the archiver
/// to give up (three tries per segment).
pub fn pgbackrest_stanza(agent: &mut Agent) -> anyhow::Result<String> {
    let pg = match backup_primary(agent, "pgbackrest-stanza")? {
        Ok(pg) => pg,
        Err(why) => return replica_stanza(agent, why),
    };
    pgbackrest_until_done(agent, &pg, "stanza-create", &["stanza-create"])?;
    agent.checkpoint("pgbackrest-stanza:created")?;
    // Wake the archiver now instead of at the end of its pause: a WAL switch makes a
    // new segment ready, and PostgreSQL signals the archiver for it.
    if let Err(e) = sys::run_stdout(&mut psql(
        &pg,
        &["-A", "-t", "-c", "SELECT pg_switch_wal()"],
    )) {
        tracing::warn!("pg_switch_wal after stanza-create: {e:#}");
    }
    Ok(format!(
        "stanza {} created in repo {}",
        pg.pgbackrest.stanza, pg.pgbackrest.method
    ))
}

/// `pgbackrest-stanza` on a member that runs as a replica (`why` says so): with the
/// local repository, its own stanza, made offline from its control file; with a
/// shared one, nothing.
fn replica_stanza(agent: &mut Agent, why: String) -> anyhow::Result<String> {
    let pg = pg_info(agent)?;
    if pg.pgbackrest.method != crate::model::LOCAL_BACKUP_REPO {
        return Ok(why);
    }
    pgbackrest_until_done(
        agent,
        &pg,
        "stanza-create --no-online",
        &["--no-online", "stanza-create"],
    )?;
    agent.checkpoint("pgbackrest-stanza:created")?;
    Ok(format!(
        "stanza {} created in this replica's local repo (offline), for when it leads",
        pg.pgbackrest.stanza
    ))
}

/// `pgbackrest`: take the first full backup unless the repository already holds one.
pub fn pgbackrest(agent: &mut Agent) -> anyhow::Result<String> {
    let pg = match backup_primary(agent, "pgbackrest")? {
        Ok(pg) => pg,
        Err(why) => return Ok(why),
    };
    let info = sys::run_stdout(&mut pgbackrest_cmd(agent, &pg, &["info", "--output=json"]))?;
    let stanzas: Vec<StanzaInfo> = serde_json::from_str(&info).unwrap_or_default();
    let backups: usize = stanzas.iter().map(|s| s.backup.len()).sum();
    if backups > 0 {
        return Ok(format!(
            "stanza {} exists with {backups} backup(s)",
            pg.pgbackrest.stanza
        ));
    }
    // pgBackRest bounds its own waits (archive-timeout, db-timeout, io-timeout).
    pgbackrest_until_done(
        agent,
        &pg,
        "the first full backup",
        &["--type=full", "backup"],
    )?;
    agent.checkpoint("pgbackrest:backup")?;
    Ok(format!(
        "stanza {}: first full backup taken",
        pg.pgbackrest.stanza
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_pgbackrest_answers_are_told_apart() {
        let timeout = "ERROR: [082]: WAL segment 000000010000000000000005 was not archived \
                       before the 60000ms timeout";
        assert!(is_archive_timeout(timeout));
        assert!(is_lock_busy("ERROR: [050]: unable to acquire lock on file"));
        assert!(is_connection_error(
            "`pgbackrest backup` failed (exit status: 56): "
        ));
        let fatal = "ERROR: [055]: unable to load info file '/pg/backup/archive/x/archive.info'";
        assert!(!is_archive_timeout(fatal) && !is_lock_busy(fatal));
    }

    #[test]
    fn a_replica_skips_saying_whether_it_was_meant_to_lead() {
        let designated = replica_skip("pg-test-1", true);
        assert!(
            designated.contains("rejoined after a failover"),
            "{designated}"
        );
        let replica = replica_skip("pg-test-2", false);
        assert!(
            replica.starts_with("skipped: pg-test-2 is a replica;"),
            "{replica}"
        );
        assert!(!replica.contains("failover"), "{replica}");
    }
}
