//! An order-preserving JSON tree and the canonical writers the signatures need.
//!
//! serde_json's map sorts keys (or, with `preserve_order` switched on anywhere in the build,
//! keeps them) and its numbers lose their source text: neither is what the canonical forms
//! need (top level sorted, nested levels as received, numbers written back the way Jackson
//! does, the demo's string map reading numbers as written). serde_json reads the document;
//! the tree here keeps key order and every number's source text.

use super::ProtocolError;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::cmp::Ordering;

#[derive(Debug, Clone, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    /// The number's source text, validated as a JSON number.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

const MAX_DEPTH: usize = 128;

impl Json {
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(m) => m.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as text the way a Java bean-to-string step renders a scalar
    /// (strings as they are, numbers and booleans as written); None for null and containers.
    pub fn scalar_text(&self) -> Option<String> {
        match self {
            Json::String(s) => Some(s.clone()),
            Json::Number(n) => Some(n.clone()),
            Json::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }

    /// Converts a serde_json value (for bodies csm builds itself).
    pub fn from_serde(v: &serde_json::Value) -> Json {
        match v {
            serde_json::Value::Null => Json::Null,
            serde_json::Value::Bool(b) => Json::Bool(*b),
            serde_json::Value::Number(n) => Json::Number(n.to_string()),
            serde_json::Value::String(s) => Json::String(s.clone()),
            serde_json::Value::Array(a) => Json::Array(a.iter().map(Json::from_serde).collect()),
            serde_json::Value::Object(m) => Json::Object(
                m.iter()
                    .map(|(k, v)| (k.clone(), Json::from_serde(v)))
                    .collect(),
            ),
        }
    }

    pub fn to_serde(&self) -> serde_json::Value {
        match self {
            Json::Null => serde_json::Value::Null,
            Json::Bool(b) => serde_json::Value::Bool(*b),
            Json::Number(n) => serde_json::from_str(n).unwrap_or(serde_json::Value::Null),
            Json::String(s) => serde_json::Value::String(s.clone()),
            Json::Array(a) => serde_json::Value::Array(a.iter().map(Json::to_serde).collect()),
            Json::Object(m) => serde_json::Value::Object(
                m.iter().map(|(k, v)| (k.clone(), v.to_serde())).collect(),
            ),
        }
    }
}

/// Parses a complete JSON document from bytes (UTF-8 required). A repeated key keeps its
/// last value, as Jackson does.
pub fn parse(bytes: &[u8]) -> Result<Json, ProtocolError> {
    parse_with(bytes, false).map_err(|e| match e {
        UniqueError::Invalid(e) => e,
        UniqueError::RepeatedKey(_) => unreachable!("repeated keys are kept"),
    })
}

/// Why [`parse_unique`] refused a document.
#[derive(Debug, Clone, PartialEq)]
pub enum UniqueError {
    /// A key repeated within one object (the key, in full: the caller decides how to show it).
    RepeatedKey(String),
    Invalid(ProtocolError),
}

/// Like [`parse`], but a key repeated within one object is an error of its own kind (input
/// records must not say two things).
pub fn parse_unique(bytes: &[u8]) -> Result<Json, UniqueError> {
    parse_with(bytes, true)
}

fn parse_with(bytes: &[u8], unique: bool) -> Result<Json, UniqueError> {
    let doc = std::str::from_utf8(bytes).map_err(|e| {
        UniqueError::Invalid(ProtocolError::new(format!(
            "body: invalid UTF-8 at byte {} (JSON bodies must be UTF-8)",
            e.valid_up_to()
        )))
    })?;
    // serde_json checks the whole document here; each level is then split into its members'
    // raw text, so that numbers keep their source text (serde_json's own numbers do not).
    let raw: &RawValue = serde_json::from_str(doc).map_err(|e| not_json(doc, doc, &e))?;
    Reader { doc, unique }.value(raw, 0)
}

struct Reader<'a> {
    doc: &'a str,
    /// Refuse repeated keys instead of keeping the last value.
    unique: bool,
}

impl<'a> Reader<'a> {
    fn value(&self, raw: &'a RawValue, depth: usize) -> Result<Json, UniqueError> {
        let text = raw.get();
        if depth > MAX_DEPTH {
            let e = serde::de::Error::custom("nested deeper than 128 levels");
            return Err(not_json(self.doc, text, &e));
        }
        let split = |e| not_json(self.doc, text, &e);
        Ok(match text.as_bytes()[0] {
            b'{' => {
                let Members(members) = serde_json::from_str(text).map_err(split)?;
                let mut out: Vec<(String, Json)> = Vec::with_capacity(members.len());
                for (k, v) in members {
                    let v = self.value(v, depth + 1)?;
                    match out.iter_mut().find(|(seen, _)| *seen == k) {
                        Some(_) if self.unique => return Err(UniqueError::RepeatedKey(k)),
                        Some(slot) => slot.1 = v,
                        None => out.push((k, v)),
                    }
                }
                Json::Object(out)
            }
            b'[' => {
                let items: Vec<&RawValue> = serde_json::from_str(text).map_err(split)?;
                let items = items.into_iter().map(|v| self.value(v, depth + 1));
                Json::Array(items.collect::<Result<_, _>>()?)
            }
            b'"' => Json::String(serde_json::from_str(text).map_err(split)?),
            b't' => Json::Bool(true),
            b'f' => Json::Bool(false),
            b'n' => Json::Null,
            _ => Json::Number(text.to_string()),
        })
    }
}

