//! `pg_databases[].baseline`: an SQL file applied once, when its database is created.
//! Pigsty's playbooks copy it from the checkout's `files/` (Ansible's lookup of a
//! relative `src`); here it is read at `inventory check` from the same places, so
//! a missing file is an error at the line that names it, not a failure at first boot.

use std::path::{Path, PathBuf};

use super::reader::{Step, VarReader};
use crate::model::PgParams;

/// The most a baseline may hold: it travels inside the image and is read whole.
const MAX_BYTES: u64 = 64 << 20;

/// Read the baseline of every database that names one into `baseline_sql`. `None`
/// when one could not be read (each reported at its line).
pub(super) fn read(r: &mut VarReader<'_>, p: &mut PgParams) -> Option<()> {
    let mut ok = true;
    for i in 0..p.pg_databases.len() {
        let Some(name) = p.pg_databases[i].baseline.clone() else {
            continue;
        };
        let loc = r.loc_in("pg_databases", &[Step::Item(i), Step::Field("baseline")]);
        let key = format!("pg_databases[{i}].baseline");
        match load(r.dir, &name) {
            Ok(sql) => p.pg_databases[i].baseline_sql = Some(sql),
            Err(why) => {
                r.error(loc, &key, why);
                ok = false;
            }
        }
    }
    ok.then_some(())
}

/// Where a baseline named `name` is looked for: `files/<name>` beside the inventory
/// (a `pigsty.yml` at the root of a Pigsty checkout), `<name>` beside it, then
/// `files/<name>` in each folder above, nearest first (an inventory of the checkout's
/// `conf/` or `conf/ha/`, whose `files/` is the checkout's); an absolute path is
/// itself.
pub fn candidates(dir: &Path, name: &str) -> Vec<PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return vec![path.to_path_buf()];
    }
    let mut out = vec![dir.join("files").join(path), dir.join(path)];
    let mut up = dir.to_path_buf();
    // `..` so a relative directory climbs too; bounded by the path's depth.
    for _ in 0..dir.components().count().max(1) {
        up = up.join("..");
        out.push(up.join("files").join(path));
    }
    out
}

fn load(dir: Option<&Path>, name: &str) -> Result<String, String> {
    if name.trim().is_empty() {
        return Err("baseline is empty: name an SQL file, or leave the key out".into());
    }
    let Some(dir) = dir else {
        return Err(format!(
            "baseline `{name}`: files are read from beside the inventory file, and this inventory has none (it is built in or given as text)"
        ));
    };
    let tried = candidates(dir, name);
    let Some(path) = tried.iter().find(|p| p.is_file()) else {
        let list: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
        return Err(format!(
            "baseline `{name}` not found (looked for {})",
            list.join(", ")
        ));
    };
    let len = std::fs::metadata(path)
        .map_err(|e| format!("baseline {}: {e}", path.display()))?
        .len();
    if len > MAX_BYTES {
        return Err(format!(
            "baseline {} holds {len} bytes, more than the {} MiB an image carries for one",
            path.display(),
            MAX_BYTES >> 20
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| format!("baseline {}: {e}", path.display()))?;
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "baseline {} is not UTF-8 text (byte {})",
            path.display(),
            e.utf8_error().valid_up_to()
        )
    })
}
