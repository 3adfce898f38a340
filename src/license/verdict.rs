//! The verdict on a license: one kind, one reason, and the exit code of its class.

use super::base32::Typo;
use super::code::{self, Parsed};
use super::keys::Keyring;
use super::payload::{day_date, day_text, NEVER};
use crate::error::Exit;
use chrono::NaiveDate;
use serde_json::Value;
use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Valid,
    ValidInGrace,
    Expired,
    NotYetValid,
    BadSignature,
    UnknownKeyId,
    Revoked,
    WrongProduct,
    Malformed,
    /// A short code, and no short secret to check it with: the check could not be made.
    ShortSecretNeeded,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Valid => "valid",
            Kind::ValidInGrace => "valid-in-grace",
            Kind::Expired => "expired",
            Kind::NotYetValid => "not-yet-valid",
            Kind::BadSignature => "bad-signature",
            Kind::UnknownKeyId => "unknown-key-id",
            Kind::Revoked => "revoked",
            Kind::WrongProduct => "wrong-product",
            Kind::Malformed => "malformed",
            Kind::ShortSecretNeeded => "short-secret-needed",
        }
    }

    /// 0 usable; 6 genuine but outside its dates; 1 not to be trusted; 2 not readable;
    /// 3 not checkable with what was given (a setup problem, not a verdict on the license).
    pub fn exit(self) -> Exit {
        match self {
            Kind::Valid | Kind::ValidInGrace => Exit::Ok,
            Kind::Expired | Kind::NotYetValid => Exit::LicenseDate,
            Kind::BadSignature | Kind::UnknownKeyId | Kind::Revoked | Kind::WrongProduct => {
                Exit::CheckFailed
            }
            Kind::Malformed => Exit::Usage,
            Kind::ShortSecretNeeded => Exit::Io,
        }
    }

    pub fn is_valid(self) -> bool {
        matches!(self, Kind::Valid | Kind::ValidInGrace)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub kind: Kind,
    pub reason: String,
    /// 1-based position of a typo in the text, when known.
    pub position: Option<usize>,
    /// The decoded fields, when the input could be decoded.
    pub license: Option<Value>,
}

impl Verdict {
    fn new(kind: Kind, reason: impl Into<String>, license: Option<Value>) -> Self {
        Verdict {
            kind,
            reason: reason.into(),
            position: None,
            license,
        }
    }

    pub fn malformed(t: Typo) -> Self {
        Verdict {
            kind: Kind::Malformed,
            reason: t.reason,
            position: t.position,
            license: None,
        }
    }
}

/// What a validation checks beyond the signature.
#[derive(Debug, Clone, Default)]
pub struct Policy<'a> {
    /// License ids (16 hex digits) that are withdrawn.
    pub revoked: HashSet<String>,
    /// The product the software is; a license for another product is refused.
    pub product: Option<&'a str>,
}

/// The license ids a revocation list names: one license id (16 hex digits) or one code per
/// line; blank lines and `#` comments are skipped. Err: the 1-based number of a line that is
/// neither.
pub fn revoked_ids(text: &str) -> Result<HashSet<String>, usize> {
    let mut ids = HashSet::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.len() == 16 && line.bytes().all(|b| b.is_ascii_hexdigit()) {
            ids.insert(line.to_ascii_lowercase());
            continue;
        }
        match code::parse(line) {
            Ok(Parsed::Full { bytes, .. }) | Ok(Parsed::Short { bytes, .. }) => {
                ids.insert(code::license_id(&bytes));
            }
            _ => return Err(i + 1),
        }
    }
    Ok(ids)
}

