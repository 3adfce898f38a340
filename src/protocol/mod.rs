//! Pure protocol code: canonical forms, signatures, V1 crypto and RSA-OAEP. No I/O, no clock, no printing.
//! Every function here is checked against the known-answer vectors in `tests/vectors/`.

pub mod apig;
pub mod capture;
pub mod doctor;
pub mod hmac;
pub mod json;
pub mod rsa_oaep;
pub mod sso;
pub mod usage_sig;
pub mod v1;
pub mod v1_crypto;
pub mod v2;

/// A protocol-level input problem: names the input, the value and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ProtocolError(pub String);

impl ProtocolError {
    pub fn new(msg: impl Into<String>) -> Self {
        ProtocolError(msg.into())
    }
}

impl From<ProtocolError> for crate::error::CsmError {
    fn from(e: ProtocolError) -> Self {
        crate::error::CsmError::Usage(e.0)
    }
}

/// Placeholder written where an access key sits inside a string shown to people
/// (V2 canonical requests begin with the key itself).
pub const KEY_PLACEHOLDER: &str = "<access-key>";
