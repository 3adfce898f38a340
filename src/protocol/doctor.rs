//! The signature doctor. Given what was received and the key, it computes what a correct
//! sender signs, then tries the usual mistakes one at a time and names the one whose
//! signature equals the received one.

use super::hmac::{b64, b64_eq, hex_eq, hmac_sha256, to_hex, to_hex_upper};
use super::json::{self, Json};
use super::{apig, usage_sig, v1, v2, KEY_PLACEHOLDER};

/// One way of computing the signature: the correct recipe, an accepted variant
/// (decision 2: raw bytes, the demo's re-serialisation), or a usual mistake.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub label: String,
    /// True for the correct recipe and the variants a correct verifier accepts.
    pub accepted: bool,
    /// The string that was signed, with any access key masked.
    pub signed_string: String,
    pub signature: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Diagnosis {
    pub scheme: &'static str,
    /// What a correct sender signs (the first candidate).
    pub expected: Candidate,
    pub received: String,
    /// The first candidate whose signature equals the received one.
    pub matched: Option<Candidate>,
    /// Every label tried, in order, with whether it matched.
    pub tried: Vec<(String, bool)>,
    /// Findings that do not change the signature (a stale timestamp, the seconds reading).
    pub notes: Vec<String>,
}

impl Diagnosis {
    /// The signature is right (by the correct recipe or an accepted variant).
    pub fn valid(&self) -> bool {
        self.matched.as_ref().is_some_and(|c| c.accepted)
    }
}

#[derive(Clone, Copy)]
enum Compare {
    Hex,
    Base64,
}

impl Compare {
    fn eq(self, expected: &str, received: &str) -> bool {
        match self {
            // A Base64 candidate (the mistake of encoding a hex signature so) is not hex, and
            // matches only exactly.
            Compare::Hex => hex_eq(expected, received) || b64_eq(expected, received),
            Compare::Base64 => b64_eq(expected, received),
        }
    }
}

fn finish(
    scheme: &'static str,
    mut candidates: Vec<Candidate>,
    received: &str,
    cmp: Compare,
    notes: Vec<String>,
) -> Diagnosis {
    // Same signature reached twice: keep the first label only.
    let mut seen: Vec<String> = Vec::new();
    candidates.retain(|c| {
        let dup = seen.contains(&c.signature);
        seen.push(c.signature.clone());
        !dup
    });
    let tried = candidates
        .iter()
        .map(|c| (c.label.clone(), cmp.eq(&c.signature, received)))
        .collect::<Vec<_>>();
    let matched = candidates
        .iter()
        .find(|c| cmp.eq(&c.signature, received))
        .cloned();
    Diagnosis {
        scheme,
        expected: candidates[0].clone(),
        received: received.to_string(),
        matched,
        tried,
        notes,
    }
}

fn cand(label: &str, accepted: bool, signed_string: String, signature: String) -> Candidate {
    Candidate {
        label: label.to_string(),
        accepted,
        signed_string,
        signature,
    }
}

/// Non-ASCII characters as `\uXXXX` (UTF-16, surrogate pairs beyond U+FFFF), as serializers
/// that escape them (Python's json.dumps by default) write a body; the rest as it is.
fn ascii_escaped(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{u:04x}"));
            }
        }
    }
    out
}

/// `json.dumps(obj)` with Python's defaults: `", "` and `": "` between items, non-ASCII
/// escaped, keys in the order received.
fn python_dumps(v: &Json) -> String {
    fn go(out: &mut String, v: &Json) {
        match v {
            Json::Array(a) => {
                out.push('[');
                for (i, item) in a.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    go(out, item);
                }
                out.push(']');
            }
            Json::Object(m) => {
                out.push('{');
                for (i, (k, item)) in m.iter().enumerate() {
                    if i > 0 {
                        out.push_str(", ");
                    }
                    json::write_string(out, k);
                    out.push_str(": ");
                    go(out, item);
                }
                out.push('}');
            }
            other => json::write_compact(out, other),
        }
    }
    let mut out = String::new();
    go(&mut out, v);
    ascii_escaped(&out)
}