/// Judges a parsed license on day `at` (UTC). Order: key, signature, revocation, product,
/// dates; so a forged license is never reported as merely expired.
pub fn judge(parsed: &Parsed, keys: &Keyring, policy: &Policy, at: NaiveDate) -> Verdict {
    match parsed {
        Parsed::Marketplace(c) => Verdict::new(
            Kind::Malformed,
            format!(
                "{c}: a marketplace code (PL…) carries no signature; ask the marketplace with `csm license heartbeat`"
            ),
            None,
        ),
        Parsed::Full {
            payload,
            bytes,
            signature,
            edited_field,
            ..
        } => {
            let fields = code::fields_json(payload, bytes);
            let Some(key) = keys.public_for(payload.key_id) else {
                return Verdict::new(
                    Kind::UnknownKeyId,
                    format!(
                        "no public key with id {} was given",
                        payload.key_id
                    ),
                    Some(fields),
                );
            };
            if !key.verify(bytes, signature) {
                return Verdict::new(
                    Kind::BadSignature,
                    format!(
                        "not signed by key {} as it reads now (altered or forged)",
                        payload.key_id
                    ),
                    Some(fields),
                );
            }
            if let Some(f) = edited_field {
                return Verdict::new(
                    Kind::BadSignature,
                    format!("field {f:?} of the file differs from the signed payload"),
                    Some(fields),
                );
            }
            let id = code::license_id(bytes);
            if policy.revoked.contains(&id) {
                return Verdict::new(Kind::Revoked, format!("license {id} is on the revocation list"), Some(fields));
            }
            if let Some(p) = policy.product {
                if p != payload.product {
                    return Verdict::new(
                        Kind::WrongProduct,
                        format!(
                            "the license is for product {:?}, not {p:?}",
                            payload.product
                        ),
                        Some(fields),
                    );
                }
            }
            dates(payload.issued, payload.expires, payload.grace_days, at, fields)
        }
        Parsed::Short { payload, bytes, tag } => {
            let fields = code::short_fields_json(payload, bytes);
            let Some(key) = keys.short_for(payload.key_id) else {
                // No secret at all is a setup problem; secrets of other keys only are the
                // rotated-out case, as for public keys.
                if keys.short.is_empty() {
                    return Verdict::new(
                        Kind::ShortSecretNeeded,
                        format!(
                            "a short code (key id {}) is checked with its short secret, not a public key; pass --short-secret FILE.short (from `csm license keygen`)",
                            payload.key_id
                        ),
                        Some(fields),
                    );
                }
                return Verdict::new(
                    Kind::UnknownKeyId,
                    format!("no short secret with key id {} was given", payload.key_id),
                    Some(fields),
                );
            };
            if !crate::protocol::hmac::ct_eq(&code::short_tag(key, bytes), tag) {
                return Verdict::new(
                    Kind::BadSignature,
                    format!("the short code's tag does not match key {} (altered or forged)", payload.key_id),
                    Some(fields),
                );
            }
            let id = code::license_id(bytes);
            if policy.revoked.contains(&id) {
                return Verdict::new(Kind::Revoked, format!("license {id} is on the revocation list"), Some(fields));
            }
            if let Some(p) = policy.product {
                if code::product_digest(p) != payload.product_digest {
                    return Verdict::new(
                        Kind::WrongProduct,
                        format!("the short code was not issued for product {p:?}"),
                        Some(fields),
                    );
                }
            }
            dates(payload.issued, payload.expires, payload.grace_days as u16, at, fields)
        }
    }
}

/// The last valid day is `expires` itself; grace days follow it.
fn dates(issued: u16, expires: u16, grace: u16, at: NaiveDate, fields: Value) -> Verdict {
    let f = Some(fields);
    if at < day_date(issued) {
        return Verdict::new(
            Kind::NotYetValid,
            format!("issued for {}, checked on {at}", day_text(issued)),
            f,
        );
    }
    if expires == NEVER {
        return Verdict::new(Kind::Valid, "does not expire", f);
    }
    let end = day_date(expires);
    if at <= end {
        let left = (end - at).num_days();
        return Verdict::new(
            Kind::Valid,
            format!("until {end} ({left} more day(s) after {at})"),
            f,
        );
    }
    let grace_end = end + chrono::Days::new(grace as u64);
    if at <= grace_end {
        let left = (grace_end - at).num_days();
        return Verdict::new(
            Kind::ValidInGrace,
            format!("expired on {end}, grace ends {grace_end} ({left} more day(s))"),
            f,
        );
    }
    let reason = if grace > 0 {
        format!("on {end}; the grace of {grace} day(s) ended {grace_end}")
    } else {
        format!("on {end}")
    };
    Verdict::new(Kind::Expired, reason, f)
}

