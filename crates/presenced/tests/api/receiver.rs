//! `Receiver`: a webhook endpoint on loopback that records what presenced
//! sends it, answers validation handshakes, and misbehaves on request.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

/// How the receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Echoes tokens, answers 202 to notifications.
    Healthy,
    /// Answers validation with a different token.
    WrongToken,
    /// Waits this long before answering anything.
    Slow(Duration),
    /// Answers notifications with 500 (handshakes succeed).
    Failing,
}

#[derive(Default)]
struct Inner {
    /// Every notification collection received, in order.
    notifications: Vec<Value>,
    handshakes: usize,
    /// Notifications answered with 500 before behaving.
    fail_first: usize,
    /// Notification posts answered with 500 so far.
    failures: usize,
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    behaviour: Arc<Mutex<Behaviour>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

type Shared = (Arc<Mutex<Inner>>, Arc<Mutex<Behaviour>>);

async fn handle(
    State((inner, behaviour)): State<Shared>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    body: axum::body::Bytes,
) -> Response {
    let mode = *behaviour.lock().unwrap();
    if let Behaviour::Slow(wait) = mode {
        tokio::time::sleep(wait).await;
    }
    if let Some(token) = query.get("validationToken") {
        inner.lock().unwrap().handshakes += 1;
        let echo = if mode == Behaviour::WrongToken {
            "something else".to_string()
        } else {
            token.clone()
        };
        return (StatusCode::OK, [("content-type", "text/plain")], echo).into_response();
    }
    let mut inner = inner.lock().unwrap();
    if mode == Behaviour::Failing || inner.fail_first > 0 {
        inner.fail_first = inner.fail_first.saturating_sub(1);
        inner.failures += 1;
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    if let Ok(json) = serde_json::from_slice(&body) {
        inner.notifications.push(json);
    }
    StatusCode::ACCEPTED.into_response()
}

impl Receiver {
    pub async fn start(behaviour: Behaviour) -> Receiver {
        Receiver::start_on("127.0.0.1:0", behaviour).await
    }

    /// On a given address (to come back on the same port after a stop).
    pub async fn start_on(address: &str, behaviour: Behaviour) -> Receiver {
        let inner = Arc::new(Mutex::new(Inner::default()));
        let behaviour = Arc::new(Mutex::new(behaviour));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(handle))
            .with_state((inner.clone(), behaviour.clone()));
        let listener = tokio::net::TcpListener::bind(address).await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            url,
            inner,
            behaviour,
            task: Arc::new(task),
        }
    }

    pub fn set(&self, behaviour: Behaviour) {
        *self.behaviour.lock().unwrap() = behaviour;
    }

    pub fn fail_first(&self, n: usize) {
        self.inner.lock().unwrap().fail_first = n;
    }

    /// How many notification posts were answered with 500.
    pub fn failures(&self) -> usize {
        self.inner.lock().unwrap().failures
    }

    pub fn handshakes(&self) -> usize {
        self.inner.lock().unwrap().handshakes
    }

    /// Every notification item received so far.
    pub fn items(&self) -> Vec<Value> {
        let inner = self.inner.lock().unwrap();
        inner
            .notifications
            .iter()
            .flat_map(|c| c["value"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Every notification collection received so far, whole.
    pub fn collections(&self) -> Vec<Value> {
        self.inner.lock().unwrap().notifications.clone()
    }

    /// Waits (at most `limit`) until `count` items have arrived.
    pub async fn wait_for(&self, count: usize, limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let items = self.items();
            if items.len() >= count || started.elapsed() > limit {
                return items;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
