//! Property tests of the license format: every issued code validates, every single-character
//! change is caught (as a typo or a bad signature, never valid), and key rotation works.

use chrono::NaiveDate;
use csm::license::{
    self, base32, code, issue_code, issue_file, issue_short, payload, Keyring, Kind, Parsed,
    Payload, Policy, PrivateKey, ShortSecret,
};
use proptest::prelude::*;

fn day(s: &str) -> NaiveDate {
    NaiveDate::parse_from_str(s, "%Y-%m-%d").unwrap()
}

fn ring(keys: &[&PrivateKey]) -> Keyring {
    let mut r = Keyring::default();
    for k in keys {
        r.add_text(&k.public().to_line()).unwrap();
    }
    r
}

fn arb_text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!("[A-Za-z0-9 ._:/\u{4e00}-\u{4e0f}-]{{0,{max}}}"))
        .unwrap()
}

prop_compose! {
    fn arb_payload()(
        serial in any::<u32>(),
        product in arb_text(24).prop_filter("non-empty", |s| !s.is_empty()),
        sku in arb_text(12),
        customer in arb_text(24),
        issued in 19000u16..21000,
        span in 0u16..4000,
        never in proptest::bool::weighted(0.1),
        grace_days in 0u16..60,
        features in proptest::collection::vec("[a-z][a-z0-9_]{0,9}", 0..4),
        seats in prop_oneof![0u32..100, any::<u32>()],
    ) -> Payload {
        Payload {
            key_id: license::KeyId([0; 4]),
            serial, product, sku, customer, issued,
            expires: if never { payload::NEVER } else { issued + span },
            grace_days, features, seats,
        }
    }
}

fn key(seed: u8) -> PrivateKey {
    PrivateKey::from_seed([seed; 32])
}

/// Whether Crockford reads `a` and `b` as one symbol.
fn same_symbol(a: char, b: char) -> bool {
    let canon = |c: char| match c.to_ascii_uppercase() {
        'I' | 'L' => '1',
        'O' => '0',
        c => c,
    };
    canon(a) == canon(b)
}

/// How a person might type `code`: every letter in either case, 1 as I, i, L or l, 0 as O
/// or o, and the dashes anywhere (`bits` picks each choice).
fn retype(code: &str, bits: &[u8], group: usize) -> String {
    let mut out = String::new();
    let symbols = code.chars().filter(|&c| c != '-');
    for (k, c) in symbols.enumerate() {
        if group > 0 && k > 0 && k % group == 0 {
            out.push('-');
        }
        let b = bits[k % bits.len()];
        out.push(match c {
            '1' => ['1', 'I', 'i', 'L', 'l'][b as usize % 5],
            '0' => ['0', 'O', 'o'][b as usize % 3],
            c if b % 2 == 1 => c.to_ascii_lowercase(),
            c => c,
        });
    }
    out
}

