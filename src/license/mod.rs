//! License codes: the seller's own signed format and marketplace-shaped test codes.
//! No clock: callers pass the day to judge and the random bytes to use. The only I/O is
//! reading and writing key files (`keys`).

pub mod base32;
pub mod batch;
pub mod code;
pub mod issue;
pub mod keys;
pub mod openapi;
pub mod payload;
pub mod verdict;

pub use code::{issue_code, issue_file, issue_short, marketplace_code, parse, Parsed};
pub use keys::{KeyId, Keyring, PrivateKey, PublicKey, ShortSecret};
pub use payload::Payload;
pub use verdict::{judge, validate, Kind, Policy, Verdict};
