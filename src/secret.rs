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
    let bytes = crate::files::read_limited(path, crate::files::KEY_LIMIT, what)?;
    let raw = String::from_utf8(bytes).map_err(|_| {
        CsmError::usage(format!(
            "{what} {}: the key file is not UTF-8 text",
            path.display()
        ))
    })?;
    let raw = raw.strip_prefix('\u{feff}').unwrap_or(&raw);
    let key = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(raw);
    if key.trim().is_empty() {
        return Err(CsmError::usage(format!(
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
    fn whitespace_around_a_key_is_named() {
        assert_eq!(stray_whitespace("a1b2-c3"), None);
        assert_eq!(stray_whitespace("a1 b2"), None);
        assert!(stray_whitespace("a1b2 ").unwrap().contains("whitespace"));
        assert!(stray_whitespace("\ta1b2").unwrap().contains("whitespace"));
        assert!(stray_whitespace("a1b2\n").unwrap().contains("line"));
        assert!(stray_whitespace("a1b2\r\n\r\n").unwrap().contains("line"));
    }
}