/// The reply's top-level fields signed in another order than they were sent (a map signed,
/// then the object written): every other order of up to six fields is tried, and the one
/// that matches, if any, is the candidate.
fn reordered(key: &str, parsed: &Json, received: &str) -> Candidate {
    let label = "the fields signed in another order than sent";
    let Json::Object(m) = parsed else {
        return cand(label, false, String::new(), String::new());
    };
    if !(2..=6).contains(&m.len()) {
        return cand(label, false, String::new(), String::new());
    }
    let mut order: Vec<usize> = (0..m.len()).collect();
    let mut first = None;
    while next_permutation(&mut order) {
        let fields = order.iter().map(|&i| m[i].clone()).collect();
        let text = json::compact(&Json::Object(fields));
        let sig = v1::body_sign(key, text.as_bytes());
        if Compare::Base64.eq(&sig, received) {
            let names: Vec<&str> = order.iter().map(|&i| m[i].0.as_str()).collect();
            let label = format!("{label}: {}", names.join(", "));
            return cand(&label, false, text, sig);
        }
        first.get_or_insert(text);
    }
    cand(label, false, first.unwrap_or_default(), String::new())
}

/// The next order of `v` in lexicographic order; false after the last.
fn next_permutation(v: &mut [usize]) -> bool {
    let Some(i) = (1..v.len()).rev().find(|&i| v[i - 1] < v[i]) else {
        return false;
    };
    let j = (i..v.len())
        .rev()
        .find(|&j| v[j] > v[i - 1])
        .expect("v[i] is one");
    v.swap(i - 1, j);
    v[i..].reverse();
    true
}

/// Pretty-printed the way common serializers do it (Jackson puts spaces around ':').
fn pretty(v: &Json, jackson: bool) -> String {
    fn go(out: &mut String, v: &Json, depth: usize, jackson: bool) {
        let pad = |out: &mut String, d: usize| out.push_str(&"  ".repeat(d));
        match v {
            Json::Object(m) if !m.is_empty() => {
                out.push_str("{\n");
                for (i, (k, item)) in m.iter().enumerate() {
                    pad(out, depth + 1);
                    json::write_string(out, k);
                    out.push_str(if jackson { " : " } else { ": " });
                    go(out, item, depth + 1, jackson);
                    if i + 1 < m.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                pad(out, depth);
                out.push('}');
            }
            Json::Array(a) if !a.is_empty() => {
                out.push_str("[\n");
                for (i, item) in a.iter().enumerate() {
                    pad(out, depth + 1);
                    go(out, item, depth + 1, jackson);
                    if i + 1 < a.len() {
                        out.push(',');
                    }
                    out.push('\n');
                }
                pad(out, depth);
                out.push(']');
            }
            other => json::write_compact(out, other),
        }
    }
    let mut out = String::new();
    go(&mut out, v, 0, jackson);
    out
}

fn without_nulls(v: &Json) -> Json {
    match v {
        Json::Object(m) => Json::Object(
            m.iter()
                .filter(|(_, x)| *x != Json::Null)
                .cloned()
                .collect(),
        ),
        other => other.clone(),
    }
}

/// Body texts a sender may have signed instead of the canonical one: (label, text).
fn body_mistakes(body: &Json, raw: &str) -> Vec<(&'static str, String)> {
    let mut out = vec![
        (
            "body pretty-printed before signing",
            pretty(&without_nulls(body), false),
        ),
        (
            "body pretty-printed by Jackson before signing",
            pretty(&without_nulls(body), true),
        ),
        (
            "keys left unsorted (signed in the order sent)",
            json::compact(&without_nulls(body)),
        ),
        (
            "nested keys sorted too (only the top level is sorted)",
            json::canonical_sorted(&without_nulls(body)),
        ),
        ("null fields kept in the signed body", {
            let mut sorted = body.clone();
            if let Json::Object(m) = &mut sorted {
                m.sort_by(|a, b| json::java_cmp(&a.0, &b.0));
            }
            json::compact(&sorted)
        }),
    ];
    let trimmed = raw.trim_end_matches(['\n', '\r']);
    if trimmed.len() != raw.len() {
        out.push((
            "trailing newline of the body left out of the signature",
            trimmed.to_string(),
        ));
    } else {
        out.push((
            "trailing newline added to the signed body",
            format!("{raw}\n"),
        ));
    }
    out
}

/// Which V2 recipe the request should carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Recipe {
    Basic,
    License,
    Kit,
}