/// A day inside the validity window of `p`.
fn inside(p: &Payload) -> NaiveDate {
    payload::day_date(p.issued)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn every_issued_license_validates(mut p in arb_payload(), seed in any::<u8>()) {
        let k = key(seed);
        p.key_id = k.id;
        let keys = ring(&[&k]);
        let policy = Policy { product: Some(&p.product.clone()), ..Policy::default() };
        let at = inside(&p);
        let c = issue_code(&k, &p);
        let v = license::validate(&c, &keys, &policy, at);
        prop_assert_eq!(v.kind, Kind::Valid, "{}", v.reason);
        // Decoding gives back every field.
        match license::parse(&c).unwrap() {
            Parsed::Full { payload: back, .. } => prop_assert_eq!(back, p.clone()),
            other => prop_assert!(false, "parsed as {:?}", other),
        }
        // The undashed form and surrounding whitespace are read the same way.
        let undashed: String = c.chars().filter(|&ch| ch != '-').collect();
        let v = license::validate(&format!(" {undashed}\n"), &keys, &policy, at);
        prop_assert_eq!(v.kind, Kind::Valid);
        let f = issue_file(&k, &p).to_string();
        prop_assert_eq!(license::validate(&f, &keys, &policy, at).kind, Kind::Valid);
        if p.grace_days <= 255 && p.seats <= 65535 {
            let secret = ShortSecret { id: k.id, secret: [seed ^ 0x5a; 32] };
            let s = issue_short(&secret, &p).unwrap();
            prop_assert!(s.len() <= 64, "short code of {} characters", s.len());
            // The public keyring alone cannot check it; the short secret can.
            let v = license::validate(&s, &keys, &policy, at);
            prop_assert_eq!(v.kind, Kind::ShortSecretNeeded, "{}", v.reason);
            let mut with_secret = keys.clone();
            with_secret.short.push(secret);
            let v = license::validate(&s, &with_secret, &policy, at);
            prop_assert_eq!(v.kind, Kind::Valid, "{}", v.reason);
        }
    }

    /// A code typed by hand in any case, with aliases and any grouping, is the same code:
    /// the same verdict and the same fields, for full and short codes.
    #[test]
    fn retyped_codes_read_the_same(mut p in arb_payload(), seed in any::<u8>(), bits in proptest::collection::vec(any::<u8>(), 1..64), group in 0usize..8) {
        let k = key(seed);
        p.key_id = k.id;
        let mut keys = ring(&[&k]);
        let at = inside(&p);
        let mut codes = vec![issue_code(&k, &p)];
        if p.grace_days <= 255 && p.seats <= 65535 {
            let secret = ShortSecret { id: k.id, secret: [seed ^ 0x5a; 32] };
            codes.push(issue_short(&secret, &p).unwrap());
            keys.short.push(secret);
        }
        for c in codes {
            let typed = retype(&c, &bits, group);
            let want = license::validate(&c, &keys, &Policy::default(), at);
            let got = license::validate(&typed, &keys, &Policy::default(), at);
            prop_assert_eq!(got.kind, Kind::Valid, "{}: {}", typed, got.reason);
            prop_assert_eq!(got, want);
        }
    }

    /// Every position, each replaced by a character of a different kind: always malformed
    /// with the position, never valid. (parse + judge: the typo search is tested below.)
    #[test]
    fn every_single_character_change_is_caught(mut p in arb_payload(), seed in any::<u8>(), pick in any::<u64>()) {
        let k = key(seed);
        p.key_id = k.id;
        let keys = ring(&[&k]);
        let at = inside(&p);
        let c = issue_code(&k, &p);
        let replacements: Vec<char> = "0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U-ailoIO u!é".chars().collect();
        let chars: Vec<char> = c.chars().collect();
        for i in 0..chars.len() {
            let mut r = replacements[((pick as usize).wrapping_add(i * 7)) % replacements.len()];
            if r == chars[i] {
                r = if r == '0' { '1' } else { '0' };
            }
            let mut m = chars.clone();
            m[i] = r;
            let text: String = m.into_iter().collect();
            // Another spelling of the same symbol (a case, an I, L or O alias) is no change,
            // nor is whitespace for a dash: both only separate groups.
            if same_symbol(r, chars[i]) || (chars[i] == '-' && r.is_whitespace()) {
                prop_assert_eq!(license::validate(&text, &keys, &Policy::default(), at).kind, Kind::Valid);
                continue;
            }
            let kind = match license::parse(&text) {
                Ok(parsed) => license::judge(&parsed, &keys, &Policy::default(), at).kind,
                Err(_) => Kind::Malformed,
            };
            prop_assert!(
                matches!(kind, Kind::Malformed | Kind::BadSignature),
                "position {} changed from {:?} to {:?}: {:?}", i + 1, chars[i], r, kind
            );
        }
    }

    /// A random single substitution through the full validation: reported as a typo at the
    /// right position, with the right symbol suggested when the change stays in the alphabet.
    #[test]
    fn typo_is_located(mut p in arb_payload(), seed in any::<u8>(), pos in any::<prop::sample::Index>(), sym in 0u8..32) {
        let k = key(seed);
        p.key_id = k.id;
        let keys = ring(&[&k]);
        let c = issue_code(&k, &p);
        let symbol_positions: Vec<usize> = c.char_indices().filter(|(_, ch)| *ch != '-').map(|(i, _)| i).collect();
        let i = symbol_positions[pos.index(symbol_positions.len() - 1)]; // a data symbol
        let original = c.as_bytes()[i] as char;
        let new = base32::ALPHABET[sym as usize] as char;
        prop_assume!(new != original);
        let mut m = c.clone().into_bytes();
        m[i] = new as u8;
        let text = String::from_utf8(m).unwrap();
        let v = license::validate(&text, &keys, &Policy::default(), inside(&p));
        prop_assert_eq!(v.kind, Kind::Malformed);
        prop_assert_eq!(v.position, Some(i + 1), "{}", v.reason);
        let expected = format!("should be {original:?}");
        prop_assert!(v.reason.contains(&expected), "{}", v.reason);
    }

    /// Two neighbouring different symbols swapped: located as a swap.
    #[test]
    fn swapped_neighbours_are_located(mut p in arb_payload(), seed in any::<u8>(), pos in any::<prop::sample::Index>()) {
        let k = key(seed);
        p.key_id = k.id;
        let c = issue_code(&k, &p);
        let data: Vec<usize> = c.char_indices().filter(|(_, ch)| *ch != '-').map(|(i, _)| i).collect();
        let data = &data[..data.len() - 1]; // not the check symbol
        let j = pos.index(data.len() - 1);
        let (a, b) = (data[j], data[j + 1]);
        let mut m = c.clone().into_bytes();
        prop_assume!(m[a] != m[b]);
        m.swap(a, b);
        let v = license::validate(&String::from_utf8(m).unwrap(), &ring(&[&k]), &Policy::default(), inside(&p));
        prop_assert_eq!(v.kind, Kind::Malformed);
        prop_assert_eq!(v.position, Some(a + 1), "{}", v.reason);
        prop_assert!(v.reason.contains("swapped"), "{}", v.reason);
    }

    /// Changed bytes behind a correct check symbol: bad signature, never valid.
    #[test]
    fn altered_payload_is_a_bad_signature(mut p in arb_payload(), seed in any::<u8>(), flip in 1u8..=255) {
        let k = key(seed);
        p.key_id = k.id;
        let keys = ring(&[&k]);
        let mut altered = p.clone();
        altered.serial ^= flip as u32;
        let good = issue_code(&k, &p);
        // Take the signature of `p` and put it behind the payload of `altered`.
        let Parsed::Full { signature, .. } = license::parse(&good).unwrap() else { unreachable!() };
        let mut bytes = payload::encode(&altered);
        bytes.extend_from_slice(&signature);
        let forged = base32::encode_code(&bytes);
        let v = license::validate(&forged, &keys, &Policy::default(), inside(&p));
        prop_assert_eq!(v.kind, Kind::BadSignature, "{}", v.reason);
    }

    #[test]
    fn rotated_out_key_still_validates_when_trusted(mut p in arb_payload()) {
        let old = key(1);
        let new = key(2);
        prop_assert_ne!(old.id, new.id);
        p.key_id = old.id;
        let c = issue_code(&old, &p);
        let at = inside(&p);
        let both = ring(&[&new, &old]);
        prop_assert_eq!(license::validate(&c, &both, &Policy::default(), at).kind, Kind::Valid);
        let only_new = ring(&[&new]);
        let v = license::validate(&c, &only_new, &Policy::default(), at);
        prop_assert_eq!(v.kind, Kind::UnknownKeyId);
        prop_assert!(v.reason.contains(&old.id.to_string()), "{}", v.reason);
        // The new key signs new codes that the same keyring accepts.
        let mut q = p.clone();
        q.key_id = new.id;
        prop_assert_eq!(license::validate(&issue_code(&new, &q), &both, &Policy::default(), at).kind, Kind::Valid);
    }
}

