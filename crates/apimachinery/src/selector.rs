//! Label selectors and field selectors, as `?labelSelector=` and `?fieldSelector=` filter lists and watches.
//!
//! **Label selectors** follow `k8s.io/apimachinery/pkg/labels`: a comma-separated list of requirements,
//! all of which must hold: `app`, `!app`, `app=web`, `app==web`, `app!=web`, `tier in (a,b)`,
//! `tier notin (a)`, `replicas>2`, `replicas<5`. Keys are qualified names (`example.com/app`), values
//! label values (≤ 63 characters). A `!=`/`notin` requirement also matches objects without the label,
//! which surprises people but is what Kubernetes does.
//!
//! **Field selectors** follow `k8s.io/apimachinery/pkg/fields`: `field=value`, `field==value`,
//! `field!=value`, comma-separated, with `\,` `\=` `\\` escapes in values. Each resource supports only a
//! few field labels (see [`crate::registry::ResourceInfo::field_selectors`]); the apiserver must reject
//! others with 400, which [`FieldSelector::validate`] does.

use std::fmt;

use serde_json::{Map, Value};

use crate::registry::ResourceInfo;

/// Why a selector string was refused. Messages follow kube-apiserver's wording closely enough for a
/// human to recognise them; the apiserver turns them into `400 BadRequest`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unable to parse requirement: {0}")]
    Syntax(String),
    #[error("invalid label key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    #[error("invalid label value: {value:?}: {reason}")]
    InvalidValue { value: String, reason: String },
    #[error("invalid field selector: {0}")]
    FieldSyntax(String),
    #[error("field label not supported: {0}")]
    UnsupportedField(String),
}

/// The operator of one label requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operator {
    Exists,
    DoesNotExist,
    /// `=`, `==` and `in` are all set membership.
    In,
    /// `!=` and `notin`.
    NotIn,
    Gt,
    Lt,
}

/// One `key op values` term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated (as Kubernetes stores them in a set).
    pub values: Vec<String>,
}

impl Requirement {
    /// Builds a requirement, validating the key and values like `labels.NewRequirement`.
    pub fn new(
        key: &str,
        operator: Operator,
        values: Vec<String>,
    ) -> Result<Requirement, SelectorError> {
        validate_label_key(key)?;
        let mut values = values;
        match operator {
            Operator::Exists | Operator::DoesNotExist => {
                if !values.is_empty() {
                    return Err(SelectorError::Syntax(format!(
                        "values set must be empty for exists and does not exist ({key})"
                    )));
                }
            }
            Operator::In | Operator::NotIn => {
                if values.is_empty() {
                    return Err(SelectorError::Syntax(format!(
                        "for 'in', 'notin' operators, values set can't be empty ({key})"
                    )));
                }
                for v in &values {
                    validate_label_value(v)?;
                }
            }
            Operator::Gt | Operator::Lt => {
                if values.len() != 1 {
                    return Err(SelectorError::Syntax(format!(
                        "for 'Gt', 'Lt' operators, exactly one value is required ({key})"
                    )));
                }
                if values[0].parse::<i64>().is_err() {
                    return Err(SelectorError::Syntax(format!(
                        "for 'Gt', 'Lt' operators, the value must be an integer ({key})"
                    )));
                }
            }
        }
        values.sort();
        values.dedup();
        Ok(Requirement {
            key: key.to_string(),
            operator,
            values,
        })
    }

    /// Whether a label set satisfies this requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        // A non-string label value cannot come from a valid object; treat it as absent.
        let value = labels
            .and_then(|l| l.get(&self.key))
            .and_then(Value::as_str);
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::In => value.is_some_and(|v| self.values.iter().any(|x| x == v)),
            Operator::NotIn => value.is_none_or(|v| self.values.iter().all(|x| x != v)),
            Operator::Gt | Operator::Lt => {
                let (Some(have), Some(want)) = (
                    value.and_then(|v| v.parse::<i64>().ok()),
                    self.values.first().and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    return false;
                };
                if self.operator == Operator::Gt {
                    have > want
                } else {
                    have < want
                }
            }
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.operator {
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
            Operator::In if self.values.len() == 1 => write!(f, "{}={}", self.key, self.values[0]),
            Operator::NotIn if self.values.len() == 1 => {
                write!(f, "{}!={}", self.key, self.values[0])
            }
            Operator::In => write!(f, "{} in ({})", self.key, self.values.join(",")),
            Operator::NotIn => write!(f, "{} notin ({})", self.key, self.values.join(",")),
            Operator::Gt => write!(f, "{}>{}", self.key, self.values.join("")),
            Operator::Lt => write!(f, "{}<{}", self.key, self.values.join("")),
        }
    }
}

