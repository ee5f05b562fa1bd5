//! Refused connections: each is counted by reason (`sealpost_connections_refused_total`), and
//! the log gets a summary at most once per [`SUMMARY_INTERVAL`], so that a flood of refused
//! connections (a client retrying against the connection limit, a scan without ALPN
//! `sealpost/1`) cannot flood the log. The first refusal after a quiet interval is logged at
//! once; the ones after it are counted into the next summary, written with the first refusal
//! after the interval has passed (the counter has them meanwhile).

use std::time::Duration;
use tokio::time::Instant;

/// At most one summary line per this interval.
pub(super) const SUMMARY_INTERVAL: Duration = Duration::from_secs(10);

/// Why a connection was refused before it was served.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Refusal {
    /// `limits.max_connections` are open.
    ConnectionLimit,
    /// The (validated) address has `limits.max_connections_per_ip` open.
    AddressLimit,
    /// Sending a QUIC Retry failed.
    RetryFailed,
    /// The handshake did not negotiate ALPN `sealpost/1`.
    Alpn,
    /// The relay is shutting down.
    ShuttingDown,
}

impl Refusal {
    const ALL: [Self; 5] = [
        Self::ConnectionLimit,
        Self::AddressLimit,
        Self::RetryFailed,
        Self::Alpn,
        Self::ShuttingDown,
    ];

    /// The metric label and the key of the summary.
    pub(super) fn label(self) -> &'static str {
        match self {
            Self::ConnectionLimit => "connection_limit",
            Self::AddressLimit => "address_limit",
            Self::RetryFailed => "retry_failed",
            Self::Alpn => "alpn",
            Self::ShuttingDown => "shutting_down",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Counts of refusals by reason, in [`Refusal::ALL`] order.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Summary([u64; Refusal::ALL.len()]);

impl Summary {
    /// The count of `why`.
    pub(super) fn count(&self, why: Refusal) -> u64 {
        self.0.get(why.index()).copied().unwrap_or(0)
    }
}

/// `connection_limit=120 alpn=3`: the reasons with a count.
impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut first = true;
        for why in Refusal::ALL {
            let n = self.count(why);
            if n > 0 {
                write!(f, "{}{}={n}", if first { "" } else { " " }, why.label())?;
                first = false;
            }
        }
        Ok(())
    }
}

/// The summary limiter. Pure: the time is passed in.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    counts: Summary,
    last: Option<Instant>,
}

impl RefusalLog {
    /// Counts a refusal at `now`. Returns the summary to log (the refusals since the last
    /// summary, this one included) when none was logged in the last [`SUMMARY_INTERVAL`].
    pub(super) fn refused(&mut self, why: Refusal, now: Instant) -> Option<Summary> {
        if let Some(n) = self.counts.0.get_mut(why.index()) {
            *n = n.saturating_add(1);
        }
        if self
            .last
            .is_some_and(|t| now.saturating_duration_since(t) < SUMMARY_INTERVAL)
        {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.counts))
    }
}

impl super::Shared {
    /// A connection was refused: count it, and log a summary if one is due.
    pub(super) fn refused(&self, why: Refusal) {
        crate::metrics::connection_refused(why.label());
        let summary = self
            .refusals
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .refused(why, Instant::now());
        if let Some(summary) = summary {
            tracing::warn!(
                refused = %summary,
                "connections refused since the last summary (at most one line per {} s)",
                SUMMARY_INTERVAL.as_secs()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A flood logs one summary per interval, with every refusal counted exactly once; no
    /// time passes for real (the instants are made up).
    #[test]
    fn a_flood_logs_one_summary_per_interval() {
        let mut log = RefusalLog::default();
        let t0 = Instant::now();
        // The first refusal is logged at once.
        let first = log.refused(Refusal::ConnectionLimit, t0).unwrap();
        assert_eq!(first.count(Refusal::ConnectionLimit), 1);
        assert_eq!(first.to_string(), "connection_limit=1");
        // A flood within the interval: nothing logged.
        let mut logged = Vec::new();
        for i in 0..10_000u32 {
            let at = t0 + Duration::from_micros(u64::from(i) * 900);
            let why = if i % 100 == 0 {
                Refusal::Alpn
            } else {
                Refusal::ConnectionLimit
            };
            logged.extend(log.refused(why, at));
        }
        assert_eq!(logged, Vec::new());
        // The first refusal after the interval logs the counts since the first line.
        let s = log
            .refused(Refusal::AddressLimit, t0 + SUMMARY_INTERVAL)
            .unwrap();
        assert_eq!(s.count(Refusal::ConnectionLimit), 9_900);
        assert_eq!(s.count(Refusal::Alpn), 100);
        assert_eq!(s.count(Refusal::AddressLimit), 1);
        assert_eq!(
            s.to_string(),
            "connection_limit=9900 address_limit=1 alpn=100"
        );
        // And the next interval starts afresh.
        assert_eq!(
            log.refused(Refusal::ShuttingDown, t0 + SUMMARY_INTERVAL * 3 / 2),
            None
        );
        let s = log
            .refused(Refusal::RetryFailed, t0 + SUMMARY_INTERVAL * 2)
            .unwrap();
        assert_eq!(s.to_string(), "retry_failed=1 shutting_down=1");
    }
}
