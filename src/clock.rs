//! The clock and the randomness of requests. `CSM_NOW` (epoch milliseconds or RFC 3339)
//! pins the clock, so that a run can be reproduced.

use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;

pub fn now() -> DateTime<Utc> {
    if let Ok(v) = std::env::var("CSM_NOW") {
        if let Ok(ms) = v.parse::<i64>() {
            if let Some(t) = Utc.timestamp_millis_opt(ms).single() {
                return t;
            }
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(&v) {
            return t.with_timezone(&Utc);
        }
    }
    Utc::now()
}

pub fn now_ms() -> i64 {
    now().timestamp_millis()
}

/// A nonce in the marketplace's usual shape: 64 upper-case hex characters.
pub fn nonce_hex64() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    hex::encode_upper(bytes)
}

pub fn uuid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `len` random characters from A-Z a-z 0-9 (V1 IV strings, order ids).
pub fn alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}