pub struct V2Input<'a> {
    pub key: &'a str,
    /// Other keys of the seller, labelled ("the Kit key"), to spot a key mix-up.
    pub other_keys: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub timestamp: &'a str,
    pub nonce: &'a str,
    pub received: &'a str,
    /// Epoch milliseconds now, and the replay window, for the staleness note.
    pub now_ms: i64,
    pub window_ms: i64,
}

pub fn diagnose_v2(recipe: V2Recipe, input: &V2Input) -> Result<Diagnosis, super::ProtocolError> {
    let body = json::parse(input.body)?;
    let canonical = json::canonical_v2(&body)?;
    let raw = String::from_utf8_lossy(input.body).into_owned();
    let key = input.key;
    let (ts, nonce) = (input.timestamp, input.nonce);
    let sign = |k: &str,
                text: &str,
                ts: &str,
                nonce: &str,
                inner: Option<v2::LicenseInner>|
     -> Candidate {
        match (recipe, inner) {
            (V2Recipe::Kit, None) => {
                let s = v2::sign_kit_canonical(k, text.to_string(), ts, nonce);
                cand("", false, v2::masked(&s.canonical_request, k), s.x_sign)
            }
            (_, inner) => {
                let s = v2::sign_basic_canonical(
                    k,
                    text.to_string(),
                    ts,
                    nonce,
                    inner.unwrap_or_default(),
                );
                cand("", false, v2::masked(&s.canonical_request, k), s.signature)
            }
        }
    };
    let label = |mut c: Candidate, l: &str, accepted: bool| {
        c.label = l.to_string();
        c.accepted = accepted;
        c
    };
    let mut cs = vec![label(
        sign(key, &canonical, ts, nonce, None),
        "canonical body (sorted top level, compact)",
        true,
    )];
    if raw != canonical {
        cs.push(label(
            sign(key, &raw, ts, nonce, None),
            "raw body bytes as sent",
            true,
        ));
    }
    if recipe != V2Recipe::Kit {
        if let Some(sm) = json::string_map_variant(&body) {
            cs.push(label(
                sign(key, &sm, ts, nonce, None),
                "body read as a string map (the official demo)",
                true,
            ));
        }
    }
    for (l, text) in body_mistakes(&body, &raw) {
        cs.push(label(sign(key, &text, ts, nonce, None), l, false));
    }
    if let Ok((ms, _)) = v2::timestamp_ms(ts) {
        let secs = (ms / 1000).to_string();
        if secs != ts {
            cs.push(label(
                sign(key, &canonical, &secs, nonce, None),
                "timestamp in seconds instead of milliseconds",
                false,
            ));
        }
        if let Some(micros) = ms.checked_mul(1000) {
            cs.push(label(
                sign(key, &canonical, &micros.to_string(), nonce, None),
                "timestamp in microseconds (or ms x 1000)",
                false,
            ));
        }
    }
    cs.push(label(
        sign(key, &canonical, nonce, ts, None),
        "nonce and timestamp swapped",
        false,
    ));
    cs.push(label(
        sign(&format!("{key}\n"), &canonical, ts, nonce, None),
        "access key read with its trailing newline",
        false,
    ));
    cs.push(label(
        sign(key.trim(), &canonical, ts, nonce, None),
        "access key with surrounding spaces trimmed",
        false,
    ));
    match recipe {
        V2Recipe::Kit => {
            let s = v2::sign_basic_canonical(
                key,
                canonical.clone(),
                ts,
                nonce,
                v2::LicenseInner::KeyedHmac,
            );
            cs.push(cand(
                "basic recipe (with inner HMAC) used for a Kit call",
                false,
                v2::masked(&s.canonical_request, key),
                s.signature,
            ));
        }
        _ => {
            let inner_upper = to_hex_upper(&hmac_sha256(key.as_bytes(), canonical.as_bytes()));
            let cr = format!("{key}{nonce}{ts}{inner_upper}");
            cs.push(cand(
                "inner HMAC written in upper-case hex (it must be lower case)",
                false,
                v2::masked(&cr, key),
                to_hex(&hmac_sha256(key.as_bytes(), cr.as_bytes())),
            ));
            let p = sign(
                key,
                &canonical,
                ts,
                nonce,
                Some(v2::LicenseInner::PlainSha256),
            );
            let plain_label = if recipe == V2Recipe::License {
                "inner step a plain SHA-256 (the alternative License reading)"
            } else {
                "inner step a plain SHA-256 instead of HMAC"
            };
            cs.push(label(p, plain_label, false));
            let k = v2::sign_kit_canonical(key, canonical.clone(), ts, nonce);
            cs.push(cand(
                "Kit recipe (no inner HMAC) used for a basic call",
                false,
                v2::masked(&k.canonical_request, key),
                k.x_sign,
            ));
        }
    }
    for (name, other) in input.other_keys {
        let c = sign(other, &canonical, ts, nonce, None);
        cs.push(label(c, &format!("signed with {name} instead"), false));
    }
    // A base64 signature where hex is expected.
    let correct = cs[0].clone();
    if let Ok(bytes) = hex::decode(&correct.signature) {
        cs.push(cand(
            "signature written in Base64 instead of hex",
            false,
            correct.signed_string.clone(),
            b64(&bytes),
        ));
    }
    let mut notes = Vec::new();
    if let Ok((ms, was_seconds)) = v2::timestamp_ms(ts) {
        if was_seconds {
            notes.push(format!(
                "timestamp {ts} reads as seconds; the marketplace sends milliseconds"
            ));
        }
        if !v2::within_window(ms, input.now_ms, input.window_ms) {
            let age = input.now_ms.saturating_sub(ms);
            let when = if age >= 0 {
                format!("{} s ago", age / 1000)
            } else {
                format!("{} s from now", age.unsigned_abs() / 1000)
            };
            notes.push(format!(
                "stale timestamp: {when}, outside the {} s replay window",
                input.window_ms / 1000
            ));
        }
    }
    let scheme = match recipe {
        V2Recipe::Basic => "saas-v2",
        V2Recipe::License => "license",
        V2Recipe::Kit => "kit",
    };
    Ok(finish(scheme, cs, input.received, Compare::Hex, notes))
}