#[test]
fn verdicts_by_date_product_and_revocation() {
    let k = key(9);
    let p = Payload {
        key_id: k.id,
        serial: 1,
        product: "OFFI1".into(),
        sku: "basic".into(),
        customer: "c".into(),
        issued: payload::day_number(day("2026-01-01")).unwrap(),
        expires: payload::day_number(day("2026-12-31")).unwrap(),
        grace_days: 10,
        features: vec![],
        seats: 3,
    };
    let keys = ring(&[&k]);
    let c = issue_code(&k, &p);
    let none = Policy::default();
    let at = |d: &str| license::validate(&c, &keys, &none, day(d)).kind;
    assert_eq!(at("2025-12-31"), Kind::NotYetValid);
    assert_eq!(at("2026-01-01"), Kind::Valid);
    assert_eq!(at("2026-12-31"), Kind::Valid);
    assert_eq!(at("2027-01-01"), Kind::ValidInGrace);
    assert_eq!(at("2027-01-10"), Kind::ValidInGrace);
    assert_eq!(at("2027-01-11"), Kind::Expired);
    let other = Policy {
        product: Some("OFFI2"),
        ..Policy::default()
    };
    assert_eq!(
        license::validate(&c, &keys, &other, day("2026-06-01")).kind,
        Kind::WrongProduct
    );
    let Parsed::Full { bytes, .. } = license::parse(&c).unwrap() else {
        unreachable!()
    };
    let revoked = Policy {
        revoked: [code::license_id(&bytes)].into_iter().collect(),
        ..Policy::default()
    };
    assert_eq!(
        license::validate(&c, &keys, &revoked, day("2026-06-01")).kind,
        Kind::Revoked
    );
    // Exit classes.
    assert_eq!(Kind::Valid.exit().code(), 0);
    assert_eq!(Kind::ValidInGrace.exit().code(), 0);
    assert_eq!(Kind::Expired.exit().code(), 6);
    assert_eq!(Kind::NotYetValid.exit().code(), 6);
    for k in [
        Kind::BadSignature,
        Kind::UnknownKeyId,
        Kind::Revoked,
        Kind::WrongProduct,
    ] {
        assert_eq!(k.exit().code(), 1);
    }
    assert_eq!(Kind::Malformed.exit().code(), 2);
}

