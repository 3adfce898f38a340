//! The clock and the randomness of requests. `CSM_NOW` (epoch milliseconds, epoch seconds
//! of up to 10 digits, or RFC 3339) pins the clock, so that a run can be reproduced.
//!
//! Engine code (the test-endpoint runner) does not call the functions here: it is handed a
//! [`Clock`] and an [`Entropy`], so that a caller can pin both. Commands hand it
//! [`SystemClock`] and [`SystemEntropy`], which are these functions.

use crate::protocol::hmac::to_hex_upper;
use chrono::{DateTime, TimeZone, Utc};
use rand::Rng;

pub fn now() -> DateTime<Utc> {
    pinned().unwrap_or_else(Utc::now)
}

/// `CSM_NOW`, read once: servers under load ask the time on every request, and the
/// environment does not change while csm runs.
fn pinned() -> Option<DateTime<Utc>> {
    static PINNED: std::sync::OnceLock<Option<DateTime<Utc>>> = std::sync::OnceLock::new();
    *PINNED.get_or_init(|| {
        let v = std::env::var("CSM_NOW").ok()?;
        let t = parse_now(&v);
        if t.is_none() {
            // A silently ignored pin would make a "reproducible" run quietly use the real clock.
            eprintln!("csm: warning: CSM_NOW {v:?} is neither epoch milliseconds or seconds nor RFC 3339; using the real clock");
        }
        t
    })
}

fn parse_now(v: &str) -> Option<DateTime<Utc>> {
    if let Ok(n) = v.parse::<i64>() {
        // Ten digits or fewer is seconds (`date +%s`), as a V2 timestamp is read: in
        // milliseconds it would pin the clock to January 1970.
        if v.chars().filter(char::is_ascii_digit).count() <= 10 {
            eprintln!("csm: note: CSM_NOW {v} read as epoch seconds (milliseconds have 13 digits)");
            return Utc.timestamp_opt(n, 0).single();
        }
        return Utc.timestamp_millis_opt(n).single();
    }
    DateTime::parse_from_rfc3339(v)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub fn now_ms() -> i64 {
    now().timestamp_millis()
}

/// A nonce in the marketplace's usual shape: 64 upper-case hex characters.
pub fn nonce_hex64() -> String {
    let bytes: [u8; 32] = rand::thread_rng().gen();
    to_hex_upper(&bytes)
}

/// A v4 UUID from the thread's generator (a CSPRNG seeded by the OS), not one `getrandom`
/// call each as `Uuid::new_v4` makes: `csm load` draws several per request.
pub fn uuid() -> String {
    let bytes: [u8; 16] = rand::thread_rng().gen();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// `len` random characters from A-Z a-z 0-9 (V1 IV strings, order ids).
pub fn alphanumeric(len: usize) -> String {
    rand::thread_rng()
        .sample_iter(&rand::distributions::Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// Where engine code reads the time.
pub trait Clock: std::fmt::Debug + Send + Sync {
    fn now(&self) -> DateTime<Utc>;

    fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }
}

/// Where engine code gets its nonces and ids.
pub trait Entropy: std::fmt::Debug + Send + Sync {
    /// A request nonce: 64 upper-case hex characters.
    fn nonce_hex64(&self) -> String;
    /// A random (v4) UUID in its hyphenated text form.
    fn uuid(&self) -> String;
    /// A number in `0..n` (n > 0), uniformly: generated field values (names, codes, amounts).
    fn below(&self, n: usize) -> usize;
}

/// The real clock ([`now`]: `CSM_NOW` when set).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        now()
    }
}

/// The thread's random generator ([`nonce_hex64`], [`uuid`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemEntropy;

impl Entropy for SystemEntropy {
    fn nonce_hex64(&self) -> String {
        nonce_hex64()
    }

    fn uuid(&self) -> String {
        uuid()
    }

    fn below(&self, n: usize) -> usize {
        rand::Rng::gen_range(&mut rand::thread_rng(), 0..n)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn uuids_are_random_v4_and_distinct() {
        let a = super::uuid();
        let u = uuid::Uuid::parse_str(&a).unwrap();
        assert_eq!(u.get_version_num(), 4);
        assert_eq!(u.get_variant(), uuid::Variant::RFC4122);
        assert_eq!(a, u.hyphenated().to_string());
        assert_ne!(a, super::uuid());
    }

    #[test]
    fn csm_now_takes_milliseconds_seconds_and_rfc3339() {
        let ms = super::parse_now("1710686557000").unwrap();
        assert_eq!(super::parse_now("1710686557"), Some(ms));
        assert_eq!(super::parse_now("+1710686557"), Some(ms));
        assert_eq!(super::parse_now("2024-03-17T14:42:37Z"), Some(ms));
        assert_eq!(super::parse_now("soon"), None);
    }
}
