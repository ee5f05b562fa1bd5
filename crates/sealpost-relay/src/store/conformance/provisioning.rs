//! Conformance cases for provisioning ids (spec/relay.md 3.11).

use super::NOW;
use crate::store::Store;
use std::sync::Arc;

const TTL: u64 = 600_000;

/// Open, leave one envelope, take it once; expiry; unknown ids; the sweep.
pub(crate) async fn provisioning<S: Store>(s: &S) {
    let id = [1u8; 16];
    s.open_provisioning(&id, NOW + TTL).await.unwrap();
    // Opening the same id again is refused and changes nothing.
    assert!(s.open_provisioning(&id, NOW + 2 * TTL).await.is_err());
    // Nothing to take yet.
    assert_eq!(s.take_provisioning(&id, NOW).await.unwrap(), None);
    // Unknown ids take nothing.
    assert!(!s.put_provisioning(&[2; 16], b"x", NOW).await.unwrap());
    // One envelope per id.
    assert!(s.put_provisioning(&id, b"sealed one", NOW).await.unwrap());
    assert!(!s.put_provisioning(&id, b"sealed two", NOW).await.unwrap());
    // Taken once, then gone (also for another put).
    assert_eq!(
        s.take_provisioning(&id, NOW + 1).await.unwrap().as_deref(),
        Some(&b"sealed one"[..])
    );
    assert_eq!(s.take_provisioning(&id, NOW + 1).await.unwrap(), None);
    assert!(!s.put_provisioning(&id, b"again", NOW + 1).await.unwrap());

    // Expiry: an id is usable strictly before `expires_at`.
    let late = [3u8; 16];
    s.open_provisioning(&late, NOW + TTL).await.unwrap();
    assert!(!s.put_provisioning(&late, b"late", NOW + TTL).await.unwrap());
    let filled = [4u8; 16];
    s.open_provisioning(&filled, NOW + TTL).await.unwrap();
    assert!(s.put_provisioning(&filled, b"in time", NOW).await.unwrap());
    assert_eq!(s.take_provisioning(&filled, NOW + TTL).await.unwrap(), None);
    // The sweep deletes expired ids: a new open of the same id then works again.
    s.sweep(NOW + TTL, u64::MAX).await.unwrap();
    s.open_provisioning(&late, NOW + 3 * TTL).await.unwrap();
    s.open_provisioning(&filled, NOW + 3 * TTL).await.unwrap();
    // An id that is not yet expired survives the sweep.
    let live = [5u8; 16];
    s.open_provisioning(&live, NOW + 10 * TTL).await.unwrap();
    s.sweep(NOW + 4 * TTL, u64::MAX).await.unwrap();
    assert!(
        s.put_provisioning(&live, b"kept", NOW + 4 * TTL)
            .await
            .unwrap()
    );
}

/// Many concurrent puts and takes of one id: exactly one envelope is stored and it is
/// taken exactly once.
pub(crate) async fn concurrent_provisioning<S: Store + 'static>(s: Arc<S>) {
    let id = [9u8; 16];
    s.open_provisioning(&id, NOW + TTL).await.unwrap();
    let puts: Vec<_> = (0..16u8)
        .map(|i| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.put_provisioning(&id, &[i; 8], NOW).await.unwrap() })
        })
        .collect();
    let mut stored = 0;
    for p in puts {
        stored += usize::from(p.await.unwrap());
    }
    assert_eq!(stored, 1, "one envelope per provisioning id");
    let takes: Vec<_> = (0..16)
        .map(|_| {
            let s = Arc::clone(&s);
            tokio::spawn(async move { s.take_provisioning(&id, NOW).await.unwrap() })
        })
        .collect();
    let mut taken = Vec::new();
    for t in takes {
        taken.extend(t.await.unwrap());
    }
    assert_eq!(taken.len(), 1, "an envelope is taken once");
    assert_eq!(taken[0].len(), 8);
}
