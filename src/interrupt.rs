//! Ctrl-C for the commands that work through a list (`usage upload|replay|agent`,
//! `test-endpoint`, `load`): the first SIGINT or SIGTERM (a CI job cancelled, a service
//! stopped) asks them to stop starting work, finish what is in flight and report where things
//! are (exit 130); a second one ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit code after an interrupt (128 + SIGINT), as shells report it.
pub const EXIT_CODE: u8 = 130;
/// A second SIGTERM's (128 + SIGTERM).
const EXIT_CODE_TERM: u8 = 143;

#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    asked: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the SIGINT and SIGTERM handling; without it (a platform that refuses) they
    /// simply end the process as before.
    pub fn install() -> Interrupt {
        let asked = Arc::new(AtomicBool::new(false));
        for (signal, code) in [
            (signal_hook::consts::SIGINT, EXIT_CODE),
            (signal_hook::consts::SIGTERM, EXIT_CODE_TERM),
        ] {
            // Registered first, so it sees the flag as it was before this signal: a second
            // signal exits at once.
            let _ = signal_hook::flag::register_conditional_shutdown(
                signal,
                i32::from(code),
                Arc::clone(&asked),
            );
            let _ = signal_hook::flag::register(signal, Arc::clone(&asked));
        }
        Interrupt { asked }
    }

    /// A stop that never comes (library callers and tests that do not handle signals).
    pub fn never() -> Interrupt {
        Interrupt::default()
    }

    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}
