//! Paths an inventory names: MinIO's `minio_data` with its ellipsis ranges.

/// At most this many directories from one `minio_data` pattern: a typo such as
/// `/data{1...10000}` is an error rather than ten thousand tmpfiles lines.
const MAX_DATA_DIRS: usize = 256;

/// The local directories a `minio_data` value names: `/data/minio` is itself,
/// `/data{1...2}` is `/data1` and `/data2`. Each must be an absolute path that a
/// tmpfiles.d line can carry (no whitespace).
pub fn minio_data_dirs(minio_data: &str) -> Result<Vec<String>, String> {
    let dirs = expand_ellipses(minio_data)?;
    if dirs.len() > MAX_DATA_DIRS {
        return Err(format!(
            "expands to {} directories, more than {MAX_DATA_DIRS}",
            dirs.len()
        ));
    }
    if let Some(bad) = dirs
        .iter()
        .find(|d| !d.starts_with('/') || d.chars().any(|c| c.is_whitespace() || c.is_control()))
    {
        return Err(format!(
            "{bad:?} is not an absolute path without whitespace"
        ));
    }
    Ok(dirs)
}

/// Expand MinIO's ellipsis notation: every `{A...B}` becomes each value from A to B,
/// left to right (`/d{1...2}/x{1...2}` → `/d1/x1 /d1/x2 /d2/x1 /d2/x2`). As in MinIO,
/// a bound written with a leading zero sets the width (`{01...12}`), bounds that are
/// not decimal are lower-case hexadecimal (`{a...f}`), and a brace outside an
/// ellipsis is an error.
pub fn expand_ellipses(pattern: &str) -> Result<Vec<String>, String> {
    let Some(open) = pattern.find('{') else {
        if pattern.contains('}') {
            return Err("a `}` without its `{`".into());
        }
        return Ok(vec![pattern.to_string()]);
    };
    let prefix = &pattern[..open];
    if prefix.contains('}') {
        return Err("a `}` without its `{`".into());
    }
    let close = pattern[open..]
        .find('}')
        .map(|i| open + i)
        .ok_or("a `{` without its `}`")?;
    let values = ellipsis_range(&pattern[open + 1..close])?;
    let rest = expand_ellipses(&pattern[close + 1..])?;
    if values.len().saturating_mul(rest.len()) > MAX_DATA_DIRS * MAX_DATA_DIRS {
        return Err("the ranges expand to too many paths".into());
    }
    Ok(values
        .iter()
        .flat_map(|v| rest.iter().map(move |r| format!("{prefix}{v}{r}")))
        .collect())
}

/// `1...4`, `01...16` (zero-padded), `a...f` (hexadecimal) → the values, in order.
fn ellipsis_range(body: &str) -> Result<Vec<String>, String> {
    let bad = || format!("`{{{body}}}` is not a range like {{1...4}}");
    let (a, b) = body.split_once("...").ok_or_else(bad)?;
    let digits = |s: &str| !s.is_empty() && s.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
    if !digits(a) || !digits(b) {
        return Err(bad());
    }
    let decimal = (a.parse::<u64>(), b.parse::<u64>());
    let (start, end, hex) = match decimal {
        (Ok(s), Ok(e)) => (s, e, false),
        _ => {
            let s = u64::from_str_radix(a, 16).map_err(|_| bad())?;
            let e = u64::from_str_radix(b, 16).map_err(|_| bad())?;
            (s, e, true)
        }
    };
    if start > end {
        return Err(format!("`{{{body}}}` starts above its end"));
    }
    if end - start >= MAX_DATA_DIRS as u64 {
        return Err(format!("`{{{body}}}` has more than {MAX_DATA_DIRS} values"));
    }
    let width = if a.len() > 1 && a.starts_with('0') {
        a.len()
    } else {
        0
    };
    Ok((start..=end)
        .map(|i| match hex {
            true => format!("{i:0width$x}"),
            false => format!("{i:0width$}"),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(p: &str) -> Vec<String> {
        expand_ellipses(p).unwrap()
    }

    #[test]
    fn a_bad_range_is_refused_at_check_at_its_line() {
        let inv = "all:\n  children:\n    minio:\n      hosts: { 10.10.10.10: { minio_seq: 1 } }\n      vars: { minio_cluster: minio, minio_data: '/data{2...1}' }\n";
        let err = crate::inventory::load_str("t.yml", inv).unwrap_err();
        let f = &err.findings[0];
        assert_eq!((f.key.as_str(), f.line), ("minio_data", 5), "{f:?}");
        assert!(f.message.contains("starts above its end"), "{f:?}");
    }

    #[test]
    fn plain_paths_are_themselves() {
        assert_eq!(minio_data_dirs("/data/minio").unwrap(), ["/data/minio"]);
    }

    #[test]
    fn ellipsis_expands_in_order() {
        assert_eq!(expand("/data{1...2}"), ["/data1", "/data2"]);
        assert_eq!(
            expand("/mnt/d{1...2}/x{3...4}"),
            ["/mnt/d1/x3", "/mnt/d1/x4", "/mnt/d2/x3", "/mnt/d2/x4"]
        );
        assert_eq!(expand("/d{08...10}"), ["/d08", "/d09", "/d10"]);
        assert_eq!(expand("/d{a...c}"), ["/da", "/db", "/dc"]);
        assert_eq!(expand("/d{9...b}"), ["/d9", "/da", "/db"]);
    }

    #[test]
    fn malformed_ranges_are_errors() {
        for bad in [
            "/d{1..2}",
            "/d{2...1}",
            "/d{1...2",
            "/d1...2}",
            "/d{x...y}",
            "/d{-1...2}",
            "/d{+1...2}",
            "/d{A...F}",
            "/d{}",
            "/d{0...100000}",
        ] {
            assert!(expand_ellipses(bad).is_err(), "{bad} should be refused");
        }
    }

    #[test]
    fn data_dirs_must_be_absolute() {
        assert!(minio_data_dirs("data{1...2}").is_err());
        assert!(minio_data_dirs("/my data").is_err());
        assert!(minio_data_dirs("/d{0...255}").is_ok());
        assert!(
            minio_data_dirs("/d{0...15}/x{0...16}").is_err(),
            "272 directories"
        );
    }
}
