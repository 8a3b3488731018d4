//! Measures the embedded store's durable write path end to end: writes a
//! session for each of `users` users (64 writes in flight), then `writes`
//! more to random users, and prints writes per second and the latency of
//! an acknowledgement (p50, p99, max) for both phases, and the CPU time
//! the store's own threads (writer and applier) took per write in each
//! phase (from `/proc`, so Linux only). Every write is
//! acknowledged only once it is durable, as for a `setPresence` request.
//!
//! Usage: `cargo run --release -p presenced-store --example store_set -- [users] [writes]`
//! (defaults 100000 and 200000; both bounded to 2,000,000). It writes in a
//! temporary directory and removes it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use presenced_domain::{Guid, Mutation, Rules, SessionExpiration, SessionId, SessionState};
use presenced_store::embedded::EmbeddedStore;
use presenced_store::{Store, UserKey};

const IN_FLIGHT: usize = 64;
const LIMIT: usize = 2_000_000;

fn main() {
    let mut args = std::env::args().skip(1);
    let users: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(100_000);
    let writes: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(200_000);
    let (users, writes) = (users.clamp(1, LIMIT), writes.clamp(1, LIMIT));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = EmbeddedStore::open(dir.path(), Rules::default()).expect("the store opens");
        println!("{users} users, then {writes} writes to random users, {IN_FLIGHT} in flight");
        println!(
            "{:<8} {:>10} {:>9} {:>9} {:>9}",
            "phase", "writes/s", "p50 ms", "p99 ms", "max ms"
        );
        let before = store_threads_cpu();
        let fill = run(&store, users, |n| n as u128).await;
        report("fill", users, &fill);
        let after_fill = store_threads_cpu();
        report_cpu("fill", users, &before, &after_fill);
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let targets: Vec<u128> = (0..writes)
            .map(|_| {
                // xorshift64: a fixed, cheap sequence of random users.
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                u128::from(state % users as u64)
            })
            .collect();
        let random = run(&store, writes, |n| targets[n]).await;
        report("random", writes, &random);
        report_cpu("random", writes, &after_fill, &store_threads_cpu());
        store.close().await.expect("the store closes");
    });
}

struct Figures {
    took: Duration,
    latencies: Vec<Duration>,
}

async fn run(store: &Arc<EmbeddedStore>, writes: usize, user: impl Fn(usize) -> u128) -> Figures {
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut latencies = Vec::with_capacity(writes);
    let now = Timestamp::now();
    for n in 0..writes {
        if tasks.len() >= IN_FLIGHT {
            latencies.push(tasks.join_next().await.expect("a task").expect("no panic"));
        }
        let store = Arc::clone(store);
        let key = UserKey {
            tenant: Guid::from_u128(1),
            user: Guid::from_u128(user(n) + 1),
        };
        tasks.spawn(async move {
            let mutation = Mutation::SetSession {
                id: SessionId::parse("bench").expect("a session id"),
                state: SessionState::parse("Busy", "InACall").expect("a state"),
                expiration: SessionExpiration::DEFAULT,
            };
            let sent = Instant::now();
            store
                .apply(key, mutation, now)
                .await
                .expect("the write is stored");
            sent.elapsed()
        });
    }
    while let Some(done) = tasks.join_next().await {
        latencies.push(done.expect("no panic"));
    }
    Figures {
        took: started.elapsed(),
        latencies,
    }
}

fn report(phase: &str, writes: usize, figures: &Figures) {
    let mut sorted = figures.latencies.clone();
    sorted.sort_unstable();
    let at = |q: f64| {
        sorted
            .get(((sorted.len() as f64 * q) as usize).min(sorted.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1e3)
    };
    println!(
        "{:<8} {:>10.0} {:>9.2} {:>9.2} {:>9.2}",
        phase,
        writes as f64 / figures.took.as_secs_f64(),
        at(0.5),
        at(0.99),
        at(1.0),
    );
}

/// CPU seconds so far of each of this process's threads whose name starts
/// with "presenced-store" (the kernel keeps 15 bytes of a thread's name, so
/// the writer and the applier read alike; they are told apart by id).
fn store_threads_cpu() -> Vec<(u32, f64)> {
    // Clock ticks per second: 100 on every Linux this runs on.
    const TICKS: f64 = 100.0;
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        let path = task.path();
        let name = std::fs::read_to_string(path.join("comm")).unwrap_or_default();
        if !name.starts_with("presenced-store") {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(path.join("stat")) else {
            continue;
        };
        // After the parenthesised name: state is field 3, utime 14, stime 15.
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|f| f.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let id = task.file_name().to_string_lossy().parse().unwrap_or(0);
        out.push((id, (ticks(11) + ticks(12)) / TICKS));
    }
    out.sort_unstable_by_key(|(id, _)| *id);
    out
}

fn report_cpu(phase: &str, writes: usize, before: &[(u32, f64)], after: &[(u32, f64)]) {
    let per_write: Vec<String> = after
        .iter()
        .map(|(id, cpu)| {
            let earlier = before
                .iter()
                .find(|(b, _)| b == id)
                .map_or(0.0, |(_, c)| *c);
            format!(
                "thread {id}: {:.1} µs",
                (cpu - earlier) * 1e6 / writes as f64
            )
        })
        .collect();
    println!(
        "{phase:<8} store threads' CPU per write: {}",
        per_write.join(", ")
    );
}
