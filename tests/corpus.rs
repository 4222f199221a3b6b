//! Real inventories of Pigsty v4.5.0 (`tests/fixtures/pigsty-v4.5.0/`, unchanged; see
//! its README for source and license), planned as a user would: each is accepted
//! with a plan holding what it asks for, or refused with exit 2 naming the feature
//! this tool does not build.

use std::path::PathBuf;
use std::process::Command;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/pigsty-v4.5.0")
        .join(name)
}

/// `plan --all --json`: exit code, the plans (if any) and stderr.
fn plan(name: &str) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pigsty"))
        .arg("-i")
        .arg(fixture(name))
        .args(["plan", "--all", "--json"])
        .output()
        .unwrap();
    let plans = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    let code = out.status.code().unwrap_or(-1);
    (
        code,
        plans,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The plan of one node, by nodename.
fn node<'a>(plans: &'a serde_json::Value, nodename: &str) -> &'a serde_json::Value {
    plans
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["node"]["nodename"] == nodename)
        .unwrap_or_else(|| panic!("no plan for {nodename}"))
}

fn strings(v: &serde_json::Value) -> Vec<String> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

fn repo_names(plan: &serde_json::Value) -> Vec<String> {
    plan["image"]["repositories"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn accepted_inventories_plan_what_they_ask_for() {
    for (file, nodes, extensions) in [
        (
            "meta.yml",
            &["pg-meta-1"][..],
            &["postgresql-18-postgis-3", "postgresql-18-pgvector"][..],
        ),
        (
            "rich.yml",
            &["pg-meta-1"][..],
            &[
                "postgresql-18-postgis-3",
                // Pigsty's build of timescaledb (with its TSL features), from its repository.
                "postgresql-18-timescaledb-tsl",
                "postgresql-18-pgvector",
                "postgresql-18-pg-wait-sampling",
            ][..],
        ),
        (
            "ha/trio.yml",
            &["pg-meta-1", "pg-meta-2", "pg-meta-3"][..],
            &[][..],
        ),
    ] {
        let (code, plans, stderr) = plan(file);
        assert_eq!(code, 0, "{file}: {stderr}");
        for nodename in nodes {
            let p = node(&plans, nodename);
            let packages = strings(&p["packages"]);
            // The major it asks for, and no other.
            assert!(
                packages.contains(&"postgresql-18".to_string()),
                "{file}: {packages:?}"
            );
            assert!(
                !packages
                    .iter()
                    .any(|x| x == "postgresql-17" || x == "postgresql-15"),
                "{file}: {packages:?}"
            );
            for e in extensions {
                assert!(
                    packages.contains(&e.to_string()),
                    "{file}: {e} not in {packages:?}"
                );
            }
            // From the repositories it names: Pigsty's pgsql module brings PGDG.
            let repos = repo_names(p);
            assert!(repos.contains(&"pgdg".to_string()), "{file}: {repos:?}");
            assert_eq!(p["image"]["name"], "debian13", "{file}");
        }
    }
}

#[test]
fn refused_inventories_name_what_is_not_built() {
    for (file, line, says) in [
        ("mssql.yml", "mssql.yml:48:", "pg_mode `mssql` (Babelfish"),
        (
            "supabase.yml",
            "supabase.yml:109:37:",
            "`pg18-time` is one of Pigsty's extension categories",
        ),
        (
            "demo/el.yml",
            "el.yml:",
            "repo_upstream has no entry for debian13",
        ),
    ] {
        let (code, _, stderr) = plan(file);
        assert_eq!(code, 2, "{file}: {stderr}");
        assert!(stderr.contains(line), "{file}: no {line} in\n{stderr}");
        assert!(stderr.contains(says), "{file}: no `{says}` in\n{stderr}");
    }
}
