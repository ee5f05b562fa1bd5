//! Conformance cases: PIN vaults and their evaluations, one at a time and concurrently.

use super::*;

pub(crate) fn vault_row(id: u8) -> VaultRow {
    VaultRow {
        vault_id: [id; 16],
        share: zeroize::Zeroizing::new([id; 33]),
        success_verifier: [id.wrapping_add(1); 32],
        record: vec![id; 100],
        attempts_used: 0,
    }
}

pub(crate) async fn vaults<S: Store>(s: &S) {
    let a = acct(1);
    let b = acct(2);
    assert_eq!(s.vault(&a).await.unwrap(), None);
    let mut v1 = vault_row(1);
    v1.attempts_used = 7; // ignored
    assert_eq!(
        s.put_vault(&a, &v1, 1, NOW).await.unwrap(),
        PutVaultOutcome::Stored
    );
    let got = s.vault(&a).await.unwrap().unwrap();
    assert_eq!((got.attempts_used, got.index()), (0, 1));
    assert_eq!(got.record, v1.record);
    // max_vaults counts other accounts' vaults; replacing one's own is always allowed.
    assert_eq!(
        s.put_vault(&b, &vault_row(2), 1, NOW).await.unwrap(),
        PutVaultOutcome::Full
    );
    assert_eq!(s.vault(&b).await.unwrap(), None);
    // Counting: a wrong vault id counts nothing.
    assert_eq!(
        s.begin_vault_evaluation(&a, &[9; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    assert_eq!(
        s.begin_vault_evaluation(&b, &[1; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    for used in 1..=2 {
        assert_eq!(
            s.begin_vault_evaluation(&a, &[1; 16], 3, NOW)
                .await
                .unwrap(),
            VaultAttempt::Counted {
                share: zeroize::Zeroizing::new([1; 33]),
                attempts_used: used,
                deleted: false
            }
        );
    }
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 2);
    // Confirm: wrong verifier or vault id change nothing; the right one resets.
    assert_eq!(
        s.confirm_vault(&a, &[1; 16], &[0; 32], NOW).await.unwrap(),
        ConfirmOutcome::Mismatch
    );
    assert_eq!(
        s.confirm_vault(&a, &[2; 16], &[2; 32], NOW).await.unwrap(),
        ConfirmOutcome::NotFound
    );
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 2);
    assert_eq!(
        s.confirm_vault(&a, &[1; 16], &[2; 32], NOW).await.unwrap(),
        ConfirmOutcome::Confirmed
    );
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 0);
    // A replacement resets the count too.
    s.begin_vault_evaluation(&a, &[1; 16], 3, NOW)
        .await
        .unwrap();
    s.put_vault(&a, &vault_row(3), 1, NOW).await.unwrap();
    assert_eq!(s.vault(&a).await.unwrap().unwrap().attempts_used, 0);
    // The last permitted attempt deletes the vault in the same transaction.
    for used in 1..=3 {
        match s
            .begin_vault_evaluation(&a, &[3; 16], 3, NOW)
            .await
            .unwrap()
        {
            VaultAttempt::Counted {
                attempts_used,
                deleted,
                ..
            } => assert_eq!((attempts_used, deleted), (used, used == 3)),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(s.vault(&a).await.unwrap(), None);
    assert_eq!(
        s.begin_vault_evaluation(&a, &[3; 16], 3, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    // A limit lowered below the count deletes without evaluating.
    s.put_vault(&a, &vault_row(4), 1, NOW).await.unwrap();
    s.begin_vault_evaluation(&a, &[4; 16], 10, NOW)
        .await
        .unwrap();
    s.begin_vault_evaluation(&a, &[4; 16], 10, NOW)
        .await
        .unwrap();
    assert_eq!(
        s.begin_vault_evaluation(&a, &[4; 16], 2, NOW)
            .await
            .unwrap(),
        VaultAttempt::NotFound
    );
    assert_eq!(s.vault(&a).await.unwrap(), None);
    // Delete is idempotent.
    s.put_vault(&a, &vault_row(5), 1, NOW).await.unwrap();
    assert!(s.delete_vault(&a).await.unwrap());
    assert!(!s.delete_vault(&a).await.unwrap());
    assert_eq!(s.vault(&a).await.unwrap(), None);
}

pub(crate) async fn concurrent_evaluations<S: Store + 'static>(s: Arc<S>) {
    let a = acct(1);
    s.put_vault(&a, &vault_row(1), 10, NOW).await.unwrap();
    let threads: Vec<_> = (0..40)
        .map(|_| {
            let s = Arc::clone(&s);
            let a = a.clone();
            tokio::spawn(async move {
                s.begin_vault_evaluation(&a, &[1; 16], 10, NOW)
                    .await
                    .unwrap()
            })
        })
        .collect();
    let mut results: Vec<VaultAttempt> = Vec::new();
    for t in threads {
        results.push(t.await.unwrap());
    }
    let mut used: Vec<u32> = results
        .iter()
        .filter_map(|r| match r {
            VaultAttempt::Counted { attempts_used, .. } => Some(*attempts_used),
            VaultAttempt::NotFound => None,
            VaultAttempt::RolledBack => panic!("no rollback in this test"),
        })
        .collect();
    used.sort_unstable();
    assert_eq!(used, (1..=10).collect::<Vec<_>>());
    let deleted = results
        .iter()
        .filter(|r| matches!(r, VaultAttempt::Counted { deleted: true, .. }))
        .count();
    assert_eq!(deleted, 1);
    assert_eq!(s.vault(&a).await.unwrap(), None);
}