/// An object's members in order, each value as its raw text.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Self::Value, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = map.next_entry()? {
                    members.push(member);
                }
                Ok(Members(members))
            }
        }
        d.deserialize_map(Visitor)
    }
}

/// serde_json's error in `part` (a slice of `doc`), with the line and column counted in the
/// whole document.
fn not_json(doc: &str, part: &str, e: &serde_json::Error) -> UniqueError {
    // A part's raw text is borrowed from the document, so its address gives its offset.
    let start = part.as_ptr() as usize - doc.as_ptr() as usize;
    let before = &doc[..start];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let (line, column) = match e.line() {
        0 => (before.matches('\n').count() + 1, start - line_start),
        1 => (
            before.matches('\n').count() + 1,
            start - line_start + e.column(),
        ),
        n => (before.matches('\n').count() + n, e.column()),
    };
    let text = e.to_string();
    let rule = text
        .strip_suffix(&format!(" at line {} column {}", e.line(), e.column()))
        .unwrap_or(&text);
    UniqueError::Invalid(ProtocolError::new(format!(
        "body: not JSON at line {line} column {column}: {rule}"
    )))
}

/// Java `String.compareTo`: UTF-16 code unit order.
pub fn java_cmp(a: &str, b: &str) -> Ordering {
    // Byte order equals UTF-16 order except between supplementary characters and U+E000..U+FFFF.
    if a.is_ascii() && b.is_ascii() {
        a.cmp(b)
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Escapes a string the way Jackson does: only `"`, `\` and control characters.
pub fn write_string(out: &mut String, s: &str) {
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\t' => "\\t",
            b'\r' => "\\r",
            0x08 => "\\b",
            0x0c => "\\f",
            0x00..=0x1f => "",
            _ => continue,
        };
        // Runs of plain text are copied whole; only the escaped byte is replaced.
        out.push_str(&s[start..i]);
        if esc.is_empty() {
            out.push_str(&format!("\\u{b:04X}"));
        } else {
            out.push_str(esc);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// A number as Jackson writes it back: integers as written, decimals as a Java double.
pub fn jackson_number(src: &str) -> String {
    let is_decimal = src.contains(['.', 'e', 'E']);
    if !is_decimal {
        return src.to_string();
    }
    match src.parse::<f64>() {
        Ok(v) if v.is_finite() => java_double(v),
        _ => src.to_string(),
    }
}

/// `Double.toString` in Java: plain notation in [1e-3, 1e7), otherwise `d.dddE±n`,
/// always with at least one fractional digit, shortest digits that round-trip.
pub fn java_double(v: f64) -> String {
    if v == 0.0 {
        return if v.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    let a = v.abs();
    if (1e-3..1e7).contains(&a) {
        let s = format!("{v}");
        if s.contains('.') {
            s
        } else {
            s + ".0"
        }
    } else {
        let s = format!("{v:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let mant = if mant.contains('.') {
            mant.to_string()
        } else {
            format!("{mant}.0")
        };
        format!("{mant}E{exp}")
    }
}

/// Writes `v` compactly, keeping key order, Jackson-style.
pub fn write_compact(out: &mut String, v: &Json) {
    write_with(out, v, false);
}

/// `v` written compactly, keeping key order, Jackson-style.
pub fn compact(v: &Json) -> String {
    let mut out = String::new();
    write_compact(&mut out, v);
    out
}

fn write_with(out: &mut String, v: &Json, sort_all: bool) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => out.push_str(&jackson_number(n)),
        Json::String(s) => write_string(out, s),
        Json::Array(a) => {
            out.push('[');
            for (i, item) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_with(out, item, sort_all);
            }
            out.push(']');
        }
        Json::Object(m) => {
            let mut members: Vec<&(String, Json)> = m.iter().collect();
            if sort_all {
                members.sort_by(|a, b| java_cmp(&a.0, &b.0));
            }
            out.push('{');
            for (i, (k, item)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write_with(out, item, sort_all);
            }
            out.push('}');
        }
    }
}

/// The V2 canonical body (basic, Kit and License callbacks): top-level keys sorted in Java
/// string order, top-level nulls dropped, nested values as received, compact.
pub fn canonical_v2(body: &Json) -> Result<String, ProtocolError> {
    let Json::Object(m) = body else {
        return Err(ProtocolError::new(
            "body: must be a JSON object (the V2 signature is over an object's fields)",
        ));
    };
    let mut members: Vec<(String, Json)> = m
        .iter()
        .filter(|(_, v)| *v != Json::Null)
        .cloned()
        .collect();
    members.sort_by(|a, b| java_cmp(&a.0, &b.0));
    Ok(compact(&Json::Object(members)))
}

/// Keys sorted at every level, compact (the usage push body and its signed text).
pub fn canonical_sorted(body: &Json) -> String {
    let mut out = String::new();
    write_with(&mut out, body, true);
    out
}

/// What the official basic demo computes: the body read as a flat string map (numbers and
/// booleans become their source text), sorted, nulls dropped. None when a value is nested.
pub fn string_map_variant(body: &Json) -> Option<String> {
    let Json::Object(m) = body else { return None };
    let mut members = Vec::new();
    for (k, v) in m {
        match v {
            Json::Null => {}
            Json::Array(_) | Json::Object(_) => return None,
            other => members.push((k.clone(), Json::String(other.scalar_text()?))),
        }
    }
    members.sort_by(|a, b| java_cmp(&a.0, &b.0));
    Some(compact(&Json::Object(members)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> impl proptest::strategy::Strategy<Value = Json> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::Bool),
            "-?(0|[1-9][0-9]{0,20})".prop_map(Json::Number),
            any::<String>().prop_map(Json::String),
        ];
        leaf.prop_recursive(4, 32, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Json::Array),
                proptest::collection::vec(("[a-c\"\\\\\n中]{0,2}", inner), 0..4).prop_map(
                    |mut m| {
                        let mut seen = Vec::new();
                        m.retain(|(k, _)| {
                            !seen.contains(k) && {
                                seen.push(k.clone());
                                true
                            }
                        });
                        Json::Object(m)
                    }
                ),
            ]
        })
    }

    proptest::proptest! {
        /// What the writer writes reads back as the same tree: key order, escapes, numbers.
        #[test]
        fn written_trees_read_back(tree in tree()) {
            proptest::prop_assert_eq!(parse_unique(compact(&tree).as_bytes()), Ok(tree));
        }
    }

    #[test]
    fn numbers_keep_their_source_text() {
        let j = parse(b"[1E5, 100.00,-0, 1e400 ,12345678901234567890123]").unwrap();
        let texts = ["1E5", "100.00", "-0", "1e400", "12345678901234567890123"];
        let want = texts.iter().map(|t| Json::Number(t.to_string())).collect();
        assert_eq!(j, Json::Array(want));
    }

    #[test]
    fn keeps_nested_order_and_sorts_top_level() {
        let j = parse(br#"{"b":{"z":1,"a":2},"a":null,"A":"x"}"#).unwrap();
        assert_eq!(canonical_v2(&j).unwrap(), r#"{"A":"x","b":{"z":1,"a":2}}"#);
        assert_eq!(
            canonical_sorted(&j),
            r#"{"A":"x","a":null,"b":{"a":2,"z":1}}"#
        );
    }

    #[test]
    fn numbers_like_java_doubles() {
        assert_eq!(jackson_number("100.00"), "100.0");
        assert_eq!(jackson_number("0.50"), "0.5");
        assert_eq!(jackson_number("12"), "12");
        assert_eq!(jackson_number("1e7"), "1.0E7");
        assert_eq!(jackson_number("0.0001"), "1.0E-4");
        assert_eq!(jackson_number("123.456"), "123.456");
    }

    #[test]
    fn escapes_like_jackson() {
        let j = parse(b"{\"k\":\"a\\u0001b\\/\\u4e2d\\u007f\"}").unwrap();
        assert_eq!(canonical_v2(&j).unwrap(), "{\"k\":\"a\\u0001b/中\u{7f}\"}");
    }

    #[test]
    fn repeated_keys_keep_the_last_or_are_refused() {
        let j = parse(br#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(j.get("a"), Some(&Json::Number("2".into())));
        assert_eq!(
            parse_unique(br#"{"a":{"b":1,"b":2}}"#),
            Err(UniqueError::RepeatedKey("b".into()))
        );
        assert!(matches!(
            parse_unique(b"{\"a\":"),
            Err(UniqueError::Invalid(_))
        ));
    }

    #[test]
    fn rejects_bad_json_with_position() {
        let e = parse(b"{\"a\":}").unwrap_err().to_string();
        assert_eq!(e, "body: not JSON at line 1 column 6: expected value");
        assert!(parse(b"{} x").is_err());
        // Errors inside a member count lines and columns in the whole document.
        let e = parse(b"[1,\n {\"\\ud800\":1}]").unwrap_err().to_string();
        assert!(e.starts_with("body: not JSON at line 2 column 10: "), "{e}");
        let deep = format!("{}{}", "[".repeat(130), "]".repeat(130));
        let e = parse(deep.as_bytes()).unwrap_err().to_string();
        assert!(e.ends_with("nested deeper than 128 levels"), "{e}");
        assert!(parse(b"\"\\ud800\"").is_err());
    }
}
