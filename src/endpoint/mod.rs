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
pub mod url;
