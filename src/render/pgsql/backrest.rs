//! pgBackRest: the stanza of this cluster and `repo1-*` options from
//! `pgbackrest_repo[pgbackrest_method]`, after Pigsty's `pgbackrest.conf`.
//!
//! pgBackRest's ini reader takes `key=value` lines, trims both ends and has no
//! escaping, so a value must be one line without surrounding blanks; anything else is
//! an error naming the option.

use serde::Serialize;

use crate::model::PgParams;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RepoOption {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Repo {
    pub method: String,
    pub options: Vec<RepoOption>,
    /// Repo options left out, with the reason (written as comments).
    pub skipped: Vec<String>,
    /// The repository directory when it is on this node (`local`), for tmpfiles.
    pub local_path: Option<String>,
}

/// Options pgBackRest 2.45 (Debian 12) only accepts with `--beta`, with why.
const BETA_ONLY: &[(&str, &str)] = &[(
    "block",
    "block incremental backup is a beta feature in pgBackRest 2.45 (Debian 12)",
)];

pub fn repo(p: &PgParams, cluster: &str) -> Result<Repo, String> {
    let method = &p.pgbackrest_method;
    let repo = p.pgbackrest_repo.get(method).ok_or_else(|| {
        let have: Vec<&str> = p.pgbackrest_repo.keys().map(String::as_str).collect();
        format!(
            "pgbackrest_method `{method}` is not a repository of pgbackrest_repo (has: {})",
            have.join(", ")
        )
    })?;
    let mut options = Vec::new();
    let mut skipped = Vec::new();
    let mut add = |key: &str, value: &str| -> Result<(), String> {
        if let Some((_, why)) = BETA_ONLY.iter().find(|(k, _)| *k == key) {
            skipped.push(format!("repo1-{}: {why}", key.replace('_', "-")));
            return Ok(());
        }
        options.push(option(key, &value.replace("${pg_cluster}", cluster))?);
        Ok(())
    };
    let at = |e: String| format!("pgbackrest_repo.{method}: {e}");
    if let Some(kind) = &repo.kind {
        add("type", kind).map_err(at)?;
    }
    if let Some(path) = &repo.path {
        add("path", path).map_err(at)?;
    }
    for (k, v) in &repo.options {
        add(k, &v.0).map_err(at)?;
    }
    let posix = repo.kind.as_deref().is_none_or(|k| k == "posix");
    Ok(Repo {
        method: method.clone(),
        options,
        skipped,
        local_path: repo.path.clone().filter(|_| posix),
    })
}

fn option(key: &str, value: &str) -> Result<RepoOption, String> {
    let key_ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if !key_ok {
        return Err(format!("`{key}` is not a pgBackRest option name"));
    }
    if value.is_empty() || value.trim() != value || value.chars().any(char::is_control) {
        return Err(format!(
            "{key}: the value {value:?} cannot be written to pgbackrest.conf (one line, no leading or trailing blanks, not empty)"
        ));
    }
    Ok(RepoOption {
        key: format!("repo1-{}", key.replace('_', "-")),
        value: value.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_checks() {
        assert_eq!(
            option("s3_key_secret", "a=b#c").unwrap().key,
            "repo1-s3-key-secret"
        );
        assert!(option("s3_key", " padded").is_err());
        assert!(option("s3_key", "a\nb").is_err());
        assert!(option("Bad Key", "x").is_err());
    }
}
