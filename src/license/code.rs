//! The three written forms of a csm license, and marketplace-shaped `PL…` codes.
//!
//! * **code**: payload ‖ Ed25519 signature in Crockford base32, dash-separated groups of
//!   five, one check symbol at the end. Checked offline with the public key. At least 169
//!   characters: for pasting, not typing.
//! * **short code** (`--short`, at most 64 characters; the form to type): a fixed 20-byte summary (key id,
//!   serial, dates, grace, seats, a 4-byte digest of the product) and an 80-bit HMAC tag
//!   keyed by a separate random short secret (`FILE.short` from keygen). It fits a
//!   marketplace `license` field but gives up public verification (the secret that checks it
//!   can also mint short codes) and does not carry SKU, customer or features.
//! * **license file**: JSON with the readable fields, the payload in base64 and a detached
//!   signature over it; for payloads too large for a code.

use super::base32::{self, Typo};
use super::keys::{KeyId, Keyring, PrivateKey, ShortSecret};
use super::payload::{self, day_text, Payload};
use crate::protocol::hmac::to_hex;
use base64::Engine as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// First byte of a short code (a full code starts with the payload version, 1).
pub const SHORT_VERSION: u8 = 2;
const SHORT_BODY: usize = 20;
const SHORT_TAG: usize = 10;
/// Longest input read as a code or file; anything longer is refused before parsing.
pub const MAX_INPUT: usize = 256 * 1024;
/// Longest code csm prints; longer payloads go into a license file.
pub const MAX_CODE_CHARS: usize = 1024;
/// Marketplace codes: `PL` and uppercase alphanumerics, at most 64 characters (decision 9).
pub const MARKETPLACE_MAX: usize = 64;
pub const FILE_FORMAT: &str = "csm-license";

/// The fields `inspect` shows, in reading order, not alphabetical: what it is, whose, for
/// what, until when. Batch files keep the same order for their columns.
pub const READING_ORDER: [&str; 18] = [
    "form",
    "license_id",
    "key_id",
    "signature",
    "format_version",
    "serial",
    "product",
    "product_digest",
    "sku",
    "customer",
    "issued",
    "expires",
    "grace_days",
    "seats",
    "features",
    "code",
    "length",
    "note",
];

/// The short form's summary of a license.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShortPayload {
    pub key_id: KeyId,
    pub serial: u32,
    pub issued: u16,
    pub expires: u16,
    pub grace_days: u8,
    pub seats: u16,
    pub product_digest: [u8; 4],
}

/// A parsed input, before any key is consulted.
#[derive(Debug, Clone)]
pub enum Parsed {
    Full {
        payload: Payload,
        /// The signed bytes (the encoded payload).
        bytes: Vec<u8>,
        signature: [u8; 64],
        /// A readable field of a license file that disagrees with its signed payload.
        edited_field: Option<String>,
        from_file: bool,
    },
    Short {
        payload: ShortPayload,
        bytes: Vec<u8>,
        tag: [u8; SHORT_TAG],
    },
    Marketplace(String),
}

pub fn product_digest(product: &str) -> [u8; 4] {
    let d = Sha256::digest(product.as_bytes());
    [d[0], d[1], d[2], d[3]]
}

/// The id a revocation list names: 16 hex digits over the signed bytes.
pub fn license_id(bytes: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"csm-license-id:");
    h.update(bytes);
    to_hex(&h.finalize()[..8])
}

pub fn issue_code(key: &PrivateKey, p: &Payload) -> String {
    let mut bytes = payload::encode(p);
    let sig = key.sign(&bytes);
    bytes.extend_from_slice(&sig);
    base32::encode_code(&bytes)
}

