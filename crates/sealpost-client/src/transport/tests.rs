//! The transport against QUIC servers that stop answering.

use super::*;

/// A QUIC server with the relay's TLS set-up that completes handshakes and accepts
/// request streams but never answers them (a node whose process is alive and whose
/// request handling is stuck).
async fn unresponsive_server(
    dir: &std::path::Path,
) -> (SocketAddr, sealpost_crypto::spki::SpkiPin) {
    let material = sealpost_relay::tls::load_or_generate(dir, &["localhost".into()]).unwrap();
    let crypto = sealpost_relay::tls::server_crypto(&material).unwrap();
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(crypto).unwrap();
    let endpoint = quinn::Endpoint::server(
        quinn::ServerConfig::with_crypto(Arc::new(quic)),
        (Ipv4Addr::LOCALHOST, 0).into(),
    )
    .unwrap();
    let addr = endpoint.local_addr().unwrap();
    tokio::spawn(async move {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let mut held = Vec::new();
                while let Ok(stream) = conn.accept_bi().await {
                    held.push(stream);
                }
            });
        }
    });
    (addr, material.spki_pin)
}

#[tokio::test]
async fn repeated_request_timeouts_close_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let (addr, pin) = unresponsive_server(dir.path()).await;
    let config = ClientConfig::new(addr, pin).with_request_timeout(Duration::from_millis(300));
    let transport = Transport::new(&config).unwrap();
    let conn = transport.connect().await.unwrap();
    for n in 1..=DEAD_AFTER_TIMEOUTS {
        assert_eq!(
            conn.request(&Request::Challenge).await,
            Err(ClientError::Timeout)
        );
        if n < DEAD_AFTER_TIMEOUTS {
            assert!(conn.close_reason().is_none(), "closed after {n} timeouts");
            assert!(!conn.given_up());
        }
    }
    assert_eq!(
        conn.close_reason(),
        Some(quinn::ConnectionError::LocallyClosed),
        "the connection is closed after {DEAD_AFTER_TIMEOUTS} timeouts in a row"
    );
    assert!(conn.given_up());
    // The push reader of the connection task ends, which starts a reconnection.
    assert!(matches!(
        conn.accept_pushes().await,
        Err(ClientError::Connection(_))
    ));
    // The next attempt starts with the address after the dead one (here the same one).
    transport.connection_died(&conn);
    let (candidates, _) = transport.candidates().await;
    assert_eq!(candidates, vec![addr]);
    transport.close().await;
}

#[tokio::test]
async fn a_dead_connection_moves_the_next_attempt_to_the_next_address() {
    let dir = tempfile::tempdir().unwrap();
    let (live, pin) = unresponsive_server(dir.path()).await;
    // Nothing listens there (the socket is closed again).
    let dead = std::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap();
    let config = ClientConfig::new(dead, pin)
        .with_relays([RelayAddr::Socket(dead), RelayAddr::Socket(live)])
        .with_connect_timeout(Duration::from_millis(300))
        .with_request_timeout(Duration::from_millis(300));
    let transport = Transport::new(&config).unwrap();
    assert_eq!(transport.candidates().await.0, vec![dead, live]);
    let conn = transport.connect().await.unwrap();
    assert_eq!(conn.remote(), live);
    // The node that answered comes first from now on.
    assert_eq!(transport.candidates().await.0, vec![live, dead]);
    for _ in 0..DEAD_AFTER_TIMEOUTS {
        let _ = conn.request(&Request::Challenge).await;
    }
    transport.connection_died(&conn);
    assert_eq!(transport.candidates().await.0, vec![dead, live]);
    // A first address that neither answers nor fails (its attempt would run for 60 s)
    // holds nothing up: the next one is tried after CONNECT_STAGGER.
    let patient = Transport::new(
        &config
            .clone()
            .with_connect_timeout(Duration::from_secs(60))
            .with_request_timeout(Duration::from_secs(60))
            .with_keep_alive(Duration::from_secs(3), Duration::from_secs(60)),
    )
    .unwrap();
    let conn = tokio::time::timeout(Duration::from_secs(20), patient.connect())
        .await
        .expect("connected through the second address while the first was still trying")
        .unwrap();
    assert_eq!(conn.remote(), live);
    patient.close().await;
    let empty = Transport::new(&config.clone().with_relays([])).unwrap();
    assert_eq!(
        empty.connect().await.err(),
        Some(ClientError::NoRelayAddress)
    );
    transport.close().await;
}

/// A relay that vanishes without a reset (killed and not restarted, or cut off) is given
/// up once it has been silent for the keep-alive interval plus the grace, not after the
/// QUIC idle timeout (here 60 s), and the next attempt starts with the next address.
#[tokio::test]
async fn a_silent_relay_is_given_up_after_the_keep_alive_and_grace() {
    let dir = tempfile::tempdir().unwrap();
    let (server, pin) = unresponsive_server(dir.path()).await;
    // A forwarder between the client and the server that can be cut.
    let proxy = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let from_server = Arc::new(std::sync::atomic::AtomicU64::new(0));
    {
        let (cut, from_server) = (Arc::clone(&cut), Arc::clone(&from_server));
        tokio::spawn(async move {
            let mut client = None;
            let mut buf = vec![0u8; 65536];
            loop {
                let Ok((n, from)) = proxy.recv_from(&mut buf).await else {
                    return;
                };
                if cut.load(Ordering::SeqCst) {
                    continue;
                }
                let to = if from == server {
                    from_server.fetch_add(1, Ordering::SeqCst);
                    match client {
                        Some(c) => c,
                        None => continue,
                    }
                } else {
                    client = Some(from);
                    server
                };
                let _ = proxy.send_to(&buf[..n], to).await;
            }
        });
    }
    let keep_alive = Duration::from_millis(300);
    let config =
        ClientConfig::new(proxy_addr, pin).with_keep_alive(keep_alive, Duration::from_secs(60));
    let transport = Transport::new(&config).unwrap();
    let conn = transport.connect().await.unwrap();
    // Idle, the keep-alives are answered: the relay is heard from.
    let heard = from_server.load(Ordering::SeqCst);
    tokio::time::timeout(Duration::from_secs(10), async {
        while from_server.load(Ordering::SeqCst) < heard + 3 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("keep-alives are acknowledged");
    assert!(conn.close_reason().is_none());
    assert!(!conn.given_up());
    cut.store(true, Ordering::SeqCst);
    let started = std::time::Instant::now();
    let limit = silence_limit(keep_alive, conn.conn.rtt());
    let closed = tokio::time::timeout(limit + Duration::from_secs(5), conn.conn.closed())
        .await
        .expect("a silent relay is given up well before the idle timeout");
    assert_eq!(closed, quinn::ConnectionError::LocallyClosed);
    assert!(
        started.elapsed() >= limit.saturating_sub(keep_alive),
        "given up after {:?}, before the limit {limit:?}",
        started.elapsed()
    );
    assert!(conn.given_up());
    transport.connection_died(&conn);
    transport.close().await;
}
