//! CPU per message, relay against echo (`SEALPOST_BENCH_CPU=N:count:rounds`): for comparing
//! two builds of the relay on a machine whose speed drifts and which others share, where
//! the wall-clock ratio is noisy and hardware instruction counters are not available.
//!
//! Sets up N relay pairs (SQLite) and N echo connections, then `rounds` times: a warm-up of a
//! tenth of `count`, `count` relay messages, the same for echoes (the order alternates), each
//! timed in CPU time of the whole process (user + system, all threads: the clients, the
//! relay, its SQLite writer) from `/proc/self/stat`. Prints per round the CPU microseconds
//! per relay message and per echo, and their quotient, then the medians. With
//! `SEALPOST_BENCH_CPU=N:count:rounds:relay`, only the relay runs (for a profiler).

use super::*;

/// Environment variable selecting this mode: `N:count:rounds`.
pub(super) const ENV: &str = "SEALPOST_BENCH_CPU";

/// The process's user + system CPU time so far, from `/proc/self/stat` (clock ticks of
/// 10 ms, `USER_HZ` being 100 on Linux).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name (which ends with the last ')'): state is field 3,
    // utime field 14, stime field 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

/// CPU time and wall time of `run`.
fn measured(run: impl FnOnce() -> Duration) -> (Duration, Duration) {
    let before = cpu_time();
    let wall = run();
    (cpu_time() - before, wall)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(super) fn main(spec: &str) {
    let relay_only = spec.ends_with(":relay");
    let spec = spec.trim_end_matches(":relay");
    let parts: Vec<u64> = spec.split(':').map(|p| p.parse().unwrap()).collect();
    let [n, count, rounds] = parts[..] else {
        panic!("{ENV}=N:count:rounds[:relay]");
    };
    let n = usize::try_from(n).unwrap();
    let rt = runtime();
    let relay = rt.block_on(relay_setup(n, None));
    let echo = rt.block_on(echo_setup(n));
    let scratch = Arc::new(Stats::default());
    let (mut relay_us, mut echo_us, mut quotients) = (Vec::new(), Vec::new(), Vec::new());
    if relay_only {
        for round in 0..rounds {
            run_relay(&rt, &relay, n, count / 10, &scratch);
            let (c, w) = measured(|| run_relay(&rt, &relay, n, count, &scratch));
            println!(
                "cpu N={n} round {round}: relay {:.2} us/msg ({:.0} msg/s)",
                c.as_secs_f64() * 1e6 / count as f64,
                count as f64 / w.as_secs_f64()
            );
        }
        return;
    }
    for round in 0..rounds {
        let relay_run = || {
            run_relay(&rt, &relay, n, count / 10, &scratch);
            measured(|| run_relay(&rt, &relay, n, count, &scratch))
        };
        let echo_run = || {
            run_echo(&rt, &echo, n, count / 10, &scratch);
            measured(|| run_echo(&rt, &echo, n, count, &scratch))
        };
        let ((rc, rw), (ec, ew)) = if round % 2 == 0 {
            let r = relay_run();
            (r, echo_run())
        } else {
            let e = echo_run();
            (relay_run(), e)
        };
        let per = |cpu: Duration| cpu.as_secs_f64() * 1e6 / count as f64;
        let (r, e) = (per(rc), per(ec));
        println!(
            "cpu N={n} round {round}: relay {r:.2} us/msg ({:.0} msg/s, {:.2} CPUs), echo {e:.2} us/echo ({:.0}/s, {:.2} CPUs), relay/echo CPU {:.3}",
            count as f64 / rw.as_secs_f64(),
            rc.as_secs_f64() / rw.as_secs_f64(),
            count as f64 / ew.as_secs_f64(),
            ec.as_secs_f64() / ew.as_secs_f64(),
            r / e
        );
        relay_us.push(r);
        echo_us.push(e);
        quotients.push(r / e);
    }
    println!(
        "cpu N={n} median of {rounds}: relay {:.2} us/msg, echo {:.2} us/echo, relay/echo CPU {:.3}",
        median(relay_us),
        median(echo_us),
        median(quotients)
    );
    rt.block_on(async move {
        for (_, c) in &echo.clients {
            c.close(0u32.into(), b"done");
        }
        echo.server.close(0u32.into(), b"done");
        let mut relay = relay;
        relay.pairs.clear();
        relay.relay.take().unwrap().shutdown().await;
    });
}
