//! Secrets (access keys, SKs, private keys): loaded from a file or an env var, never printed.

use crate::error::{CsmError, Result};
use std::fmt;
use std::path::Path;

/// A secret string whose Debug and Display are redacted.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself, for the signing code. Never pass this to a printer.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(redacted)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(redacted)")
    }
}

/// Reads a key file: its content without one trailing newline, and without the byte order
/// mark Windows editors (Notepad) put before UTF-8 text: both belong to the file, not to the
/// key. `-` reads standard input. `what` names the flag in error messages, e.g. `--key-file`.
pub fn read_key_file(path: &Path, what: &str) -> Result<Secret> {
    // The key pasted in place of its file's name: not echoed, it would land in CI logs.
    if !path.exists() && !crate::files::is_stdin(path) && looks_like_a_key(path) {
        return Err(CsmError::Config(format!(
            "{what}: no such file, and the value looks like a key itself (not shown); {what} takes the path of a file holding the key"
        )));
    }
    // Without a byte order mark (files::read_text): the file's, not the key's.
    let raw = crate::files::read_text(path, crate::files::KEY_LIMIT, what)?;
    let key = without_line_end(&raw);
    if key.trim().is_empty() {
        // A key problem, as an unset key is: often a CI secret withheld and written anyway.
        return Err(CsmError::Config(format!(
            "{what} {}: the file is empty (it must hold the secret on one line)",
            path.display()
        )));
    }
    if let Some(note) = stray_whitespace(key) {
        eprintln!(
            "csm: warning: {what} {}: the key {note}; it is used byte for byte, so remove it unless the key really has it",
            path.display()
        );
    }
    Ok(Secret::new(key))
}

/// A missing file whose name reads as a key: a UUID, 32 or more hex digits, one long word of
/// key characters with a digit, or the Base64 of 16 bytes or more (whose `/` makes a path of
/// a directory that is not there). A missing file of such a name is not shown either: a key
/// in a CI log costs more than a name the user typed a moment ago.
fn looks_like_a_key(path: &Path) -> bool {
    use base64::Engine;
    let name = path.to_string_lossy();
    let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
    let uuid = name.len() == 36 && name.split('-').map(str::len).eq([8, 4, 4, 4, 12]);
    let uuid = uuid && hex(&name.replace('-', ""));
    let long_hex = name.len() >= 32 && hex(&name);
    // One long word of the characters keys are made of, with a digit in it.
    let word = name.len() >= 20
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '+' | '='))
        && name.chars().any(|c| c.is_ascii_digit());
    // Padded or not, and cut anywhere: a key pasted in part is still a key.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent)
            .with_decode_allow_trailing_bits(true),
    );
    let base64 = lenient.decode(name.as_bytes()).is_ok_and(|b| b.len() >= 16)
        && path
            .parent()
            .is_none_or(|d| d.as_os_str().is_empty() || !d.exists());
    uuid || long_hex || word || base64
}

/// One trailing line break, which a file or a CI secret store adds after the key.
pub fn without_line_end(raw: &str) -> &str {
    raw.strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw)
}

/// Whitespace around a key (after the one newline a file ends with): a space left by a copy
/// and paste, or a second line. Said, never removed: the signature is over the exact key.
fn stray_whitespace(key: &str) -> Option<&'static str> {
    if key.contains(['\n', '\r']) {
        Some("spans more than one line (an extra line break)")
    } else if key.starts_with(char::is_whitespace) || key.ends_with(char::is_whitespace) {
        Some("starts or ends with whitespace")
    } else {
        None
    }
}

/// A key given through an environment variable (already read by clap or config).
pub fn from_env_value(value: &str, var: &str) -> Result<Secret> {
    // As in a key file: the line break a secret store keeps after the value is not the key's.
    let value = without_line_end(value);
    if value.trim().is_empty() {
        return Err(CsmError::usage(format!(
            "{var}: the variable is set but empty"
        )));
    }
    if let Some(note) = stray_whitespace(value) {
        eprintln!(
            "csm: warning: {var}: the value {note}; it is used byte for byte, so remove it unless the key really has it"
        );
    }
    Ok(Secret::new(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_are_redacted() {
        let s = Secret::new("a1b2c3d4-e5f6");
        assert!(!format!("{s:?}").contains("a1b2"));
        assert!(!format!("{s}").contains("a1b2"));
        assert_eq!(s.expose(), "a1b2c3d4-e5f6");
    }

    #[test]
    fn key_file_strips_one_newline_and_rejects_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "key-1\n").unwrap();
        assert_eq!(read_key_file(&p, "--key-file").unwrap().expose(), "key-1");
        std::fs::write(&p, "\n").unwrap();
        let err = read_key_file(&p, "--key-file").unwrap_err().to_string();
        assert!(err.contains("empty"), "{err}");
        // A byte order mark is the file's, not the key's.
        std::fs::write(&p, "\u{feff}key-1\r\n").unwrap();
        assert_eq!(read_key_file(&p, "--key-file").unwrap().expose(), "key-1");
        // Kept as it is, with a warning (stray_whitespace below).
        std::fs::write(&p, "key-1 \n").unwrap();
        assert_eq!(read_key_file(&p, "--key-file").unwrap().expose(), "key-1 ");
    }

    #[test]
    fn a_key_given_for_its_file_name_is_not_echoed() {
        let key = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d";
        let err = read_key_file(Path::new(key), "--key-file")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("a1b2") && err.contains("looks like a key"),
            "{err}"
        );
        // Base64 with a `/` in it is a key too; a file name is named as ever.
        let b64 = "3wkp5k9YRktTR08PqDN5D/gJ3KVleSao";
        let err = read_key_file(Path::new(b64), "--key-file")
            .unwrap_err()
            .to_string();
        assert!(
            !err.contains("3wkp") && err.contains("looks like a key"),
            "{err}"
        );
        for key in [
            "AbCdEfGhIjKlMnOpQrStUvWx1",
            "kit-key-0000-1111-2222-3333",
            "3wkp5k9YRktTR08PqDN5D/gJ3KVleSa",
        ] {
            let err = read_key_file(Path::new(key), "--key-file").unwrap_err();
            assert!(!err.to_string().contains(&key[..8]), "{err}");
        }
        for name in ["missing.key", "keys/prod.key", "basic-key"] {
            let err = read_key_file(Path::new(name), "--key-file").unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
        // The env value loses one line break, as a file does.
        assert_eq!(
            from_env_value("key-1\n", "CSM_ACCESS_KEY")
                .unwrap()
                .expose(),
            "key-1"
        );
        assert_eq!(
            from_env_value("key-1\r\n", "CSM_ACCESS_KEY")
                .unwrap()
                .expose(),
            "key-1"
        );
    }

    #[test]
    fn whitespace_around_a_key_is_named() {
        assert_eq!(stray_whitespace("a1b2-c3"), None);
        assert_eq!(stray_whitespace("a1 b2"), None);
        assert!(stray_whitespace("a1b2 ").unwrap().contains("whitespace"));
        assert!(stray_whitespace("\ta1b2").unwrap().contains("whitespace"));
        assert!(stray_whitespace("a1b2\n").unwrap().contains("line"));
        assert!(stray_whitespace("a1b2\r\n\r\n").unwrap().contains("line"));
    }
}
