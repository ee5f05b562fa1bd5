//! The outbox's retry policy (spec/client-store.md section 10): one queue per recipient
//! account, bounded attempts with exponential backoff per message. Pure bookkeeping with the
//! time passed in; the send loop in `client/sending.rs` does the I/O.

use crate::content::MessageId;
use sealpost_wire::AccountId;
use std::collections::HashMap;
use std::time::Duration;
use tokio::time::Instant;

/// Transient failures of one message before it is given up with
/// [`crate::ClientError::SendAttemptsExhausted`].
pub const MAX_SEND_ATTEMPTS: u32 = 8;
/// Wait before the second attempt at a message; doubled after every further failure.
pub const SEND_RETRY_INITIAL: Duration = Duration::from_secs(1);
/// Longest wait between two attempts at a message (a relay's `retry_after` may ask more).
pub const SEND_RETRY_MAX: Duration = Duration::from_secs(300);
/// Most outbox entries read per round of the send loop (bounds memory: an entry holds up to
/// eight envelopes). Entries further back are read once earlier ones have left.
pub const OUTBOX_SCAN_LIMIT: usize = 256;

/// A recipient whose head message failed transiently and waits.
#[derive(Debug)]
struct Waiting {
    message: MessageId,
    attempts: u32,
    until: Instant,
}

/// What to do after a transient failure.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try the message again at this time; the recipient's later messages wait behind it.
    RetryAt(Instant),
    /// Give the message up: it failed this many times.
    GiveUp(u32),
}

/// Per-recipient retry state, kept for the life of the send loop (attempts are counted per
/// run of the client; a restart starts counting again).
#[derive(Debug, Default)]
pub(crate) struct Retries {
    waiting: HashMap<AccountId, Waiting>,
}

impl Retries {
    /// Whether `recipient`'s queue may be tried at `now`.
    pub(crate) fn ready(&self, recipient: &AccountId, now: Instant) -> bool {
        self.waiting.get(recipient).is_none_or(|w| w.until <= now)
    }

    /// Records a transient failure of `message` (the head of `recipient`'s queue).
    /// `retry_after` is the relay's request, if any; the wait is the larger of it and the
    /// backoff.
    pub(crate) fn failed(
        &mut self,
        recipient: &AccountId,
        message: MessageId,
        now: Instant,
        retry_after: Option<Duration>,
    ) -> Verdict {
        let attempts = match self.waiting.get(recipient) {
            Some(w) if w.message == message => w.attempts.saturating_add(1),
            _ => 1,
        };
        if attempts >= MAX_SEND_ATTEMPTS {
            self.waiting.remove(recipient);
            return Verdict::GiveUp(attempts);
        }
        let backoff = SEND_RETRY_INITIAL
            .saturating_mul(1 << (attempts - 1).min(16))
            .min(SEND_RETRY_MAX);
        let until = now + backoff.max(retry_after.unwrap_or_default());
        self.waiting.insert(
            recipient.clone(),
            Waiting {
                message,
                attempts,
                until,
            },
        );
        Verdict::RetryAt(until)
    }

    /// The head message of `recipient` left the outbox (delivered or given up).
    pub(crate) fn done(&mut self, recipient: &AccountId) {
        self.waiting.remove(recipient);
    }

    /// The earliest time a waiting recipient may be tried again.
    pub(crate) fn next_ready(&self) -> Option<Instant> {
        self.waiting.values().map(|w| w.until).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acct(s: &str) -> AccountId {
        AccountId::new(s).unwrap()
    }

    #[test]
    fn attempts_are_bounded_per_message_and_recipients_are_independent() {
        let (bad, good) = (acct("+15550007001"), acct("+15550007002"));
        let (m1, m2) = (
            MessageId::from_bytes([1; 16]),
            MessageId::from_bytes([2; 16]),
        );
        let mut r = Retries::default();
        let mut now = Instant::now();
        let mut waits = Vec::new();
        for _ in 1..MAX_SEND_ATTEMPTS {
            let Verdict::RetryAt(at) = r.failed(&bad, m1, now, None) else {
                panic!("gave up too early");
            };
            assert!(!r.ready(&bad, now));
            assert!(!r.ready(&bad, at - Duration::from_millis(1)));
            assert!(r.ready(&bad, at));
            // The other recipient is never held up.
            assert!(r.ready(&good, now));
            waits.push(at - now);
            now = at;
        }
        assert_eq!(
            waits,
            [1, 2, 4, 8, 16, 32, 64].map(Duration::from_secs).to_vec()
        );
        assert_eq!(
            r.failed(&bad, m1, now, None),
            Verdict::GiveUp(MAX_SEND_ATTEMPTS)
        );
        assert!(r.ready(&bad, now));
        // The next message of the recipient starts with a fresh count.
        assert!(matches!(r.failed(&bad, m2, now, None), Verdict::RetryAt(_)));
        r.done(&bad);
        assert!(r.ready(&bad, now));
        assert_eq!(r.next_ready(), None);
    }

    #[test]
    fn the_relays_retry_after_is_respected() {
        let who = acct("+15550007003");
        let m = MessageId::from_bytes([3; 16]);
        let mut r = Retries::default();
        let now = Instant::now();
        assert_eq!(
            r.failed(&who, m, now, Some(Duration::from_secs(30))),
            Verdict::RetryAt(now + Duration::from_secs(30))
        );
        assert_eq!(r.next_ready(), Some(now + Duration::from_secs(30)));
        // A shorter request than the backoff does not shorten it.
        assert_eq!(
            r.failed(&who, m, now, Some(Duration::from_millis(10))),
            Verdict::RetryAt(now + Duration::from_secs(2))
        );
    }
}
