//! The nonces the merchant has seen within the replay window. A nonce older than the window
//! is refused by its timestamp anyway, so it is forgotten: the cache holds the requests of
//! one window (and, per shard, the few that expired since it was last touched), and
//! forgetting costs O(1) per request (oldest first, in arrival order) however many requests
//! the window holds.

use ahash::{AHashSet as HashSet, RandomState};
use std::collections::VecDeque;

pub struct Nonces {
    /// Chosen by the digest. A full table grows by rehashing everything it holds at once,
    /// and every reply waits meanwhile: one table of a million nonces stalled the merchant
    /// for 100 ms and more under load; a shard is a sixty-fourth of that.
    shards: Vec<Shard>,
    /// Keys the digest, drawn at random when the merchant starts.
    key: RandomState,
}

#[derive(Default)]
struct Shard {
    /// A keyed 64-bit digest of each nonce rather than the nonce: 8 bytes a request however
    /// long the nonce, and nothing allocated for it. A fresh nonce is taken for a replay
    /// only if its digest is one of those held: at 30,000 requests a second a 60 s window
    /// holds 1.8 million, a chance of 1 in 10^13 a request (one fresh request refused in
    /// about 11 years at that rate); a replay is never let through. Every request writes
    /// this cache: the fewer bytes an entry, the fewer cache misses and fresh pages a request
    /// costs.
    seen: HashSet<u64>,
    /// (timestamp ms, digest) in arrival order. Timestamps within one window may arrive out
    /// of order; an old one behind a newer one is forgotten a little later, never early.
    order: VecDeque<(i64, u64)>,
}

const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;

impl Default for Nonces {
    fn default() -> Self {
        Nonces {
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            key: RandomState::new(),
        }
    }
}

impl Nonces {
    /// Records `nonce` (sent with timestamp `ts`) unless it was seen: false for a replay.
    /// Nonces with a timestamp before `horizon` are forgotten first.
    pub fn insert(&mut self, nonce: &str, ts: i64, horizon: i64) -> bool {
        let digest = self.key.hash_one(nonce);
        // The top bits choose the shard. The shard's table hashes the digest again with a key
        // of its own: taken as it is, the digest would give every entry of a shard the same
        // top bits, which hashbrown uses to tell entries apart within a group.
        let shard = &mut self.shards[(digest >> (64 - SHARD_BITS)) as usize];
        while shard.order.front().is_some_and(|(t, _)| *t < horizon) {
            if let Some((_, old)) = shard.order.pop_front() {
                shard.seen.remove(&old);
            }
        }
        if !shard.seen.insert(digest) {
            return false;
        }
        shard.order.push_back((ts, digest));
        true
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards.iter().map(|s| s.seen.len()).sum()
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
        // A window's worth, and a few per shard that expired since it was last touched.
        assert!(n.len() <= 10_000 + 8 * SHARDS, "{}", n.len());
        assert!(n.len() >= 10_000, "{}", n.len());
        // Nothing within the window was forgotten.
        for i in 90_000..100_000i64 {
            assert!(!n.insert(&format!("n{i}"), i, 100_000 - 10_000), "n{i}");
        }
    }
}
