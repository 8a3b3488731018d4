//! Change notifications against real webhook receivers on loopback: the
//! handshake, the subscription API's rules, request- and time-driven
//! delivery, retries, `missed`, a dead endpoint, and a SIGKILL.

use std::time::Duration;

use serde_json::{Value, json};

use crate::helpers::{ADELE, APP, LEE, MEGAN, TENANT, TestServer, both};
use crate::receiver::{Behaviour, Receiver};

pub const WAIT: Duration = Duration::from_secs(10);

/// A server on the manual clock that may call loopback webhooks, with
/// quick retries and a short handshake timeout.
pub async fn server(extra: &str) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("presenced.toml");
    std::fs::write(
        &config,
        format!(
            "[notifications]\nretry_initial = \"PT0.05S\"\nretry_max = \"PT0.2S\"\nhandshake_timeout = \"PT0.5S\"\n{extra}"
        ),
    )
    .unwrap();
    let server = TestServer::start_with(&[
        "--clock",
        "manual",
        "--throttle",
        "off",
        "--webhooks-allow-loopback-http",
        "--config",
        config.to_str().unwrap(),
    ])
    .await;
    (server, dir)
}

pub fn request(url: &str, resource: &str) -> Value {
    json!({
        "changeType": "updated",
        "notificationUrl": url,
        "resource": resource,
        "expirationDateTime": "2000-01-01T00:00:00Z",
        "clientState": "secret-state",
    })
}

pub async fn subscribe(server: &TestServer, body: Value) -> crate::helpers::Answer {
    server
        .post("/v1.0/subscriptions", &server.adele(), body)
        .await
}

/// Subscribes (as Adele) to one user's presence, delivered to `hook`;
/// answers the new subscription's id.
pub async fn subscribe_to(server: &TestServer, hook: &Receiver, user: &str) -> String {
    let body = request(&hook.url, &format!("communications/presences/{user}"));
    let answer = subscribe(server, body).await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    answer.json()["id"].as_str().unwrap().to_owned()
}

/// Deletes (as Adele) the subscription `id`, which must answer 204.
pub async fn unsubscribe(server: &TestServer, id: &str) {
    let deleted = server
        .client
        .delete(server.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(server.adele())
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
}

pub async fn set_presence(server: &TestServer, user: &str, availability: &str, activity: &str) {
    server
        .post(
            &format!("/v1.0/users/{user}/presence/setPresence"),
            &server.app(),
            json!({"sessionId": APP, "availability": availability, "activity": activity, "expirationDuration": "PT1H"}),
        )
        .await
        .assert_done();
}

both! {
#[tokio::test]
async fn a_subscription_is_created_after_the_endpoint_echoes_the_token() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let now = server.now().await;
    let answer = subscribe(
        &server,
        request(&hook.url, &format!("/communications/presences/{ADELE}")),
    )
    .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    let created = answer.json();
    assert_eq!(hook.handshakes(), 1);
    assert_eq!(
        created["resource"],
        format!("communications/presences/{ADELE}")
    );
    assert_eq!(created["clientState"], "secret-state");
    assert_eq!(created["applicationId"], APP);
    assert_eq!(created["creatorId"], ADELE);
    // A past expiry is raised to 45 minutes from now (presence clock).
    let expires: jiff::Timestamp = created["expirationDateTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires, now + jiff::SignedDuration::from_mins(45));

    let id = created["id"].as_str().unwrap();
    let read = server
        .get(&format!("/beta/subscriptions/{id}"), &server.adele())
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.json()["id"], id);
    let list = server.get("/v1.0/subscriptions", &server.adele()).await;
    assert_eq!(list.json()["value"].as_array().unwrap().len(), 1);
}
}

both! {
#[tokio::test]
async fn a_failed_handshake_creates_nothing() {
    let (server, _dir) = server("").await;
    for behaviour in [
        Behaviour::WrongToken,
        Behaviour::Slow(Duration::from_secs(3)),
    ] {
        let hook = Receiver::start(behaviour).await;
        let started = std::time::Instant::now();
        let answer = subscribe(
            &server,
            request(&hook.url, &format!("communications/presences/{ADELE}")),
        )
        .await;
        answer.assert_error(400, "ValidationError");
        assert!(started.elapsed() < Duration::from_secs(3), "{behaviour:?}");
    }
    let list = server.get("/v1.0/subscriptions", &server.adele()).await;
    assert_eq!(list.json()["value"], json!([]));
}
}

