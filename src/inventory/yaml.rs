//! The YAML layer: saphyr's positioned events turned into a small tree that keeps the
//! line and column of every node, with scalars resolved the way Ansible (PyYAML, YAML
//! 1.1) resolves them, anchors expanded and merge keys (`<<`) applied.

use std::borrow::Cow;
use std::collections::HashMap;

use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::{Event, Marker, Span, SpannedEventReceiver};

use crate::diag::Loc;

/// A YAML value with its position.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub value: Value,
    pub loc: Loc,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Key, Node)>),
}

/// A mapping key: always a scalar, kept as its text (`6379`, `10.10.10.10`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub name: String,
    pub loc: Loc,
}

/// A YAML syntax or structure error, with where it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub loc: Loc,
    pub message: String,
}

/// Nodes that alias expansion may produce in one file: far above any real inventory,
/// low enough that a "billion laughs" file fails fast.
const ALIAS_BUDGET: usize = 1_000_000;

/// Nodes alias expansion may always produce, however small the file.
const ALIAS_FLOOR: usize = 20_000;

/// Scalar bytes that alias expansion may copy: a multiple of the input's length, with a
/// floor for small files. saphyr's alias limit counts nodes, not bytes, and each
/// expansion copies the anchor's strings, so without this a few nested aliases to one
/// long quoted string grow a 6 KB file to gigabytes while staying under [`ALIAS_BUDGET`].
fn alias_text_budget(input_len: usize) -> usize {
    input_len.saturating_mul(16).max(1 << 20)
}

impl Node {
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Value::Null => "null",
            Value::Bool(_) => "a boolean",
            Value::Int(_) => "an integer",
            Value::Float(_) => "a number",
            Value::Str(_) => "a string",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }

    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Value::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.name == key)
            .map(|(_, v)| v)
    }

    /// Convert to JSON, passing every string through `map_str` (placeholder substitution).
    pub fn to_json_with(&self, map_str: &dyn Fn(&str) -> String) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(f) => serde_json::Number::from_f64(*f).map_or(J::Null, J::Number),
            Value::Str(s) => J::String(map_str(s)),
            Value::Seq(items) => J::Array(items.iter().map(|n| n.to_json_with(map_str)).collect()),
            Value::Map(m) => J::Object(
                m.iter()
                    .map(|(k, v)| (k.name.clone(), v.to_json_with(map_str)))
                    .collect(),
            ),
        }
    }

    /// Every string this value holds (its own, its items', its mapping values'), at
    /// most 64 of them.
    pub fn strings(&self) -> Vec<String> {
        fn walk(n: &Node, out: &mut Vec<String>) {
            if out.len() >= 64 {
                return;
            }
            match &n.value {
                Value::Str(s) => out.push(s.clone()),
                Value::Seq(items) => items.iter().for_each(|i| walk(i, out)),
                Value::Map(m) => m.iter().for_each(|(_, v)| walk(v, out)),
                _ => {}
            }
        }
        let mut out = Vec::new();
        walk(self, &mut out);
        out
    }

    /// The scalar as text, the way it would be substituted into a string.
    pub fn scalar_text(&self) -> Option<Cow<'_, str>> {
        match &self.value {
            Value::Str(s) => Some(Cow::Borrowed(s)),
            Value::Int(i) => Some(Cow::Owned(i.to_string())),
            Value::Float(f) => Some(Cow::Owned(f.to_string())),
            Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
            _ => None,
        }
    }
}

/// Parse one YAML document. An empty file gives `None`.
pub fn parse(text: &str) -> Result<Option<Node>, SyntaxError> {
    let mut parser = saphyr_parser::Parser::new_from_str(text);
    let mut loader = saphyr::YamlLoader::<MarkedYaml>::default();
    loader.early_parse(false);
    // Alias expansion is bounded by the file's own size too: every host that reads an
    // expanded value holds a copy of it, so a small file must not grow large.
    loader.alias_limit(text.len().clamp(ALIAS_FLOOR, ALIAS_BUDGET));
    let mut budget = TextBudget {
        loader: &mut loader,
        open: Vec::new(),
        anchors: HashMap::new(),
        remaining: alias_text_budget(text.len()),
        exceeded: None,
    };
    let scan = parser.load(&mut budget, true);
    if let Some(m) = budget.exceeded {
        return Err(SyntaxError {
            loc: Loc::new(m.line(), m.col() + 1),
            message: "aliases expand to too much text (possible billion-laughs attack)".into(),
        });
    }
    let error = scan.err().or_else(|| loader.error().cloned());
    if let Some(e) = error {
        let m = e.marker();
        return Err(SyntaxError {
            loc: Loc::new(m.line(), m.col() + 1),
            message: e.info().to_string(),
        });
    }
    let mut docs = loader.into_documents();
    if docs.len() > 1 {
        let loc = loc_of(&docs[1]);
        return Err(SyntaxError {
            loc,
            message: "an inventory holds one YAML document, found a second one".into(),
        });
    }
    docs.pop().map(|d| convert(&d, 0)).transpose()
}