#[test]
fn edited_license_file_is_a_bad_signature() {
    let k = key(3);
    let p = Payload {
        key_id: k.id,
        serial: 5,
        product: "P".into(),
        sku: "S".into(),
        customer: "C".into(),
        issued: 20000,
        expires: 20100,
        grace_days: 0,
        features: vec!["x".into()],
        seats: 0,
    };
    let mut f = issue_file(&k, &p);
    f["expires"] = "2149-01-01".into();
    let v = license::validate(
        &f.to_string(),
        &ring(&[&k]),
        &Policy::default(),
        payload::day_date(20000),
    );
    assert_eq!(v.kind, Kind::BadSignature);
    assert!(v.reason.contains("expires"), "{}", v.reason);
}

#[test]
fn marketplace_codes_have_the_marketplace_shape() {
    let c = code::marketplace_code(&[0xA5; 19]);
    assert!(c.starts_with("PL") && c.len() == 32, "{c}");
    assert!(c[2..]
        .chars()
        .all(|ch| ch.is_ascii_uppercase() || ch.is_ascii_digit()));
    assert!(matches!(license::parse(&c), Ok(Parsed::Marketplace(_))));
    assert!(code::check_marketplace_shape("PLabc").is_err());
    assert!(code::check_marketplace_shape(&format!("PL{}", "A".repeat(63))).is_err());
}
