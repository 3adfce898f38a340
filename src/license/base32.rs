//! Crockford base32 with its mod-37 check symbol.
//!
//! Written one way (upper case, dashes every five symbols) and read the way Crockford
//! reads it: in either case, `I` and `L` as 1, `O` as 0, and hyphens ignored wherever they
//! are. Those are aliases of one symbol, never two different symbols, so the check symbol
//! still catches every single substitution. Whitespace is never a symbol, so it is ignored
//! like a hyphen: a code wrapped across lines or grouped with spaces reads as one.

/// The 32 data symbols: digits and upper-case letters without I, L, O and U.
pub const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// The check symbol alphabet: the data symbols followed by Crockford's five extra symbols.
pub const CHECK_ALPHABET: &[u8; 37] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ*~$=U";
/// Symbols per dash-separated group.
pub const GROUP: usize = 5;

/// A reason a text is not a well-formed code; `position` is 1-based in the text as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typo {
    pub position: Option<usize>,
    pub reason: String,
}

impl Typo {
    fn at(position: usize, reason: String) -> Self {
        Typo {
            position: Some(position),
            reason,
        }
    }
}

/// The symbol `c` stands for, as Crockford reads it: either case, I and L for 1, O for 0.
fn canonical(c: char) -> Option<u8> {
    match c.to_ascii_uppercase() {
        'I' | 'L' => Some(b'1'),
        'O' => Some(b'0'),
        c => u8::try_from(c).ok(),
    }
}

/// The value of a data symbol; U is not one (Crockford keeps it for the check symbol).
pub fn symbol_value(c: char) -> Option<u8> {
    let c = canonical(c)?;
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u8)
}

fn check_value(c: char) -> Option<u8> {
    let c = canonical(c)?;
    CHECK_ALPHABET.iter().position(|&a| a == c).map(|v| v as u8)
}

/// Symbol values of `bytes`, 5 bits each, most significant first; the last symbol is
/// padded with zero bits.
pub fn encode_values(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(((acc >> bits) & 31) as u8);
        }
    }
    if bits > 0 {
        out.push(((acc << (5 - bits)) & 31) as u8);
    }
    out
}