pub fn short_payload(p: &Payload) -> Result<ShortPayload, String> {
    let grace_days = u8::try_from(p.grace_days).map_err(|_| {
        format!(
            "--grace-days {}: the short form holds at most 255",
            p.grace_days
        )
    })?;
    let seats = u16::try_from(p.seats)
        .map_err(|_| format!("--seats {}: the short form holds at most 65535", p.seats))?;
    Ok(ShortPayload {
        key_id: p.key_id,
        serial: p.serial,
        issued: p.issued,
        expires: p.expires,
        grace_days,
        seats,
        product_digest: product_digest(&p.product),
    })
}

fn short_bytes(s: &ShortPayload) -> Vec<u8> {
    let mut b = Vec::with_capacity(SHORT_BODY);
    b.push(SHORT_VERSION);
    b.extend_from_slice(&s.key_id.0);
    b.extend_from_slice(&s.serial.to_be_bytes());
    b.extend_from_slice(&s.issued.to_be_bytes());
    b.extend_from_slice(&s.expires.to_be_bytes());
    b.push(s.grace_days);
    b.extend_from_slice(&s.seats.to_be_bytes());
    b.extend_from_slice(&s.product_digest);
    b
}

pub fn short_tag(key: &ShortSecret, bytes: &[u8]) -> [u8; SHORT_TAG] {
    let mac = crate::protocol::hmac::hmac_sha256(&key.secret, bytes);
    let mut t = [0u8; SHORT_TAG];
    t.copy_from_slice(&mac[..SHORT_TAG]);
    t
}

/// A short code; its key id is the secret's, whatever `p.key_id` says.
pub fn issue_short(key: &ShortSecret, p: &Payload) -> Result<String, String> {
    let mut p = p.clone();
    p.key_id = key.id;
    let p = &p;
    let mut bytes = short_bytes(&short_payload(p)?);
    let tag = short_tag(key, &bytes);
    bytes.extend_from_slice(&tag);
    Ok(base32::encode_code(&bytes))
}

/// The readable fields of a full license, as printed and as written in a license file.
pub fn fields_json(p: &Payload, bytes: &[u8]) -> Value {
    json!({
        "license_id": license_id(bytes),
        "format_version": payload::VERSION,
        "key_id": p.key_id.to_string(),
        "serial": p.serial,
        "product": p.product,
        "sku": p.sku,
        "customer": p.customer,
        "issued": day_text(p.issued),
        "expires": day_text(p.expires),
        "grace_days": p.grace_days,
        "seats": p.seats,
        "features": p.features,
    })
}

pub fn short_fields_json(s: &ShortPayload, bytes: &[u8]) -> Value {
    json!({
        "license_id": license_id(bytes),
        "format_version": SHORT_VERSION,
        "key_id": s.key_id.to_string(),
        "serial": s.serial,
        "product_digest": to_hex(&s.product_digest),
        "issued": day_text(s.issued),
        "expires": day_text(s.expires),
        "grace_days": s.grace_days,
        "seats": s.seats,
    })
}

pub fn issue_file(key: &PrivateKey, p: &Payload) -> Value {
    let bytes = payload::encode(p);
    let sig = key.sign(&bytes);
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut v = json!({ "format": FILE_FORMAT });
    if let (Value::Object(m), Value::Object(f)) = (&mut v, fields_json(p, &bytes)) {
        m.extend(f);
        m.insert("payload".into(), Value::String(b64.encode(&bytes)));
        m.insert("signature".into(), Value::String(b64.encode(sig)));
    }
    v
}

/// A marketplace-shaped code from 19 random bytes: `PL` and 30 Crockford symbols (150 bits).
pub fn marketplace_code(random: &[u8; 19]) -> String {
    let mut s = String::from("PL");
    for v in base32::encode_values(random).into_iter().take(30) {
        s.push(base32::ALPHABET[v as usize] as char);
    }
    s
}

/// The form of a marketplace code, as refusals name it. §2.8 documents the `PL` prefix and
/// the 64 characters; the alphabet is this tool's choice (decision 9).
pub fn marketplace_form() -> String {
    format!("a marketplace code is PL, then upper-case letters and digits, at most {MARKETPLACE_MAX} characters in all")
}

