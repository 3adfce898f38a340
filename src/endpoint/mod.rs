//! test-endpoint: suites, checks and verdicts (judging replies as the marketplace does).
//!
//! [`request`] builds signed callbacks from the catalog, [`client`] sends them within a time
//! budget and a size cap, [`judge`] applies the debugging page's rules to one reply,
//! [`suites`] runs whole conversations and [`report`] renders the rows.

pub mod client;
pub mod judge;
pub mod report;
pub mod request;
pub mod suites;

/// `println!` that stops quietly when stdout is closed (`csm … | head`) instead of
/// panicking with a backtrace.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
