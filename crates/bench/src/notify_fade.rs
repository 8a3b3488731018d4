//! The `notify-fade` benchmark: N users, all covered by one subscription, get an
//! Available session at the same presence instant; the manual clock then
//! moves 5 minutes, so every one of them fades (Available/AvailableInactive)
//! at once. The figure is the wall time from the clock move until a local
//! webhook receiver has every one of the N notifications.
//!
//! One subscription covers everyone: it is made with application
//! permissions and more than 650 ids, so the benchmark turns on the
//! extensions `app_subscriptions` and `unlimited_ids`. Throttling is off.
//! Nothing here knows presenced's internals: it uses the binary, the
//! configuration file, the Graph API and the admin clock, like any client.

use crate::process::Process;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use jiff::{SignedDuration, Timestamp};
use presenced_domain::Guid;
use presenced_identity::{DevIssuerKey, Subject, TokenRequest};
use serde_json::{Value, json};

const TENANT: &str = "b3a1c2d4-0e5f-4a6b-8c7d-9e0f1a2b3c4d";
const APP: &str = "c4b2d3e5-1f60-4b7c-9d8e-0f1a2b3c4d5e";
/// Concurrent setPresence requests while sessions are being set.
const WRITERS: usize = 32;
/// The longest any phase may take before the benchmark gives up.
const PHASE_LIMIT: Duration = Duration::from_secs(600);

/// What [`notify_fade`] measured.
#[derive(Debug, Clone)]
pub struct FadeReport {
    pub users: usize,
    /// From the clock move until the receiver had all N notifications.
    pub fade: Duration,
}

impl FadeReport {
    /// One Markdown line: the figure and the machine it was measured on.
    pub fn markdown(&self) -> String {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        format!(
            "notify-fade: {} subscribed users fading at the same instant, all {} notifications at a local receiver in **{:.2} s** ({} cores, {})",
            self.users,
            self.users,
            self.fade.as_secs_f64(),
            cores,
            crate::report::cpu_model()
        )
    }
}

