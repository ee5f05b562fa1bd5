//! The store conformance suite: [`run`] runs every case against stores from a factory; the
//! tests at the bottom run it against every backend.

use super::*;
use sealpost_wire::relay::OutgoingEnvelope;

mod accounts;
mod mail;
mod prekeys;
mod quotas;
mod vaults;
pub(crate) use accounts::{codes, concurrent_reglock, registration, registration_lock};
pub(crate) use mail::{concurrent_sends, feed, mailboxes, sender_seqs};
pub(crate) use prekeys::{concurrent_bundles, prekeys};
pub(crate) use quotas::quotas;
pub(crate) use vaults::{concurrent_evaluations, vault_row, vaults};

mod provisioning;
pub(crate) use provisioning::{concurrent_provisioning, provisioning};
mod business;
mod devices;
pub(crate) use business::{business_profiles, routed_sends};
pub(crate) use devices::{account_key_backups, concurrent_links, device_activity, device_lists};
use sealpost_wire::{DeviceId, KEM_PUBLIC_LEN, KemPreKeyKind};
use std::collections::BTreeSet;
use std::sync::Arc;

pub(crate) fn acct(n: u32) -> AccountId {
    AccountId::new(format!("+1555000{n:04}")).unwrap()
}

fn ident(b: u8) -> IdentityBytes {
    IdentityBytes {
        signing: [b; 32],
        dh: [b.wrapping_add(1); 32],
    }
}

fn dev(a: &AccountId, id: u32) -> DeviceAddress {
    DeviceAddress::new(a.clone(), DeviceId(id))
}

const MAC: [u8; 32] = [7; 32];
const NOW: u64 = 1_700_000_000_000;
const LIMITS: PreKeyLimits = PreKeyLimits {
    max_one_time: 10,
    max_kem_one_time: 4,
};

/// The policy of a registration without a token.
pub(crate) const NO_LOCK: RegLockPolicy = RegLockPolicy {
    presented: None,
    max_failures: 10,
    lapse: LAPSE,
};
const LAPSE: u64 = 7 * 24 * 3600 * 1000;

fn with_token(v: [u8; 32]) -> RegLockPolicy {
    RegLockPolicy {
        presented: Some(v),
        ..NO_LOCK
    }
}

/// Registers a device through a code, as the handler does.
pub(crate) async fn register<S: Store + ?Sized>(s: &S, a: &AccountId, b: u8) -> u32 {
    s.put_code(a, &MAC, NOW + 600_000).await.unwrap();
    match s
        .register_device(a, &ident(b), &MAC, &NO_LOCK, NOW)
        .await
        .unwrap()
    {
        RegisterOutcome::Registered { device_id, .. } => device_id,
        other => panic!("{other:?}"),
    }
}

fn signed(id: u32) -> SignedPreKeyPublic {
    SignedPreKeyPublic {
        id,
        created_at: 1,
        public: [id as u8; 32],
        signature: [9; 64],
    }
}

fn kem(id: u32, kind: KemPreKeyKind) -> KemPreKeyPublic {
    KemPreKeyPublic {
        id,
        kind,
        created_at: 2,
        public: Box::new([id as u8; KEM_PUBLIC_LEN]),
        signature: [8; 64],
    }
}

fn full_upload(
    otk: std::ops::Range<u32>,
    kem_ids: std::ops::Range<u32>,
    lr: Option<u32>,
) -> NewPreKeys {
    NewPreKeys {
        signed: Some(signed(1)),
        one_time: otk.map(|i| (i, [i as u8; 32])).collect(),
        kem_one_time: kem_ids.map(|i| kem(i, KemPreKeyKind::OneTime)).collect(),
        kem_last_resort: lr.map(|i| kem(i, KemPreKeyKind::LastResort)),
    }
}

fn env(device_id: u32, b: u8) -> OutgoingEnvelope {
    OutgoingEnvelope {
        device_id,
        envelope: vec![b; 10],
    }
}

async fn enqueue<S: Store + ?Sized>(
    s: &S,
    from: &DeviceAddress,
    to: &AccountId,
    envs: &[OutgoingEnvelope],
    max: u32,
) -> EnqueueOutcome {
    s.enqueue(&NewMessage {
        sender: from,
        recipient: to,
        exclude_device: (to == &from.account).then_some(from.device.0),
        addressing: crate::store::Addressing::Exact,
        message_id: &[3; 16],
        sender_seq: 0,
        timestamp: NOW,
        envelopes: envs,
        max_queued: max,
    })
    .await
    .unwrap()
}

async fn enqueue_seq<S: Store + ?Sized>(
    s: &S,
    from: &DeviceAddress,
    to: &AccountId,
    envs: &[OutgoingEnvelope],
    max: u32,
    sender_seq: u64,
) -> EnqueueOutcome {
    s.enqueue(&NewMessage {
        sender: from,
        recipient: to,
        exclude_device: (to == &from.account).then_some(from.device.0),
        addressing: crate::store::Addressing::Exact,
        message_id: &[3; 16],
        sender_seq,
        timestamp: NOW,
        envelopes: envs,
        max_queued: max,
    })
    .await
    .unwrap()
}

/// Runs every case of the suite, each on a fresh store from `new_store`. Another backend's
/// tests call this with their own factory (inside a multi-threaded tokio runtime: the
/// concurrency cases spawn tasks).
pub(crate) async fn run<S, F>(mut new_store: F)
where
    S: Store + 'static,
    F: FnMut() -> S,
{
    eprintln!("conformance: codes");
    codes(&new_store()).await;
    eprintln!("conformance: registration");
    registration(&new_store()).await;
    eprintln!("conformance: prekeys");
    prekeys(&new_store()).await;
    eprintln!("conformance: mailboxes");
    mailboxes(&new_store()).await;
    eprintln!("conformance: sender_seqs");
    sender_seqs(&new_store()).await;
    eprintln!("conformance: feed");
    feed(&new_store()).await;
    eprintln!("conformance: registration_lock");
    registration_lock(&new_store()).await;
    eprintln!("conformance: vaults");
    vaults(&new_store()).await;
    eprintln!("conformance: quotas");
    quotas(&new_store()).await;
    eprintln!("conformance: provisioning");
    provisioning(&new_store()).await;
    eprintln!("conformance: concurrent_bundles");
    concurrent_bundles(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_sends");
    concurrent_sends(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_reglock");
    concurrent_reglock(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_evaluations");
    concurrent_evaluations(Arc::new(new_store())).await;
    eprintln!("conformance: concurrent_provisioning");
    concurrent_provisioning(Arc::new(new_store())).await;
    eprintln!("conformance: device_lists");
    device_lists(&new_store()).await;
    eprintln!("conformance: account_key_backups");
    account_key_backups(&new_store()).await;
    eprintln!("conformance: business_profiles");
    business_profiles(&new_store()).await;
    eprintln!("conformance: device_activity");
    device_activity(&new_store()).await;
    eprintln!("conformance: routed_sends");
    routed_sends(&new_store()).await;
    eprintln!("conformance: concurrent_links");
    concurrent_links(Arc::new(new_store())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn memory() {
    run(MemoryStore::new).await;
}

#[cfg(feature = "server")]
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut n = 0;
    run(|| {
        n += 1;
        SqliteStore::open(dir.path().join(format!("{n}.db"))).unwrap()
    })
    .await;
}