/// Passes events to the loader while counting the scalar bytes each alias will copy;
/// once that passes the budget, stops passing them and keeps where it happened.
struct TextBudget<'l, 'i> {
    loader: &'l mut YamlLoader<'i, MarkedYaml<'i>>,
    /// Each open collection's anchor id (0: none) and the text inside it so far.
    open: Vec<(usize, usize)>,
    /// Text inside each anchored node, by anchor id.
    anchors: HashMap<usize, usize>,
    remaining: usize,
    exceeded: Option<Marker>,
}

impl<'i> SpannedEventReceiver<'i> for TextBudget<'_, 'i> {
    fn on_event(&mut self, ev: Event<'i>, span: Span) {
        if self.exceeded.is_some() {
            return;
        }
        // A finished node: its anchor id and the text inside it.
        let node = match &ev {
            Event::Scalar(text, _, anchor, _) => Some((*anchor, text.len())),
            Event::Alias(id) => {
                let len = self.anchors.get(id).copied().unwrap_or(0);
                let Some(left) = self.remaining.checked_sub(len) else {
                    self.exceeded = Some(span.start);
                    return;
                };
                self.remaining = left;
                Some((0, len))
            }
            Event::SequenceStart(anchor, _) | Event::MappingStart(anchor, _) => {
                self.open.push((*anchor, 0));
                None
            }
            Event::SequenceEnd | Event::MappingEnd => self.open.pop(),
            _ => None,
        };
        if let Some((anchor, len)) = node {
            if anchor > 0 {
                self.anchors.insert(anchor, len);
            }
            if let Some((_, outer)) = self.open.last_mut() {
                *outer = outer.saturating_add(len);
            }
        }
        self.loader.on_event(ev, span);
    }
}

fn loc_of(node: &MarkedYaml<'_>) -> Loc {
    Loc::new(node.span.start.line(), node.span.start.col() + 1)
}

/// Nesting deeper than this is refused rather than risking the stack.
const MAX_DEPTH: usize = 256;

fn convert(node: &MarkedYaml<'_>, depth: usize) -> Result<Node, SyntaxError> {
    let loc = loc_of(node);
    if depth > MAX_DEPTH {
        return Err(SyntaxError {
            loc,
            message: format!("nesting deeper than {MAX_DEPTH} levels"),
        });
    }
    let value = match &node.data {
        YamlData::Representation(text, style, tag) => {
            let tag = tag.as_ref().map(|t| t.suffix.as_str());
            resolve_scalar(text, *style, tag)
        }
        YamlData::Value(scalar) => from_scalar(scalar),
        YamlData::Sequence(items) => Value::Seq(
            items
                .iter()
                .map(|n| convert(n, depth + 1))
                .collect::<Result<_, _>>()?,
        ),
        YamlData::Mapping(map) => Value::Map(convert_map(map.iter(), depth)?),
        YamlData::Tagged(_, inner) => return convert(inner, depth + 1),
        YamlData::Alias(_) | YamlData::BadValue => {
            return Err(SyntaxError {
                loc,
                message: "unresolvable alias or value".into(),
            });
        }
    };
    Ok(Node { value, loc })
}

fn convert_map<'a, 'i: 'a>(
    entries: impl Iterator<Item = (&'a MarkedYaml<'i>, &'a MarkedYaml<'i>)>,
    depth: usize,
) -> Result<Vec<(Key, Node)>, SyntaxError> {
    let mut own: Vec<(Key, Node)> = Vec::new();
    let mut merged: Vec<(Key, Node)> = Vec::new();
    for (k, v) in entries {
        let key = convert_key(k)?;
        let value = convert(v, depth + 1)?;
        if key.name == "<<" {
            merge_sources(&value, &mut merged)?;
        } else {
            own.push((key, value));
        }
    }
    // Merge keys: explicit entries win; among merged maps, the first one listed wins.
    for (k, v) in merged {
        if !own.iter().any(|(o, _)| o.name == k.name) {
            own.push((k, v));
        }
    }
    Ok(own)
}

