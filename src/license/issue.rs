//! Issuing a batch of licenses from one set of fields: the rules every form shares (a
//! product, fields within their limits, distinct serials) and the fields each license
//! reports, read from what its code or file actually carries. Pure: the caller passes the
//! keys and the source of serial numbers.

use super::code::{self, Parsed};
use super::keys::{PrivateKey, ShortSecret};
use super::payload::{self, Payload};
use serde_json::Value;
use std::collections::HashSet;

/// Which form to issue, with the key that signs it.
#[derive(Clone, Copy)]
pub enum Form<'a> {
    /// A full code signed with the private key.
    Code(&'a PrivateKey),
    /// A short code tagged with the short secret (no SKU, customer or features).
    Short(&'a ShortSecret),
    /// A license file: readable fields and a detached signature.
    File(&'a PrivateKey),
}

/// One issued license.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    /// The code, or for a license file its JSON document.
    pub text: String,
    /// The readable fields the code or file carries, with `code` (or `license` for a file).
    pub fields: Value,
}

/// `count` licenses with the fields of `template`, each with its own serial from
/// `next_serial` (repeats are skipped). Messages name the field and the rule.
pub fn issue(
    form: Form,
    template: &Payload,
    count: usize,
    mut next_serial: impl FnMut() -> u32,
) -> Result<Vec<Issued>, String> {
    let mut p = template.clone();
    p.key_id = match form {
        Form::Code(k) | Form::File(k) => k.id,
        Form::Short(s) => s.id,
    };
    if p.product.trim().is_empty() {
        return Err("--product: must not be empty".into());
    }
    if let Form::Short(_) = form {
        // The short form has no room for these; refusing beats silently dropping them.
        if !p.sku.is_empty() || !p.customer.is_empty() || !p.features.is_empty() {
            return Err(
                "--short: a short code does not carry the SKU, customer or features".into(),
            );
        }
        code::short_payload(&p)?;
    }
    payload::check_fields(&p)?;
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        p.serial = next_serial();
        if !seen.insert(p.serial) {
            continue;
        }
        out.push(issue_one(form, &p)?);
    }
    Ok(out)
}

fn issue_one(form: Form, p: &Payload) -> Result<Issued, String> {
    match form {
        Form::Code(key) => {
            let c = code::issue_code(key, p);
            if c.len() > code::MAX_CODE_CHARS {
                return Err(format!(
                    "the code would be {} characters (at most {}); use --file for a payload this large",
                    c.len(),
                    code::MAX_CODE_CHARS
                ));
            }
            let mut fields = code::fields_json(p, &payload::encode(p));
            fields["code"] = Value::String(c.clone());
            Ok(Issued { text: c, fields })
        }
        Form::Short(secret) => {
            let c = code::issue_short(secret, p)?;
            // Reported from the code itself: only what a short code carries.
            let mut fields = match code::parse(&c) {
                Ok(Parsed::Short { payload, bytes, .. }) => {
                    code::short_fields_json(&payload, &bytes)
                }
                _ => return Err("internal: an issued short code does not read back".into()),
            };
            fields["code"] = Value::String(c.clone());
            Ok(Issued { text: c, fields })
        }
        Form::File(key) => {
            let f = code::issue_file(key, p);
            let mut fields = code::fields_json(p, &payload::encode(p));
            fields["license"] = f.clone();
            Ok(Issued {
                text: f.to_string(),
                fields,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template() -> Payload {
        Payload {
            key_id: crate::license::KeyId([0; 4]),
            serial: 0,
            product: "P".into(),
            sku: String::new(),
            customer: String::new(),
            issued: 10,
            expires: 20,
            grace_days: 1,
            features: vec![],
            seats: 3,
        }
    }

    #[test]
    fn short_codes_report_only_what_they_carry_and_refuse_the_rest() {
        let s = ShortSecret {
            id: crate::license::KeyId([1, 2, 3, 4]),
            secret: [7; 32],
        };
        let mut serials = [5u32, 5, 6].into_iter();
        let out = issue(Form::Short(&s), &template(), 2, || serials.next().unwrap()).unwrap();
        assert_eq!(out.len(), 2, "a repeated serial is skipped");
        assert_eq!(out[0].fields["serial"], 5);
        assert_eq!(out[1].fields["serial"], 6);
        assert_eq!(out[0].fields["seats"], 3);
        assert!(out[0].fields.get("sku").is_none());
        let mut t = template();
        t.sku = "S".into();
        let e = issue(Form::Short(&s), &t, 1, || 1).unwrap_err();
        assert!(e.contains("SKU"), "{e}");
        t = template();
        t.product = " ".into();
        assert!(issue(Form::Short(&s), &t, 1, || 1)
            .unwrap_err()
            .contains("--product"));
    }
}
