//! The JMESPath subset Pigsty's service `selector` and `backup` expressions use, over
//! the members of one cluster: `[]` (every member) and filter projections
//! `[? expr ]` where `expr` combines member attributes and literals with `==`, `!=`,
//! `&&`, `||`, `!` and parentheses. Anything else is an error naming the expression:
//! a selector decides which servers take traffic, so it is never guessed.
//!
//! Truthiness is JMESPath's: `false`, `null`, `""`, `[]` and `{}` are false.

use serde_json::{Map, Value};

/// A parsed selector.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    All,
    Filter(Expr),
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Or(Box<Expr>, Box<Expr>),
    And(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
    Eq(Box<Expr>, Box<Expr>),
    Ne(Box<Expr>, Box<Expr>),
    Field(String),
    Literal(Value),
}

impl Selector {
    pub fn parse(src: &str) -> Result<Selector, String> {
        let fail = |why: &str| format!("unsupported selector `{src}`: {why}");
        let body = src.trim();
        if body == "[]" {
            return Ok(Selector::All);
        }
        let inner = body
            .strip_prefix("[?")
            .and_then(|b| b.strip_suffix(']'))
            .ok_or_else(|| fail("expected `[]` or a filter `[? ... ]`"))?;
        let tokens = lex(inner).map_err(|e| fail(&e))?;
        let mut p = Parser { tokens, pos: 0 };
        let expr = p.or().map_err(|e| fail(&e))?;
        if p.pos != p.tokens.len() {
            return Err(fail(&format!("unexpected `{}`", p.tokens[p.pos])));
        }
        Ok(Selector::Filter(expr))
    }

    /// Whether a member (its attributes as a JSON object) is selected.
    pub fn matches(&self, member: &Map<String, Value>) -> Result<bool, String> {
        match self {
            Selector::All => Ok(true),
            Selector::Filter(e) => e.eval(member).map(|v| truthy(&v)),
        }
    }
}

impl Expr {
    fn eval(&self, m: &Map<String, Value>) -> Result<Value, String> {
        Ok(match self {
            Expr::Or(a, b) => {
                let a = a.eval(m)?;
                if truthy(&a) { a } else { b.eval(m)? }
            }
            Expr::And(a, b) => {
                let a = a.eval(m)?;
                if truthy(&a) { b.eval(m)? } else { a }
            }
            Expr::Not(a) => Value::Bool(!truthy(&a.eval(m)?)),
            Expr::Eq(a, b) => Value::Bool(a.eval(m)? == b.eval(m)?),
            Expr::Ne(a, b) => Value::Bool(a.eval(m)? != b.eval(m)?),
            Expr::Literal(v) => v.clone(),
            Expr::Field(name) => m.get(name).cloned().ok_or_else(|| {
                let known: Vec<&str> = m.keys().map(String::as_str).collect();
                format!(
                    "unknown member attribute `{name}` (known: {})",
                    known.join(", ")
                )
            })?,
        })
    }
}

fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Number(_) => true,
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Op(&'static str),
    Ident(String),
    Literal(Value),
}

impl std::fmt::Display for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Token::Op(o) => f.write_str(o),
            Token::Ident(i) => f.write_str(i),
            Token::Literal(v) => write!(f, "`{v}`"),
        }
    }
}

const OPS: [&str; 7] = ["||", "&&", "==", "!=", "!", "(", ")"];

