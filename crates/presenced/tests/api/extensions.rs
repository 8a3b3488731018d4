//! The extensions beyond Graph, each off by default and turned on by one
//! switch in `[notifications]`: application-permission subscriptions, more
//! than 650 ids per subscription, and the live stream (Server-Sent Events
//! with resumption from `Last-Event-ID`).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::{ADELE, LEE, MEGAN, TENANT, TestServer, both, directory_json};
use crate::notifications::{WAIT, request, server, set_presence};
use crate::receiver::{Behaviour, Receiver};

both! {
#[tokio::test(flavor = "multi_thread")]
async fn application_permissions_may_subscribe_when_the_extension_is_on() {
    let (server, _dir) = server("app_subscriptions = true\n").await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    let body = request(&hook.url, &format!("communications/presences/{ADELE}"));
    let reader = server.token(TENANT, None, "Presence.Read.All");
    let created = server
        .post("/v1.0/subscriptions", &reader, body.clone())
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let created = created.json();
    // The creator is the app's service principal, not a user.
    assert_ne!(created["creatorId"], ADELE);
    assert!(created["creatorId"].as_str().unwrap().len() == 36);
    set_presence(&server, ADELE, "Busy", "InACall").await;
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["subscriptionId"], created["id"]);
    // An application token still needs a presence role.
    let nothing = server.token(TENANT, None, "");
    server
        .post("/v1.0/subscriptions", &nothing, body)
        .await
        .assert_error(403, "Forbidden");
}
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn more_than_650_ids_may_be_subscribed_when_the_extension_is_on() {
    let mut directory = directory_json();
    let ids: Vec<String> = (0..700)
        .map(|n| format!("00000000-0000-4000-8000-{n:012}"))
        .collect();
    let users = directory["tenants"][0]["users"].as_array_mut().unwrap();
    for (n, id) in ids.iter().enumerate() {
        users.push(json!({"id": id, "userPrincipalName": format!("user{n}@contoso.com"), "displayName": format!("User {n}")}));
    }
    let dir = tempfile::tempdir().unwrap();
    let start = |unlimited: bool| {
        let config = dir.path().join(format!("presenced-{unlimited}.toml"));
        std::fs::write(
            &config,
            format!("[notifications]\nunlimited_ids = {unlimited}\n"),
        )
        .unwrap();
        let directory = directory.clone();
        async move {
            TestServer::start_with_directory(
                &[
                    "--clock",
                    "manual",
                    "--throttle",
                    "off",
                    "--webhooks-allow-loopback-http",
                    "--config",
                    config.to_str().unwrap(),
                ],
                &directory,
            )
            .await
        }
    };
    let quoted: Vec<String> = ids.iter().map(|id| format!("'{id}'")).collect();
    let resource = format!(
        "communications/presences?$filter=id in ({})",
        quoted.join(",")
    );

    let strict = start(false).await;
    let hook = Receiver::start(Behaviour::Healthy).await;
    strict
        .post(
            "/v1.0/subscriptions",
            &strict.adele(),
            request(&hook.url, &resource),
        )
        .await
        .assert_error(400, "InvalidRequest");
    drop(strict);

    let server = start(true).await;
    let created = server
        .post(
            "/v1.0/subscriptions",
            &server.adele(),
            request(&hook.url, &resource),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    set_presence(&server, &ids[699], "Busy", "InACall").await;
    let items = hook.wait_for(1, WAIT).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["resourceData"]["id"], ids[699].as_str());
    // Each notification names its one user, not the 700 ids.
    assert_eq!(
        items[0]["resource"],
        format!("communications/presences/{}", ids[699])
    );
}
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub id: String,
    pub event: String,
    pub data: Value,
}

/// A client of the live stream that reads events as they come.
pub struct Stream {
    response: reqwest::Response,
    buffer: String,
}

