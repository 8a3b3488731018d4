//! The `timers` scenario: N sessions whose expiries fall inside one window of
//! real time, and how far behind real time presenced's scheduler runs while
//! it handles them.
//!
//! Every user gets one Busy/InACall session: a Busy session never fades, so
//! its expiry is the user's only deadline (an Available one would add two
//! more, the fades to AvailableInactive and Away). The expiries are spread
//! evenly over `window`, starting a lead time after the data is in place.
//!
//! Setting a million sessions over HTTP would take minutes, and Graph's
//! shortest session lasts 5 minutes, so the data directory is prepared
//! before presenced starts, through the embedded store itself: the same
//! [`Store::load_directory`] and [`Store::apply`] with the same
//! [`Mutation::SetSession`] that the API uses, each session applied at a
//! back-dated instant (its expiry minus 5 minutes). presenced then starts on
//! that directory with the system clock and `--throttle off`, and the
//! benchmark polls `GET /admin/scheduler` every 100 ms until every deadline
//! is handled. The lag figures are presenced's own: a deadline counts as
//! handled once its notifications are queued and its move is durable, and
//! the lag is from the deadline until that point.

use crate::process::Process;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use jiff::{SignedDuration, Timestamp};
use presenced_domain::{
    Activity, Availability, Guid, Mutation, Rules, SessionExpiration, SessionId, SessionState,
};
use presenced_store::embedded::EmbeddedStore;
use presenced_store::{ApplyOutcome, DirectoryUser, Store, Tenant, TenantRecord, UserKey};
use serde_json::Value;

const TENANT: Guid = Guid::from_u128(0x7133_5000_0000_4000_8000_0000_0000_0001);
/// Concurrent `apply` calls while the data directory is prepared, so that
/// the store's group commit takes many sessions per fsync.
const SEEDERS: usize = 4096;
/// How often the scheduler's progress is read.
const POLL: Duration = Duration::from_millis(100);
/// How long every deadline may take to be handled after the window ends.
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
/// The session each user holds.
const SESSION: &str = "timers-benchmark";

/// What [`timers`] measured.
#[derive(Debug, Clone)]
pub struct TimersReport {
    pub sessions: usize,
    /// The expiries are spread evenly over this much real time.
    pub window: Duration,
    /// presenced's own figure: the most any deadline waited from its instant
    /// until its handling (notifications queued, deadline moved on durably)
    /// completed.
    pub max_lag: Duration,
    /// The largest current lag seen while polling (how long the oldest
    /// deadline not yet handled had been due).
    pub max_lag_polled: Duration,
    /// Deadlines presenced reports handled.
    pub processed: u64,
    /// From the first deadline until a poll saw the last one handled
    /// (to within the 100 ms polling interval).
    pub handled_in: Duration,
    /// Preparing the data directory.
    pub seeding: Duration,
    /// From starting presenced until it listened.
    pub start_up: Duration,
}

impl TimersReport {
    /// One Markdown line: the figures and the machine they were measured on.
    pub fn markdown(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!(
            "timers: {} session expiries within {} s, {} handled, at most **{:.3} s** behind real time (all handled {:.2} s after the first was due; {} cores, {})",
            self.sessions,
            self.window.as_secs_f64(),
            self.processed,
            self.max_lag.as_secs_f64(),
            self.handled_in.as_secs_f64(),
            cores,
            crate::report::cpu_model(),
        )
    }
}

/// The id of user `n` of the generated directory.
fn user(n: usize) -> Guid {
    Guid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0000 | n as u128)
}

/// How long before the first expiry the data directory should be ready and
/// presenced listening: preparing and loading take time in proportion to N.
fn lead(sessions: usize) -> Duration {
    Duration::from_secs(3) + Duration::from_micros(20).saturating_mul(sessions as u32)
}

