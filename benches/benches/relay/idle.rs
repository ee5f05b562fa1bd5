//! Idle connections against the real `sealpost-relay` binary (see the bench's top comment):
//! VmRSS of the relay process before and after `SEALPOST_BENCH_IDLE_CONNS` idle connections.

use super::*;

/// Environment variable: how many idle connections (default [`DEFAULT_IDLE_CONNS`]; 0 skips).
const IDLE_CONNS_ENV: &str = "SEALPOST_BENCH_IDLE_CONNS";
/// Idle connections of a normal bench run. `SEALPOST_BENCH_IDLE_CONNS=100000` is the scale
/// target's measurement (benches/README.md, "Relay").
const DEFAULT_IDLE_CONNS: usize = 10_000;
/// Above this many connections only the reconnecting kind (the scale target's row) and bare
/// quinn run: the first-start kind would register as many accounts again (minutes of
/// registrations), and the handshake-only kind adds minutes of handshakes.
const FIRST_START_MAX: usize = 10_000;
/// Client source addresses: 127.0.0.2, 127.0.0.3, ... (Linux routes all of 127.0.0.0/8 to
/// loopback), with one client endpoint (one UDP socket) each, the connections spread over
/// them. The relay counts connections per source address (`max_connections_per_ip`).
const CLIENT_ADDRS: usize = 16;
/// Keep-alive of the idle clients: well inside the relay's `IDLE_TIMEOUT_SECS` (60 s), as an
/// app would set it, and rare enough that 100,000 connections do not keep two cores busy
/// with pings (5 s would be 20,000 packets per second each way).
const IDLE_KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The client configuration of the idle connections: the throughput clients' settings with
/// [`IDLE_KEEP_ALIVE`] and room for 4 push streams instead of 100 (quinn keeps state for
/// every stream slot a peer may open; an idle device gets one push, `QueueDrained`).
fn idle_client_config(fingerprint: [u8; 32], alpn: Vec<Vec<u8>>) -> quinn::ClientConfig {
    let mut cfg = client_config(fingerprint, alpn);
    let mut transport = quinn::TransportConfig::default();
    transport.max_concurrent_uni_streams(4u32.into());
    transport.keep_alive_interval(Some(IDLE_KEEP_ALIVE));
    cfg.transport_config(Arc::new(transport));
    cfg
}

/// Environment variable: a file for the relay child's log (warnings and errors; default:
/// discarded).
const RELAY_LOG_ENV: &str = "SEALPOST_BENCH_IDLE_RELAY_LOG";
/// Environment variable: a program that runs the measured server: it is given the server's
/// program and arguments and must `exec` them (so that the measured pid is the server's),
/// e.g. a script setting `MALLOC_ARENA_MAX` or heaptrack's preload library for the server
/// alone (the bench's clients stay as they are).
const WRAPPER_ENV: &str = "SEALPOST_BENCH_IDLE_WRAPPER";
/// Environment variable: which kinds run, comma-separated among `handshake`, `reconnect`,
/// `first` and `quinn` (default: all that run at this many connections; when set, the kinds
/// named run at any number of connections).
const KINDS_ENV: &str = "SEALPOST_BENCH_IDLE_KINDS";
/// Environment variable: seconds the connections stay idle before the measurement (default
/// [`DEFAULT_HOLD_SECS`]).
const HOLD_ENV: &str = "SEALPOST_BENCH_IDLE_HOLD_SECS";
const DEFAULT_HOLD_SECS: u64 = 5;

/// Whether the kind named `name` runs ([`KINDS_ENV`]).
fn kind_selected(name: &str) -> bool {
    std::env::var(KINDS_ENV).map_or(true, |v| v.split(',').any(|k| k.trim() == name))
}

/// A command running `program` through [`WRAPPER_ENV`] if it is set.
fn server_command(program: &std::path::Path) -> std::process::Command {
    match std::env::var_os(WRAPPER_ENV) {
        Some(wrapper) => {
            let mut c = std::process::Command::new(wrapper);
            c.arg(program);
            c
        }
        None => std::process::Command::new(program),
    }
}

