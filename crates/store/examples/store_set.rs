//! Measures the embedded store's durable write path end to end: writes a
//! session for each of `users` users (64 writes in flight), then `writes`
//! more to random users, and prints writes per second and the latency of
//! an acknowledgement (p50, p99, max) for both phases. Every write is
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
        let fill = run(&store, users, |n| n as u128).await;
        report("fill", users, &fill);
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
