//! Token buckets, alone (per connection, owned by the connection's state) or keyed (per
//! account, per device) with bounded memory.
//!
//! Time is Unix milliseconds passed in by the caller. A clock that goes backwards refills
//! nothing (elapsed time saturates at zero).

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Mutex, PoisonError};

/// A rate: a bucket of `capacity` tokens, refilled by one token every `refill_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Largest burst.
    pub capacity: u32,
    /// Milliseconds per token.
    pub refill_ms: u64,
}

impl Rate {
    /// `count` per `period_ms`, all of it available as a burst.
    pub fn per(count: u32, period_ms: u64) -> Self {
        let count = count.max(1);
        Self {
            capacity: count,
            refill_ms: (period_ms / u64::from(count)).max(1),
        }
    }

    /// `per_second` tokens per second with a burst of `burst`.
    pub fn per_second(per_second: u32, burst: u32) -> Self {
        Self {
            capacity: burst.max(1),
            refill_ms: (1000 / u64::from(per_second.max(1))).max(1),
        }
    }
}

/// One step of the generic cell rate algorithm (GCRA, ITU-T I.371), the integer form of a
/// token bucket that persisted quotas use: the whole state is one number, the theoretical
/// arrival time `tat` (Unix ms; `None` or a time not after `now` is a full bucket). Takes
/// one token: `Ok(new_tat)`, or `Err(ms)` until a token is there. A full bucket allows
/// `rate.capacity` requests at once, then one per `rate.refill_ms`.
pub fn gcra(tat: Option<u64>, rate: Rate, now_ms: u64) -> Result<u64, u64> {
    let tat = tat.unwrap_or(now_ms).max(now_ms);
    let tolerance = rate
        .refill_ms
        .saturating_mul(u64::from(rate.capacity.max(1)) - 1);
    let ahead = tat - now_ms;
    if ahead > tolerance {
        Err(ahead - tolerance)
    } else {
        Ok(tat.saturating_add(rate.refill_ms))
    }
}

/// A token bucket.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenBucket {
    tokens: f64,
    last_ms: u64,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: Rate, now_ms: u64) -> Self {
        Self {
            tokens: f64::from(rate.capacity),
            last_ms: now_ms,
        }
    }

    fn refill(&mut self, rate: Rate, now_ms: u64) {
        let elapsed = now_ms.saturating_sub(self.last_ms);
        if elapsed > 0 {
            let add = elapsed as f64 / rate.refill_ms as f64;
            self.tokens = (self.tokens + add).min(f64::from(rate.capacity));
            self.last_ms = now_ms;
        }
    }

    /// Takes a token, or says after how many whole seconds (at least 1) one will be there.
    pub fn try_take(&mut self, rate: Rate, now_ms: u64) -> Result<(), u32> {
        self.refill(rate, now_ms);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            // The epsilon absorbs float error (0.995 tokens at 200 s each is 1000 ms, not 1001).
            let wait_ms = ((1.0 - self.tokens) * rate.refill_ms as f64 - 1e-6).ceil();
            let secs = (wait_ms / 1000.0).ceil().max(1.0);
            Err(if secs >= f64::from(u32::MAX) {
                u32::MAX
            } else {
                secs as u32
            })
        }
    }

    /// Whether a token is available now, without taking it.
    pub fn check(&mut self, rate: Rate, now_ms: u64) -> Result<(), u32> {
        let mut probe = self.clone();
        probe.try_take(rate, now_ms)
    }

    /// When the bucket will have refilled completely (Unix ms, rounded up).
    pub fn full_at(&self, rate: Rate) -> u64 {
        let missing = (f64::from(rate.capacity) - self.tokens).max(0.0);
        let ms = (missing * rate.refill_ms as f64).ceil();
        let ms = if ms >= u64::MAX as f64 {
            u64::MAX
        } else {
            ms as u64
        };
        self.last_ms.saturating_add(ms)
    }

    /// Whether the bucket has refilled completely (it then equals a fresh bucket and can be
    /// forgotten without changing any decision).
    pub fn is_full(&self, rate: Rate, now_ms: u64) -> bool {
        let mut b = self.clone();
        b.refill(rate, now_ms);
        b.tokens >= f64::from(rate.capacity)
    }
}

/// Token buckets by key, holding at most `max_keys` buckets, exact under key flooding.
///
/// A bucket is forgotten only once it has refilled completely (it then equals a fresh
/// bucket, so forgetting it changes no decision). When `max_keys` buckets are held and none
/// is full again, a **new** key is refused (fail closed: `Err` with the seconds until the
/// first held bucket is full and its slot can be reused); keys already held keep their
/// exact buckets. So flooding the limiter with fresh keys can never reset a throttled key,
/// and memory stays bounded. The scan for full buckets runs at most once per moment a
/// bucket can become full (the earliest such time is kept), so a flood costs O(1) per
/// refused key.
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    state: Mutex<KeyedState<K>>,
}