fn merge_sources(value: &Node, into: &mut Vec<(Key, Node)>) -> Result<(), SyntaxError> {
    let mut add = |map: &[(Key, Node)]| {
        for (k, v) in map {
            if !into.iter().any(|(o, _)| o.name == k.name) {
                into.push((k.clone(), v.clone()));
            }
        }
    };
    match &value.value {
        Value::Map(m) => add(m),
        Value::Seq(items) => {
            for item in items {
                let Value::Map(m) = &item.value else {
                    return Err(SyntaxError {
                        loc: item.loc,
                        message: "a merge key (`<<`) takes a mapping or a list of mappings".into(),
                    });
                };
                add(m);
            }
        }
        _ => {
            return Err(SyntaxError {
                loc: value.loc,
                message: "a merge key (`<<`) takes a mapping or a list of mappings".into(),
            });
        }
    }
    Ok(())
}

fn convert_key(node: &MarkedYaml<'_>) -> Result<Key, SyntaxError> {
    let loc = loc_of(node);
    let name = match &node.data {
        YamlData::Representation(text, _, _) => text.to_string(),
        YamlData::Value(s) => match from_scalar(s) {
            Value::Str(s) => s,
            other => scalar_to_text(&other),
        },
        _ => {
            return Err(SyntaxError {
                loc,
                message: "mapping keys must be plain scalars".into(),
            });
        }
    };
    Ok(Key { name, loc })
}

fn scalar_to_text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => f.to_string(),
        Value::Str(s) => s.clone(),
        Value::Seq(_) | Value::Map(_) => String::new(),
    }
}

fn from_scalar(s: &saphyr::Scalar<'_>) -> Value {
    match s {
        saphyr::Scalar::Null => Value::Null,
        saphyr::Scalar::Boolean(b) => Value::Bool(*b),
        saphyr::Scalar::Integer(i) => Value::Int(*i),
        saphyr::Scalar::FloatingPoint(f) => Value::Float(f.into_inner()),
        saphyr::Scalar::String(s) => Value::Str(s.to_string()),
    }
}

/// Resolve a scalar as Ansible's YAML 1.1 loader would: plain `yes`/`off` are booleans,
/// `0755` is octal, quoted or `!!str` scalars stay strings.
pub fn resolve_scalar(text: &str, style: ScalarStyle, tag: Option<&str>) -> Value {
    match tag {
        Some("str") => return Value::Str(text.to_string()),
        Some("int") => {
            return resolve_int(text).map_or_else(|| Value::Str(text.to_string()), Value::Int);
        }
        _ => {}
    }
    if style != ScalarStyle::Plain {
        return Value::Str(text.to_string());
    }
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "yes" | "Yes" | "YES" | "true" | "True" | "TRUE" | "on" | "On" | "ON" => {
            return Value::Bool(true);
        }
        "no" | "No" | "NO" | "false" | "False" | "FALSE" | "off" | "Off" | "OFF" => {
            return Value::Bool(false);
        }
        _ => {}
    }
    if let Some(i) = resolve_int(text) {
        return Value::Int(i);
    }
    if let Some(f) = resolve_float(text) {
        return Value::Float(f);
    }
    Value::Str(text.to_string())
}

fn resolve_int(text: &str) -> Option<i64> {
    let (neg, body) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || body.starts_with('_') {
        return None;
    }
    let digits: String = body.chars().filter(|c| *c != '_').collect();
    let parsed = if let Some(hex) = digits.strip_prefix("0x") {
        i64::from_str_radix(hex, 16).ok()
    } else if let Some(bin) = digits.strip_prefix("0b") {
        i64::from_str_radix(bin, 2).ok()
    } else if digits.len() > 1 && digits.starts_with('0') {
        i64::from_str_radix(&digits[1..], 8).ok()
    } else if digits.bytes().all(|b| b.is_ascii_digit()) {
        digits.parse().ok()
    } else {
        None
    }?;
    Some(if neg { -parsed } else { parsed })
}