/// Whether `s` has the marketplace's shape: `PL`, then upper-case letters and digits, ≤ 64.
pub fn check_marketplace_shape(s: &str) -> Result<(), Typo> {
    let refuse = |position, what: String| {
        Err(Typo {
            position,
            reason: format!("marketplace code: {what} ({})", marketplace_form()),
        })
    };
    if s.len() > MARKETPLACE_MAX {
        return refuse(
            Some(MARKETPLACE_MAX + 1),
            format!("{} characters", s.chars().count()),
        );
    }
    if let Some(i) = s
        .chars()
        .chain(std::iter::repeat('\0'))
        .zip("PL".chars())
        .position(|(c, want)| c != want)
    {
        return refuse(Some(i + 1), "it does not start with PL".into());
    }
    for (i, c) in s.chars().enumerate().skip(2) {
        if !(c.is_ascii_uppercase() || c.is_ascii_digit()) {
            let p = i + 1;
            return refuse(
                Some(p),
                format!("{c:?} at position {p} is not an upper-case letter or digit"),
            );
        }
    }
    if s.len() <= 2 {
        return refuse(None, "nothing after PL".into());
    }
    Ok(())
}

fn malformed(reason: impl Into<String>) -> Typo {
    Typo {
        position: None,
        reason: reason.into(),
    }
}

/// Reads a code, a short code, a license file's text or a marketplace code.
pub fn parse(text: &str) -> Result<Parsed, Typo> {
    if text.len() > MAX_INPUT {
        return Err(malformed(format!(
            "{} bytes: too long for a license (at most {MAX_INPUT})",
            text.len()
        )));
    }
    // Leading and trailing whitespace is what copying and pasting adds; it is not a typo.
    let lead = text.len() - text.trim_start().len();
    let chars_before = text[..lead].chars().count();
    let t = text.trim();
    if t.is_empty() {
        return Err(malformed(if text.is_empty() {
            "empty: no code given"
        } else {
            "only whitespace: no code given"
        }));
    }
    if t.starts_with('{') {
        return parse_file(t);
    }
    if t.starts_with("PL") {
        // Marketplace codes are short and never wrapped: whitespace inside one is more
        // likely a second code, and is reported where it is.
        check_marketplace_shape(t).map_err(|e| moved(e, |p| p + chars_before))?;
        return Ok(Parsed::Marketplace(t.to_string()));
    }
    // csm codes start with 0, so `pl…` is a marketplace code in the wrong case, not a
    // Crockford code to read case-insensitively.
    if let Some(c) = t.get(..2).filter(|p| p.eq_ignore_ascii_case("PL")) {
        let (i, ch) = c
            .char_indices()
            .find(|(_, ch)| ch.is_ascii_lowercase())
            .unwrap_or_default();
        let pos = chars_before + i + 1;
        return Err(Typo {
            position: Some(pos),
            reason: format!(
                "marketplace code: {ch:?} at position {pos} is not an upper-case letter or digit ({})",
                marketplace_form()
            ),
        });
    }
    // Whitespace inside a code is what wrapping or grouping added (base32 ignores it).
    let chars = t.chars().filter(|c| !c.is_whitespace()).count();
    if chars > MAX_CODE_CHARS {
        return Err(malformed(format!(
            "{chars} characters: too long for a code (at most {MAX_CODE_CHARS}; larger licenses are files)"
        )));
    }
    parse_code(t, chars_before).map_err(|e| moved(e, |p| p + chars_before))
}

/// `e` with its position (1-based, in a part of the input) moved to where that part's
/// character is in the input as given.
fn moved(mut e: Typo, to: impl Fn(usize) -> usize) -> Typo {
    if let Some(p) = e.position {
        let q = to(p);
        e.position = Some(q);
        e.reason = e
            .reason
            .replace(&format!("position {p}"), &format!("position {q}"));
    }
    e
}