/// The user ids of the generated directory.
fn user_id(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Runs the benchmark against the `presenced` binary at `presenced`.
pub async fn notify_fade(presenced: &Path, users: usize) -> anyhow::Result<FadeReport> {
    let dir = tempfile::tempdir()?;
    let data_dir = dir.path().join("data");
    std::fs::create_dir_all(&data_dir)?;
    let key = DevIssuerKey::load_or_create(&data_dir).context("signing key")?;
    let ids: Vec<String> = (0..users).map(user_id).collect();
    let directory = json!({"tenants": [{
        "id": TENANT, "displayName": "Benchmark",
        "applications": [{"appId": APP, "displayName": "Bench", "secrets": ["bench-secret"],
                          "roles": ["Presence.Read.All", "Presence.ReadWrite.All"]}],
        "users": ids.iter().enumerate().map(|(n, id)| json!({
            "id": id, "userPrincipalName": format!("user{n}@bench.example"), "displayName": format!("User {n}")
        })).collect::<Vec<_>>(),
    }]});
    let directory_file = dir.path().join("directory.json");
    std::fs::write(&directory_file, directory.to_string())?;
    let config = dir.path().join("presenced.toml");
    std::fs::write(
        &config,
        "[notifications]\napp_subscriptions = true\nunlimited_ids = true\n",
    )?;

    let args: Vec<String> = [
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--webhooks-allow-loopback-http",
    ]
    .map(String::from)
    .into_iter()
    .chain([
        "--data-dir".into(),
        data_dir.display().to_string(),
        "--directory".into(),
        directory_file.display().to_string(),
        "--config".into(),
        config.display().to_string(),
    ])
    .collect();
    let server = Process::start(presenced, &args)?;
    let base = format!("http://{}", server.address);
    let token = key.mint(
        &TokenRequest {
            tenant: guid(TENANT)?,
            app: guid(APP)?,
            subject: Subject::Application {
                roles: vec!["Presence.Read.All".into(), "Presence.ReadWrite.All".into()],
            },
            lifetime: SignedDuration::from_hours(2),
        },
        Timestamp::now(),
    )?;
    let receiver = Receiver::start().await?;
    // The workspace builds reqwest with rustls on the process's one provider.
    presenced_identity::install_crypto_provider();
    let client = reqwest::Client::new();

    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    let subscription = json!({
        "changeType": "updated",
        "notificationUrl": receiver.url,
        "resource": format!("communications/presences?$filter=id in ({})", quoted.join(",")),
        "expirationDateTime": "2000-01-01T00:00:00Z",
    });
    let created = client
        .post(format!("{}/v1.0/subscriptions", base))
        .bearer_auth(&token)
        .json(&subscription)
        .send()
        .await?;
    if created.status() != 201 {
        bail!("subscribing failed: {}", created.text().await?);
    }

    // Every user gets an Available session at the same presence instant
    // (the manual clock does not move meanwhile).
    set_sessions(&client, &base, &token, &ids).await?;
    receiver.wait_for(users, PHASE_LIMIT).await?;
    receiver.reset();

    let started = Instant::now();
    let moved = client
        .post(format!("{}/admin/clock", base))
        .json(&json!({"advance": "PT5M"}))
        .send()
        .await?;
    if !moved.status().is_success() {
        bail!("moving the clock failed: {}", moved.text().await?);
    }
    receiver.wait_for(users, PHASE_LIMIT).await?;
    let fade = started.elapsed();
    drop(server);
    Ok(FadeReport { users, fade })
}

fn guid(text: &str) -> anyhow::Result<Guid> {
    Guid::parse(text).with_context(|| format!("{text} is not a GUID"))
}

async fn set_sessions(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    ids: &[String],
) -> anyhow::Result<()> {
    let next = Arc::new(AtomicUsize::new(0));
    let ids = Arc::new(ids.to_vec());
    let mut writers = tokio::task::JoinSet::new();
    for _ in 0..WRITERS {
        let (client, base, token) = (client.clone(), base.to_string(), token.to_string());
        let (next, ids) = (Arc::clone(&next), Arc::clone(&ids));
        writers.spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                let Some(id) = ids.get(n) else {
                    return Ok::<(), anyhow::Error>(());
                };
                let answer = client
                    .post(format!("{base}/v1.0/users/{id}/presence/setPresence"))
                    .bearer_auth(&token)
                    .json(&json!({"sessionId": APP, "availability": "Available",
                                  "activity": "Available", "expirationDuration": "PT1H"}))
                    .send()
                    .await?;
                if !answer.status().is_success() {
                    bail!("setPresence for {id}: {}", answer.text().await?);
                }
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done??;
    }
    Ok(())
}

/// A webhook endpoint on loopback that counts notification items.
struct Receiver {
    url: String,
    items: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn receive(
    State(items): State<Arc<AtomicUsize>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(token) = query.get("validationToken") {
        return (
            StatusCode::OK,
            [("content-type", "text/plain")],
            token.clone(),
        )
            .into_response();
    }
    let count = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v["value"].as_array().map(Vec::len))
        .unwrap_or(0);
    items.fetch_add(count, Ordering::Relaxed);
    StatusCode::ACCEPTED.into_response()
}

impl Receiver {
    async fn start() -> anyhow::Result<Receiver> {
        let items = Arc::new(AtomicUsize::new(0));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(Arc::clone(&items));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Receiver { url, items, task })
    }

    fn reset(&self) {
        self.items.store(0, Ordering::Relaxed);
    }

    /// Waits until `count` items arrived, polling every millisecond.
    async fn wait_for(&self, count: usize, limit: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        loop {
            let got = self.items.load(Ordering::Relaxed);
            if got >= count {
                return Ok(());
            }
            if started.elapsed() > limit {
                bail!("only {got} of {count} notifications arrived within {limit:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
}
