//! Typed errors and the one place where outcomes become exit codes.
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | the check failed: signature mismatch, endpoint answered wrongly, license invalid |
//! | 2 | usage error or bad input (flags, files that are not what the rule says) |
//! | 3 | configuration, local I/O or journal error |
//! | 4 | network error: DNS, connect, TLS, timeout; a marketplace that kept failing (5xx) |
//! | 5 | partial: some usage records were rejected for good, the rest were accepted |
//! | 6 | license expired or not yet valid (the code is genuine, the date is wrong) |
//! | 130 | interrupted (Ctrl-C or SIGTERM): what was done is kept and reported; a second signal ends at once (130, or 143 for SIGTERM) |

use std::path::PathBuf;

/// What a command that ran to the end concluded. Errors are the other path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok,
    CheckFailed,
    Usage,
    Io,
    Network,
    Partial,
    LicenseDate,
    /// Stopped by Ctrl-C after finishing what was in flight.
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::CheckFailed => 1,
            Exit::Usage => 2,
            Exit::Io => 3,
            Exit::Network => 4,
            Exit::Partial => 5,
            Exit::LicenseDate => 6,
            Exit::Interrupted => crate::interrupt::EXIT_CODE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CsmError {
    /// Bad flags or bad input: one line naming the input, the value and the rule.
    #[error("{0}")]
    Usage(String),
    /// A configuration problem (profile file, missing key, no terminal for a prompt).
    #[error("{0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Local storage other than plain files (the usage journal, the state database).
    #[error("{0}")]
    Storage(String),
    #[error("{0}")]
    Network(String),
    /// A check failed and the command has nothing more to say than this line.
    #[error("{0}")]
    CheckFailed(String),
    /// An error and the one fix that fits it, printed on a line of its own.
    #[error("{error}")]
    Hinted { error: Box<CsmError>, hint: String },
}

impl CsmError {
    pub fn usage(msg: impl Into<String>) -> Self {
        CsmError::Usage(msg.into())
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CsmError::Io {
            path: path.into(),
            source,
        }
    }

    /// The same error with the fix that fits it, for the `hint:` line.
    pub fn with_hint(self, hint: impl Into<String>) -> Self {
        CsmError::Hinted {
            error: Box::new(self),
            hint: hint.into(),
        }
    }

    pub fn hint(&self) -> Option<&str> {
        match self {
            CsmError::Hinted { hint, .. } => Some(hint),
            _ => None,
        }
    }

    pub fn exit(&self) -> Exit {
        match self {
            CsmError::Hinted { error, .. } => error.exit(),
            CsmError::Usage(_) => Exit::Usage,
            CsmError::Config(_) | CsmError::Io { .. } | CsmError::Storage(_) => Exit::Io,
            CsmError::Network(_) => Exit::Network,
            CsmError::CheckFailed(_) => Exit::CheckFailed,
        }
    }
}

impl From<rusqlite::Error> for CsmError {
    fn from(e: rusqlite::Error) -> Self {
        CsmError::Storage(format!("database: {e}"))
    }
}

pub type Result<T, E = CsmError> = std::result::Result<T, E>;

/// An error and its causes on one line, `outer: cause: root`, each text once: libraries
/// (hyper, reqwest) often repeat a cause inside their own message.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        cur = c.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct E(&'static str, Option<Box<E>>);
    impl std::fmt::Display for E {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl std::error::Error for E {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    #[test]
    fn error_chain_joins_causes_once() {
        let root = E("connection refused", None);
        let mid = E(
            "tcp connect error: connection refused",
            Some(Box::new(root)),
        );
        let top = E("error sending request", Some(Box::new(mid)));
        assert_eq!(
            error_chain(&top),
            "error sending request: tcp connect error: connection refused"
        );
    }
}
