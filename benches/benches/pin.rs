//! Two-step PIN benchmarks (spec/pin.md):
//!
//! * `pin/argon2id_stretch/{production,testing}`: the client's Argon2id stretching of a PIN,
//!   16 MiB / 32 passes (the default) and the small test parameters.
//! * `pin/recover_3_guardians_loopback`: a full recovery of the account key through a 2-of-3
//!   deployment of three guardians (three in-process relays with durable SQLite, on
//!   127.0.0.1, production Argon2id): fetch the record from all three, stretch and blind,
//!   evaluate at two with DLEQ proofs verified, combine, open the vault, confirm success at
//!   both (which resets their attempt counts, so every iteration starts alike). Each guardian
//!   request uses a fresh QUIC connection, as a recovering phone does.
//! * `pin/recover_3_guardians_loopback_testing_params`: the same with the small Argon2id
//!   parameters, which isolates the protocol and network cost.
//!
//! Run: `cargo bench -p sealpost-benches --bench pin`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_docs,
    clippy::indexing_slicing
)]

mod common;

use common::Codes;
use criterion::{Criterion, criterion_group, criterion_main};
use sealpost_client::{
    AccountId, Client, ClientConfig, ClientError, Guardian, Guardians, PinArgon2Params,
    RegistrationLock, Store, StoreKey,
};
use sealpost_pin::normalize::normalize;
use sealpost_pin::stretch::{UserSalt, stretch};
use sealpost_relay::{GuardianConfig, Limits, Relay, RelayConfig, RelayHandle};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Runtime;

const PHONE: &str = "+15550009001";
const PIN: &str = "482915";

fn stretching(c: &mut Criterion) {
    let pin = normalize(PIN).unwrap();
    let salt = UserSalt::generate(&mut rand::rng());
    let mut g = c.benchmark_group("pin/argon2id_stretch");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(10));
    for (name, params) in [
        ("production", PinArgon2Params::PRODUCTION),
        ("testing", PinArgon2Params::testing()),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| stretch(&pin, PHONE.as_bytes(), &salt, &params).unwrap());
        });
    }
    g.finish();
}

async fn guardian(dir: &Path, codes: &Arc<Codes>, trusted: Vec<String>) -> RelayHandle {
    let mut config = RelayConfig::for_tests(dir).with_guardian(GuardianConfig {
        trusted_issuers: trusted,
        ..GuardianConfig::default()
    });
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.code_sender = Some(codes.clone());
    config.shutdown_grace_secs = 1;
    config.limits = Limits {
        vault_requests_per_account: 1_000_000,
        code_requests_per_account: 1000,
        code_requests_per_source_per_hour: 1_000_000,
        code_requests_per_country_per_hour: 1_000_000,
        code_requests_per_hour: 1_000_000,
        bundle_fetches_per_pair_burst: 1_000_000,
        bundle_fetches_per_target_per_day: 1_000_000,
        ..Limits::default()
    };
    Relay::start(config).await.unwrap()
}

/// Three guardians, an account with a PIN set, and the lock a new phone runs into.
struct Deployment {
    relays: Vec<RelayHandle>,
    config: ClientConfig,
    lock: RegistrationLock,
    _dirs: Vec<tempfile::TempDir>,
}

async fn deploy(params: PinArgon2Params) -> Deployment {
    let codes = Arc::new(Codes::default());
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let home = guardian(dirs[0].path(), &codes, Vec::new()).await;
    let issuer: String = home
        .issuer_public()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let g2 = guardian(dirs[1].path(), &codes, vec![issuer.clone()]).await;
    let g3 = guardian(dirs[2].path(), &codes, vec![issuer]).await;
    let guardians = Guardians::new(
        [&home, &g2, &g3]
            .iter()
            .map(|r| Guardian::new(r.local_addr(), r.spki_pin()))
            .collect(),
        2,
    )
    .unwrap();
    let config = ClientConfig::new(home.local_addr(), home.spki_pin())
        .with_guardians(guardians)
        .with_pin_params(params);
    let account = AccountId::new(PHONE).unwrap();
    let store = || Store::in_memory(StoreKey::generate()).unwrap();
    let code = |codes: &Codes| codes.take(PHONE);
    Client::request_code(&config, &account).await.unwrap();
    let (phone, _rx) = Client::register(store(), config.clone(), account.clone(), &code(&codes))
        .await
        .unwrap();
    phone.set_pin(PIN).await.unwrap();
    phone.shutdown().await;
    Client::request_code(&config, &account).await.unwrap();
    let lock = match Client::register(store(), config.clone(), account, &code(&codes)).await {
        Err(ClientError::RegistrationLocked(lock)) => *lock,
        _ => panic!("expected the registration lock"),
    };
    Deployment {
        relays: vec![home, g2, g3],
        config,
        lock,
        _dirs: dirs,
    }
}

fn recovery(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let account = AccountId::new(PHONE).unwrap();
    let mut g = c.benchmark_group("pin");
    g.sample_size(10);
    g.measurement_time(Duration::from_secs(15));
    for (name, params) in [
        ("recover_3_guardians_loopback", PinArgon2Params::PRODUCTION),
        (
            "recover_3_guardians_loopback_testing_params",
            PinArgon2Params::testing(),
        ),
    ] {
        let d = rt.block_on(deploy(params));
        g.bench_function(name, |b| {
            b.iter(|| {
                rt.block_on(d.lock.recover(&d.config, &account, PIN))
                    .expect("recovery")
            });
        });
        rt.block_on(async {
            for r in d.relays {
                r.shutdown().await;
            }
        });
    }
    g.finish();
}

criterion_group!(benches, stretching, recovery);
criterion_main!(benches);