/// V1 GET: `raw_query` is the query string as received (percent-encoded).
pub fn diagnose_v1(
    key: &str,
    raw_query: &str,
    received: &str,
) -> Result<Diagnosis, super::ProtocolError> {
    let params = v1::parse_query(raw_query, false)?;
    let correct = v1::auth_token(key, &params)?;
    let ts = correct.timestamp.clone();
    let tok = |k: &str, s: String| {
        let t = v1::auth_token_over(k, &ts, s);
        (t.string_to_sign, t.auth_token)
    };
    let mut cs = vec![cand(
        "parameters decoded, sorted, key = access key + timeStamp",
        true,
        correct.string_to_sign.clone(),
        correct.auth_token.clone(),
    )];
    let raw_pairs: Vec<(String, String)> = raw_query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (n, v) = p.split_once('=').unwrap_or((p, ""));
            (n.to_string(), v.to_string())
        })
        .collect();
    let (s, t) = tok(key, v1::string_to_sign(&raw_pairs));
    cs.push(cand("values not URL-decoded before signing", false, s, t));
    if let Ok(plus) = v1::parse_query(raw_query, true) {
        let (s, t) = tok(key, v1::string_to_sign(&plus));
        cs.push(cand("'+' read as a space when decoding", false, s, t));
    }
    let unsorted = params
        .iter()
        .filter(|(n, _)| n != "authToken")
        .map(|(n, v)| format!("{n}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let (s, t) = tok(key, unsorted);
    cs.push(cand("parameters left unsorted", false, s, t));
    let no_empty: Vec<(String, String)> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
    let (s, t) = tok(key, v1::string_to_sign(&no_empty));
    cs.push(cand(
        "empty parameters left out (they stay as name=)",
        false,
        s,
        t,
    ));
    let t = v1::auth_token_over(key, "", correct.string_to_sign.clone());
    cs.push(cand(
        "HMAC key without the timeStamp (access key alone)",
        false,
        t.string_to_sign,
        t.auth_token,
    ));
    let (s, t) = tok(&format!("{key}\n"), correct.string_to_sign.clone());
    cs.push(cand(
        "access key read with its trailing newline",
        false,
        s,
        t,
    ));
    let hexed = to_hex(&hmac_sha256(
        format!("{key}{ts}").as_bytes(),
        correct.string_to_sign.as_bytes(),
    ));
    cs.push(cand(
        "token written in hex instead of Base64",
        false,
        correct.string_to_sign.clone(),
        hexed,
    ));
    Ok(finish("saas-v1", cs, received, Compare::Base64, Vec::new()))
}

pub fn diagnose_v1_kit(
    key: &str,
    body: &[u8],
    received: &str,
) -> Result<Diagnosis, super::ProtocolError> {
    let parsed = json::parse(body)?;
    let correct = v1::kit_auth_token(key, &parsed)?;
    let ts = correct.timestamp.clone();
    let mut cs = vec![cand(
        "top-level fields as strings, blanks skipped, sorted, key = access key + timeStamp",
        true,
        correct.string_to_sign.clone(),
        correct.auth_token.clone(),
    )];
    if let Json::Object(m) = &parsed {
        let mut all: Vec<(String, String)> = m
            .iter()
            .map(|(k, v)| {
                let text = v.scalar_text().unwrap_or_else(|| json::compact(v));
                (k.clone(), text)
            })
            .collect();
        all.retain(|(_, v)| v != "null");
        let t = v1::auth_token_over(key, &ts, v1::string_to_sign(&all));
        cs.push(cand(
            "blank fields kept (the Kit variant skips them)",
            false,
            t.string_to_sign,
            t.auth_token,
        ));
    }
    let t = v1::auth_token_over(key, "", correct.string_to_sign.clone());
    cs.push(cand(
        "HMAC key without the timeStamp (access key alone)",
        false,
        t.string_to_sign,
        t.auth_token,
    ));
    let t = v1::auth_token_over(&format!("{key}\n"), &ts, correct.string_to_sign.clone());
    cs.push(cand(
        "access key read with its trailing newline",
        false,
        t.string_to_sign,
        t.auth_token,
    ));
    Ok(finish(
        "saas-v1-kit",
        cs,
        received,
        Compare::Base64,
        Vec::new(),
    ))
}

pub fn diagnose_body_sign(
    key: &str,
    other_keys: &[(&str, &str)],
    body: &[u8],
    received: &str,
) -> Diagnosis {
    let raw = String::from_utf8_lossy(body).into_owned();
    let shown = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let mut cs = vec![cand(
        "exact response body bytes, key = access key",
        true,
        raw.clone(),
        v1::body_sign(key, body),
    )];
    let trimmed = raw.trim_end_matches(['\n', '\r']);
    if trimmed.len() != raw.len() {
        cs.push(cand(
            "trailing newline of the body left out of the signature",
            false,
            trimmed.to_string(),
            v1::body_sign(key, trimmed.as_bytes()),
        ));
    } else {
        let nl = format!("{raw}\n");
        cs.push(cand(
            "trailing newline added to the signed body",
            false,
            nl.clone(),
            v1::body_sign(key, nl.as_bytes()),
        ));
    }
    if let Ok(parsed) = json::parse(body) {
        let compact = json::compact(&parsed);
        cs.push(cand(
            "body re-serialised compactly before signing",
            false,
            compact.clone(),
            v1::body_sign(key, compact.as_bytes()),
        ));
        let p = pretty(&parsed, false);
        cs.push(cand(
            "body pretty-printed before signing",
            false,
            p.clone(),
            v1::body_sign(key, p.as_bytes()),
        ));
        let py = python_dumps(&parsed);
        cs.push(cand(
            "body written as Python's json.dumps does by default (\", \" and \": \", non-ASCII as \\uXXXX)",
            false,
            py.clone(),
            v1::body_sign(key, py.as_bytes()),
        ));
        let sorted = json::canonical_sorted(&parsed);
        cs.push(cand(
            "keys sorted before signing (a sorted map signed, the body sent in another order)",
            false,
            sorted.clone(),
            v1::body_sign(key, sorted.as_bytes()),
        ));
        cs.push(reordered(key, &parsed, received));
    }
    if !raw.is_ascii() {
        let escaped = ascii_escaped(&raw);
        cs.push(cand(
            "non-ASCII characters written as \\uXXXX escapes in the signed body",
            false,
            escaped.clone(),
            v1::body_sign(key, escaped.as_bytes()),
        ));
    }
    cs.push(cand(
        "access key read with its trailing newline",
        false,
        shown(body),
        v1::body_sign(&format!("{key}\n"), body),
    ));
    cs.push(cand(
        "signature written in hex instead of Base64",
        false,
        shown(body),
        to_hex(&hmac_sha256(key.as_bytes(), body)),
    ));
    for (name, other) in other_keys {
        cs.push(cand(
            &format!("signed with {name} instead"),
            false,
            shown(body),
            v1::body_sign(other, body),
        ));
    }
    finish("body-sign", cs, received, Compare::Base64, Vec::new())
}

pub struct UsageInput<'a> {
    pub key: &'a str,
    pub other_keys: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
    pub ts: &'a str,
    pub nonce: &'a str,
    pub received: &'a str,
}