#[derive(Debug)]
struct KeyedState<K> {
    buckets: HashMap<K, TokenBucket>,
    /// No held bucket is full before this time (Unix ms): until then a scan frees nothing.
    next_full_ms: u64,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// A limiter with the given rate and memory bound.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(1),
            state: Mutex::new(KeyedState {
                buckets: HashMap::new(),
                next_full_ms: 0,
            }),
        }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token for `key`, or returns the seconds to wait (for a new key while the
    /// limiter is full: until a slot frees).
    pub fn try_take(&self, key: &K, now_ms: u64) -> Result<(), u32> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(b) = state.buckets.get_mut(key) {
            return b.try_take(self.rate, now_ms);
        }
        if state.buckets.len() >= self.max_keys {
            if now_ms >= state.next_full_ms {
                Self::evict_full(&mut state, self.rate, now_ms);
            }
            if state.buckets.len() >= self.max_keys {
                let wait_ms = state.next_full_ms.saturating_sub(now_ms);
                return Err(u32::try_from(wait_ms.div_ceil(1000).max(1)).unwrap_or(u32::MAX));
            }
        }
        let mut bucket = TokenBucket::new(self.rate, now_ms);
        let taken = bucket.try_take(self.rate, now_ms);
        state.buckets.insert(key.clone(), bucket);
        taken
    }

    /// Drops buckets that have refilled completely (call periodically).
    pub fn evict_idle(&self, now_ms: u64) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        Self::evict_full(&mut state, self.rate, now_ms);
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .buckets
            .len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict_full(state: &mut KeyedState<K>, rate: Rate, now_ms: u64) {
        state.buckets.retain(|_, b| !b.is_full(rate, now_ms));
        state.next_full_ms = state
            .buckets
            .values()
            .map(|b| b.full_at(rate))
            .min()
            .unwrap_or(u64::MAX)
            .max(now_ms.saturating_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bursts_then_refills() {
        let rate = Rate::per(3, 600_000);
        let mut b = TokenBucket::new(rate, 0);
        for _ in 0..3 {
            b.try_take(rate, 0).unwrap();
        }
        assert_eq!(b.try_take(rate, 0), Err(200));
        assert_eq!(b.try_take(rate, 199_000), Err(1));
        b.try_take(rate, 200_000).unwrap();
        assert!(b.try_take(rate, 200_000).is_err());
        assert!(b.is_full(rate, 800_000));
        // A clock going backwards refills nothing and does not panic.
        assert!(b.try_take(rate, 100).is_err());
    }

    #[test]
    fn sends_rate() {
        let rate = Rate::per_second(50, 200);
        let mut b = TokenBucket::new(rate, 0);
        for _ in 0..200 {
            b.try_take(rate, 0).unwrap();
        }
        assert_eq!(b.try_take(rate, 0), Err(1));
        b.try_take(rate, 20).unwrap();
    }

    #[test]
    fn keyed_limiter_is_bounded_and_evicts_only_full_buckets() {
        let rate = Rate::per(1, 1000);
        let l = KeyedLimiter::new(rate, 4);
        for k in 0..4u32 {
            l.try_take(&k, 0).unwrap();
        }
        assert_eq!(l.len(), 4);
        // Key 0 is limited; a fifth key is refused while no bucket is full again.
        assert!(l.try_take(&0, 10).is_err());
        assert_eq!(l.try_take(&4, 10), Err(1));
        // Much later every bucket is full again: a new key evicts them all losslessly.
        l.try_take(&99, 10_000).unwrap();
        assert_eq!(l.len(), 1);
        // Under pressure (no full buckets) memory stays bounded.
        for k in 0..1000u32 {
            let _ = l.try_take(&k, 20_000 + u64::from(k) / 10);
            assert!(l.len() <= 4);
        }
        l.evict_idle(10_000_000);
        assert!(l.is_empty());
    }

    /// A million fresh keys (one per microsecond of virtual time, so none of the held
    /// buckets refills meanwhile) never reset a throttled key, and the limiter holds at most
    /// `max_keys` buckets throughout.
    #[test]
    fn key_flooding_never_resets_a_throttled_key() {
        let rate = Rate::per(3, 600_000);
        let max_keys = 1000;
        let l = KeyedLimiter::new(rate, max_keys);
        let target = u64::MAX;
        let t0 = 1_000_000u64;
        for _ in 0..3 {
            l.try_take(&target, t0).unwrap();
        }
        let throttled = l.try_take(&target, t0).unwrap_err();
        for k in 0..1_000_000u64 {
            let _ = l.try_take(&k, t0 + k / 1000);
            if k % 4096 == 0 {
                assert!(l.len() <= max_keys);
            }
        }
        assert!(l.len() <= max_keys);
        let now = t0 + 1000;
        let again = l.try_take(&target, now).unwrap_err();
        assert!(again >= throttled - 1, "{throttled} then {again}");
        // Once its bucket is full again it works as before.
        l.try_take(&target, t0 + 200_000).unwrap();
    }
}
