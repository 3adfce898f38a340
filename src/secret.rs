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

/// Reads a key file: its content without one trailing newline. `-` reads standard input.
/// `what` names the flag in error messages, e.g. `--key-file`.
pub fn read_key_file(path: &Path, what: &str) -> Result<Secret> {
    let raw = if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| CsmError::io("<stdin>", e))?;
        s
    } else {
        let bytes = std::fs::read(path)
            .map_err(|e| CsmError::io(format!("{what} {}", path.display()), e))?;
        String::from_utf8(bytes).map_err(|_| {
            CsmError::usage(format!(
                "{what} {}: the key file is not UTF-8 text",
                path.display()
            ))
        })?
    };
    let key = raw
        .strip_suffix("\r\n")
        .or_else(|| raw.strip_suffix('\n'))
        .unwrap_or(&raw);
    if key.trim().is_empty() {
        return Err(CsmError::usage(format!(
            "{what} {}: the key file is empty (it must hold the access key)",
            path.display()
        )));
    }
    Ok(Secret::new(key))
}

/// A key given through an environment variable (already read by clap or config).
pub fn from_env_value(value: &str, var: &str) -> Result<Secret> {
    if value.trim().is_empty() {
        return Err(CsmError::usage(format!(
            "{var}: the variable is set but empty"
        )));
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
    }
}