/// A parsed label selector: all requirements must match. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Ident(String),
    Not,     // !
    Eq,      // = or ==
    NotEq,   // !=
    Gt,      // >
    Lt,      // <
    In,      // in
    NotInKw, // notin
    Open,    // (
    Close,   // )
    Comma,   // ,
}

fn is_special(c: char) -> bool {
    matches!(c, '=' | '!' | '(' | ')' | ',' | '<' | '>') || c.is_whitespace()
}

fn tokenize(s: &str) -> Result<Vec<Token>, SelectorError> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let next = chars.get(i + 1).copied();
        let (tok, len) = match (c, next) {
            ('!', Some('=')) => (Token::NotEq, 2),
            ('!', _) => (Token::Not, 1),
            ('=', Some('=')) => (Token::Eq, 2),
            ('=', _) => (Token::Eq, 1),
            ('>', _) => (Token::Gt, 1),
            ('<', _) => (Token::Lt, 1),
            ('(', _) => (Token::Open, 1),
            (')', _) => (Token::Close, 1),
            (',', _) => (Token::Comma, 1),
            _ => {
                let start = i;
                while i < chars.len() && !is_special(chars[i]) {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                out.push(match word.as_str() {
                    "in" => Token::In,
                    "notin" => Token::NotInKw,
                    _ => Token::Ident(word),
                });
                continue;
            }
        };
        out.push(tok);
        i += len;
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    src: String,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn err(&self, what: &str) -> SelectorError {
        SelectorError::Syntax(format!("{what} in {:?}", self.src))
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        match self.next() {
            Some(Token::Ident(k)) => Ok(k),
            // `in`/`notin` are legal label keys when they stand where a key is expected.
            Some(Token::In) => Ok("in".into()),
            Some(Token::NotInKw) => Ok("notin".into()),
            _ => Err(self.err("expected a label key")),
        }
    }

    /// A single value after `=`, `!=`, `>`, `<`; an absent identifier means the empty value (`a=`).
    fn single_value(&mut self) -> String {
        match self.peek() {
            Some(Token::Ident(v)) => {
                let v = v.clone();
                self.pos += 1;
                v
            }
            Some(Token::In) => {
                self.pos += 1;
                "in".into()
            }
            Some(Token::NotInKw) => {
                self.pos += 1;
                "notin".into()
            }
            _ => String::new(),
        }
    }

    /// `( v1, v2, … )`; empty entries stand for the empty value, as in Kubernetes.
    fn value_set(&mut self) -> Result<Vec<String>, SelectorError> {
        if self.next() != Some(Token::Open) {
            return Err(self.err("expected '(' after in/notin"));
        }
        let mut vals = Vec::new();
        loop {
            let v = self.single_value();
            match self.next() {
                Some(Token::Comma) => vals.push(v),
                Some(Token::Close) => {
                    if !(v.is_empty() && vals.is_empty()) {
                        vals.push(v);
                    }
                    return Ok(vals);
                }
                _ => return Err(self.err("expected ',' or ')' in a value set")),
            }
        }
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        if self.peek() == Some(&Token::Not) {
            self.pos += 1;
            let key = self.key()?;
            return Requirement::new(&key, Operator::DoesNotExist, vec![]);
        }
        let key = self.key()?;
        match self.peek() {
            None | Some(Token::Comma) => Requirement::new(&key, Operator::Exists, vec![]),
            Some(Token::Eq) => {
                self.pos += 1;
                let v = self.single_value();
                Requirement::new(&key, Operator::In, vec![v])
            }
            Some(Token::NotEq) => {
                self.pos += 1;
                let v = self.single_value();
                Requirement::new(&key, Operator::NotIn, vec![v])
            }
            Some(Token::Gt) | Some(Token::Lt) => {
                let op = if self.next() == Some(Token::Gt) {
                    Operator::Gt
                } else {
                    Operator::Lt
                };
                let v = self.single_value();
                Requirement::new(&key, op, vec![v])
            }
            Some(Token::In) => {
                self.pos += 1;
                let vals = self.value_set()?;
                Requirement::new(&key, Operator::In, vals)
            }
            Some(Token::NotInKw) => {
                self.pos += 1;
                let vals = self.value_set()?;
                Requirement::new(&key, Operator::NotIn, vals)
            }
            Some(_) => Err(self.err(&format!("unexpected operator after key {key:?}"))),
        }
    }
}

