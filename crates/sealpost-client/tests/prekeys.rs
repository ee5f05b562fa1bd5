//! Prekey replenishment against the real relay: a raw protocol client drains a device's
//! one-time prekeys with `FetchBundles`; the relay pushes `PreKeysLow` and the client must
//! top its keys up before they run out.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use sealpost_client::Client;
use sealpost_session::IdentityKeyPair;
use sealpost_wire::relay::{
    Request, Response, auth_signed_bytes, frame_len, register_signed_bytes,
};
use sealpost_wire::{DeviceAddress, DeviceId, KemPreKeyKind};
use std::sync::Arc;
use std::time::Duration;

const SHOP: &str = "+15550002001";
const PROBE: &str = "+15550002002";

/// One request over a raw QUIC connection, as spec/relay.md section 1 describes.
async fn call(conn: &quinn::Connection, req: &Request) -> Response {
    let (mut send, mut recv) = conn.open_bi().await.unwrap();
    send.write_all(&req.encode()).await.unwrap();
    send.finish().unwrap();
    let mut prefix = [0u8; 4];
    recv.read_exact(&mut prefix).await.unwrap();
    let mut body = vec![0u8; frame_len(prefix).unwrap()];
    recv.read_exact(&mut body).await.unwrap();
    Response::decode(&body).unwrap()
}

fn exporter(conn: &quinn::Connection) -> [u8; 32] {
    let mut out = [0u8; 32];
    conn.export_keying_material(&mut out, b"EXPORTER-Sealpost-Relay", b"")
        .unwrap();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn low_prekeys_are_replenished() {
    let dir = tempfile::tempdir().unwrap();
    let codes = Arc::new(Codes::default());
    let relay = start_relay(
        &dir.path().join("relay"),
        "127.0.0.1:0".parse().unwrap(),
        &codes,
        bulk_limits(),
    )
    .await;
    let config = client_config(relay.local_addr(), relay.spki_pin());
    let (shop, rx) = register(&config, &codes, SHOP, open_store(dir.path(), "shop")).await;
    let seen = Collector::default();
    seen.spawn(rx);

    // A raw device that only fetches bundles.
    let verifier = sealpost_client::tls::PinnedSpkiVerifier::new(relay.spki_pin().into());
    let tls = sealpost_client::tls::client_tls_config(Arc::new(verifier)).unwrap();
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(quic)));
    let conn = endpoint
        .connect(relay.local_addr(), "relay")
        .unwrap()
        .await
        .unwrap();
    let probe = acct(PROBE);
    Client::request_code(&config, &probe).await.unwrap();
    let code: [u8; 6] = codes.take(PROBE).as_bytes().try_into().unwrap();
    let identity = IdentityKeyPair::generate(&mut rand::rng());
    let public = identity.public().to_wire();
    let sig = identity.sign(&register_signed_bytes(&exporter(&conn), &probe, &public));
    let device_id = match call(
        &conn,
        &Request::Register {
            account: probe.clone(),
            code,
            identity: public,
            signature: sig.to_bytes(),
            reglock: None,
        },
    )
    .await
    {
        Response::Registered { device_id } => device_id,
        other => panic!("{other:?}"),
    };
    let nonce = match call(&conn, &Request::Challenge).await {
        Response::ChallengeIssued { nonce } => nonce,
        other => panic!("{other:?}"),
    };
    let address = DeviceAddress::new(probe, DeviceId(device_id));
    let sig = identity.sign(&auth_signed_bytes(&exporter(&conn), &nonce, &address));
    assert!(matches!(
        call(
            &conn,
            &Request::Authenticate {
                address,
                signature: sig.to_bytes()
            }
        )
        .await,
        Response::Authenticated { .. }
    ));

    // Drain well past the 100 one-time and 20 KEM prekeys published at registration.
    let (mut with_one_time, mut with_one_time_kem) = (0, 0);
    const FETCHES: usize = 160;
    for _ in 0..FETCHES {
        match call(
            &conn,
            &Request::FetchBundles {
                account: acct(SHOP),
            },
        )
        .await
        {
            Response::Bundles(b) => {
                assert_eq!(b.len(), 1);
                with_one_time += usize::from(b[0].one_time_prekey.is_some());
                with_one_time_kem += usize::from(b[0].kem_prekey.kind == KemPreKeyKind::OneTime);
            }
            other => panic!("{other:?}"),
        }
        // Pace the fetches a little, as real senders would be; the client has ~20 fetches
        // of headroom after the relay's low-watermark push.
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    assert_eq!(with_one_time, FETCHES, "one-time prekeys never ran out");
    assert!(
        with_one_time_kem >= FETCHES * 9 / 10,
        "one-time KEM prekeys were replenished ({with_one_time_kem} of {FETCHES})"
    );
    conn.close(0u32.into(), b"");
    shop.shutdown().await;
    relay.shutdown().await;
}