/// `RssAnon`, `RssFile` and `RssShmem` of process `pid`, KiB (VmRSS is their sum), and its
/// number of threads.
fn rss_parts(pid: u32) -> [u64; 4] {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| -> u64 {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    [
        field("RssAnon:"),
        field("RssFile:"),
        field("RssShmem:"),
        field("Threads:"),
    ]
}

/// The system's UDP receive-buffer overflows so far (`RcvbufErrors` in /proc/net/snmp): a
/// datagram dropped because a socket's buffer was full (here: the server's one socket, or a
/// client's), which quinn recovers from as a loss.
fn udp_rcvbuf_errors() -> u64 {
    let s = std::fs::read_to_string("/proc/net/snmp").unwrap_or_default();
    let mut udp = s.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (udp.next(), udp.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .zip(values.split_whitespace())
        .find(|(n, _)| *n == "RcvbufErrors")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

/// Open file descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = s.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// `target/release/sealpost-relay`, next to this bench's `deps/` directory; (re)built first so
/// that a stale binary is never measured (a no-op when it is up to date).
fn relay_binary() -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let bin = profile_dir.join("sealpost-relay");
    println!("building {} ...", bin.display());
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = std::process::Command::new(cargo)
        .args(["build", "--release", "-p", "sealpost-relay"])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .ok()?;
    if !status.success() {
        return None;
    }
    bin.exists().then_some(bin)
}

pub(super) fn idle_connections() {
    let target: usize = std::env::var(IDLE_CONNS_ENV)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_IDLE_CONNS);
    if target == 0 {
        return;
    }
    let Some(bin) = relay_binary() else {
        println!("idle_connections: sealpost-relay binary unavailable; skipped");
        return;
    };
    // The limits an operator raises for this many connections: `max_connections` (default
    // 10,000) and, because the bench's clients share CLIENT_ADDRS addresses,
    // `max_connections_per_ip` (default 256).
    let limit = (target + 1000).to_string();
    let per_ip = (target.div_ceil(CLIENT_ADDRS) + 256).to_string();
    let (webhook, codes) = code_webhook();
    for auth in [
        Idle::Unauthenticated,
        Idle::Authenticated,
        Idle::RegisteredHere,
    ] {
        let name = match auth {
            Idle::Unauthenticated => "handshake",
            Idle::Authenticated => "reconnect",
            Idle::RegisteredHere => "first",
        };
        if !kind_selected(name) {
            continue;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut relay = server_command(&bin);
        relay
            .args(["--listen", "127.0.0.1:0", "--max-connections", &limit])
            .arg("--data-dir")
            .arg(dir.path())
            .env("SEALPOST_RELAY_MAX_CONNECTIONS_PER_IP", &per_ip)
            .env("SEALPOST_RELAY_WEBHOOK_URL", &webhook)
            .env(
                "SEALPOST_RELAY_WEBHOOK_SECRET",
                "bench webhook secret, not checked",
            )
            .env(
                "SEALPOST_RELAY_CODE_REQUESTS_PER_SOURCE_PER_HOUR",
                "10000000",
            )
            .env(
                "SEALPOST_RELAY_CODE_REQUESTS_PER_COUNTRY_PER_HOUR",
                "10000000",
            )
            .env("SEALPOST_RELAY_CODE_REQUESTS_PER_HOUR", "10000000")
            .env("RUST_LOG", "warn");
        if auth != Idle::Authenticated
            && target > FIRST_START_MAX
            && std::env::var_os(KINDS_ENV).is_none()
        {
            println!(
                "idle_connections: only the reconnecting kind and bare quinn run above {FIRST_START_MAX} connections"
            );
            continue;
        }
        let label = match auth {
            Idle::Unauthenticated => "relay, unauthenticated",
            Idle::Authenticated => "relay, authenticated as devices registered earlier",
            Idle::RegisteredHere => "relay, registered and authenticated on the connection",
        };
        idle_measure(label, relay, Some(auth), &codes, target);
    }
    // The same measurement against a bare quinn server (this binary in echo-server mode,
    // the relay's transport settings): what quinn + rustls alone cost per connection.
    if kind_selected("quinn") {
        let mut echo = server_command(&std::env::current_exe().unwrap());
        echo.env(ECHO_SERVER_ENV, "1").env_remove(ONE_SEGMENT_ENV);
        idle_measure("bare quinn", echo, None, &codes, target);
    }
    // Optional: without GSO batching (quinn keeps a `10 × MTU` transmit buffer per connection
    // once it has sent two datagrams at once). Measured: no difference for idle connections
    // (benches/README.md), hence off by default.
    if std::env::var_os(ONE_SEGMENT_ENV).is_some() {
        let mut echo = server_command(&std::env::current_exe().unwrap());
        echo.env(ECHO_SERVER_ENV, "1").env(ONE_SEGMENT_ENV, "1");
        idle_measure(
            "bare quinn, 1 datagram per transmit",
            echo,
            None,
            &codes,
            target,
        );
    }
}

pub(super) const ECHO_SERVER_ENV: &str = "SEALPOST_BENCH_ECHO_SERVER";
/// Environment variable: also measure bare quinn without GSO batching.
const ONE_SEGMENT_ENV: &str = "SEALPOST_BENCH_ONE_SEGMENT";

/// Echo-server mode for the idle baseline: prints the relay's start-up lines, serves forever.
pub(super) fn echo_server_process() {
    let rt = runtime();
    rt.block_on(async {
        let (server, fingerprint) = echo_server(
            std::env::var_os(ONE_SEGMENT_ENV).is_some(),
            PRE_AUTH_CONCURRENT_REQUESTS,
        );
        println!(
            "sealpost-relay listening on {}",
            server.local_addr().unwrap()
        );
        let hex: String = fingerprint.iter().map(|b| format!("{b:02x}")).collect();
        println!("certificate SHA-256 fingerprint: {hex}");
        // The relay's last start-up line, which `idle_measure` reads up to (without it the
        // bare-quinn run waited forever).
        println!("public-key pin (clients pin this): none (bench echo server)");
        std::future::pending::<()>().await;
    });
}

/// What the idle relay connections do before they idle.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Idle {
    /// Nothing (the handshake only).
    Unauthenticated,
    /// Authenticate as a device registered before the measurement, on another connection
    /// (an app reconnecting): the relay holds the connection's delivery slot and its
    /// authenticated request-stream allowance.
    Authenticated,
    /// Register a device of a fresh account on the connection itself, then authenticate
    /// (a first start: the registration's work is counted too).
    RegisteredHere,
}

/// Verification codes the relay child process posted to the bench's webhook, by account.
type LoggedCodes = Arc<Mutex<std::collections::HashMap<String, [u8; 6]>>>;

/// A minimal HTTP/1.1 server on 127.0.0.1 for the relay's webhook code sender (the
/// development log sender redacts account numbers): keeps `{"account": …, "code": …}` of
/// every POST and answers 204. Returns its URL and the codes.
fn code_webhook() -> (String, LoggedCodes) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/codes", listener.local_addr().unwrap());
    let codes = LoggedCodes::default();
    let out = Arc::clone(&codes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            let out = Arc::clone(&out);
            std::thread::spawn(move || {
                let mut writer = stream.try_clone().unwrap();
                let mut reader = BufReader::new(stream);
                loop {
                    let mut len = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let l = line.trim_end().to_ascii_lowercase();
                        if l.is_empty() {
                            break;
                        }
                        if let Some(v) = l.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let body = String::from_utf8_lossy(&body);
                    let field = |name: &str| -> Option<String> {
                        let start = body.find(&format!("\"{name}\":\""))? + name.len() + 4;
                        let end = body[start..].find('"')? + start;
                        Some(body[start..end].to_owned())
                    };
                    if let (Some(account), Some(code)) = (field("account"), field("code"))
                        && let Ok(code) = <[u8; 6]>::try_from(code.as_bytes())
                    {
                        out.lock().unwrap().insert(account, code);
                    }
                    if writer
                        .write_all(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, codes)
}

async fn logged_code(codes: &LoggedCodes, account: &AccountId) -> Option<[u8; 6]> {
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        if let Some(c) = codes.lock().unwrap().get(account.as_str()) {
            return Some(*c);
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    None
}

fn idle_measure(
    label: &str,
    mut cmd: std::process::Command,
    relay: Option<Idle>,
    codes: &LoggedCodes,
    target: usize,
) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(match std::env::var_os(RELAY_LOG_ENV) {
            Some(path) => std::fs::File::create(path).unwrap().into(),
            None => std::process::Stdio::null(),
        })
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    // Codes of an earlier relay process (same account numbers) are stale.
    codes.lock().unwrap().clear();
    let codes = Arc::clone(codes);
    let child = Child(child);
    let pid = child.0.id();
    let (addr, fingerprint) = {
        use std::io::BufRead;
        let mut addr = None;
        let mut fp = None;
        for line in std::io::BufReader::new(stdout).lines() {
            let line = line.unwrap();
            if let Some(a) = line.strip_prefix("sealpost-relay listening on ") {
                addr = Some(a.parse::<SocketAddr>().unwrap());
            }
            if let Some(f) = line.strip_prefix("certificate SHA-256 fingerprint: ") {
                let mut b = [0u8; 32];
                for (i, byte) in b.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&f[2 * i..2 * i + 2], 16).unwrap();
                }
                fp = Some(b);
            }
            // The pin line is the last start-up line: stop reading only after it (the relay
            // would fail writing to a closed pipe).
            if line.starts_with("public-key pin (clients pin this): ") {
                break;
            }
        }
        (addr.unwrap(), fp.unwrap())
    };
    let rt = runtime();
    rt.block_on(async move {
        // Warm the relay up with one full connection so one-time allocations are in the baseline.
        let alpn = if relay.is_some() {
            vec![ALPN.to_vec()]
        } else {
            Vec::new()
        };
        let (ep0, c0) = connect(addr, fingerprint, alpn.clone()).await;
        match relay {
            Some(Idle::Authenticated | Idle::RegisteredHere) => {
                let a = AccountId::new("+16660000000").unwrap();
                register_and_authenticate(&c0, &a, |a| {
                    let codes = Arc::clone(&codes);
                    async move { logged_code(&codes, &a).await }
                })
                .await;
            }
            Some(Idle::Unauthenticated) => {
                let _ = request(&c0, &Request::Challenge).await;
            }
            None => {}
        }
        let cfg = idle_client_config(fingerprint, alpn);
        let endpoints: Vec<_> = (0..CLIENT_ADDRS)
            .map(|i| {
                let ip = std::net::Ipv4Addr::new(127, 0, 0, u8::try_from(i + 2).unwrap());
                let mut e = quinn::Endpoint::client((ip, 0).into()).unwrap();
                e.set_default_client_config(cfg.clone());
                e
            })
            .collect();
        // Devices registered before the measurement, each on a connection of its own that is
        // closed again (the relay's webhook sender keeps at most 64 deliveries in flight and
        // drops codes beyond that, hence 32 at a time).
        let registered = if relay == Some(Idle::Authenticated) {
            let started = Instant::now();
            let gate = Arc::new(Semaphore::new(32));
            let tasks: Vec<_> = (0..target)
                .map(|i| {
                    let ep = endpoints[i % endpoints.len()].clone();
                    let (gate, codes) = (Arc::clone(&gate), Arc::clone(&codes));
                    tokio::spawn(async move {
                        let _permit = gate.acquire().await.unwrap();
                        let c = ep.connect(addr, "localhost").unwrap().await.unwrap();
                        let a = AccountId::new(format!("+1666{:07}", i + 1)).unwrap();
                        let device =
                            register(&c, &a, |a| async move { logged_code(&codes, &a).await })
                                .await;
                        c.close(0u32.into(), b"registered");
                        device
                    })
                })
                .collect();
            let mut devices = Vec::with_capacity(target);
            for t in tasks {
                devices.push(t.await.unwrap());
            }
            println!(
                "idle_connections ({label}): registered {target} devices in {:.1} s",
                started.elapsed().as_secs_f64()
            );
            Arc::new(devices)
        } else {
            Arc::new(Vec::new())
        };
        tokio::time::sleep(Duration::from_millis(500)).await;
        let before = rss_kib(pid);
        let parts_before = rss_parts(pid);
        let drops_before = udp_rcvbuf_errors();
        let bench_before = rss_kib(std::process::id());
        let started = Instant::now();
        // Handshakes in flight; fewer when registering (the relay's webhook sender keeps at
        // most 64 deliveries in flight and drops codes beyond that).
        let gate = Arc::new(Semaphore::new(if relay == Some(Idle::RegisteredHere) {
            32
        } else {
            128
        }));
        // Exchanges that failed (a request timed out) and were tried again on a new connection.
        let failed = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(target);
        for i in 0..target {
            let ep = endpoints[i % endpoints.len()].clone();
            let gate = Arc::clone(&gate);
            let codes = Arc::clone(&codes);
            let registered = Arc::clone(&registered);
            let failed = Arc::clone(&failed);
            tasks.push(tokio::spawn(async move {
                let _permit = gate.acquire().await.unwrap();
                for _ in 0..3 {
                    let Ok(connecting) = ep.connect(addr, "localhost") else {
                        continue;
                    };
                    let Ok(Ok(c)) = tokio::time::timeout(TIMEOUT, connecting).await else {
                        continue;
                    };
                    // On a task of its own: a timed-out request panics there and is counted.
                    let (conn, codes, registered) =
                        (c.clone(), Arc::clone(&codes), Arc::clone(&registered));
                    let setup = tokio::spawn(async move {
                        match relay {
                            Some(Idle::Authenticated) => {
                                let (id, address) = &registered[i];
                                authenticate(&conn, id, address).await;
                            }
                            Some(Idle::RegisteredHere) => {
                                let a = AccountId::new(format!("+1666{:07}", i + 1)).unwrap();
                                register_and_authenticate(&conn, &a, |a| async move {
                                    logged_code(&codes, &a).await
                                })
                                .await;
                            }
                            Some(Idle::Unauthenticated) | None => {}
                        }
                    });
                    if setup.await.is_ok() {
                        return Some(c);
                    }
                    failed.fetch_add(1, Ordering::Relaxed);
                    c.close(0u32.into(), b"setup failed");
                }
                None
            }));
        }
        let mut conns = Vec::with_capacity(target);
        for t in tasks {
            if let Some(c) = t.await.unwrap() {
                conns.push(c);
            }
        }
        let took = started.elapsed();
        // Idle (keep-alives only) for a few seconds so the relay's per-connection state settles.
        let hold = std::env::var(HOLD_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_HOLD_SECS);
        tokio::time::sleep(Duration::from_secs(hold)).await;
        let alive = conns.iter().filter(|c| c.close_reason().is_none()).count();
        let after = rss_kib(pid);
        let per = (after.saturating_sub(before)) as f64 / alive.max(1) as f64;
        println!(
            "idle_connections ({label}): {alive}/{target} alive (opened in {:.1} s), server VmRSS {before} KiB -> {after} KiB: {per:.1} KiB per connection (target < 30 KiB)",
            took.as_secs_f64()
        );
        if alive < target {
            // Connections that died were freed, but what they held may stay resident (the
            // allocator keeps freed memory): per connection opened, for comparison.
            println!(
                "idle_connections ({label}): {:.1} KiB per connection opened ({target})",
                (after.saturating_sub(before)) as f64 / target.max(1) as f64
            );
        }
        println!(
            "idle_connections ({label}): server file descriptors {}; bench process (the clients) VmRSS {bench_before} KiB -> {} KiB; {} exchanges timed out and were tried again",
            fd_count(pid),
            rss_kib(std::process::id()),
            failed.load(Ordering::Relaxed)
        );
        let parts = rss_parts(pid);
        println!(
            "idle_connections ({label}): server RssAnon {} -> {} KiB, RssFile {} -> {} KiB, RssShmem {} -> {} KiB, threads {} -> {}; UDP receive-buffer overflows during the run: {}",
            parts_before[0],
            parts[0],
            parts_before[1],
            parts[1],
            parts_before[2],
            parts[2],
            parts_before[3],
            parts[3],
            udp_rcvbuf_errors().saturating_sub(drops_before)
        );
        for c in &conns {
            c.close(0u32.into(), b"done");
        }
        c0.close(0u32.into(), b"done");
        for e in &endpoints {
            let _ = tokio::time::timeout(Duration::from_secs(2), e.wait_idle()).await;
        }
        // What stays resident once every connection is gone: allocator retention, not state.
        tokio::time::sleep(Duration::from_secs(2)).await;
        println!(
            "idle_connections ({label}): VmRSS after closing them all: {} KiB",
            rss_kib(pid)
        );
        drop(ep0);
    });
    drop(child);
}
