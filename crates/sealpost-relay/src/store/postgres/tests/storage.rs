//! The queue layout (spec/relay-store.md section 3.3): a send's shared part stored once,
//! deliveries deleted on ack with their message when none is left, server ids never reused.

use super::{Fresh, with_schema};
use crate::store::postgres::PgStore;
use crate::store::*;
use sealpost_wire::relay::OutgoingEnvelope;
use sealpost_wire::{AccountId, DeviceAddress, DeviceId, IdentityBytes};

const NOW: u64 = 1_700_000_000_000;
const MAC: [u8; 32] = [7; 32];

fn acct(n: u32) -> AccountId {
    AccountId::new(format!("+1555000{n:04}")).unwrap()
}

async fn register(s: &PgStore, a: &AccountId) -> DeviceAddress {
    s.put_code(a, &MAC, NOW + 600_000).await.unwrap();
    let policy = RegLockPolicy {
        presented: None,
        max_failures: 10,
        lapse: 1,
    };
    let identity = IdentityBytes {
        signing: [1; 32],
        dh: [2; 32],
    };
    match s
        .register_device(a, &identity, &MAC, &policy, NOW)
        .await
        .unwrap()
    {
        RegisterOutcome::Registered { device_id, .. } => {
            DeviceAddress::new(a.clone(), DeviceId(device_id))
        }
        other => panic!("{other:?}"),
    }
}

/// `(messages, deliveries)` rows.
async fn rows(db: &Fresh) -> (i64, i64) {
    let sql = db.sql().await;
    let row = sql
        .query_one(
            "SELECT (SELECT COUNT(*) FROM messages), (SELECT COUNT(*) FROM deliveries)",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

async fn send(s: &PgStore, from: &DeviceAddress, to: &AccountId, devices: &[u32]) -> Vec<u64> {
    let envs: Vec<OutgoingEnvelope> = devices
        .iter()
        .map(|&device_id| OutgoingEnvelope {
            device_id,
            envelope: vec![device_id as u8; 10],
        })
        .collect();
    match s
        .enqueue(&NewMessage {
            sender: from,
            recipient: to,
            exclude_device: (to == &from.account).then_some(from.device.0),
            addressing: crate::store::Addressing::Exact,
            message_id: &[3; 16],
            sender_seq: 0,
            timestamp: NOW,
            envelopes: &envs,
            max_queued: 100,
        })
        .await
        .unwrap()
    {
        EnqueueOutcome::Queued(ids) => ids.into_iter().map(|(_, id)| id).collect(),
        other => panic!("{other:?}"),
    }
}

/// A send to two devices is one message row and two deliveries; the first ack deletes a
/// delivery, the second deletes the message too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_is_stored_once_and_deleted_with_its_last_delivery() {
    with_schema(|db| async move {
        let s = db.store().await;
        let (a, b) = (acct(1), acct(2));
        let a1 = register(&s, &a).await;
        let b1 = register(&s, &b).await;
        let ids = send(&s, &a1, &b, &[1]).await;
        assert_eq!(rows(&db).await, (1, 1));
        assert_eq!(s.ack(&b1, &ids).await.unwrap(), 1);
        assert_eq!(rows(&db).await, (0, 0));
        // Several devices: insert a second device of b directly (the store's registration
        // always replaces the account's devices, as spec/relay.md 3.2 says).
        let sql = db.sql().await;
        sql.execute(
            "INSERT INTO devices (account, device_id, identity, registered_at, max_sender_seq)
             SELECT account, 7, identity, registered_at, 0 FROM devices WHERE account = $1",
            &[&b.as_str()],
        )
        .await
        .unwrap();
        let b7 = DeviceAddress::new(b.clone(), DeviceId(7));
        let ids = send(&s, &a1, &b, &[1, 7]).await;
        assert_eq!(rows(&db).await, (1, 2), "one message, two deliveries");
        assert_eq!(s.ack(&b7, &[ids[1]]).await.unwrap(), 1);
        assert_eq!(rows(&db).await, (1, 1), "the message stays for device 1");
        assert_eq!(
            s.mailbox(&b1, 0, 10).await.unwrap()[0].envelope,
            vec![1; 10]
        );
        assert_eq!(s.ack(&b1, &[ids[0], ids[1]]).await.unwrap(), 1);
        assert_eq!(rows(&db).await, (0, 0));
        // Re-registration removes the deliveries and their messages.
        send(&s, &a1, &b, &[1, 7]).await;
        register(&s, &b).await;
        assert_eq!(rows(&db).await, (0, 0));
        // A send to no device (one's own account, from its only device) stores nothing.
        assert!(send(&s, &a1, &a, &[]).await.is_empty());
        assert_eq!(rows(&db).await, (0, 0));
        // The sweep past the TTL deletes deliveries and messages.
        let b9 = register(&s, &b).await;
        send(&s, &a1, &b, &[b9.device.0]).await;
        assert_eq!(rows(&db).await, (1, 1));
        let swept = s.sweep(NOW + 10, 10).await.unwrap();
        assert_eq!(swept.envelopes, 1);
        assert_eq!(rows(&db).await, (0, 0));
    })
    .await;
}

/// Server ids come from a sequence: an id drawn by a transaction that rolled back is never
/// handed out, and acknowledged ids are not reused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_ids_are_never_reused() {
    with_schema(|db| async move {
        let s = db.store().await;
        let (a, b) = (acct(1), acct(2));
        let a1 = register(&s, &a).await;
        let b1 = register(&s, &b).await;
        let first = send(&s, &a1, &b, &[1]).await[0];
        s.ack(&b1, &[first]).await.unwrap();
        let mut sql = db.sql().await;
        let tx = sql.transaction().await.unwrap();
        let drawn: i64 = tx
            .query_one("SELECT nextval('server_ids')", &[])
            .await
            .unwrap()
            .get(0);
        tx.rollback().await.unwrap();
        let next = send(&s, &a1, &b, &[1]).await[0];
        assert!(next > u64::try_from(drawn).unwrap(), "{next} after {drawn}");
        assert!(next > first);
    })
    .await;
}