/// The addresses a fault campaign once got accepted as notification URLs:
/// each names a special-purpose address (the metadata service through
/// NAT64, loopback in IPv4-compatible and 6to4 forms, the benchmarking
/// range, multicast, broadcast). None is accepted, and no handshake is tried.
#[tokio::test]
async fn notification_urls_naming_special_purpose_addresses_are_refused() {
    let (server, _dir) = server("").await;
    for url in [
        "https://[64:ff9b::a9fe:a9fe]/hook",
        "https://[::127.0.0.1]/hook",
        "https://[2002:7f00:1::1]/hook",
        "https://198.18.0.1/hook",
        "https://224.0.0.1/hook",
        "https://255.255.255.255/hook",
    ] {
        let message = subscribe(
            &server,
            request(url, &format!("communications/presences/{ADELE}")),
        )
        .await
        .assert_error(400, "InvalidRequest");
        assert!(message.contains("notificationUrl"), "{url}: {message}");
    }
}

both! {
#[tokio::test]
async fn refusals_are_graph_errors() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let ids: Vec<String> = (0..651)
        .map(|n| format!("'00000000-0000-4000-8000-{n:012}'"))
        .collect();
    let too_many = format!("communications/presences?$filter=id in ({})", ids.join(","));
    let mut long_state = request(&hook.url, &format!("communications/presences/{ADELE}"));
    long_state["clientState"] = json!("x".repeat(129));
    let mut wrong_type = request(&hook.url, &format!("communications/presences/{ADELE}"));
    wrong_type["changeType"] = json!("created");
    let mut rich_without_certificate =
        request(&hook.url, &format!("communications/presences/{ADELE}"));
    rich_without_certificate["includeResourceData"] = json!(true);
    let mut rich_with_garbage = rich_without_certificate.clone();
    rich_with_garbage["encryptionCertificate"] = json!("bm90IGEgY2VydGlmaWNhdGU=");
    rich_with_garbage["encryptionCertificateId"] = json!("cert-1");
    let mut long_certificate_id = request(&hook.url, &format!("communications/presences/{ADELE}"));
    long_certificate_id["encryptionCertificateId"] = json!("c".repeat(129));
    let cases = [
        (request(&hook.url, &too_many), 400, "InvalidRequest"),
        (
            request(&hook.url, "users/me/messages"),
            400,
            "InvalidRequest",
        ),
        (
            request(
                "https://10.0.0.1/hook",
                &format!("communications/presences/{ADELE}"),
            ),
            400,
            "InvalidRequest",
        ),
        (
            request(
                "http://example.com/hook",
                &format!("communications/presences/{ADELE}"),
            ),
            400,
            "InvalidRequest",
        ),
        (long_state, 400, "InvalidRequest"),
        (wrong_type, 400, "InvalidRequest"),
        (rich_without_certificate, 400, "InvalidRequest"),
        (rich_with_garbage, 400, "InvalidRequest"),
        (long_certificate_id, 400, "InvalidRequest"),
        (
            request(
                &hook.url,
                "communications/presences/00000000-0000-4000-8000-00000000dead",
            ),
            404,
            "NotFound",
        ),
    ];
    for (body, status, code) in cases {
        subscribe(&server, body).await.assert_error(status, code);
    }
    // Application permissions are not supported (an extension turns them on).
    let app = server.token(TENANT, None, "Presence.Read.All");
    server
        .post(
            "/v1.0/subscriptions",
            &app,
            request(&hook.url, &format!("communications/presences/{ADELE}")),
        )
        .await
        .assert_error(403, "Forbidden");
    // Delegated callers need Presence.Read.All.
    let reader = server.token(TENANT, Some(ADELE), "Presence.Read");
    let message = server
        .post(
            "/v1.0/subscriptions",
            &reader,
            request(&hook.url, &format!("communications/presences/{ADELE}")),
        )
        .await
        .assert_error(403, "Forbidden");
    assert!(message.contains("Presence.Read.All"), "{message}");
    assert_eq!(hook.handshakes(), 0);
}
}

both! {
#[tokio::test]
async fn a_second_subscription_of_the_same_user_and_app_conflicts() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let first = subscribe(
        &server,
        request(&hook.url, &format!("communications/presences/{ADELE}")),
    )
    .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let second = subscribe(
        &server,
        request(&hook.url, &format!("communications/presences/{MEGAN}")),
    )
    .await;
    second.assert_error(409, "Conflict");
    // Deleting the first makes room.
    let id = first.json()["id"].as_str().unwrap().to_string();
    unsubscribe(&server, &id).await;
    let third = subscribe(
        &server,
        request(&hook.url, &format!("communications/presences/{MEGAN}")),
    )
    .await;
    assert_eq!(third.status, 201, "{}", third.text);
}
}

