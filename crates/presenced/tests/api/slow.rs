//! Graph's slow-endpoint rules (fact sheet §4.3), with small numbers from
//! the configuration: an endpoint that answers slowly too often is first
//! held back, then dropped with `missed`, until its counters restart.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::{ADELE, TestServer};
use crate::notifications::{WAIT, request, server, set_presence, subscribe};
use crate::receiver::{Behaviour, Receiver};

/// Pairs that differ from one to the next, so each makes a notification.
const PAIRS: [(&str, &str); 4] = [
    ("Busy", "InACall"),
    ("Available", "Available"),
    ("Away", "Away"),
    ("DoNotDisturb", "Presenting"),
];

/// Makes change number `n` and waits until the hook has `n + 1` items.
async fn change(server: &TestServer, hook: &Receiver, n: usize) {
    let (availability, activity) = PAIRS[n % PAIRS.len()];
    set_presence(server, ADELE, availability, activity).await;
    assert_eq!(hook.wait_for(n + 1, WAIT).await.len(), n + 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flagged_endpoint_gets_its_notifications_late() {
    let (server, _dir) = server(
        "slow_threshold = \"PT0.2S\"\nslow_after = 4\nslow_flag_percent = 50\nslow_drop_percent = 90\nslow_delay = \"PT2S\"\n",
    )
    .await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let created = subscribe(
        &server,
        request(&hook.url, &format!("communications/presences/{ADELE}")),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text);
    change(&server, &hook, 0).await;
    change(&server, &hook, 1).await;
    hook.set(Behaviour::Slow(Duration::from_millis(400)));
    change(&server, &hook, 2).await;
    change(&server, &hook, 3).await;
    // Two of four answers were slow: 50 %, flagged.
    hook.set(Behaviour::Healthy);
    let started = Instant::now();
    set_presence(&server, ADELE, "Busy", "InACall").await;
    let items = hook.wait_for(5, WAIT).await;
    assert_eq!(items.len(), 5, "{items:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "delivered after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_too_slow_endpoint_loses_notifications_until_its_counters_restart() {
    let (server, _dir) =
        server("slow_threshold = \"PT0.2S\"\nslow_after = 2\nslow_window = \"PT3S\"\n").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let lifecycle = Receiver::start(Behaviour::Healthy).await;
    let mut body = request(&hook.url, &format!("communications/presences/{ADELE}"));
    body["lifecycleNotificationUrl"] = json!(lifecycle.url);
    let created = subscribe(&server, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    hook.set(Behaviour::Slow(Duration::from_millis(400)));
    change(&server, &hook, 0).await;
    change(&server, &hook, 1).await;
    // Two of two answers were slow: 100 % >= 15 %, dropped with `missed`.
    hook.set(Behaviour::Healthy);
    set_presence(&server, ADELE, "Away", "Away").await;
    let events = lifecycle.wait_for(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["lifecycleEvent"], "missed");
    assert_eq!(events[0]["subscriptionId"], created.json()["id"]);
    assert_eq!(hook.items().len(), 2);
    // The window began with the first answer; the next one starts afresh.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    set_presence(&server, ADELE, "DoNotDisturb", "Presenting").await;
    let items = hook.wait_for(3, WAIT).await;
    assert_eq!(items.len(), 3, "{items:?}");
    assert_eq!(lifecycle.items().len(), 1);
}