impl LabelSelector {
    /// Parses the `labelSelector` query parameter syntax. Whitespace-only means "everything".
    pub fn parse(s: &str) -> Result<LabelSelector, SelectorError> {
        let toks = tokenize(s)?;
        let mut p = Parser {
            toks,
            pos: 0,
            src: s.to_string(),
        };
        let mut requirements = Vec::new();
        if p.peek().is_none() {
            return Ok(LabelSelector::default());
        }
        loop {
            requirements.push(p.requirement()?);
            match p.next() {
                None => break,
                Some(Token::Comma) => {
                    if p.peek().is_none() {
                        return Err(p.err("trailing ','"));
                    }
                }
                Some(_) => return Err(p.err("expected ',' between requirements")),
            }
        }
        // Kubernetes keeps requirements sorted by key; it makes `Display` canonical.
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// A selector that requires every `key: value` of a map (a Service's `spec.selector`, a
    /// LabelSelector's `matchLabels`). Non-string values become requirements nothing matches, so a
    /// malformed selector never widens to "everything". Invalid keys/values are kept as given (they simply
    /// match nothing valid) because this input was already accepted into the store.
    pub fn from_match_labels(map: &Value) -> LabelSelector {
        let mut requirements: Vec<Requirement> = map
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| Requirement {
                        key: k.clone(),
                        operator: Operator::In,
                        // An `In` with no values matches nothing.
                        values: v.as_str().map(str::to_string).into_iter().collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        LabelSelector { requirements }
    }

    /// A `metav1.LabelSelector` object (`matchLabels` + `matchExpressions` with operators `In`, `NotIn`,
    /// `Exists`, `DoesNotExist`). Note that Kubernetes treats a *null* selector as "nothing" and an empty
    /// one as "everything"; that distinction is the caller's, this returns the empty selector for both.
    pub fn from_label_selector(sel: &Value) -> Result<LabelSelector, SelectorError> {
        let mut out =
            LabelSelector::from_match_labels(sel.get("matchLabels").unwrap_or(&Value::Null));
        if let Some(exprs) = sel.get("matchExpressions").and_then(Value::as_array) {
            for e in exprs {
                let key = e.get("key").and_then(Value::as_str).unwrap_or_default();
                let op = match e.get("operator").and_then(Value::as_str) {
                    Some("In") => Operator::In,
                    Some("NotIn") => Operator::NotIn,
                    Some("Exists") => Operator::Exists,
                    Some("DoesNotExist") => Operator::DoesNotExist,
                    other => {
                        return Err(SelectorError::Syntax(format!(
                            "{other:?} is not a valid label selector operator"
                        )));
                    }
                };
                let values = e
                    .get("values")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(Value::as_str)
                            .map(str::to_string)
                            .collect()
                    })
                    .unwrap_or_default();
                out.requirements.push(Requirement::new(key, op, values)?);
            }
        }
        out.requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether the labels (an object's `metadata.labels`, `None` when absent) satisfy every requirement.
    pub fn matches(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Convenience: match an object's `metadata.labels`.
    pub fn matches_object(&self, obj: &Value) -> bool {
        self.matches(crate::meta::labels(obj))
    }
}

/// Whether `labels` carry every key/value pair of an equality-based selector map — a Service's
/// `spec.selector`, a Pod's `spec.nodeSelector`, a `matchLabels`. An empty map selects everything.
pub fn map_matches(selector: &Map<String, Value>, labels: Option<&Map<String, Value>>) -> bool {
    selector.iter().all(|(k, v)| {
        v.as_str()
            .is_some_and(|want| labels.and_then(|l| l.get(k)).and_then(Value::as_str) == Some(want))
    })
}

impl fmt::Display for LabelSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{r}")?;
        }
        Ok(())
    }
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// A label name / label value body: `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`.
fn is_qualified_name_part(s: &str) -> bool {
    let (Some(first), Some(last)) = (s.chars().next(), s.chars().last()) else {
        return false;
    };
    is_alnum(first)
        && is_alnum(last)
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'))
}

/// DNS-1123 subdomain: ≤ 253 characters of lowercase alphanumerics, '-' and '.', starting and ending with
/// an alphanumeric.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|part| {
            !part.is_empty()
                && part
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !part.starts_with('-')
                && !part.ends_with('-')
        })
}

