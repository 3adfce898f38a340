//! The usage push API of the stand-in marketplace.

use super::Marketplace;
use crate::server::{Request, Response};
use rusqlite::Connection;

pub fn init_schema(_conn: &Connection) -> rusqlite::Result<()> {
    Ok(())
}

/// Answers the requests this module owns; None for any other path.
pub fn route(_m: &Marketplace, _req: &Request) -> Option<Response> {
    None
}
