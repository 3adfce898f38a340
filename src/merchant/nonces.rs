//! The nonces the merchant has seen within the replay window. A nonce older than the window
//! is refused by its timestamp anyway, so it is forgotten: the cache holds at most the
//! requests of one window, and forgetting costs O(1) per request (oldest first, in arrival
//! order) however many requests the window holds.

use ahash::{AHashSet as HashSet, RandomState};
use std::collections::VecDeque;

pub struct Nonces {
    /// A keyed 128-bit digest of each nonce rather than the nonce: 16 bytes a request however
    /// long the nonce, and nothing allocated for it. At 30,000 requests a second a 60 s window
    /// holds 1.8 million; two of them share a digest with a chance of about 10^-26.
    seen: HashSet<u128>,
    /// (timestamp ms, digest) in arrival order. Timestamps within one window may arrive out
    /// of order; an old one behind a newer one is forgotten a little later, never early.
    order: VecDeque<(i64, u128)>,
    /// The digest's two halves: keys drawn at random when the merchant starts.
    keys: (RandomState, RandomState),
}

/// Room for this many nonces from the start (about a minute at 17,000 requests a second;
/// the pages are only taken as they fill). A full table grows by rehashing every nonce it
/// holds at once, and every reply waits meanwhile: at a million nonces, milliseconds that
/// show in a load test's latencies.
const ROOM: usize = 1 << 20;

impl Default for Nonces {
    fn default() -> Self {
        Nonces {
            seen: HashSet::with_capacity(ROOM),
            order: VecDeque::with_capacity(ROOM),
            keys: Default::default(),
        }
    }
}

impl Nonces {
    /// Records `nonce` (sent with timestamp `ts`) unless it was seen: false for a replay.
    /// Nonces with a timestamp before `horizon` are forgotten first.
    pub fn insert(&mut self, nonce: &str, ts: i64, horizon: i64) -> bool {
        while self.order.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, old)) = self.order.pop_front() {
                self.seen.remove(&old);
            }
        }
        let digest =
            u128::from(self.keys.0.hash_one(nonce)) << 64 | u128::from(self.keys.1.hash_one(nonce));
        if !self.seen.insert(digest) {
            return false;
        }
        self.order.push_back((ts, digest));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_is_refused_within_the_window_and_forgotten_after_it() {
        let mut n = Nonces::default();
        assert!(n.insert("a", 1_000, 0));
        assert!(!n.insert("a", 1_500, 0));
        assert!(n.insert("b", 2_000, 0));
        // The window moved past "a" (ts 1000): it is forgotten, "b" is still held.
        assert!(n.insert("c", 3_000, 1_001));
        assert_eq!(n.len(), 2);
        assert!(!n.insert("b", 3_100, 1_001));
        assert!(n.insert("a", 3_200, 1_001));
    }

    #[test]
    fn the_cache_holds_one_window_of_requests() {
        let mut n = Nonces::default();
        // One request a millisecond for 100 s, with a 10 s window.
        for i in 0..100_000i64 {
            assert!(n.insert(&format!("n{i}"), i, i - 10_000));
        }
        assert!(n.len() <= 10_001, "{}", n.len());
        assert!(n.len() >= 10_000, "{}", n.len());
    }
}