both! {
#[tokio::test]
async fn a_request_driven_change_is_delivered_with_graphs_payload() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let resource = format!("communications/presences?$filter=id in ('{ADELE}','{MEGAN}')");
    let created = subscribe(&server, request(&hook.url, &resource))
        .await
        .json();
    set_presence(&server, MEGAN, "Busy", "InACall").await;
    set_presence(&server, LEE, "Busy", "InACall").await; // not subscribed
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    let item = &items[0];
    assert_eq!(item["subscriptionId"], created["id"]);
    assert_eq!(item["clientState"], "secret-state");
    assert_eq!(item["changeType"], "updated");
    assert_eq!(item["tenantId"], TENANT);
    assert_eq!(item["resource"], resource);
    assert_eq!(
        item["subscriptionExpirationDateTime"],
        created["expirationDateTime"]
    );
    assert_eq!(
        item["resourceData"],
        json!({"@odata.id": format!("users/{MEGAN}/presence"), "@odata.type": "#microsoft.graph.presence", "id": MEGAN})
    );
    assert!(item.get("encryptedContent").is_none());
}
}

both! {
#[tokio::test]
async fn fading_on_the_manual_clock_is_delivered() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&server, &hook, ADELE).await;
    set_presence(&server, ADELE, "Available", "Available").await;
    assert_eq!(hook.wait_for(1, WAIT).await.len(), 1);
    // Five minutes later the session reads AvailableInactive: a change.
    server.advance("PT5M").await;
    assert_eq!(hook.wait_for(2, WAIT).await.len(), 2);
    server.advance("PT5M").await;
    let items = hook.wait_for(3, WAIT).await;
    assert_eq!(items.len(), 3);
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Away".to_string(), "Away".to_string()]
    );
    // Nothing changes by itself any more until the session expires.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook.items().len(), 3);
}
}

both! {
#[tokio::test]
async fn renewal_moves_the_expiry_and_an_expired_subscription_stops() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let created = subscribe(
        &server,
        request(&hook.url, &format!("communications/presences/{ADELE}")),
    )
    .await
    .json();
    let id = created["id"].as_str().unwrap().to_string();
    server.advance("PT30M").await;
    let now = server.now().await;
    let renewed = server
        .client
        .patch(server.url(&format!("/v1.0/subscriptions/{id}")))
        .bearer_auth(server.adele())
        .json(
            &json!({"expirationDateTime": (now + jiff::SignedDuration::from_hours(3)).to_string()}),
        )
        .send()
        .await
        .unwrap();
    let renewed = crate::helpers::Answer::read(renewed).await;
    assert_eq!(renewed.status, 200, "{}", renewed.text);
    let expires: jiff::Timestamp = renewed.json()["expirationDateTime"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(expires, now + jiff::SignedDuration::from_mins(60));
    server.advance("PT61M").await;
    server
        .get(&format!("/v1.0/subscriptions/{id}"), &server.adele())
        .await
        .assert_error(404, "NotFound");
    set_presence(&server, ADELE, "Busy", "InACall").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(hook.items().is_empty(), "{:?}", hook.items());
}
}

both! {
#[tokio::test]
async fn failed_deliveries_are_retried_until_accepted() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&server, &hook, ADELE).await;
    hook.fail_first(3);
    set_presence(&server, ADELE, "Busy", "InACall").await;
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["clientState"], "secret-state");
}
}

both! {
#[tokio::test]
async fn a_dead_endpoint_does_not_delay_a_healthy_one() {
    let (server, _dir) = server("delivery_timeout = \"PT5S\"\n").await;
    let slow = Receiver::start(Behaviour::Healthy).await;
    let healthy = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&server, &slow, ADELE).await;
    let megan = server.token(TENANT, Some(MEGAN), "Presence.Read.All");
    let answer = server
        .post(
            "/v1.0/subscriptions",
            &megan,
            request(&healthy.url, &format!("communications/presences/{ADELE}")),
        )
        .await;
    assert_eq!(answer.status, 201, "{}", answer.text);
    slow.set(Behaviour::Slow(Duration::from_secs(30)));
    let started = std::time::Instant::now();
    set_presence(&server, ADELE, "Busy", "InACall").await;
    assert_eq!(healthy.wait_for(1, WAIT).await.len(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
}
}

both! {
#[tokio::test]
async fn notifications_are_dropped_with_missed_after_the_retry_window() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Failing).await;
    let lifecycle = Receiver::start(Behaviour::Healthy).await;
    let mut body = request(&hook.url, &format!("communications/presences/{ADELE}"));
    body["lifecycleNotificationUrl"] = json!(lifecycle.url);
    let created = subscribe(&server, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    set_presence(&server, ADELE, "Busy", "InACall").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(lifecycle.items().is_empty());
    // Four hours pass on the presence clock: the next retry gives up.
    server.advance("PT4H1M").await;
    let events = lifecycle.wait_for(1, WAIT).await;
    assert!(
        events.iter().any(|e| e["lifecycleEvent"] == "missed"),
        "{events:?}"
    );
    let missed = events
        .iter()
        .find(|e| e["lifecycleEvent"] == "missed")
        .unwrap();
    assert_eq!(missed["subscriptionId"], created.json()["id"]);
    assert_eq!(missed["clientState"], "secret-state");
    assert!(hook.items().is_empty());
}
}