pub fn diagnose_usage(input: &UsageInput) -> Result<Diagnosis, super::ProtocolError> {
    let raw = String::from_utf8_lossy(input.body).into_owned();
    let parsed = json::parse(input.body)?;
    let sign = |k: &str, body: String, ts: &str| {
        let s = usage_sig::sign_body_string(k, body, ts, input.nonce);
        (s.string_to_sign, s.signature)
    };
    let (key, ts) = (input.key, input.ts);
    let (s, sig) = sign(key, raw.clone(), ts);
    let mut cs = vec![cand("ts=…&nonce=…&body=<exact body>", true, s, sig)];
    let sorted = json::canonical_sorted(&parsed);
    if sorted != raw {
        let (s, sig) = sign(key, sorted, ts);
        cs.push(cand(
            "body re-sorted at every level (the sender sent other bytes than it signed)",
            false,
            s,
            sig,
        ));
    }
    let compact = json::compact(&parsed);
    if compact != raw {
        let (s, sig) = sign(key, compact, ts);
        cs.push(cand(
            "body compacted before signing but sent pretty-printed",
            false,
            s,
            sig,
        ));
    }
    if let Ok((ms, _)) = v2::timestamp_ms(ts) {
        let (s, sig) = sign(key, raw.clone(), &(ms / 1000).to_string());
        cs.push(cand("ts in seconds instead of milliseconds", false, s, sig));
    }
    let (s, sig) = sign(&format!("{key}\n"), raw.clone(), ts);
    cs.push(cand("key read with its trailing newline", false, s, sig));
    let st = format!("ts={ts}&nonce={}&body={raw}", input.nonce);
    cs.push(cand(
        "signature written in hex instead of Base64",
        false,
        st.clone(),
        to_hex(&hmac_sha256(key.as_bytes(), st.as_bytes())),
    ));
    for (name, other) in input.other_keys {
        let (s, sig) = sign(other, raw.clone(), ts);
        cs.push(cand(&format!("signed with {name} instead"), false, s, sig));
    }
    Ok(finish(
        "usage",
        cs,
        input.received,
        Compare::Base64,
        Vec::new(),
    ))
}