/// DNS-1123 label: ≤ 63 lowercase alphanumerics or '-', starting and ending with an alphanumeric.
pub fn is_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// Validates a label (or annotation) key: `[prefix/]name`, prefix a DNS subdomain, name ≤ 63 characters.
pub fn validate_label_key(key: &str) -> Result<(), SelectorError> {
    let bad = |reason: &str| SelectorError::InvalidKey {
        key: key.to_string(),
        reason: reason.to_string(),
    };
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix
        && !is_dns1123_subdomain(p)
    {
        return Err(bad("prefix part must be a DNS-1123 subdomain"));
    }
    if name.is_empty() {
        return Err(bad("name part must be non-empty"));
    }
    if name.len() > 63 {
        return Err(bad("name part must be no more than 63 characters"));
    }
    if !is_qualified_name_part(name) {
        return Err(bad(
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
        ));
    }
    Ok(())
}

/// Validates a label value: empty, or ≤ 63 characters of the qualified-name alphabet.
pub fn validate_label_value(value: &str) -> Result<(), SelectorError> {
    if value.is_empty() {
        return Ok(());
    }
    let reason = if value.len() > 63 {
        "must be no more than 63 characters"
    } else if !is_qualified_name_part(value) {
        "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character"
    } else {
        return Ok(());
    };
    Err(SelectorError::InvalidValue {
        value: value.to_string(),
        reason: reason.to_string(),
    })
}

/// One `field op value` term of a field selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    /// `true` for `=`/`==`, `false` for `!=`.
    pub equals: bool,
    pub value: String,
}

/// A parsed field selector: all terms must hold. The empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub requirements: Vec<FieldRequirement>,
}

/// Splits on unescaped commas, keeping escapes in place for the term parser.
fn split_terms(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                cur.push(c);
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            ',' => out.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn unescape_field_value(v: &str) -> Result<String, SelectorError> {
    let mut out = String::with_capacity(v.len());
    let mut chars = v.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some(n @ ('\\' | ',' | '=')) => out.push(n),
                other => {
                    return Err(SelectorError::FieldSyntax(format!(
                        "invalid escape sequence \\{} in value {v:?}",
                        other.map(String::from).unwrap_or_default()
                    )));
                }
            }
        } else {
            out.push(c);
        }
    }
    Ok(out)
}

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter syntax.
    pub fn parse(s: &str) -> Result<FieldSelector, SelectorError> {
        let mut requirements = Vec::new();
        if s.trim().is_empty() {
            return Ok(FieldSelector::default());
        }
        for term in split_terms(s) {
            if term.is_empty() {
                // `a=b,` — Kubernetes skips empty terms.
                continue;
            }
            // The first position where an operator starts decides the split (`!=` before `==` before `=`),
            // exactly like fields.splitTerm; the field label itself never contains these characters.
            let mut found = None;
            // Walk by characters (not bytes: values may be any UTF-8), skipping escaped ones.
            let mut chars = term.char_indices();
            while let Some((i, c)) = chars.next() {
                if c == '\\' {
                    chars.next();
                    continue;
                }
                let rest = &term[i..];
                if rest.starts_with("!=") {
                    found = Some((i, 2, false));
                } else if rest.starts_with("==") {
                    found = Some((i, 2, true));
                } else if rest.starts_with('=') {
                    found = Some((i, 1, true));
                }
                if found.is_some() {
                    break;
                }
            }
            let Some((at, len, equals)) = found else {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid selector: {term:?}; can't understand {term:?}"
                )));
            };
            let field = term[..at].trim();
            if field.is_empty() {
                return Err(SelectorError::FieldSyntax(format!(
                    "empty field label in {term:?}"
                )));
            }
            // Field labels are dotted field paths; refusing anything else keeps `Display` reparsable.
            if !field
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
            {
                return Err(SelectorError::FieldSyntax(format!(
                    "invalid field label {field:?}"
                )));
            }
            let value = unescape_field_value(&term[at + len..])?;
            requirements.push(FieldRequirement {
                field: field.to_string(),
                equals,
                value,
            });
        }
        Ok(FieldSelector { requirements })
    }

    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Refuses field labels the resource does not support (kube-apiserver answers
    /// `400 field label not supported: …`).
    pub fn validate(&self, info: &ResourceInfo) -> Result<(), SelectorError> {
        for r in &self.requirements {
            if !info.supports_field_selector(&r.field) {
                return Err(SelectorError::UnsupportedField(r.field.clone()));
            }
        }
        Ok(())
    }

    /// The value required by an `field=value` term, if any (lets a store index by e.g. `spec.nodeName`).
    pub fn exact(&self, field: &str) -> Option<&str> {
        self.requirements
            .iter()
            .find(|r| r.equals && r.field == field)
            .map(|r| r.value.as_str())
    }

    /// Whether the object satisfies every term. A missing field reads as the empty string (booleans that
    /// Kubernetes defaults, like `spec.unschedulable`, as `false`).
    pub fn matches(&self, obj: &Value) -> bool {
        self.requirements.iter().all(|r| {
            let have = field_value(obj, &r.field);
            (have == r.value) == r.equals
        })
    }
}