/// Bytes from symbol values; None when the padding bits of the last symbol are not zero
/// (csm never writes such a symbol, so it is a typo).
pub fn decode_values(values: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(values.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &v in values {
        acc = ((acc << 5) | v as u32) & 0xFFFF;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // The encoding is minimal: fewer than 5 padding bits, all zero. A longer spelling of the
    // same bytes (an extra `0` typed before a `0` check symbol) is not the code.
    if bits >= 5 || acc & ((1 << bits) - 1) != 0 {
        return None;
    }
    Some(out)
}

/// The mod-37 check value of a sequence of symbol values read as one base-32 number.
/// 37 is prime and larger than 32, so any single substituted symbol and any swap of two
/// adjacent different symbols changes it.
pub fn check(values: &[u8]) -> u8 {
    values.iter().fold(0u32, |c, &v| (c * 32 + v as u32) % 37) as u8
}

/// Data symbols plus the check symbol, in dash-separated groups of five.
pub fn encode_code(bytes: &[u8]) -> String {
    let mut values = encode_values(bytes);
    let c = check(&values);
    let mut syms: Vec<u8> = values.drain(..).map(|v| ALPHABET[v as usize]).collect();
    syms.push(CHECK_ALPHABET[c as usize]);
    let mut out = String::with_capacity(syms.len() * 6 / 5 + 1);
    for (i, s) in syms.iter().enumerate() {
        if i > 0 && i.is_multiple_of(GROUP) {
            out.push('-');
        }
        out.push(*s as char);
    }
    out
}

/// Explains a character that is not a symbol.
fn explain(c: char, pos: usize, last: bool) -> Typo {
    let what = if c.is_control() {
        format!("control character U+{:04X}", c as u32)
    } else {
        format!("{c:?}")
    };
    let rule = if last {
        "0-9, A-Z without U, or a check symbol * ~ $ = U"
    } else {
        "0-9 and A-Z without U"
    };
    Typo::at(
        pos,
        format!("{what} at position {pos} is not a code symbol ({rule})"),
    )
}

/// A parsed code: symbol values, the check value, and the text position of every symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbols {
    pub values: Vec<u8>,
    pub check: u8,
    /// 1-based position in the input text of each data symbol, then of the check symbol.
    pub positions: Vec<usize>,
}

/// Whether `c` is a separator, not a symbol: a hyphen, or whitespace that wrapping a code
/// across lines or grouping it with spaces put in.
pub fn is_separator(c: char) -> bool {
    c == '-' || c.is_whitespace()
}

/// Reads a code: symbols in either case, separators anywhere (ignored), the check symbol
/// last.
pub fn parse_code(text: &str) -> Result<Symbols, Typo> {
    let syms: Vec<(char, usize)> = text
        .chars()
        .enumerate()
        .filter(|&(_, c)| !is_separator(c))
        .map(|(i, c)| (c, i + 1))
        .collect();
    if syms.len() < 2 {
        return Err(Typo {
            position: None,
            reason: format!(
                "{} symbol(s): too short to be a code (truncated?)",
                syms.len()
            ),
        });
    }
    let n = syms.len();
    let mut values = Vec::with_capacity(n - 1);
    for &(c, pos) in &syms[..n - 1] {
        values.push(symbol_value(c).ok_or_else(|| explain(c, pos, false))?);
    }
    let (last, last_pos) = syms[n - 1];
    let check = check_value(last).ok_or_else(|| explain(last, last_pos, true))?;
    Ok(Symbols {
        values,
        check,
        positions: syms.iter().map(|&(_, pos)| pos).collect(),
    })
}

/// The first group between dashes that is not five symbols long (the last group may be
/// shorter): its first and last symbol's 1-based position and its length; whitespace in a
/// group is not counted. Where a code with a wrong check symbol has one, a symbol was
/// probably left out or added there.
pub fn odd_group(text: &str) -> Option<(usize, usize, usize)> {
    let chars: Vec<char> = text.chars().collect();
    let symbol = |c: &char| !is_separator(*c);
    let (mut first, mut last, mut len) = (0, 0, 0);
    for (i, c) in chars.iter().enumerate() {
        if *c == '-' {
            // A run of dashes separates like one.
            if len > 0 && len != GROUP && chars[i + 1..].iter().any(symbol) {
                return Some((first, last, len));
            }
            len = 0;
        } else if symbol(c) {
            if len == 0 {
                first = i + 1;
            }
            last = i + 1;
            len += 1;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_padding() {
        for n in 0..40usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let v = encode_values(&bytes);
            assert_eq!(v.len(), (n * 8).div_ceil(5));
            assert_eq!(decode_values(&v).unwrap(), bytes);
        }
        // 1 byte = 2 symbols with 2 padding bits; a nonzero padding bit is refused.
        assert_eq!(decode_values(&[0, 1]), None);
        // An extra zero symbol is 5 more zero bits, not a byte: a longer spelling, refused.
        for n in 1..40usize {
            let bytes: Vec<u8> = (0..n).map(|i| (i * 37 + 11) as u8).collect();
            let mut v = encode_values(&bytes);
            if (v.len() + 1) * 5 / 8 == n {
                v.push(0);
                assert_eq!(decode_values(&v), None, "{n} bytes");
            }
        }
    }

    #[test]
    fn check_catches_every_single_substitution() {
        let values = encode_values(b"csm license");
        let c = check(&values);
        for i in 0..values.len() {
            for v in 0..32u8 {
                if v != values[i] {
                    let mut m = values.clone();
                    m[i] = v;
                    assert_ne!(check(&m), c, "position {i} value {v}");
                }
            }
        }
    }

    #[test]
    fn code_parses_and_rejects_typos() {
        let code = encode_code(b"hello world");
        let s = parse_code(&code).unwrap();
        assert_eq!(decode_values(&s.values).unwrap(), b"hello world");
        assert_eq!(check(&s.values), s.check);
        let e = parse_code("ABCDE-FGHUK").unwrap_err();
        assert_eq!(e.position, Some(10));
        assert!(e.reason.contains("not a code symbol"), "{}", e.reason);
        // Whitespace separates like a hyphen (a wrapped or spaced code); positions stay
        // those of the text as given.
        let spaced = parse_code("ABCDE-FGH K\n M").unwrap();
        let plain = parse_code("ABCDEFGHKM").unwrap();
        assert_eq!((&spaced.values, spaced.check), (&plain.values, plain.check));
        assert_eq!(spaced.positions[7..], [9, 11, 14]);
        let e = parse_code("ABCDE FGH\u{0}K").unwrap_err();
        assert_eq!(e.position, Some(10));
        assert!(e.reason.contains("control character"), "{}", e.reason);
    }

    #[test]
    fn aliases_read_as_crockford_says() {
        // Every value, so that 0 and 1 (the symbols with aliases) occur.
        let bytes: Vec<u8> = (0..=255u8).collect();
        let code = encode_code(&bytes);
        assert!(code.contains('0') && code.contains('1'));
        let want = parse_code(&code).unwrap();
        let undashed: String = code.chars().filter(|&c| c != '-').collect();
        // Lower case, 1 typed as l, L, i or I in turn, 0 as o or O, dashes every four.
        let mut typed = String::new();
        let (mut ones, mut zeros) = (0, 0);
        for (k, c) in undashed.chars().enumerate() {
            if k > 0 && k % 4 == 0 {
                typed.push('-');
            }
            typed.push(match c {
                '1' => {
                    ones += 1;
                    ['l', 'L', 'i', 'I'][ones % 4]
                }
                '0' => {
                    zeros += 1;
                    ['o', 'O'][zeros % 2]
                }
                c => c.to_ascii_lowercase(),
            });
        }
        for text in [&undashed, &typed] {
            let got = parse_code(text).unwrap();
            assert_eq!((got.values, got.check), (want.values.clone(), want.check));
        }
        // Hyphens are ignored wherever they are.
        let stray = parse_code("--o-L-").unwrap();
        assert_eq!(
            (stray.values, stray.check, stray.positions),
            (vec![0], 1, vec![3, 5])
        );
        // A lower-case u is the check symbol U.
        assert_eq!(parse_code("0u").unwrap().check, 36);
        assert_eq!(odd_group(&code), None);
        assert_eq!(odd_group(&typed), Some((1, 4, 4)));
        assert_eq!(odd_group("ABCDE-FGH-KMNPQ-R"), Some((7, 9, 3)));
        assert_eq!(odd_group("ABCDE--FGHJK-"), None);
        // A line break inside a group is not a symbol.
        assert_eq!(odd_group("ABCDE-FG\nHJK-MNP\r\nQ-S"), Some((14, 19, 4)));
        assert_eq!(odd_group("ABCDE-FGH-\n"), None);
    }
}
