//! `GET /admin/scheduler`: how many deadlines the scheduler handled and how
//! far behind the presence clock it ran, observed through the manual clock.

use std::time::{Duration, Instant};

use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};

use crate::helpers::{ADELE, LEE, MEGAN, TestServer, both};

/// The scheduler's answer.
async fn scheduler(server: &TestServer) -> Value {
    let answer = server
        .client
        .get(server.url("/admin/scheduler"))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_consistent(&body);
    body
}

/// `lagSeconds` is how long `oldestDue` has been due, or 0 without one.
fn assert_consistent(body: &Value) {
    let now: Timestamp = body["now"].as_str().unwrap().parse().unwrap();
    let lag = body["lagSeconds"].as_f64().unwrap();
    match body["oldestDue"].as_str() {
        None => assert_eq!(lag, 0.0, "{body}"),
        Some(oldest) => {
            let oldest: Timestamp = oldest.parse().unwrap();
            assert!(oldest <= now, "{body}");
            let expected = now.duration_since(oldest).as_secs_f64();
            assert!((lag - expected).abs() < 1e-6, "{body}");
        }
    }
}

/// Polls until `processed` reaches `count`, for at most 10 seconds.
async fn processed(server: &TestServer, count: u64) -> Value {
    let started = Instant::now();
    loop {
        let body = scheduler(server).await;
        if body["processed"].as_u64().unwrap() >= count {
            return body;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the scheduler did not handle {count} deadlines: {body}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A Busy session expiring in 5 minutes: its expiry is its only deadline.
async fn busy_for_five_minutes(server: &TestServer, user: &str) {
    let answer = server
        .post(
            &format!("/v1.0/users/{user}/presence/setPresence"),
            &server.app(),
            json!({"sessionId": crate::helpers::APP, "availability": "Busy",
                   "activity": "InACall", "expirationDuration": "PT5M"}),
        )
        .await;
    assert_eq!(answer.status, 200, "{}", answer.text);
}

both! {
#[tokio::test]
async fn the_scheduler_reports_deadlines_handled_and_how_late() {
    let server = TestServer::start().await;
    let idle = scheduler(&server).await;
    assert_eq!(idle["processed"], 0, "{idle}");
    assert_eq!(idle["maxLagSeconds"], 0.0, "{idle}");
    assert_eq!(idle["oldestDue"], Value::Null, "{idle}");

    busy_for_five_minutes(&server, ADELE).await;
    busy_for_five_minutes(&server, MEGAN).await;
    // Deadlines in the future are not lag.
    let waiting = scheduler(&server).await;
    assert_eq!(waiting["lagSeconds"], 0.0, "{waiting}");
    assert_eq!(waiting["oldestDue"], Value::Null, "{waiting}");

    // The clock jumps one minute past both expiries: handled a minute late.
    server.advance("PT6M").await;
    let late = processed(&server, 2).await;
    assert_eq!(late["processed"], 2, "{late}");
    assert_eq!(late["maxLagSeconds"], 60.0, "{late}");
    assert_eq!(late["lagSeconds"], 0.0, "{late}");
    assert_eq!(late["oldestDue"], Value::Null, "{late}");
    assert_eq!(
        server.presence_of(ADELE).await,
        ["Offline".to_string(), "Offline".to_string()]
    );

    // Exactly on time now; the maximum keeps the earlier minute.
    busy_for_five_minutes(&server, LEE).await;
    server.advance("PT5M").await;
    let on_time = processed(&server, 3).await;
    assert_eq!(on_time["processed"], 3, "{on_time}");
    assert_eq!(on_time["maxLagSeconds"], 60.0, "{on_time}");
    assert_eq!(on_time["lagSeconds"], 0.0, "{on_time}");
}
}

both! {
#[tokio::test]
async fn the_scheduler_answers_on_the_system_clock_too() {
    let server = TestServer::start_with(&["--throttle", "off"]).await;
    let body = scheduler(&server).await;
    assert_eq!(body["processed"], 0, "{body}");
    assert_eq!(body["lagSeconds"], 0.0, "{body}");
    let now: Timestamp = body["now"].as_str().unwrap().parse().unwrap();
    let off = Timestamp::now().duration_since(now).abs();
    assert!(off < SignedDuration::from_secs(60), "{body}");
}
}
