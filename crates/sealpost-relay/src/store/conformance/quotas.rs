//! Conformance cases: Persisted quotas.

use super::*;

fn quota(kind: QuotaKind, subject: &str, capacity: u32, refill_ms: u64) -> QuotaCheck {
    QuotaCheck {
        kind,
        subject: subject.into(),
        rate: crate::ratelimit::Rate {
            capacity,
            refill_ms,
        },
    }
}

pub(crate) async fn quotas<S: Store>(s: &S) {
    let t = 1_000_000u64;
    let number = quota(QuotaKind::CodeNumber, "+15550000001", 2, 1000);
    let global = quota(QuotaKind::CodeGlobal, "", 3, 10_000);
    // A burst of `capacity`, then refused with the wait for one more.
    for _ in 0..2 {
        assert_eq!(
            s.take_quotas(&[number.clone(), global.clone()], t)
                .await
                .unwrap(),
            QuotaOutcome::Taken
        );
    }
    assert_eq!(
        s.take_quotas(&[number.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 0,
            retry_after_ms: 1000
        }
    );
    // All or nothing: the refused request charged neither quota; another subject of the
    // same kind is independent; the global quota has one request left.
    let other = quota(QuotaKind::CodeNumber, "+15550000002", 2, 1000);
    assert_eq!(
        s.take_quotas(&[other.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    assert_eq!(
        s.take_quotas(&[other.clone(), global.clone()], t)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 1,
            retry_after_ms: 10_000
        }
    );
    // Refused by the global quota, the number's quota was not charged.
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&other), t)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    // Kinds are separate even with the same subject.
    let pair = quota(QuotaKind::FetchTarget, "+15550000001", 1, 1000);
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&pair), t).await.unwrap(),
        QuotaOutcome::Taken
    );
    // Refills with time: one per refill period.
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&number), t + 999)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded {
            index: 0,
            retry_after_ms: 1
        }
    );
    assert_eq!(
        s.take_quotas(std::slice::from_ref(&number), t + 1000)
            .await
            .unwrap(),
        QuotaOutcome::Taken
    );
    // The sweep forgets only quotas that are full again (no decision changes).
    s.sweep(t + 1500, u64::MAX).await.unwrap();
    assert!(matches!(
        s.take_quotas(std::slice::from_ref(&number), t + 1500)
            .await
            .unwrap(),
        QuotaOutcome::Exceeded { .. }
    ));
    s.sweep(t + 100_000, u64::MAX).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            s.take_quotas(std::slice::from_ref(&number), t + 100_000)
                .await
                .unwrap(),
            QuotaOutcome::Taken
        );
    }
}