/// Reads the trimmed code `t`; `lead` characters of whitespace came before it.
fn parse_code(t: &str, lead: usize) -> Result<Parsed, Typo> {
    // Joined, two codes are one wrong code (its check symbol, maybe `*`, in the middle): say
    // that the breaks were taken as wrapping.
    let wrapped = t.contains(char::is_whitespace);
    let note = "; the spaces and line breaks in it were read as wrapping (give one code at a time)";
    let syms = base32::parse_code(t).map_err(|mut e| {
        if wrapped {
            e.reason.push_str(note);
        }
        e
    })?;
    if base32::check(&syms.values) != syms.check {
        let mut reason = String::from(
            "check symbol does not match: a character was mistyped, left out or added, or the code is truncated",
        );
        if let Some((first, last, len)) = base32::odd_group(t) {
            reason.push_str(&format!(
                "; positions {}-{} hold {len} symbol(s), not {}",
                first + lead,
                last + lead,
                base32::GROUP
            ));
        }
        if wrapped {
            reason.push_str(note);
        }
        return Err(malformed(reason));
    }
    let last = *syms
        .positions
        .get(syms.values.len().saturating_sub(1))
        .unwrap_or(&1);
    let bytes = base32::decode_values(&syms.values).ok_or_else(|| Typo {
        position: Some(last),
        reason: format!(
            "symbol at position {last} is not one csm writes (mistyped, or the code is truncated)"
        ),
    })?;
    match bytes.first() {
        Some(&payload::VERSION) => {
            if bytes.len() < 64 + 8 {
                return Err(malformed(format!(
                    "{} bytes: too short for a signed license (truncated?)",
                    bytes.len()
                )));
            }
            let (body, sig) = bytes.split_at(bytes.len() - 64);
            let payload = payload::decode(body)
                .map_err(|e| malformed(format!("{e} (mistyped, or the code is truncated)")))?;
            Ok(Parsed::Full {
                payload,
                bytes: body.to_vec(),
                signature: sig.try_into().expect("64 bytes"),
                edited_field: None,
                from_file: false,
            })
        }
        Some(&SHORT_VERSION) => {
            if bytes.len() != SHORT_BODY + SHORT_TAG {
                return Err(malformed(format!(
                    "short code: {} bytes, expected {} (truncated?)",
                    bytes.len(),
                    SHORT_BODY + SHORT_TAG
                )));
            }
            let (b, tag) = bytes.split_at(SHORT_BODY);
            let u16at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
            let payload = ShortPayload {
                key_id: KeyId([b[1], b[2], b[3], b[4]]),
                serial: u32::from_be_bytes([b[5], b[6], b[7], b[8]]),
                issued: u16at(9),
                expires: u16at(11),
                grace_days: b[13],
                seats: u16at(14),
                product_digest: [b[16], b[17], b[18], b[19]],
            };
            Ok(Parsed::Short {
                payload,
                bytes: b.to_vec(),
                tag: tag.try_into().expect("10 bytes"),
            })
        }
        Some(v) => Err(malformed(format!(
            "format version {v}: not a csm license code (this csm reads 1 and 2)"
        ))),
        None => Err(malformed("no data in the code")),
    }
}

