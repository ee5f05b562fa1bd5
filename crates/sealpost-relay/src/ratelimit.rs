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

    /// Whether the bucket has refilled completely (it then equals a fresh bucket and can be
    /// forgotten without changing any decision).
    pub fn is_full(&self, rate: Rate, now_ms: u64) -> bool {
        let mut b = self.clone();
        b.refill(rate, now_ms);
        b.tokens >= f64::from(rate.capacity)
    }
}

/// Token buckets by key, holding at most `max_keys` buckets. When full, buckets that have
/// refilled completely are dropped first (losslessly); if that is not enough, the least
/// recently used half is dropped (which can only make the limiter more lenient for those
/// keys, never stricter).
#[derive(Debug)]
pub struct KeyedLimiter<K> {
    rate: Rate,
    max_keys: usize,
    buckets: Mutex<HashMap<K, TokenBucket>>,
}

impl<K: Eq + Hash + Clone> KeyedLimiter<K> {
    /// A limiter with the given rate and memory bound.
    pub fn new(rate: Rate, max_keys: usize) -> Self {
        Self {
            rate,
            max_keys: max_keys.max(2),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The rate.
    pub fn rate(&self) -> Rate {
        self.rate
    }

    /// Takes a token for `key`, or returns the seconds to wait.
    pub fn try_take(&self, key: &K, now_ms: u64) -> Result<(), u32> {
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        if !map.contains_key(key) && map.len() >= self.max_keys {
            Self::evict(&mut map, self.rate, self.max_keys, now_ms);
        }
        map.entry(key.clone())
            .or_insert_with(|| TokenBucket::new(self.rate, now_ms))
            .try_take(self.rate, now_ms)
    }

    /// Drops buckets that have refilled completely (call periodically).
    pub fn evict_idle(&self, now_ms: u64) {
        let mut map = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let rate = self.rate;
        map.retain(|_, b| !b.is_full(rate, now_ms));
    }

    /// Buckets currently held.
    pub fn len(&self) -> usize {
        self.buckets
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether no bucket is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn evict(map: &mut HashMap<K, TokenBucket>, rate: Rate, max: usize, now_ms: u64) {
        map.retain(|_, b| !b.is_full(rate, now_ms));
        if map.len() >= max {
            let mut ages: Vec<u64> = map.values().map(|b| b.last_ms).collect();
            ages.sort_unstable();
            let cutoff = ages.get(ages.len() / 2).copied().unwrap_or(u64::MAX);
            map.retain(|_, b| b.last_ms > cutoff);
        }
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
    fn keyed_limiter_is_bounded_and_evicts_idle_first() {
        let rate = Rate::per(1, 1000);
        let l = KeyedLimiter::new(rate, 4);
        for k in 0..4u32 {
            l.try_take(&k, 0).unwrap();
        }
        assert_eq!(l.len(), 4);
        // Key 0 is limited.
        assert!(l.try_take(&0, 10).is_err());
        // Much later every bucket is full again: a new key evicts them all losslessly.
        l.try_take(&99, 10_000).unwrap();
        assert_eq!(l.len(), 1);
        // Under pressure (no full buckets) memory stays bounded.
        for k in 0..1000u32 {
            let _ = l.try_take(&k, 20_000 + u64::from(k));
            assert!(l.len() <= 4);
        }
        l.evict_idle(10_000_000);
        assert!(l.is_empty());
    }
}