both! {
#[tokio::test]
async fn reauthorization_is_requested_before_expiry() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let lifecycle = Receiver::start(Behaviour::Healthy).await;
    let mut body = request(&hook.url, &format!("communications/presences/{ADELE}"));
    body["lifecycleNotificationUrl"] = json!(lifecycle.url);
    assert_eq!(subscribe(&server, body).await.status, 201);
    assert_eq!(lifecycle.handshakes(), 1);
    server.advance("PT31M").await;
    let events = lifecycle.wait_for(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["lifecycleEvent"], "reauthorizationRequired");
}
}

both! {
#[tokio::test]
async fn an_accepted_change_is_delivered_after_a_sigkill_and_restart() {
    // On Redis the restarted process is a new node: it takes the killed
    // one's buckets once their leases lapse (1.5 s here, 10 s by default).
    let (mut server, _dir) = server("[store.redis]\nlease_ms = 1500\n").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    subscribe_to(&server, &hook, ADELE).await;
    hook.set(Behaviour::Failing);
    set_presence(&server, ADELE, "Busy", "InACall").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    server.kill();
    hook.set(Behaviour::Healthy);
    server.restart();
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["resourceData"]["id"], ADELE);
}
}

both! {
#[tokio::test]
async fn removing_a_user_removes_their_subscriptions_with_subscription_removed() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let lifecycle = Receiver::start(Behaviour::Healthy).await;
    let mut body = request(&hook.url, &format!("communications/presences/{MEGAN}"));
    body["lifecycleNotificationUrl"] = json!(lifecycle.url);
    let created = subscribe(&server, body).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let id = created.json()["id"].as_str().unwrap().to_string();

    let remove = |token: String| {
        let url = server.url(&format!("/admin/tenants/{TENANT}/users/{ADELE}"));
        let request = server.client.delete(url).bearer_auth(token);
        async move { crate::helpers::Answer::read(request.send().await.unwrap()).await }
    };
    remove(server.adele()).await.assert_error(403, "Forbidden");
    let removed = remove(server.app()).await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    remove(server.app()).await.assert_error(404, "NotFound");

    let events = lifecycle.wait_for(1, WAIT).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["lifecycleEvent"], "subscriptionRemoved");
    assert_eq!(events[0]["subscriptionId"], id.as_str());
    assert_eq!(events[0]["clientState"], "secret-state");
    // The subscription is gone, and so is the user's presence.
    let read = server
        .get(&format!("/v1.0/subscriptions/{id}"), &server.app())
        .await;
    assert_eq!(read.status, 404, "{}", read.text);
    server
        .get(&format!("/v1.0/users/{ADELE}/presence"), &server.app())
        .await
        .assert_error(404, "NotFound");
}
}

both! {
#[tokio::test]
async fn a_notification_waiting_on_a_failing_endpoint_is_not_sent_after_its_subscription_is_deleted() {
    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Failing).await;
    let id = subscribe_to(&server, &hook, ADELE).await;
    // The notification is built and refused: it waits in the outbox.
    set_presence(&server, ADELE, "Busy", "InACall").await;
    let started = std::time::Instant::now();
    while hook.failures() < 1 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hook.failures() >= 1, "attempted: {}", hook.failures());
    unsubscribe(&server, &id).await;
    // The endpoint accepts again: the waiting notification is settled
    // without being sent.
    hook.set(Behaviour::Healthy);
    crate::metrics::outbox_entries_become(&server, 0).await;
    assert!(hook.items().is_empty(), "sent after the delete: {:?}", hook.items());
}
}