fn parse_file(t: &str) -> Result<Parsed, Typo> {
    let v: Value = serde_json::from_str(t).map_err(|e| {
        malformed(format!(
            "not a license file: invalid JSON at line {} column {}",
            e.line(),
            e.column()
        ))
    })?;
    if v.get("format").and_then(Value::as_str) != Some(FILE_FORMAT) {
        return Err(malformed(format!(
            "not a license file: JSON without \"format\": \"{FILE_FORMAT}\""
        )));
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let field = |name: &str| -> Result<Vec<u8>, Typo> {
        let s = v.get(name).and_then(Value::as_str).ok_or_else(|| {
            malformed(format!("license file: \"{name}\" missing or not a string"))
        })?;
        b64.decode(s)
            .map_err(|_| malformed(format!("license file: \"{name}\" is not base64")))
    };
    let bytes = field("payload")?;
    let sig = field("signature")?;
    let signature: [u8; 64] = sig.try_into().map_err(|s: Vec<u8>| {
        malformed(format!(
            "license file: signature is {} bytes, Ed25519 signatures are 64",
            s.len()
        ))
    })?;
    let payload =
        payload::decode(&bytes).map_err(|e| malformed(format!("license file: payload: {e}")))?;
    // The readable copies must say what the signature covers; an edited copy is a forgery.
    let mut edited_field = None;
    if let Value::Object(expected) = fields_json(&payload, &bytes) {
        for (k, want) in expected {
            if v.get(&k).is_some_and(|got| *got != want) {
                edited_field = Some(k);
                break;
            }
        }
    }
    Ok(Parsed::Full {
        payload,
        bytes,
        signature,
        edited_field,
        from_file: true,
    })
}

/// A correction that makes a code with a wrong check symbol genuine. Positions are 1-based
/// in the text as given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fix {
    /// One character mistyped.
    Substitution {
        position: usize,
        typed: char,
        meant: char,
    },
    /// Two neighbouring symbols typed in the wrong order.
    Swap { first: usize, second: usize },
}

/// With the right key at hand, finds the one-symbol change (or swap of neighbours) that makes
/// a code with a wrong check symbol genuine.
pub fn locate_typo(text: &str, keys: &Keyring) -> Option<Fix> {
    let lead = text[..text.len() - text.trim_start().len()].chars().count();
    let t = text.trim();
    let syms = base32::parse_code(t).ok()?;
    if base32::check(&syms.values) == syms.check {
        return None;
    }
    let genuine = |values: &[u8]| -> bool {
        match parse_code_values(values) {
            Some(Parsed::Full {
                payload,
                bytes,
                signature,
                ..
            }) => keys
                .public_for(payload.key_id)
                .is_some_and(|k| k.verify(&bytes, &signature)),
            Some(Parsed::Short {
                payload,
                bytes,
                tag,
                ..
            }) => keys
                .short_for(payload.key_id)
                .is_some_and(|k| crate::protocol::hmac::ct_eq(&short_tag(k, &bytes), &tag)),
            _ => false,
        }
    };
    // The check symbol itself mistyped: the data is intact.
    let n = syms.values.len();
    if genuine(&syms.values) {
        let typed = t.chars().nth(syms.positions[n] - 1)?;
        let meant = base32::CHECK_ALPHABET[base32::check(&syms.values) as usize] as char;
        return Some(Fix::Substitution {
            position: syms.positions[n] + lead,
            typed,
            meant,
        });
    }
    let mut values = syms.values.clone();
    for i in 0..n {
        let orig = values[i];
        for v in 0..32u8 {
            if v == orig {
                continue;
            }
            values[i] = v;
            if base32::check(&values) == syms.check && genuine(&values) {
                let typed = t.chars().nth(syms.positions[i] - 1)?;
                return Some(Fix::Substitution {
                    position: syms.positions[i] + lead,
                    typed,
                    meant: base32::ALPHABET[v as usize] as char,
                });
            }
        }
        values[i] = orig;
    }
    for i in 0..n.saturating_sub(1) {
        if values[i] == values[i + 1] {
            continue;
        }
        values.swap(i, i + 1);
        if base32::check(&values) == syms.check && genuine(&values) {
            return Some(Fix::Swap {
                first: syms.positions[i] + lead,
                second: syms.positions[i + 1] + lead,
            });
        }
        values.swap(i, i + 1);
    }
    None
}

fn parse_code_values(values: &[u8]) -> Option<Parsed> {
    let text: String = values
        .iter()
        .map(|&v| base32::ALPHABET[v as usize] as char)
        .chain(std::iter::once(
            base32::CHECK_ALPHABET[base32::check(values) as usize] as char,
        ))
        .collect();
    parse_code(&text, 0).ok()
}