/// Parses and judges a text; a code with a wrong check symbol is searched for the one
/// mistyped character when the key is at hand.
pub fn validate(text: &str, keys: &Keyring, policy: &Policy, at: NaiveDate) -> Verdict {
    match code::parse(text) {
        Ok(p) => judge(&p, keys, policy, at),
        Err(t) => {
            let mut v = Verdict::malformed(t);
            if v.position.is_none() && v.reason.starts_with("check symbol") {
                match code::locate_typo(text, keys) {
                    Some(code::Fix::Substitution {
                        position,
                        typed,
                        meant,
                    }) => {
                        v.position = Some(position);
                        v.reason = format!("typo at position {position}: {typed:?} should be {meant:?} (the check symbol does not match)");
                    }
                    Some(code::Fix::Swap { first, second }) => {
                        v.position = Some(first);
                        v.reason = format!("typo at positions {first} and {second}: the two characters are swapped (the check symbol does not match)");
                    }
                    None => {}
                }
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::license::keys::{PrivateKey, ShortSecret};
    use crate::license::payload::{day_number, Payload};

    fn day(s: &str) -> NaiveDate {
        NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
    }

    #[test]
    fn short_codes_need_the_short_secret_not_the_private_key() {
        let k = PrivateKey::from_seed([3; 32]);
        let secret = ShortSecret {
            id: k.id,
            secret: [5; 32],
        };
        let p = Payload {
            key_id: k.id,
            serial: 42,
            product: "OFFI1".into(),
            sku: String::new(),
            customer: String::new(),
            issued: day_number(day("2026-01-01")).unwrap(),
            expires: day_number(day("2026-12-31")).unwrap(),
            grace_days: 0,
            features: vec![],
            seats: 1,
        };
        let c = code::issue_short(&secret, &p).unwrap();
        let at = day("2026-06-01");
        let policy = Policy::default();

        // The public key alone cannot check it, and says why (not "unknown key id").
        let mut ring = Keyring::default();
        ring.public.push(k.public());
        let v = validate(&c, &ring, &policy, at);
        assert_eq!(v.kind, Kind::ShortSecretNeeded, "{}", v.reason);
        assert!(v.reason.contains("--short-secret"), "{}", v.reason);
        assert_eq!(v.kind.exit(), Exit::Io);

        // The private key's line does not check it either: the secret is separate.
        ring.add_text(&k.to_line()).unwrap();
        assert_eq!(
            validate(&c, &ring, &policy, at).kind,
            Kind::ShortSecretNeeded
        );

        ring.short.push(secret.clone());
        assert_eq!(validate(&c, &ring, &policy, at).kind, Kind::Valid);

        // Another key's secret: the rotated-out case.
        let other = ShortSecret {
            id: crate::license::KeyId([1, 2, 3, 4]),
            secret: [5; 32],
        };
        let mut ring2 = Keyring::default();
        ring2.short.push(other);
        assert_eq!(validate(&c, &ring2, &policy, at).kind, Kind::UnknownKeyId);

        // Same id, different secret: a forgery.
        let mut ring3 = Keyring::default();
        ring3.short.push(ShortSecret {
            id: k.id,
            secret: [6; 32],
        });
        assert_eq!(validate(&c, &ring3, &policy, at).kind, Kind::BadSignature);

        // Typed by hand: lower case, 1 as l, 0 as o, dashes elsewhere; the same verdict.
        let typed: String = c
            .chars()
            .filter(|&ch| ch != '-')
            .map(|ch| match ch {
                '1' => 'l',
                '0' => 'o',
                ch => ch.to_ascii_lowercase(),
            })
            .collect();
        let typed = format!("{}-{}", &typed[..7], &typed[7..]);
        assert!(typed.contains('o') && typed.contains('l'), "{typed}");
        assert_eq!(
            validate(&typed, &ring, &policy, at),
            validate(&c, &ring, &policy, at)
        );

        // A symbol left out by hand: the dashes point at the short group.
        let mut dropped = c.clone();
        dropped.remove(13);
        let v = validate(&dropped, &ring, &policy, at);
        assert_eq!(v.kind, Kind::Malformed);
        assert!(
            v.reason.contains("positions 13-16 hold 4 symbol(s), not 5"),
            "{}",
            v.reason
        );
        // A revocation list names a license by its id or by a code, in any spelling.
        let id = code::license_id(match &code::parse(&c).unwrap() {
            Parsed::Short { bytes, .. } => bytes,
            _ => unreachable!(),
        });
        let list = format!("# withdrawn\n\n{}\n{typed}\n", id.to_uppercase());
        assert_eq!(revoked_ids(&list), Ok(HashSet::from([id])));
        assert_eq!(revoked_ids("00ff00ff00ff00ff\nnot a code\n"), Err(2));
        // A marketplace code in lower case is not read as a csm code.
        let v = validate(" plABC", &ring, &policy, at);
        assert_eq!(
            (v.kind, v.position),
            (Kind::Malformed, Some(2)),
            "{}",
            v.reason
        );
    }
}
