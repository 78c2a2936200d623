//! The audience language: JSON condition trees and a compact text form.
//!
//! JSON: `{"all": [..]}`, `{"any": [..]}`, `{"not": {..}}`, and leaves
//! `{"field": F, "op": "eq"|"in"|"range"|"exists", "value"?, "values"?, "gte"?, "gt"?, "lte"?, "lt"?}`.
//! Text: `tier:vip AND city:上海 AND consent.marketing_sms:granted AND monetary_90d>=1000`;
//! `AND`, `OR`, `NOT`, parentheses; `field:value`, `field:(a,b)` (in), `field:*` (exists),
//! `field>=n`, `>`, `<=`, `<`, `=`; values may be quoted (`city:"New York"`).
//!
//! Fields: see [`FieldKind`] and [`crate::NUMERIC_FIELDS`], [`crate::KEYWORD_FIELDS`];
//! `consent.<purpose>` (dots of the purpose may be written as `_`), and
//! `events.<event>.<N>d` (event counts within 7, 30, 90 or 365 days). Errors say where.

use serde::{Deserialize, Serialize};

use crate::{EVENT_WINDOWS, KEYWORD_FIELDS, NUMERIC_FIELDS};

/// A condition tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Condition {
    All { all: Vec<Condition> },
    Any { any: Vec<Condition> },
    Not { not: Box<Condition> },
    Leaf(Leaf),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Leaf {
    pub field: String,
    pub op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Vec<serde_json::Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gt: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lte: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lt: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    Eq,
    In,
    Range,
    Exists,
}

/// What a field holds, once resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldKind {
    /// A keyword field of the schema (`tier`, `city`...).
    Keyword(&'static str),
    /// A numeric field of the schema (`monetary_90d`...).
    Numeric(&'static str),
    /// `consent.<purpose>`: granted, denied, withdrawn, stale or none.
    Consent(String),
    /// `events.<event>.<N>d`: a count.
    EventCount { event: String, days: u32 },
    /// `traits.<name>`: a profile trait the engine indexes (non-identifying categories only).
    Trait(String),
}

/// A problem with a query, and where it is (a character offset of the text, or a JSON path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct QueryError {
    pub at: String,
    pub message: String,
}

fn error(at: impl Into<String>, message: impl Into<String>) -> QueryError {
    QueryError {
        at: at.into(),
        message: message.into(),
    }
}

pub const CONSENT_STATES: &[&str] = &["granted", "denied", "withdrawn", "stale", "none"];
const MAX_LEAVES: usize = 64;
const MAX_DEPTH: usize = 16;
const MAX_TEXT: usize = 4096;