fn lex(src: &str) -> Result<Vec<Token>, String> {
    let mut out = Vec::new();
    let mut rest = src.trim_start();
    while !rest.is_empty() {
        if let Some(op) = OPS.iter().find(|op| rest.starts_with(**op)) {
            out.push(Token::Op(op));
            rest = &rest[op.len()..];
        } else if let Some(body) = rest.strip_prefix('`') {
            let end = body.find('`').ok_or("unterminated `literal`")?;
            out.push(Token::Literal(json_literal(&body[..end])));
            rest = &body[end + 1..];
        } else if let Some(body) = rest.strip_prefix('\'') {
            let end = body.find('\'').ok_or("unterminated 'string'")?;
            out.push(Token::Literal(Value::String(body[..end].to_string())));
            rest = &body[end + 1..];
        } else {
            let len = rest
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(rest.len());
            if len == 0 || rest.as_bytes()[0].is_ascii_digit() {
                let c = rest.chars().next().unwrap_or(' ');
                return Err(format!(
                    "`{c}` is not supported (only ==, !=, &&, ||, ! and parentheses)"
                ));
            }
            out.push(Token::Ident(rest[..len].to_string()));
            rest = &rest[len..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// A backtick literal is JSON; JMESPath also accepts an unquoted word (`primary`) as a
/// string, the form Pigsty's defaults use.
fn json_literal(text: &str) -> Value {
    serde_json::from_str(text.trim()).unwrap_or_else(|_| Value::String(text.trim().to_string()))
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

impl Parser {
    fn eat(&mut self, op: &'static str) -> bool {
        if self.tokens.get(self.pos) == Some(&Token::Op(op)) {
            self.pos += 1;
            return true;
        }
        false
    }

    fn or(&mut self) -> Result<Expr, String> {
        let mut left = self.and()?;
        while self.eat("||") {
            left = Expr::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, String> {
        let mut left = self.not()?;
        while self.eat("&&") {
            left = Expr::And(Box::new(left), Box::new(self.not()?));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, String> {
        if self.eat("!") {
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, String> {
        let left = self.atom()?;
        if self.eat("==") {
            return Ok(Expr::Eq(Box::new(left), Box::new(self.atom()?)));
        }
        if self.eat("!=") {
            return Ok(Expr::Ne(Box::new(left), Box::new(self.atom()?)));
        }
        Ok(left)
    }

    fn atom(&mut self) -> Result<Expr, String> {
        if self.eat("(") {
            let e = self.or()?;
            if !self.eat(")") {
                return Err("missing `)`".into());
            }
            return Ok(e);
        }
        let token = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        match token {
            Some(Token::Ident(name)) => Ok(Expr::Field(name)),
            Some(Token::Literal(v)) => Ok(Expr::Literal(v)),
            Some(t) => Err(format!("unexpected `{t}`")),
            None => Err("the expression ends too early".into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn member(role: &str, offline: bool) -> Map<String, Value> {
        let v = json!({ "pg_role": role, "pg_offline_query": offline, "pg_seq": 1 });
        v.as_object().unwrap().clone()
    }

    fn sel(s: &str, role: &str, offline: bool) -> bool {
        Selector::parse(s)
            .unwrap()
            .matches(&member(role, offline))
            .unwrap()
    }

    #[test]
    fn pigsty_default_expressions() {
        assert!(sel("[]", "replica", false));
        let replica_backup = "[? pg_role == `primary` || pg_role == `offline` ]";
        assert!(sel(replica_backup, "primary", false));
        assert!(sel(replica_backup, "offline", false));
        assert!(!sel(replica_backup, "replica", true));
        let offline = "[? pg_role == `offline` || pg_offline_query ]";
        assert!(sel(offline, "replica", true));
        assert!(!sel(offline, "replica", false));
        let offline_backup = "[? pg_role == `replica` && !pg_offline_query]";
        assert!(sel(offline_backup, "replica", false));
        assert!(!sel(offline_backup, "replica", true));
        assert!(sel("[? pg_role == `primary`]", "primary", false));
        assert!(sel("[? pg_role != 'primary']", "replica", false));
        assert!(sel(
            "[? (pg_role == `\"replica\"`) && pg_seq == `1`]",
            "replica",
            false
        ));
    }

    #[test]
    fn unsupported_forms_are_errors() {
        for bad in [
            "[*]",
            "[? pg_seq > `1`]",
            "[? pg_role == `primary`",
            "[? pg_role == ]",
            "[? contains(pg_role, 'x')]",
            "[? pg_role == `a` extra]",
        ] {
            let err = Selector::parse(bad).unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
        let s = Selector::parse("[? pg_weight == `100`]").unwrap();
        assert!(
            s.matches(&member("replica", false))
                .unwrap_err()
                .contains("pg_weight")
        );
    }
}
