//! A PGSQL node's extra packages, resolved through the extension catalog
//! (`images/extensions.yml`) for its base and major: `pg_packages`, `pg_extensions`,
//! the extensions template1 (`pg_default_extensions`) and each database create, and
//! the libraries `pg_libs` preloads.
//! Every name that does not resolve is an error at the line that wrote it, with the
//! nearest known names, so an image never lacks what its inventory asks for.

use super::reader::{Step, VarReader};
use crate::catalog::Catalog;
use crate::diag::{Finding, Loc};
use crate::extensions::{self, Target, Unresolved};
use crate::model::{PgParams, Repository};

/// The Debian packages a node's PostgreSQL needs beyond the PGSQL module's, or
/// `None` when a name did not resolve (each one reported).
pub(super) fn resolve(
    r: &mut VarReader<'_>,
    base: &Catalog,
    p: &PgParams,
    repos: &[Repository],
) -> Option<Vec<String>> {
    let cat = extensions::Catalog::get();
    let v = p.pg_version;
    let upstream = Target::upstream_of(repos);
    let t = Target {
        base: &base.name,
        base_majors: &base.pg_versions,
        v,
        upstream: &upstream,
    };
    let mut out = Vec::new();
    let mut ok = true;
    let mut take =
        |r: &mut VarReader<'_>, loc: Loc, key: String, got: Result<Vec<String>, Unresolved>| {
            match got {
                Ok(pkgs) => out.extend(pkgs),
                Err(e) => {
                    ok = false;
                    report(r, loc, key, e, (base, v));
                }
            }
        };
    for (i, item) in p.pg_packages.iter().enumerate() {
        let loc = r.loc_in("pg_packages", &[Step::Item(i)]);
        for name in words(item) {
            take(r, loc, format!("pg_packages[{i}]"), cat.item(name, &t));
        }
    }
    for (i, item) in p.pg_extensions.iter().enumerate() {
        let loc = r.loc_in("pg_extensions", &[Step::Item(i)]);
        let key = format!("pg_extensions[{i}]");
        let Some(text) = item.as_str() else {
            let e = Unresolved {
                message: "expected a package or extension name".into(),
                nearest: Vec::new(),
            };
            take(r, loc, key, Err(e));
            continue;
        };
        for name in words(text) {
            take(r, loc, key.clone(), cat.item(name, &t));
        }
    }
    for (i, db) in p.pg_databases.iter().enumerate() {
        for (j, ext) in db.extensions.iter().enumerate() {
            if ext.absent {
                continue;
            }
            let loc = r.loc_in(
                "pg_databases",
                &[Step::Item(i), Step::Field("extensions"), Step::Item(j)],
            );
            let key = format!("pg_databases[{i}].extensions[{j}]");
            take(r, loc, key, cat.packages(&ext.name, &t));
        }
    }
    for (i, ext) in p.pg_default_extensions.iter().enumerate() {
        if ext.absent {
            continue;
        }
        let loc = r.loc_in("pg_default_extensions", &[Step::Item(i)]);
        let key = format!("pg_default_extensions[{i}]");
        take(r, loc, key, cat.packages(&ext.name, &t));
    }
    let libs_loc = r.loc("pg_libs");
    for lib in p
        .pg_libs
        .split(',')
        .map(str::trim)
        .filter(|l| !l.is_empty())
    {
        let got = cat.library(lib, &t).map(|p| p.into_iter().collect());
        take(r, libs_loc, "pg_libs".into(), got);
    }
    out.sort();
    out.dedup();
    ok.then_some(out)
}

/// Pigsty lets one item hold several names: `pgsql-main pgsql-common`, `a, b`.
fn words(item: &str) -> impl Iterator<Item = &str> {
    item.split([',', ' ', '\t']).filter(|w| !w.is_empty())
}

fn report(r: &mut VarReader<'_>, loc: Loc, key: String, e: Unresolved, on: (&Catalog, u32)) {
    let (base, v) = on;
    let mut f = Finding::error(
        r.file,
        loc,
        key,
        format!("{} (node_base {}, PostgreSQL {v})", e.message, base.name),
    );
    if !e.nearest.is_empty() {
        f = f.with_help(format!("did you mean {}?", quoted(&e.nearest)));
    }
    r.findings.push(f);
}

fn quoted(names: &[String]) -> String {
    let q: Vec<String> = names.iter().map(|n| format!("`{n}`")).collect();
    q.join(" or ")
}