/// Runs the scenario against the `presenced` binary at `presenced`.
pub async fn timers(
    presenced: &Path,
    sessions: usize,
    window: Duration,
) -> anyhow::Result<TimersReport> {
    if sessions == 0 {
        bail!("the timers scenario needs at least one session");
    }
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    let seeding_started = Instant::now();
    let first_due = Timestamp::now() + SignedDuration::try_from(lead(sessions))?;
    seed(&data_dir, sessions, window, first_due).await?;
    let seeding = seeding_started.elapsed();

    let starting = Instant::now();
    let server = Process::start(
        presenced,
        &[
            "serve".into(),
            "--data-dir".into(),
            data_dir.display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--clock".into(),
            "system".into(),
            "--throttle".into(),
            "off".into(),
        ],
    )?;
    let start_up = starting.elapsed();
    let ready_at = Timestamp::now();
    if ready_at >= first_due {
        bail!(
            "presenced was ready {:.1} s after the first deadline (seeding took {:.1} s, start-up {:.1} s): the lead is too short",
            ready_at.duration_since(first_due).as_secs_f64(),
            seeding.as_secs_f64(),
            start_up.as_secs_f64(),
        );
    }

    // The workspace builds reqwest with rustls on the process's one provider.
    presenced_identity::install_crypto_provider();
    let client = reqwest::Client::new();
    let url = format!("http://{}/admin/scheduler", server.address);
    let limit = Instant::now()
        + Duration::try_from(first_due.duration_since(Timestamp::now())).unwrap_or_default()
        + window
        + DRAIN_LIMIT;
    let mut max_lag_polled = Duration::ZERO;
    let last = loop {
        let body: Value = client
            .get(&url)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let seen_at = Timestamp::now();
        let lag = seconds(&body, "lagSeconds")?;
        max_lag_polled = max_lag_polled.max(lag);
        let processed = body["processed"]
            .as_u64()
            .context("no processed count in /admin/scheduler")?;
        if processed >= sessions as u64 && lag.is_zero() {
            break (body, seen_at);
        }
        if Instant::now() > limit {
            bail!("the scheduler did not handle every deadline in time: {body}");
        }
        tokio::time::sleep(POLL).await;
    };
    let (body, seen_at) = last;
    drop(server);
    Ok(TimersReport {
        sessions,
        window,
        max_lag: seconds(&body, "maxLagSeconds")?,
        max_lag_polled,
        processed: body["processed"].as_u64().unwrap_or_default(),
        handled_in: Duration::try_from(seen_at.duration_since(first_due)).unwrap_or_default(),
        seeding,
        start_up,
    })
}

fn seconds(body: &Value, field: &str) -> anyhow::Result<Duration> {
    let value = body[field]
        .as_f64()
        .with_context(|| format!("no {field} in /admin/scheduler: {body}"))?;
    Ok(Duration::from_secs_f64(value.max(0.0)))
}

/// Prepares `data_dir`: a directory of `sessions` users, each with one Busy
/// session expiring at `first_due + n × window / sessions`.
async fn seed(
    data_dir: &Path,
    sessions: usize,
    window: Duration,
    first_due: Timestamp,
) -> anyhow::Result<()> {
    let dir = data_dir.to_path_buf();
    let store =
        tokio::task::spawn_blocking(move || EmbeddedStore::open(&dir, Rules::default())).await??;
    let users = (0..sessions)
        .map(|n| DirectoryUser {
            id: user(n),
            user_principal_name: format!("user{n}@timers.example"),
            display_name: format!("User {n}"),
            profile: Default::default(),
        })
        .collect();
    store
        .load_directory(vec![TenantRecord {
            tenant: Tenant {
                id: TENANT,
                display_name: "Timers".into(),
            },
            users,
        }])
        .await?;

    let step = SignedDuration::try_from(window)? / i32::try_from(sessions)?;
    let state = SessionState::new(Availability::Busy, Activity::InACall)?;
    let expiration = SessionExpiration::DEFAULT;
    let next = Arc::new(AtomicUsize::new(0));
    let mut seeders = tokio::task::JoinSet::new();
    for _ in 0..SEEDERS.min(sessions) {
        let (store, next) = (Arc::clone(&store), Arc::clone(&next));
        seeders.spawn(async move {
            let id = SessionId::parse(SESSION)?;
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= sessions {
                    return Ok::<(), anyhow::Error>(());
                }
                let expires = first_due + step * i32::try_from(n)?;
                let mutation = Mutation::SetSession {
                    id: id.clone(),
                    state,
                    expiration,
                };
                let key = UserKey {
                    tenant: TENANT,
                    user: user(n),
                };
                let applied_at = expires - expiration.duration();
                if let ApplyOutcome::Refused(why) = store.apply(key, mutation, applied_at).await? {
                    bail!("the session of user {n} was refused: {why}");
                }
            }
        });
    }
    while let Some(done) = seeders.join_next().await {
        done??;
    }
    store.close().await?;
    Ok(())
}