impl Stream {
    pub async fn open(
        server: &TestServer,
        token: &str,
        ids: &[&str],
        last: Option<&str>,
    ) -> Stream {
        let mut request = server
            .client
            .get(server.url(&format!("/v1.0/presences/stream?ids={}", ids.join(","))))
            .bearer_auth(token);
        if let Some(last) = last {
            request = request.header("Last-Event-ID", last);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Stream {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (keep-alive comments are skipped), within `WAIT`.
    pub async fn next(&mut self) -> SseEvent {
        let deadline = Instant::now() + WAIT;
        loop {
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: String::new(),
                    event: String::new(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(id) = line.strip_prefix("id: ") {
                        event.id = id.to_string();
                    } else if let Some(name) = line.strip_prefix("event: ") {
                        event.event = name.to_string();
                    } else if let Some(data) = line.strip_prefix("data: ") {
                        event.data = serde_json::from_str(data).unwrap();
                    }
                }
                if !event.event.is_empty() {
                    return event;
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let chunk = tokio::time::timeout(left, self.response.chunk())
                .await
                .expect("no event in time")
                .unwrap()
                .expect("the stream ended");
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// Asserts that no event arrives for a while.
    async fn quiet(&mut self) {
        let chunk = tokio::time::timeout(Duration::from_millis(300), self.response.chunk()).await;
        assert!(
            chunk.is_err() && !self.buffer.contains("event:"),
            "{chunk:?}"
        );
    }
}

pub fn pair(event: &SseEvent) -> (String, String, String) {
    assert_eq!(event.event, "presence", "{event:?}");
    (
        event.data["id"].as_str().unwrap().to_string(),
        event.data["availability"].as_str().unwrap().to_string(),
        event.data["activity"].as_str().unwrap().to_string(),
    )
}

pub fn expect(user: &str, availability: &str, activity: &str) -> (String, String, String) {
    (user.into(), availability.into(), activity.into())
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn a_reconnecting_live_stream_client_loses_no_event() {
    let (server, _dir) = server("live_stream = true\n").await;
    let reader = server.token(TENANT, None, "Presence.Read.All");
    let mut stream = Stream::open(&server, &reader, &[ADELE, MEGAN], None).await;
    set_presence(&server, ADELE, "Available", "Available").await;
    let first = stream.next().await;
    assert_eq!(pair(&first), expect(ADELE, "Available", "Available"));
    assert!(
        first.data["sequenceNumber"]
            .as_str()
            .unwrap()
            .starts_with('A')
    );
    drop(stream);

    // While the client is away: a write to each user, one to a user it
    // does not follow, and a change by time alone (Adele fades).
    set_presence(&server, MEGAN, "Busy", "InACall").await;
    set_presence(&server, LEE, "Busy", "InACall").await;
    server.advance("PT5M").await;
    set_presence(&server, MEGAN, "DoNotDisturb", "Presenting").await;

    let mut stream = Stream::open(&server, &reader, &[ADELE, MEGAN], Some(&first.id)).await;
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(stream.next().await);
    }
    // The fade is found by the scheduler, which may come after Megan's
    // second write: each user's events are in order, every one is there.
    let seen: Vec<_> = missed.iter().map(pair).collect();
    let of = |user: &str| -> Vec<_> { seen.iter().filter(|e| e.0 == user).cloned().collect() };
    assert_eq!(
        of(ADELE),
        [expect(ADELE, "Available", "AvailableInactive")],
        "{seen:?}"
    );
    assert_eq!(
        of(MEGAN),
        [
            expect(MEGAN, "Busy", "InACall"),
            expect(MEGAN, "DoNotDisturb", "Presenting"),
        ],
        "{seen:?}"
    );
    stream.quiet().await;
    // And the stream goes on live.
    set_presence(&server, ADELE, "Away", "Away").await;
    assert_eq!(pair(&stream.next().await), expect(ADELE, "Away", "Away"));
    // Every event came once, in order.
    let ids: Vec<u64> = std::iter::once(&first)
        .chain(&missed)
        .map(|e| e.id.rsplit_once('-').unwrap().1.parse().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
}
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn a_client_away_longer_than_the_log_is_told_it_missed_events() {
    let (server, _dir) = server("live_stream = true\nlive_stream_log = 2\n").await;
    let reader = server.token(TENANT, None, "Presence.Read.All");
    let mut stream = Stream::open(&server, &reader, &[ADELE], None).await;
    set_presence(&server, ADELE, "Available", "Available").await;
    let first = stream.next().await;
    drop(stream);
    for (availability, activity) in [
        ("Busy", "InACall"),
        ("Away", "Away"),
        ("DoNotDisturb", "Presenting"),
    ] {
        set_presence(&server, ADELE, availability, activity).await;
    }
    let mut stream = Stream::open(&server, &reader, &[ADELE], Some(&first.id)).await;
    let missed = stream.next().await;
    assert_eq!(missed.event, "missed", "{missed:?}");
    assert_eq!(pair(&stream.next().await), expect(ADELE, "Away", "Away"));
    assert_eq!(
        pair(&stream.next().await),
        expect(ADELE, "DoNotDisturb", "Presenting")
    );
    // An id of another server process (before a restart) is a gap too.
    let mut stream = Stream::open(&server, &reader, &[ADELE], Some("0123456789ab-1")).await;
    assert_eq!(stream.next().await.event, "missed");
}
}

both! {
#[tokio::test(flavor = "multi_thread")]
async fn the_live_stream_is_off_by_default_and_needs_read_permission() {
    let (off, _dir) = server("").await;
    let reader = off.token(TENANT, None, "Presence.Read.All");
    off.get(&format!("/v1.0/presences/stream?ids={ADELE}"), &reader)
        .await
        .assert_error(404, "NotFound");

    let (server, _dir) = server("live_stream = true\n").await;
    let own = server.token(TENANT, Some(ADELE), "Presence.Read");
    let cases = [
        (
            format!("/v1.0/presences/stream?ids={MEGAN}"),
            own.clone(),
            403,
            "Forbidden",
        ),
        (
            "/v1.0/presences/stream".to_string(),
            own.clone(),
            400,
            "BadRequest",
        ),
        (
            "/beta/presences/stream?ids=adele".to_string(),
            own.clone(),
            400,
            "BadRequest",
        ),
        (
            "/v1.0/presences/stream?ids=00000000-0000-4000-8000-00000000dead".to_string(),
            server.app(),
            404,
            "NotFound",
        ),
    ];
    for (path, token, status, code) in cases {
        server.get(&path, &token).await.assert_error(status, code);
    }
    let bad_resume = server
        .client
        .get(server.url(&format!("/beta/presences/stream?ids={ADELE}")))
        .bearer_auth(&own)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    crate::helpers::Answer::read(bad_resume)
        .await
        .assert_error(400, "BadRequest");
    // A user may follow themselves with Presence.Read.
    let mut stream = Stream::open(&server, &own, &[ADELE], None).await;
    set_presence(&server, ADELE, "Busy", "InACall").await;
    assert_eq!(pair(&stream.next().await), expect(ADELE, "Busy", "InACall"));
}
}
