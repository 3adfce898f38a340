//! Ctrl-C for the commands that work through a list (`usage upload|replay`,
//! `test-endpoint`): the first SIGINT asks them to stop starting work, finish what is in
//! flight and report where things are (exit 130); a second SIGINT ends the process at once.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// The exit code after an interrupt (128 + SIGINT), as shells report it.
pub const EXIT_CODE: u8 = 130;

#[derive(Debug, Clone, Default)]
pub struct Interrupt {
    asked: Arc<AtomicBool>,
}

impl Interrupt {
    /// Installs the SIGINT handling; without it (a platform that refuses) Ctrl-C simply
    /// ends the process as before.
    pub fn install() -> Interrupt {
        let asked = Arc::new(AtomicBool::new(false));
        // Registered first, so it sees the flag as it was before this signal: a second
        // SIGINT exits at once.
        let _ = signal_hook::flag::register_conditional_shutdown(
            signal_hook::consts::SIGINT,
            i32::from(EXIT_CODE),
            Arc::clone(&asked),
        );
        let _ = signal_hook::flag::register(signal_hook::consts::SIGINT, Arc::clone(&asked));
        Interrupt { asked }
    }

    /// Also asks for a stop on SIGTERM (a service manager's stop: `usage agent`).
    pub fn with_sigterm(self) -> Interrupt {
        let _ = signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(&self.asked));
        self
    }

    /// A stop that never comes (library callers and tests that do not handle signals).
    pub fn never() -> Interrupt {
        Interrupt::default()
    }

    pub fn asked(&self) -> bool {
        self.asked.load(Ordering::Relaxed)
    }
}
