//! Crockford base32 with its mod-37 check symbol, in the strict form csm prints and reads.
//!
//! Strict on purpose: a code is read exactly as csm writes it (upper case, dashes every five
//! symbols or no dashes at all), so that every single-character change is reported as a typo
//! at its position instead of being silently read as another symbol.

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

pub fn symbol_value(c: u8) -> Option<u8> {
    ALPHABET.iter().position(|&a| a == c).map(|v| v as u8)
}

fn check_value(c: u8) -> Option<u8> {
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
    if bits > 0 && acc & ((1 << bits) - 1) != 0 {
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

/// Explains a character that is not a symbol, with the symbol it was probably meant to be.
fn explain(c: char, pos: usize, last: bool) -> Typo {
    let meant = match c {
        'I' | 'i' | 'L' | 'l' => Some('1'),
        'O' | 'o' => Some('0'),
        c if c.is_ascii_lowercase() && c != 'u' => Some(c.to_ascii_uppercase()),
        _ => None,
    };
    let what = if c.is_whitespace() {
        "whitespace".to_string()
    } else if c.is_control() {
        format!("control character U+{:04X}", c as u32)
    } else {
        format!("{c:?}")
    };
    let rule = if last {
        "0-9, A-Z without I L O U, or a check symbol * ~ $ = U"
    } else {
        "0-9 and A-Z without I L O U, upper case"
    };
    let reason = match meant {
        Some(m) => {
            format!("{what} at position {pos} is not a code symbol ({rule}); did you mean {m:?}?")
        }
        None => format!("{what} at position {pos} is not a code symbol ({rule})"),
    };
    Typo::at(pos, reason)
}

/// A parsed code: symbol values, the check value, and the text position of every symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symbols {
    pub values: Vec<u8>,
    pub check: u8,
    /// 1-based position in the input text of each data symbol, then of the check symbol.
    pub positions: Vec<usize>,
}

/// Reads a code: no surrounding whitespace (the caller trims), upper-case symbols, dashes
/// either every five symbols or not at all, the check symbol last.
pub fn parse_code(text: &str) -> Result<Symbols, Typo> {
    let chars: Vec<char> = text.chars().collect();
    let dashed = chars.contains(&'-');
    let mut syms: Vec<(char, usize)> = Vec::with_capacity(chars.len());
    for (i, &c) in chars.iter().enumerate() {
        let pos = i + 1;
        if c == '-' {
            // With dashes, one must follow every fifth symbol and nothing else.
            let expected =
                !syms.is_empty() && syms.len().is_multiple_of(GROUP) && i + 1 < chars.len();
            let already = i > 0 && chars[i - 1] == '-';
            if i + 1 == chars.len() {
                return Err(Typo::at(
                    pos,
                    format!("the code ends with '-' at position {pos} (truncated?)"),
                ));
            }
            if !expected || already {
                return Err(Typo::at(
                    pos,
                    format!(
                        "'-' at position {pos} is out of place (dashes separate groups of {GROUP} symbols)"
                    ),
                ));
            }
            continue;
        }
        if dashed && !syms.is_empty() && syms.len().is_multiple_of(GROUP) && chars[i - 1] != '-' {
            return Err(Typo::at(
                pos,
                format!(
                    "{c:?} at position {pos}: a '-' was expected here (groups of {GROUP} symbols)"
                ),
            ));
        }
        syms.push((c, pos));
    }
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
    let mut positions = Vec::with_capacity(n);
    for (k, &(c, pos)) in syms.iter().enumerate() {
        positions.push(pos);
        if k + 1 == n {
            break;
        }
        match u8::try_from(c).ok().and_then(symbol_value) {
            Some(v) => values.push(v),
            None => return Err(explain(c, pos, false)),
        }
    }
    let (last, last_pos) = syms[n - 1];
    let check = u8::try_from(last)
        .ok()
        .and_then(check_value)
        .ok_or_else(|| explain(last, last_pos, true))?;
    Ok(Symbols {
        values,
        check,
        positions,
    })
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
        let undashed: String = code.chars().filter(|&c| c != '-').collect();
        assert_eq!(parse_code(&undashed).unwrap().values, s.values);
        let lower = code.to_ascii_lowercase();
        let e = parse_code(&lower).unwrap_err();
        assert_eq!(e.position, Some(1));
        assert!(e.reason.contains("did you mean"), "{}", e.reason);
        let e = parse_code(&code.replacen('-', "", 1)).unwrap_err();
        assert!(e.reason.contains("'-' was expected"), "{}", e.reason);
    }
}
