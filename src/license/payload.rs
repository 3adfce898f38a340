//! What a license says, and its compact binary encoding (the bytes that are signed).
//!
//! Format version 1 (all integers big-endian or LEB128 varints):
//!
//! | field | encoding |
//! |---|---|
//! | format version | u8 = 1 |
//! | key id | 4 bytes |
//! | serial | varint |
//! | issued | u16, days since 1970-01-01 (UTC) |
//! | expires | u16, days since 1970-01-01; 65535 = never |
//! | grace days | varint |
//! | seats | varint; 0 = not limited |
//! | product, sku, customer | varint length + UTF-8 each |
//! | features | varint count, then varint length + UTF-8 each |

use super::keys::KeyId;
use chrono::{Days, NaiveDate};

pub const VERSION: u8 = 1;
/// `expires` value meaning the license never expires.
pub const NEVER: u16 = u16::MAX;
/// Limits that keep a payload readable and its code of a size to paste.
pub const MAX_TEXT: usize = 256;
pub const MAX_FEATURES: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Payload {
    pub key_id: KeyId,
    /// Tells apart licenses issued with the same fields (batches).
    pub serial: u32,
    pub product: String,
    pub sku: String,
    /// Customer or instance id.
    pub customer: String,
    pub issued: u16,
    pub expires: u16,
    pub grace_days: u16,
    pub features: Vec<String>,
    /// 0 = not limited.
    pub seats: u32,
}

pub fn epoch() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date")
}

/// Days since 1970-01-01 for a date the format can carry (1970-01-01 to 2149-06-05).
pub fn day_number(d: NaiveDate) -> Option<u16> {
    let n = d.signed_duration_since(epoch()).num_days();
    (0..NEVER as i64).contains(&n).then_some(n as u16)
}

pub fn day_date(n: u16) -> NaiveDate {
    epoch() + Days::new(n as u64)
}

/// A day as printed: `YYYY-MM-DD`, or `never` for the no-expiry value.
pub fn day_text(n: u16) -> String {
    if n == NEVER {
        "never".into()
    } else {
        day_date(n).format("%Y-%m-%d").to_string()
    }
}

/// Checks the limits on text fields; the message names the field, the value and the rule.
pub fn check_fields(p: &Payload) -> Result<(), String> {
    for (name, v) in [
        ("product", &p.product),
        ("sku", &p.sku),
        ("customer", &p.customer),
    ] {
        if v.len() > MAX_TEXT {
            return Err(format!(
                "{name}: {} bytes, at most {MAX_TEXT} allowed",
                v.len()
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(format!("{name} {v:?}: control characters are not allowed"));
        }
    }
    if p.features.len() > MAX_FEATURES {
        return Err(format!(
            "features: {} given, at most {MAX_FEATURES} allowed",
            p.features.len()
        ));
    }
    for f in &p.features {
        if f.is_empty() || f.len() > 64 || f.contains(',') || f.chars().any(char::is_control) {
            return Err(format!(
                "feature {f:?}: must be 1 to 64 bytes without commas or control characters"
            ));
        }
    }
    if p.expires != NEVER && p.expires < p.issued {
        return Err(format!(
            "expires {}: before the issue date {}",
            day_text(p.expires),
            day_text(p.issued)
        ));
    }
    Ok(())
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7F) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

pub fn encode(p: &Payload) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + p.product.len() + p.sku.len() + p.customer.len());
    out.push(VERSION);
    out.extend_from_slice(&p.key_id.0);
    put_varint(&mut out, p.serial as u64);
    out.extend_from_slice(&p.issued.to_be_bytes());
    out.extend_from_slice(&p.expires.to_be_bytes());
    put_varint(&mut out, p.grace_days as u64);
    put_varint(&mut out, p.seats as u64);
    put_text(&mut out, &p.product);
    put_text(&mut out, &p.sku);
    put_text(&mut out, &p.customer);
    put_varint(&mut out, p.features.len() as u64);
    for f in &p.features {
        put_text(&mut out, f);
    }
    out
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize, what: &str) -> Result<&[u8], String> {
        if self.bytes.len() - self.at < n {
            return Err(format!("payload ends inside the {what} field"));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }

    fn varint(&mut self, what: &str, max: u64) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.take(1, what)?[0];
            v |= ((b & 0x7F) as u64) << shift;
            if b & 0x80 == 0 {
                // The shortest encoding only, so that one license has one byte string.
                if b == 0 && shift > 0 {
                    return Err(format!("{what}: not in shortest form"));
                }
                if v > max {
                    return Err(format!("{what}: {v} is larger than {max}"));
                }
                return Ok(v);
            }
        }
        Err(format!("{what}: number too long"))
    }

    fn u16(&mut self, what: &str) -> Result<u16, String> {
        let b = self.take(2, what)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn text(&mut self, what: &str) -> Result<String, String> {
        let n = self.varint(what, MAX_TEXT as u64)? as usize;
        let b = self.take(n, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| format!("{what}: not UTF-8"))
    }
}

pub fn decode(bytes: &[u8]) -> Result<Payload, String> {
    let mut r = Reader { bytes, at: 0 };
    let version = r.take(1, "format version")?[0];
    if version != VERSION {
        return Err(format!(
            "format version {version}: this csm reads version {VERSION}"
        ));
    }
    let mut kid = [0u8; 4];
    kid.copy_from_slice(r.take(4, "key id")?);
    let serial = r.varint("serial", u32::MAX as u64)? as u32;
    let issued = r.u16("issued")?;
    let expires = r.u16("expires")?;
    let grace_days = r.varint("grace days", u16::MAX as u64)? as u16;
    let seats = r.varint("seats", u32::MAX as u64)? as u32;
    let product = r.text("product")?;
    let sku = r.text("sku")?;
    let customer = r.text("customer")?;
    let n = r.varint("feature count", MAX_FEATURES as u64)? as usize;
    let mut features = Vec::with_capacity(n);
    for _ in 0..n {
        features.push(r.text("feature")?);
    }
    if r.at != bytes.len() {
        return Err(format!(
            "{} bytes left over after the last field",
            bytes.len() - r.at
        ));
    }
    Ok(Payload {
        key_id: KeyId(kid),
        serial,
        product,
        sku,
        customer,
        issued,
        expires,
        grace_days,
        features,
        seats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Payload {
            key_id: KeyId([1, 2, 3, 4]),
            serial: 300,
            product: "OFFI123".into(),
            sku: "basic".into(),
            customer: "cust-9".into(),
            issued: 20000,
            expires: NEVER,
            grace_days: 7,
            features: vec!["a".into(), "b".into()],
            seats: 0,
        };
        let b = encode(&p);
        assert_eq!(decode(&b).unwrap(), p);
        assert!(decode(&b[..b.len() - 1]).is_err());
        let mut extra = b.clone();
        extra.push(0);
        assert!(decode(&extra).unwrap_err().contains("left over"));
        assert_eq!(day_text(day_number(day_date(20000)).unwrap()), "2024-10-04");
    }
}
