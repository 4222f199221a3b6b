//! Findings about user input: where they are (file, line, column), which key they
//! concern, what was expected, and how to fix them. Rendered with miette for people
//! and as JSON for machines.

use std::fmt;

use serde::Serialize;

/// A position in a source file: line and column are 1-based, column counted in characters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize)]
pub struct Loc {
    pub line: u32,
    pub col: u32,
}

impl Loc {
    pub fn new(line: usize, col: usize) -> Self {
        let clamp = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
        Loc {
            line: clamp(line),
            col: clamp(col),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem (or warning) found in an input file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    pub line: u32,
    pub column: u32,
    /// The inventory key the finding is about (`pg_role`, `all.children.pg-test.hosts`).
    pub key: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub help: Option<String>,
}

impl Finding {
    pub fn error(file: &str, loc: Loc, key: impl Into<String>, message: impl Into<String>) -> Self {
        Finding {
            severity: Severity::Error,
            file: file.to_string(),
            line: loc.line,
            column: loc.col,
            key: key.into(),
            message: message.into(),
            help: None,
        }
    }

    pub fn warning(
        file: &str,
        loc: Loc,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Finding {
            severity: Severity::Warning,
            ..Finding::error(file, loc, key, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    fn location(&self) -> String {
        format!("{}:{}:{}", self.file, self.line, self.column)
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: `{}`: {}", self.location(), self.key, self.message)?;
        if let Some(help) = &self.help {
            write!(f, " ({help})")?;
        }
        Ok(())
    }
}

/// A set of findings that makes an input invalid (at least one error).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{} invalid: {} error(s)", .file, .findings.iter().filter(|f| f.is_error()).count())]
pub struct Invalid {
    pub file: String,
    pub findings: Vec<Finding>,
    /// The source text, kept so the findings can be shown with a snippet.
    pub text: Option<String>,
}

/// The longest source line shown in a snippet, in bytes.
const MAX_SNIPPET_LINE: usize = 4096;

/// Render findings for a terminal: one miette report each, with a source snippet when
/// the text is at hand. The first line of each report is `file:line:col: ...`.
pub fn render(findings: &[Finding], source: Option<&str>) -> String {
    let handler =
        miette::GraphicalReportHandler::new_themed(miette::GraphicalTheme::unicode_nocolor());
    let mut out = String::new();
    for finding in findings {
        let report = to_miette(finding, source);
        if handler.render_report(&mut out, report.as_ref()).is_err() {
            out.push_str(&finding.to_string());
        }
        out.push('\n');
    }
    out
}

fn to_miette(finding: &Finding, source: Option<&str>) -> miette::Report {
    let severity = match finding.severity {
        Severity::Error => miette::Severity::Error,
        Severity::Warning => miette::Severity::Warning,
    };
    let mut diag = miette::MietteDiagnostic::new(format!(
        "{}: `{}`: {}",
        finding.location(),
        finding.key,
        finding.message
    ))
    .with_severity(severity);
    if let Some(help) = &finding.help {
        diag = diag.with_help(help.clone());
    }
    let Some(text) = source else {
        return miette::Report::new(diag);
    };
    // A snippet of a very long line says nothing more than file:line:col (and miette
    // cannot pad past column 65535): only short lines are shown.
    let line_len = text
        .lines()
        .nth(finding.line.saturating_sub(1) as usize)
        .map_or(0, str::len);
    if line_len > MAX_SNIPPET_LINE {
        return miette::Report::new(diag);
    }
    if let Some(offset) = byte_offset(text, finding.line, finding.column) {
        let len = token_len(&text[offset..]);
        diag = diag.with_label(miette::LabeledSpan::at(
            offset..offset + len,
            finding.key.clone(),
        ));
    }
    miette::Report::new(diag).with_source_code(miette::NamedSource::new(
        finding.file.clone(),
        text.to_string(),
    ))
}

/// Byte offset of a 1-based (line, character column) position, if it lies in `text`.
fn byte_offset(text: &str, line: u32, col: u32) -> Option<usize> {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.checked_sub(1)? as usize)
        .map(str::len)
        .sum();
    let rest = text.get(line_start..)?;
    let in_line = rest
        .char_indices()
        .take_while(|(_, c)| *c != '\n')
        .nth(col.saturating_sub(1) as usize)
        .map(|(i, _)| i)
        .unwrap_or(0);
    Some(line_start + in_line)
}

/// Length of the token starting a string: up to the next separator, at least 1 byte
/// when the string is not empty.
fn token_len(s: &str) -> usize {
    let end = s.find(['\n', ':', ',', '}', ']', '#']).unwrap_or(s.len());
    let trimmed = s[..end].trim_end().len();
    if trimmed == 0 {
        s.chars().next().map_or(0, char::len_utf8)
    } else {
        trimmed
    }
}

/// The closest known name to `name`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let limit = if name.len() <= 4 { 1 } else { 2 };
    known
        .into_iter()
        .map(|k| (strsim_levenshtein(name, k), k))
        .filter(|(d, _)| *d <= limit)
        .min()
        .map(|(_, k)| k)
}

/// Levenshtein distance between two names (characters).
pub fn edit_distance(a: &str, b: &str) -> usize {
    strsim_levenshtein(a, b)
}

fn strsim_levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_near_miss() {
        let known = ["pg_role", "pg_seq", "pg_cluster"];
        assert_eq!(did_you_mean("pg_rol", known), Some("pg_role"));
        assert_eq!(did_you_mean("pg_clutser", known), Some("pg_cluster"));
        assert_eq!(did_you_mean("totally_else", known), None);
    }

    #[test]
    fn offsets_count_characters() {
        let text = "a: 1\nbé: x\n";
        assert_eq!(byte_offset(text, 2, 1), Some(5));
        assert_eq!(byte_offset(text, 2, 5), Some(5 + 5));
        assert_eq!(byte_offset(text, 9, 1), Some(text.len()));
    }

    #[test]
    fn rendering_names_file_line_and_key() {
        let f = Finding::error("inv.yml", Loc::new(2, 1), "pg_rol", "unknown parameter")
            .with_help("did you mean `pg_role`?");
        let out = render(&[f], Some("all:\npg_rol: primary\n"));
        assert!(out.contains("inv.yml:2:1"), "{out}");
        assert!(out.contains("did you mean `pg_role`?"), "{out}");
    }

    #[test]
    fn a_finding_far_along_a_long_line_renders_without_a_snippet() {
        let text = format!(
            "all: {{ x: '{}', pg_cluster: 'a b' }}\n",
            "x".repeat(70_000)
        );
        let col = u32::try_from(text.find("pg_cluster").unwrap() + 1).unwrap();
        let f = Finding::error("wide.yml", Loc::new(1, col as usize), "pg_cluster", "bad");
        let out = render(&[f], Some(&text));
        assert!(out.contains(&format!("wide.yml:1:{col}")), "{out:.300}");
        assert!(out.len() < 1000, "no 70 kB snippet: {} bytes", out.len());
        // A short line keeps its snippet.
        let f = Finding::error("s.yml", Loc::new(1, 6), "pg_cluster", "bad");
        assert!(render(&[f], Some("all: pg_cluster\n")).contains("──"));
    }
}
