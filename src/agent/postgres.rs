//! Steps after Patroni on the primary: database objects from the rendered SQL files
//! (idempotent: they create what is missing and set the rest to the plan's values).

use std::process::Command;

use anyhow::Context;

use super::Agent;
use super::input::PgInfo;
use super::retry::Attempt;
use crate::sys;

/// `pg-users` applies the roles file(s); `pg-databases` the others, in order.
pub fn apply_sql(agent: &mut Agent, step: &str) -> anyhow::Result<String> {
    let pg = agent
        .doc
        .pg
        .clone()
        .context("node.json has no pg section")?;
    let files: Vec<&String> = pg
        .sql_files
        .iter()
        .filter(|f| f.contains("role") == (step == "pg-users"))
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
    ]
    .iter()
    .any(|m| msg.contains(m))
}