fn resolve_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => return Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => return Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Some(f64::NAN),
        _ => {}
    }
    // YAML 1.1 floats need a dot and digits around it: `1.5`, `-0.5e+3`; not `10.10.10.10`.
    let body = text.trim_start_matches(['-', '+']);
    let mantissa = body.split(['e', 'E']).next()?;
    let is_float = mantissa.matches('.').count() == 1
        && mantissa.starts_with(|c: char| c.is_ascii_digit() || c == '.')
        && mantissa
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == '_')
        && mantissa.chars().any(|c| c.is_ascii_digit());
    if !is_float {
        return None;
    }
    text.replace('_', "").parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> Node {
        parse(text).unwrap().unwrap()
    }

    #[test]
    fn ansible_scalars() {
        let n = p("a: yes\nb: 'yes'\nc: 0755\nd: 10.10.10.10\ne: 1.5\nf: ~\ng: 15\nh: off\n");
        assert_eq!(n.get("a").unwrap().value, Value::Bool(true));
        assert_eq!(n.get("b").unwrap().value, Value::Str("yes".into()));
        assert_eq!(n.get("c").unwrap().value, Value::Int(0o755));
        assert_eq!(n.get("d").unwrap().value, Value::Str("10.10.10.10".into()));
        assert_eq!(n.get("e").unwrap().value, Value::Float(1.5));
        assert_eq!(n.get("f").unwrap().value, Value::Null);
        assert_eq!(n.get("g").unwrap().value, Value::Int(15));
        assert_eq!(n.get("h").unwrap().value, Value::Bool(false));
    }

    #[test]
    fn positions_are_one_based() {
        let n = p("all:\n  vars:\n    pg_seq: 1\n");
        let vars = n.get("all").unwrap().get("vars").unwrap();
        let (k, v) = &vars.as_map().unwrap()[0];
        assert_eq!(k.loc, Loc::new(3, 5));
        assert_eq!(v.loc, Loc::new(3, 13));
    }

    #[test]
    fn anchors_and_merge_keys() {
        let n = p("base: &b { x: 1, y: 2 }\nother: { <<: *b, y: 3 }\nlist: [*b]\n");
        let other = n.get("other").unwrap();
        assert_eq!(other.get("x").unwrap().value, Value::Int(1));
        assert_eq!(other.get("y").unwrap().value, Value::Int(3));
        assert_eq!(n.get("list").unwrap().type_name(), "a list");
    }

    #[test]
    fn merge_list_first_wins() {
        let n = p("a: &a { k: 1 }\nb: &b { k: 2, j: 2 }\nc: { <<: [*a, *b] }\n");
        let c = n.get("c").unwrap();
        assert_eq!(c.get("k").unwrap().value, Value::Int(1));
        assert_eq!(c.get("j").unwrap().value, Value::Int(2));
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: 1\nb: [1, 2\n").unwrap_err();
        assert!(e.loc.line >= 2, "{e:?}");
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.loc.line, 2, "{e:?}");
        assert!(parse("a: &x [*x]").is_err());
    }

    #[test]
    fn alias_text_bomb_is_refused() {
        // Few nodes (far below ALIAS_BUDGET), each a copy of one 6,000-byte string: with
        // two more levels (fuzz/findings/alias-text-bomb.yml) such a 6 KB file grew to
        // about 9 GB of copied text before the text budget.
        let mut text = format!("s: &s \"{}\"\n", "x".repeat(6000));
        let mut prev = "s".to_string();
        for name in ["a", "b", "c"] {
            let refs = vec![format!("*{prev}"); 10].join(",");
            text.push_str(&format!("{name}: &{name} [{refs}]\n"));
            prev = name.to_string();
        }
        text.push_str("all: {hosts: {10.0.0.1: }}\n");
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("too much text"), "{e:?}");
        assert_eq!(e.loc.line, 4, "{e:?}");
        let invalid = crate::inventory::load_str("bomb.yml", &text).unwrap_err();
        assert_eq!(invalid.findings.len(), 1, "{:?}", invalid.findings);
        assert!(invalid.findings[0].message.contains("too much text"));
        // The same anchor used a few times is fine.
        let few = format!("s: &s \"{}\"\nl: [*s, *s, *s]\n", "x".repeat(6000));
        let n = parse(&few).unwrap().unwrap();
        assert_eq!(n.get("l").unwrap().type_name(), "a list");
    }

    #[test]
    fn empty_is_none() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }
}