/// Resolves a field name; `purposes` are the taxonomy's.
pub fn resolve_field(name: &str, purposes: &[String]) -> Result<FieldKind, String> {
    if let Some(field) = KEYWORD_FIELDS.iter().find(|f| **f == name) {
        return Ok(FieldKind::Keyword(field));
    }
    if let Some(field) = NUMERIC_FIELDS.iter().find(|f| **f == name) {
        return Ok(FieldKind::Numeric(field));
    }
    if let Some(purpose) = name.strip_prefix("consent.") {
        let wanted = purpose.replace('.', "_");
        return purposes
            .iter()
            .find(|p| p.replace('.', "_") == wanted)
            .map(|p| FieldKind::Consent(p.clone()))
            .ok_or_else(|| format!("{purpose:?} is not a purpose of the taxonomy"));
    }
    if let Some(trait_name) = name.strip_prefix("traits.") {
        let valid = !trait_name.is_empty()
            && trait_name.len() <= 64
            && trait_name.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("{trait_name:?} is not a trait name"));
        }
        return Ok(FieldKind::Trait(trait_name.to_string()));
    }
    if let Some(rest) = name.strip_prefix("events.") {
        let (event, window) = rest
            .rsplit_once('.')
            .ok_or("write event counts as events.<event>.<N>d, e.g. events.order_completed.30d")?;
        let days: u32 = window
            .strip_suffix('d')
            .and_then(|d| d.parse().ok())
            .filter(|d| EVENT_WINDOWS.contains(d))
            .ok_or_else(|| {
                format!(
                    "the window {window:?} must be one of {}",
                    EVENT_WINDOWS
                        .iter()
                        .map(|d| format!("{d}d"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })?;
        let valid = !event.is_empty()
            && event.len() <= 64
            && event.chars().all(|c| c.is_alphanumeric() || c == '_');
        if !valid {
            return Err(format!(
                "{event:?} is not an event key (snake case, e.g. order_completed)"
            ));
        }
        return Ok(FieldKind::EventCount {
            event: event.to_lowercase(),
            days,
        });
    }
    Err(format!(
        "unknown field {name:?}; fields are {}, {}, consent.<purpose>, events.<event>.<N>d, traits.<name>",
        KEYWORD_FIELDS.join(", "),
        NUMERIC_FIELDS.join(", ")
    ))
}

/// Checks a JSON tree: fields exist, operators fit them, limits hold. Errors name the path.
pub fn validate(condition: &Condition, purposes: &[String]) -> Result<(), QueryError> {
    let mut leaves = 0;
    validate_at(condition, purposes, "condition", 0, &mut leaves)
}

fn validate_at(
    condition: &Condition,
    purposes: &[String],
    path: &str,
    depth: usize,
    leaves: &mut usize,
) -> Result<(), QueryError> {
    if depth > MAX_DEPTH {
        return Err(error(path, format!("nested deeper than {MAX_DEPTH}")));
    }
    match condition {
        Condition::All { all: items } | Condition::Any { any: items } => {
            let key = if matches!(condition, Condition::All { .. }) {
                "all"
            } else {
                "any"
            };
            if items.is_empty() {
                return Err(error(
                    format!("{path}.{key}"),
                    "needs at least one condition",
                ));
            }
            for (index, item) in items.iter().enumerate() {
                validate_at(
                    item,
                    purposes,
                    &format!("{path}.{key}[{index}]"),
                    depth + 1,
                    leaves,
                )?;
            }
            Ok(())
        }
        Condition::Not { not } => {
            validate_at(not, purposes, &format!("{path}.not"), depth + 1, leaves)
        }
        Condition::Leaf(leaf) => {
            *leaves += 1;
            if *leaves > MAX_LEAVES {
                return Err(error(path, format!("more than {MAX_LEAVES} conditions")));
            }
            let kind = resolve_field(&leaf.field, purposes)
                .map_err(|m| error(format!("{path}.field"), m))?;
            let numeric = matches!(kind, FieldKind::Numeric(_) | FieldKind::EventCount { .. });
            match leaf.op {
                Op::Eq => {
                    let value = leaf
                        .value
                        .as_ref()
                        .ok_or_else(|| error(format!("{path}.value"), "eq needs a value"))?;
                    check_value(&kind, value, &format!("{path}.value"))
                }
                Op::In => {
                    let values = leaf
                        .values
                        .as_ref()
                        .filter(|v| !v.is_empty() && v.len() <= 256)
                        .ok_or_else(|| {
                            error(format!("{path}.values"), "in needs 1 to 256 values")
                        })?;
                    for (index, value) in values.iter().enumerate() {
                        check_value(&kind, value, &format!("{path}.values[{index}]"))?;
                    }
                    Ok(())
                }
                Op::Range => {
                    if !numeric {
                        return Err(error(
                            format!("{path}.op"),
                            format!("range needs a numeric field; {} is not", leaf.field),
                        ));
                    }
                    let bounds = [leaf.gte, leaf.gt, leaf.lte, leaf.lt];
                    if bounds.iter().all(Option::is_none) {
                        return Err(error(path, "range needs gte, gt, lte or lt"));
                    }
                    if bounds.iter().flatten().any(|b| !b.is_finite()) {
                        return Err(error(path, "range bounds must be finite numbers"));
                    }
                    Ok(())
                }
                Op::Exists => Ok(()),
            }
        }
    }
}

fn check_value(kind: &FieldKind, value: &serde_json::Value, at: &str) -> Result<(), QueryError> {
    match kind {
        FieldKind::Numeric(_) | FieldKind::EventCount { .. } => value
            .as_f64()
            .filter(|v| v.is_finite())
            .map(|_| ())
            .ok_or_else(|| error(at, "a number is expected")),
        FieldKind::Consent(_) => {
            let text = value.as_str().unwrap_or_default();
            if CONSENT_STATES.contains(&text) {
                Ok(())
            } else {
                Err(error(
                    at,
                    format!("a consent state is one of {}", CONSENT_STATES.join(", ")),
                ))
            }
        }
        FieldKind::Keyword(_) | FieldKind::Trait(_) => match value {
            serde_json::Value::String(s) if !s.is_empty() && s.len() <= 256 => Ok(()),
            serde_json::Value::Bool(_) | serde_json::Value::Number(_) => Ok(()),
            _ => Err(error(
                at,
                "a non-empty string of at most 256 bytes is expected",
            )),
        },
    }
}

/// Parses the text form into a tree (validated).
pub fn parse_text(text: &str, purposes: &[String]) -> Result<Condition, QueryError> {
    if text.len() > MAX_TEXT {
        return Err(error(
            "0",
            format!("the query is longer than {MAX_TEXT} bytes"),
        ));
    }
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(error("0", "the query is empty"));
    }
    let mut parser = Parser {
        tokens,
        position: 0,
        purposes,
        depth: 0,
        end: text.chars().count(),
    };
    let condition = parser.or()?;
    if let Some(token) = parser.tokens.get(parser.position) {
        return Err(error(
            token.at.to_string(),
            format!(
                "unexpected {:?}; join conditions with AND or OR",
                token.text
            ),
        ));
    }
    validate(&condition, purposes)?;
    Ok(condition)
}

#[derive(Debug, Clone, PartialEq)]
enum TokenKind {
    Word,
    Quoted,
    Open,
    Close,
    Comma,
    Operator,
}

#[derive(Debug, Clone)]
struct Token {
    kind: TokenKind,
    text: String,
    /// Character offset.
    at: usize,
}

fn tokenize(text: &str) -> Result<Vec<Token>, QueryError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let single = |kind, text: &str| Token {
            kind,
            text: text.into(),
            at: start,
        };
        match c {
            '(' => {
                tokens.push(single(TokenKind::Open, "("));
                i += 1;
            }
            ')' => {
                tokens.push(single(TokenKind::Close, ")"));
                i += 1;
            }
            ',' => {
                tokens.push(single(TokenKind::Comma, ","));
                i += 1;
            }
            '"' => {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(error(start.to_string(), "unterminated quoted value")),
                        Some('"') => {
                            i += 1;
                            break;
                        }
                        Some('\\') if chars.get(i + 1).is_some() => {
                            value.push(chars[i + 1]);
                            i += 2;
                        }
                        Some(ch) => {
                            value.push(*ch);
                            i += 1;
                        }
                    }
                }
                tokens.push(Token {
                    kind: TokenKind::Quoted,
                    text: value,
                    at: start,
                });
            }
            ':' | '=' | '>' | '<' => {
                let two = chars.get(i + 1) == Some(&'=') && (c == '>' || c == '<');
                let op: String = if two {
                    [c, '='].iter().collect()
                } else {
                    c.to_string()
                };
                i += op.chars().count();
                tokens.push(Token {
                    kind: TokenKind::Operator,
                    text: op,
                    at: start,
                });
            }
            _ => {
                let mut word = String::new();
                while let Some(ch) = chars.get(i) {
                    if ch.is_whitespace() || "():,=<>\"".contains(*ch) {
                        break;
                    }
                    word.push(*ch);
                    i += 1;
                }
                tokens.push(Token {
                    kind: TokenKind::Word,
                    text: word,
                    at: start,
                });
            }
        }
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    position: usize,
    purposes: &'a [String],
    depth: usize,
    end: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position)
    }

    fn is_keyword(&self, keyword: &str) -> bool {
        self.peek()
            .is_some_and(|t| t.kind == TokenKind::Word && t.text.eq_ignore_ascii_case(keyword))
    }

    fn here(&self) -> String {
        self.peek().map_or(self.end, |t| t.at).to_string()
    }

    fn or(&mut self) -> Result<Condition, QueryError> {
        let mut items = vec![self.and()?];
        while self.is_keyword("OR") {
            self.position += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::Any { any: items }
        })
    }

    fn and(&mut self) -> Result<Condition, QueryError> {
        let mut items = vec![self.unary()?];
        while self.is_keyword("AND") {
            self.position += 1;
            items.push(self.unary()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::All { all: items }
        })
    }

    fn unary(&mut self) -> Result<Condition, QueryError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH * 2 {
            return Err(error(self.here(), "nested too deeply"));
        }
        let result = if self.is_keyword("NOT") {
            self.position += 1;
            Ok(Condition::Not {
                not: Box::new(self.unary()?),
            })
        } else if self.peek().is_some_and(|t| t.kind == TokenKind::Open) {
            let open = self.here();
            self.position += 1;
            let inner = self.or()?;
            if !self.peek().is_some_and(|t| t.kind == TokenKind::Close) {
                return Err(error(
                    self.here(),
                    format!("the parenthesis opened at {open} is not closed"),
                ));
            }
            self.position += 1;
            Ok(inner)
        } else {
            self.leaf()
        };
        self.depth -= 1;
        result
    }

    fn value(&mut self) -> Result<(String, bool), QueryError> {
        match self.peek() {
            Some(t) if t.kind == TokenKind::Word || t.kind == TokenKind::Quoted => {
                let quoted = t.kind == TokenKind::Quoted;
                let text = t.text.clone();
                self.position += 1;
                Ok((text, quoted))
            }
            _ => Err(error(self.here(), "a value is expected")),
        }
    }

    // Long by design: one arm per field family of the audience language (keywords, numbers,
    // consent, events, traits, exists), so the grammar of a clause reads in one place.
    fn leaf(&mut self) -> Result<Condition, QueryError> {
        let field_token = match self.peek() {
            Some(t) if t.kind == TokenKind::Word => t.clone(),
            _ => return Err(error(self.here(), "a condition (field:value) is expected")),
        };
        self.position += 1;
        let kind = resolve_field(&field_token.text, self.purposes)
            .map_err(|m| error(field_token.at.to_string(), m))?;
        let numeric = matches!(kind, FieldKind::Numeric(_) | FieldKind::EventCount { .. });
        let operator = match self.peek() {
            Some(t) if t.kind == TokenKind::Operator => t.clone(),
            _ => {
                return Err(error(
                    self.here(),
                    format!(
                        "an operator (:, =, >=, >, <=, <) is expected after {}",
                        field_token.text
                    ),
                ));
            }
        };
        self.position += 1;
        let field = field_token.text.clone();
        let leaf = |op, value, values| {
            Condition::Leaf(Leaf {
                field: field.clone(),
                op,
                value,
                values,
                gte: None,
                gt: None,
                lte: None,
                lt: None,
            })
        };
        let json_value =
            |text: &str, quoted: bool, at: &str| -> Result<serde_json::Value, QueryError> {
                if numeric {
                    if quoted {
                        return Err(error(at, "a number is expected"));
                    }
                    text.parse::<f64>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .map(serde_json::Value::from)
                        .ok_or_else(|| error(at, format!("{text:?} is not a number")))
                } else {
                    let value = serde_json::Value::String(text.to_string());
                    check_value(&kind, &value, at)?;
                    Ok(value)
                }
            };
        match operator.text.as_str() {
            ":" | "=" => {
                if self
                    .peek()
                    .is_some_and(|t| t.kind == TokenKind::Word && t.text == "*")
                {
                    self.position += 1;
                    return Ok(leaf(Op::Exists, None, None));
                }
                if self.peek().is_some_and(|t| t.kind == TokenKind::Open) {
                    self.position += 1;
                    let mut values = Vec::new();
                    loop {
                        let at = self.here();
                        let (text, quoted) = self.value()?;
                        values.push(json_value(&text, quoted, &at)?);
                        match self.peek() {
                            Some(t) if t.kind == TokenKind::Comma => self.position += 1,
                            Some(t) if t.kind == TokenKind::Close => {
                                self.position += 1;
                                break;
                            }
                            _ => {
                                return Err(error(
                                    self.here(),
                                    "expected , or ) in the list of values",
                                ));
                            }
                        }
                    }
                    return Ok(leaf(Op::In, None, Some(values)));
                }
                let at = self.here();
                let (text, quoted) = self.value()?;
                Ok(leaf(Op::Eq, Some(json_value(&text, quoted, &at)?), None))
            }
            comparison => {
                if !numeric {
                    return Err(error(
                        operator.at.to_string(),
                        format!("{comparison} needs a numeric field; {field} is not"),
                    ));
                }
                let at = self.here();
                let (text, quoted) = self.value()?;
                let number = json_value(&text, quoted, &at)?.as_f64().unwrap_or_default();
                let mut leaf = Leaf {
                    field,
                    op: Op::Range,
                    value: None,
                    values: None,
                    gte: None,
                    gt: None,
                    lte: None,
                    lt: None,
                };
                match comparison {
                    ">=" => leaf.gte = Some(number),
                    ">" => leaf.gt = Some(number),
                    "<=" => leaf.lte = Some(number),
                    _ => leaf.lt = Some(number),
                }
                Ok(Condition::Leaf(leaf))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn purposes() -> Vec<String> {
        [
            "marketing",
            "marketing.sms",
            "customer_service",
            "marketing.advertising.first_party",
        ]
        .iter()
        .map(|p| (*p).to_string())
        .collect()
    }

    #[test]
    fn parses_the_text_form() {
        let condition = parse_text(
            "tier:vip AND city:上海 AND consent.marketing_sms:granted AND monetary_90d>=1000",
            &purposes(),
        )
        .unwrap();
        let Condition::All { all } = &condition else {
            panic!("{condition:?}")
        };
        assert_eq!(all.len(), 4);
        let Condition::Leaf(last) = &all[3] else {
            panic!()
        };
        assert_eq!(last.gte, Some(1000.0));
        let Condition::Leaf(consent) = &all[2] else {
            panic!()
        };
        assert_eq!(consent.field, "consent.marketing_sms");
        let nested = parse_text(
            "(lifecycle:(growth, maturity) OR tag:\"big spender\") AND NOT hesitating:true AND events.order_completed.30d>2 AND interest:*",
            &purposes(),
        )
        .unwrap();
        assert!(matches!(nested, Condition::All { .. }));
    }

    #[test]
    fn errors_point_at_the_bad_part() {
        let cases = [
            ("tier:vip AND monetary_9d>=5", "13", "unknown field"),
            ("tier>=3", "4", "numeric"),
            ("monetary_90d>=lots", "14", "not a number"),
            ("tier:vip city:上海", "9", "AND or OR"),
            ("(tier:vip", "9", "not closed"),
            ("consent.marketing_fax:granted", "0", "not a purpose"),
            ("consent.marketing_sms:maybe", "22", "consent state"),
            ("events.order_completed.3d>1", "0", "window"),
            ("tier:", "5", "value is expected"),
            ("", "0", "empty"),
        ];
        for (text, at, needle) in cases {
            let error = parse_text(text, &purposes()).unwrap_err();
            assert_eq!(error.at, at, "{text}: {error}");
            assert!(error.message.contains(needle), "{text}: {error}");
        }
    }

    #[test]
    fn json_trees_are_validated_with_paths() {
        let tree: Condition = serde_json::from_value(serde_json::json!({
            "all": [
                {"field": "tier", "op": "eq", "value": "vip"},
                {"any": [{"field": "monetary_90d", "op": "range", "gte": 100}, {"field": "nope", "op": "exists"}]}
            ]
        }))
        .unwrap();
        let error = validate(&tree, &purposes()).unwrap_err();
        assert_eq!(error.at, "condition.all[1].any[1].field");
        let tree: Condition = serde_json::from_value(serde_json::json!(
            {"field": "city", "op": "range", "gte": 1}
        ))
        .unwrap();
        assert_eq!(validate(&tree, &purposes()).unwrap_err().at, "condition.op");
    }
}