pub struct ApigInput<'a> {
    pub sk: &'a str,
    pub method: &'a str,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    /// The received Authorization header value.
    pub authorization: &'a str,
    pub now_ms: i64,
}

pub fn diagnose_apig(input: &ApigInput) -> Result<Diagnosis, super::ProtocolError> {
    let auth = apig::parse_authorization(input.authorization)?;
    let names = auth.signed_header_names();
    let sign = |sk: &str, url: &str, body: &[u8], signed: &[&str]| {
        apig::sign(
            auth.access,
            sk,
            input.method,
            url,
            input.headers,
            signed,
            body,
        )
    };
    let ok = sign(input.sk, input.url, input.body, &names)?;
    let mut cs = vec![cand(
        "SDK-HMAC-SHA256 canonical request",
        true,
        ok.canonical_request.clone(),
        ok.signature.clone(),
    )];
    let (_, path, query) = apig::split_url(input.url);
    if !path.ends_with('/') {
        // A sender that signs the path as given, without the trailing slash.
        let uri = apig::canonical_uri(path)?;
        let cr = ok.canonical_request.replacen(
            &format!("{uri}\n"),
            &format!("{}\n", uri.trim_end_matches('/')),
            1,
        );
        cs.push(apig_candidate(
            "path signed without the trailing '/'",
            input.sk,
            &cr,
            input.headers,
        ));
    }
    if !query.is_empty() {
        let unsorted: String = query.to_string();
        let cr = ok
            .canonical_request
            .replacen(&apig::canonical_query(query)?, &unsorted, 1);
        cs.push(apig_candidate(
            "query signed as sent (not decoded, re-encoded and sorted)",
            input.sk,
            &cr,
            input.headers,
        ));
    }
    if let Ok(s) = sign(&format!("{}\n", input.sk), input.url, input.body, &names) {
        cs.push(cand(
            "SK read with its trailing newline",
            false,
            s.canonical_request,
            s.signature,
        ));
    }
    let mut notes = Vec::new();
    if let Some(date) = input
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(apig::DATE_HEADER))
    {
        if let Ok(ms) = apig::parse_sdk_date(&date.1) {
            if (input.now_ms - ms).abs() > 15 * 60 * 1000 {
                notes.push(format!(
                    "X-Sdk-Date {} is more than 15 minutes from now: the gateway answers 'signature expired'",
                    date.1
                ));
            }
        }
    }
    Ok(finish("apig", cs, auth.signature, Compare::Hex, notes))
}