impl fmt::Display for FieldSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.requirements.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            let escaped = r
                .value
                .replace('\\', "\\\\")
                .replace(',', "\\,")
                .replace('=', "\\=");
            write!(
                f,
                "{}{}{}",
                r.field,
                if r.equals { "=" } else { "!=" },
                escaped
            )?;
        }
        Ok(())
    }
}

/// The string value of a field label on an object, as the per-resource `GetAttrs` functions of
/// kube-apiserver compute it.
pub fn field_value(obj: &Value, field: &str) -> String {
    // Events expose `source` as `source.component`.
    let path = if field == "source" {
        "source.component"
    } else {
        field
    };
    let mut cur = Some(obj);
    for seg in path.split('.') {
        cur = cur.and_then(|v| v.get(seg));
    }
    match cur {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Bool(b)) => b.to_string(),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::Null) | None => {
            if matches!(field, "spec.unschedulable" | "spec.hostNetwork") {
                "false".into()
            } else {
                String::new()
            }
        }
        Some(other) => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::lookup;
    use serde_json::json;

    fn labels(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    #[test]
    fn label_selector_grammar() {
        let l = labels(json!({"app":"web","tier":"front","n":"3"}));
        let m = |s: &str| LabelSelector::parse(s).expect(s).matches(Some(&l));
        assert!(m(""));
        assert!(m("app"));
        assert!(!m("!app"));
        assert!(m("!missing"));
        assert!(m("app=web"));
        assert!(m("app==web"));
        assert!(!m("app!=web"));
        assert!(m("missing!=x"), "!= matches absent labels");
        assert!(m("tier in (front, back)"));
        assert!(!m("tier notin (front)"));
        assert!(m("missing notin (front)"));
        assert!(m("n>2"));
        assert!(!m("n<3"));
        assert!(m("app=web,tier in (front),n>1"));
        assert!(!m("app=web,tier=back"));
        assert!(
            !LabelSelector::parse("app=")
                .expect("empty")
                .matches(Some(&l))
        );
        assert!(
            LabelSelector::parse("app=web")
                .expect("ok")
                .matches_object(&json!({"metadata":{"labels":{"app":"web"}}}))
        );
        assert!(!LabelSelector::parse("app").expect("ok").matches(None));
        assert!(LabelSelector::parse("!app").expect("ok").matches(None));
        assert!(LabelSelector::parse("example.com/app=x").is_ok());
    }

    #[test]
    fn label_selector_errors() {
        for bad in [
            "app=web,",
            "=web",
            "app in web",
            "app in ()",
            "app in (a",
            "app>x",
            "a b",
            "-bad=1",
            "app=-x",
            "app=(x)",
            "Bad_Prefix/x=1",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} should fail");
        }
    }

    #[test]
    fn label_selector_display_is_canonical() {
        let s = LabelSelector::parse("z in (b,a), app=web, !gone, n>1").expect("ok");
        assert_eq!(s.to_string(), "app=web,!gone,n>1,z in (a,b)");
        assert_eq!(LabelSelector::parse(&s.to_string()).expect("reparse"), s);
    }

    #[test]
    fn match_labels_and_expressions() {
        let s = LabelSelector::from_match_labels(&json!({"app":"web","n":1}));
        assert!(
            !s.matches(Some(&labels(json!({"app":"web","n":"1"})))),
            "non-string value never matches"
        );
        let s = LabelSelector::from_match_labels(&json!({"app":"web"}));
        assert!(s.matches(Some(&labels(json!({"app":"web","x":"y"})))));
        let s = LabelSelector::from_label_selector(&json!({
            "matchLabels":{"app":"web"},
            "matchExpressions":[{"key":"tier","operator":"In","values":["a","b"]},{"key":"old","operator":"DoesNotExist"}]
        }))
        .expect("ok");
        assert!(s.matches(Some(&labels(json!({"app":"web","tier":"b"})))));
        assert!(!s.matches(Some(&labels(json!({"app":"web","tier":"b","old":"1"})))));
        assert!(
            LabelSelector::from_label_selector(
                &json!({"matchExpressions":[{"key":"a","operator":"Gt"}]})
            )
            .is_err()
        );
    }

    #[test]
    fn field_selectors() {
        let ev = json!({"metadata":{"name":"e1","namespace":"default"},
            "involvedObject":{"kind":"Pod","name":"web","namespace":"default","uid":"u-1"},
            "source":{"component":"kubelet"},"type":"Normal"});
        let fs = FieldSelector::parse(
            "involvedObject.uid=u-1,involvedObject.name=web,involvedObject.namespace=default,involvedObject.kind=Pod",
        )
        .expect("parse");
        assert!(
            fs.validate(lookup("", "v1", "events").expect("events"))
                .is_ok()
        );
        assert!(fs.matches(&ev));
        assert!(
            !FieldSelector::parse("involvedObject.uid=u-2")
                .expect("p")
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("source=kubelet,type!=Warning")
                .expect("p")
                .matches(&ev)
        );
        assert!(
            FieldSelector::parse("metadata.name==e1")
                .expect("p")
                .matches(&ev)
        );
        let pods = lookup("", "v1", "pods").expect("pods");
        assert_eq!(
            FieldSelector::parse("spec.foo=x")
                .expect("p")
                .validate(pods),
            Err(SelectorError::UnsupportedField("spec.foo".into()))
        );
        let pod = json!({"spec":{"nodeName":"node-1"}});
        let fs = FieldSelector::parse("spec.nodeName=node-1").expect("p");
        assert!(fs.validate(pods).is_ok());
        assert!(fs.matches(&pod));
        assert_eq!(fs.exact("spec.nodeName"), Some("node-1"));
        assert!(
            FieldSelector::parse("spec.nodeName=")
                .expect("p")
                .matches(&json!({"spec":{}}))
        );
        assert!(
            FieldSelector::parse("spec.unschedulable=false")
                .expect("p")
                .matches(&json!({}))
        );
        assert!(FieldSelector::parse("").expect("p").is_empty());
    }

    #[test]
    fn field_selector_escapes() {
        let fs = FieldSelector::parse(r"metadata.name=a\,b\=c\\d,type!=x").expect("p");
        assert_eq!(fs.requirements[0].value, r"a,b=c\d");
        assert_eq!(fs.requirements.len(), 2);
        assert_eq!(FieldSelector::parse(&fs.to_string()).expect("reparse"), fs);
        assert!(FieldSelector::parse(r"metadata.name=a\x").is_err());
        assert!(FieldSelector::parse("metadata.name").is_err());
        assert!(FieldSelector::parse("=x").is_err());
        assert!(FieldSelector::parse("! =x").is_err());
    }

    #[test]
    fn names() {
        assert!(is_dns1123_subdomain("a.b-c.d"));
        assert!(!is_dns1123_subdomain("A"));
        assert!(!is_dns1123_subdomain("a..b"));
        assert!(is_dns1123_label("web-1"));
        assert!(!is_dns1123_label("web.1"));
        assert!(!is_dns1123_label(&"a".repeat(64)));
    }
}
