//! `relay_throughput_pg3nodes/N`: the relay throughput bench through three relay nodes in
//! this process (`Relay::start`), sharing one PostgreSQL schema and one NATS server, as a
//! deployment of several nodes does (README, "PostgreSQL: several relay nodes"). Every sender
//! is connected to node 0 and every receiver to node 1 or 2 (alternately), so every delivery
//! is a cross-node wake-up: node 0 commits the `Send` and publishes on NATS, the receiver's
//! node reads its mailbox and pushes. Enabled by `SEALPOST_BENCH_POSTGRES` and
//! `SEALPOST_BENCH_NATS` together (`.ci/postgres.sh start`, `.ci/nats.sh start`); skipped
//! loudly otherwise.
//!
//! On one machine the nodes share its cores with PostgreSQL, NATS and the bench's clients:
//! the numbers show that the cross-node path works under load and what it costs next to
//! one node on the same database, not how a deployment scales.

use super::*;

/// Environment variable: a NATS server URL (`.ci/nats.sh start` prints one).
pub(super) const NATS_ENV: &str = "SEALPOST_BENCH_NATS";
/// Relay nodes in the multi-node bench.
const NODES: usize = 3;
/// The throughput groups' store label (`relay_throughput_pg3nodes/N`).
pub(super) const LABEL: &str = "pg3nodes";

/// Nodes 1 and 2 (node 0 is the [`RelayBench`]'s relay) and the schema the three share.
pub(super) struct OtherNodes {
    nodes: Vec<(tempfile::TempDir, RelayHandle)>,
    server: String,
    schema: String,
}

impl OtherNodes {
    /// Shuts the nodes down and drops the schema (after node 0 has been shut down).
    pub(super) async fn shutdown(self) {
        for (_dir, node) in self.nodes {
            node.shutdown().await;
        }
        drop_pg_schema(&self.server, &self.schema).await;
    }
}

/// The configuration of one node: the bench's limits (as `relay_setup`), the shared store
/// and NATS server.
fn node_config(dir: &std::path::Path, codes: &Arc<Codes>, store: &str, nats: &str) -> RelayConfig {
    let mut config = RelayConfig::for_tests(dir);
    config.store = StoreBackend::Postgres(zeroize::Zeroizing::new(store.to_owned()));
    config.nats = Some(nats.parse().expect("SEALPOST_BENCH_NATS is a nats:// URL"));
    config.code_sender = Some(Arc::clone(codes) as Arc<dyn CodeSender>);
    config.limits.sends_per_second = 10_000_000;
    config.limits.send_burst = 10_000_000;
    config.limits.code_requests_per_source_per_hour = 10_000_000;
    config.limits.code_requests_per_country_per_hour = 10_000_000;
    config.limits.code_requests_per_hour = 10_000_000;
    config.limits.bundle_fetches_per_pair_burst = 10_000_000;
    config.limits.bundle_fetches_per_target_per_day = 10_000_000;
    config
}

/// Three nodes on a fresh schema of `SEALPOST_BENCH_POSTGRES` and on `SEALPOST_BENCH_NATS`,
/// with `max_pairs` registered pairs (senders on node 0, receivers on nodes 1 and 2), each
/// pair checked with one message end to end; `None` (after saying why) without both servers.
pub(super) fn setup(rt: &Runtime, max_pairs: usize) -> Option<(RelayBench, OtherNodes)> {
    let (Ok(server), Ok(nats)) = (std::env::var(POSTGRES_ENV), std::env::var(NATS_ENV)) else {
        println!(
            "\n{bar}\nrelay on three nodes (PostgreSQL + NATS): SKIPPED, it needs both \
             {POSTGRES_ENV} and {NATS_ENV} (`.ci/postgres.sh start`, `.ci/nats.sh start`)\n{bar}\n",
            bar = "!".repeat(78)
        );
        return None;
    };
    let bench = rt.block_on(async {
        let (schema, url) = pg_schema(&server).await;
        let codes = Arc::new(Codes::default());
        let dirs: Vec<_> = (0..NODES).map(|_| tempfile::tempdir().unwrap()).collect();
        let first = Relay::start(node_config(dirs[0].path(), &codes, &url, &nats))
            .await
            .unwrap();
        // The nodes of one deployment share the secret files (code-MAC key, issuer key,
        // stateless-reset key) and the certificate: every file of node 0's data directory
        // but its lock and SQLite file, and its self-signed certificate as the operator
        // certificate of the others.
        let (cert, key) = sealpost_relay::tls::self_signed_paths(dirs[0].path());
        for entry in std::fs::read_dir(dirs[0].path()).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().unwrap().is_file() && !name.starts_with("relay.") {
                for d in &dirs[1..] {
                    std::fs::copy(entry.path(), d.path().join(&name)).unwrap();
                }
            }
        }
        let mut dirs = dirs.into_iter();
        let first_dir = dirs.next().unwrap();
        let mut others = Vec::new();
        for dir in dirs {
            let mut config = node_config(dir.path(), &codes, &url, &nats);
            config.cert_path = Some(cert.clone());
            config.key_path = Some(key.clone());
            let node = Relay::start(config).await.unwrap();
            assert_eq!(node.cert_fingerprint(), first.cert_fingerprint());
            others.push((dir, node));
        }
        let mut pairs = Vec::new();
        for i in 0..max_pairs {
            let s = Device::register(&first, &codes, &format!("+1556{:07}", 2 * i)).await;
            let (_, on) = &others[i % others.len()];
            let r = Device::register(on, &codes, &format!("+1556{:07}", 2 * i + 1)).await;
            pairs.push((Arc::new(s), Arc::new(r)));
        }
        // Every receiver's node watches its device on NATS; node 0 watches only senders.
        let watched: usize = others.iter().map(|(_, n)| n.wake_subscriptions()).sum();
        assert_eq!(watched, max_pairs);
        // One message per pair end to end: a broken cross-node path fails here (after the
        // bench's timeout), not in the middle of a criterion group.
        let check = Arc::new(Stats::default());
        for (s, r) in &pairs {
            relay_pair(Arc::clone(s), Arc::clone(r), 1, Arc::clone(&check)).await;
        }
        (
            RelayBench {
                _dir: first_dir,
                relay: Some(first),
                pairs,
            },
            OtherNodes {
                nodes: others,
                server: server.clone(),
                schema,
            },
        )
    });
    Some(bench)
}