fn apig_candidate(
    label: &str,
    sk: &str,
    canonical_request: &str,
    headers: &[(String, String)],
) -> Candidate {
    let date = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(apig::DATE_HEADER))
        .map(|(_, v)| v.as_str())
        .unwrap_or("");
    let sts = apig::string_to_sign(canonical_request, date);
    cand(
        label,
        false,
        canonical_request.to_string(),
        to_hex(&hmac_sha256(sk.as_bytes(), sts.as_bytes())),
    )
}

/// The key placeholder, re-exported for printers that mask hmac keys (`<access-key>` + ts).
pub fn masked_hmac_key(timestamp: &str) -> String {
    format!("{KEY_PLACEHOLDER}{timestamp}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
    const BODY: &[u8] = br#"{"testFlag":"1","activity":"newInstance","orderId":"CS1"}"#;

    fn input<'a>(received: &'a str, ts: &'a str) -> V2Input<'a> {
        V2Input {
            key: KEY,
            other_keys: &[("the Kit key", "kit-key-0001")],
            body: BODY,
            timestamp: ts,
            nonce: "N1",
            received,
            now_ms: 1_700_000_000_000,
            window_ms: 60_000,
        }
    }

    #[test]
    fn correct_signature_is_valid_in_either_case() {
        let good = v2::sign_basic_bytes(KEY, BODY, "1700000000000", "N1")
            .unwrap()
            .signature;
        let d = diagnose_v2(
            V2Recipe::Basic,
            &input(&good.to_uppercase(), "1700000000000"),
        )
        .unwrap();
        assert!(d.valid());
        assert!(d.notes.is_empty(), "{:?}", d.notes);
    }

    #[test]
    fn names_the_mistake_that_matches() {
        // Sender signed the body unsorted.
        let raw = std::str::from_utf8(BODY).unwrap().to_string();
        let s =
            v2::sign_basic_canonical(KEY, raw, "1700000000000", "N1", v2::LicenseInner::KeyedHmac);
        let d = diagnose_v2(V2Recipe::Basic, &input(&s.signature, "1700000000000")).unwrap();
        // The raw body is an accepted variant (decision 2), so this verifies.
        assert!(d.valid());
        assert_eq!(d.matched.unwrap().label, "raw body bytes as sent");

        let kit = v2::sign_basic_bytes("kit-key-0001", BODY, "1700000000000", "N1").unwrap();
        let d = diagnose_v2(V2Recipe::Basic, &input(&kit.signature, "1700000000000")).unwrap();
        assert!(!d.valid());
        assert_eq!(d.matched.unwrap().label, "signed with the Kit key instead");

        let secs = v2::sign_basic_bytes(KEY, BODY, "1700000000", "N1").unwrap();
        let d = diagnose_v2(V2Recipe::Basic, &input(&secs.signature, "1700000000000")).unwrap();
        assert_eq!(
            d.matched.unwrap().label,
            "timestamp in seconds instead of milliseconds"
        );

        let good = v2::sign_basic_bytes(KEY, BODY, "1700000000000", "N1").unwrap();
        let b64 = b64(&hex::decode(&good.signature).unwrap());
        let d = diagnose_v2(V2Recipe::Basic, &input(&b64, "1700000000000")).unwrap();
        assert_eq!(
            d.matched.unwrap().label,
            "signature written in Base64 instead of hex"
        );
        let d = diagnose_v2(
            V2Recipe::Basic,
            &input(&b64.to_lowercase(), "1700000000000"),
        );
        assert_eq!(d.unwrap().matched, None);
    }

    #[test]
    fn stale_timestamp_is_noted() {
        let good = v2::sign_basic_bytes(KEY, BODY, "1699999000000", "N1")
            .unwrap()
            .signature;
        let d = diagnose_v2(V2Recipe::Basic, &input(&good, "1699999000000")).unwrap();
        assert!(d.valid());
        assert!(d.notes.iter().any(|n| n.contains("stale")), "{:?}", d.notes);
    }

    #[test]
    fn stale_note_says_ago_or_from_now() {
        let note = |ts: &str| {
            let good = v2::sign_basic_bytes(KEY, BODY, ts, "N1").unwrap().signature;
            let d = diagnose_v2(V2Recipe::Basic, &input(&good, ts)).unwrap();
            d.notes
                .into_iter()
                .find(|n| n.starts_with("stale"))
                .unwrap()
        };
        // Ten minutes old, then 599.5 s ahead of the clock (now is 1_700_000_000_000).
        assert_eq!(
            note("1699999400000"),
            "stale timestamp: 600 s ago, outside the 60 s replay window"
        );
        assert_eq!(
            note("1700000599500"),
            "stale timestamp: 599 s from now, outside the 60 s replay window"
        );
    }

    #[test]
    fn v1_mistakes() {
        let q = "activity=newInstance&customerName=a+b%20c&timeStamp=20200727073711903";
        let params = v1::parse_query(q, false).unwrap();
        let good = v1::auth_token(KEY, &params).unwrap().auth_token;
        assert!(diagnose_v1(KEY, q, &good).unwrap().valid());
        let plus = v1::parse_query(q, true).unwrap();
        let bad = v1::auth_token(KEY, &plus).unwrap().auth_token;
        let d = diagnose_v1(KEY, q, &bad).unwrap();
        assert!(!d.valid());
        assert_eq!(
            d.matched.unwrap().label,
            "'+' read as a space when decoding"
        );
        let t = v1::auth_token_over(KEY, "", v1::string_to_sign(&params)).auth_token;
        let d = diagnose_v1(KEY, q, &t).unwrap();
        assert_eq!(
            d.matched.unwrap().label,
            "HMAC key without the timeStamp (access key alone)"
        );
    }

    #[test]
    fn body_sign_trailing_newline() {
        let body = b"{\"resultCode\":\"000000\"}\n";
        let sig = v1::body_sign(KEY, &body[..body.len() - 1]);
        let d = diagnose_body_sign(KEY, &[], body, &sig);
        assert_eq!(
            d.matched.unwrap().label,
            "trailing newline of the body left out of the signature"
        );
    }

    /// A reply whose fields the framework wrote in another order than they were signed in:
    /// the order that was signed is found and named.
    #[test]
    fn body_sign_over_the_fields_in_another_order() {
        let signed = r#"{"resultMsg":"ok","instanceId":"i-1","resultCode":"000000"}"#;
        let sent = br#"{"resultCode":"000000","resultMsg":"ok","instanceId":"i-1"}"#;
        let d = diagnose_body_sign(KEY, &[], sent, &v1::body_sign(KEY, signed.as_bytes()));
        assert_eq!(
            d.matched.unwrap().label,
            "the fields signed in another order than sent: resultMsg, instanceId, resultCode"
        );
    }

    /// Python's json.dumps escapes Chinese and puts spaces after separators; a seller whose
    /// signer used it is told so.
    #[test]
    fn body_sign_over_python_json_dumps() {
        let sent = r#"{"resultCode":"000000","resultMsg":"成功"}"#;
        let signed = r#"{"resultCode": "000000", "resultMsg": "\u6210\u529f"}"#;
        let d = diagnose_body_sign(
            KEY,
            &[],
            sent.as_bytes(),
            &v1::body_sign(KEY, signed.as_bytes()),
        );
        assert!(d
            .matched
            .unwrap()
            .label
            .starts_with("body written as Python's json.dumps"));
        assert_eq!(ascii_escaped("a😀"), "a\\ud83d\\ude00");
    }
}
