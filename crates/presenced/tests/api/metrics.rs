//! `/metrics` and `presenced status`: the Prometheus series move as requests
//! are made, `/metrics` is protected or off the API's listener, and the
//! status command reports through the real binary.

use std::collections::{BTreeMap, HashMap};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;

const SECRET: &str = "scrape-secret";

/// One sample: a series name and its labels.
type Series = (String, BTreeMap<String, String>);

/// Parses the text exposition format: `name{k="v",...} value` lines;
/// comments and blank lines are skipped. Panics on a malformed line.
fn parse(text: &str) -> HashMap<Series, f64> {
    let mut samples = HashMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("no value: {line}"));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            other => other
                .parse()
                .unwrap_or_else(|_| panic!("bad value: {line}")),
        };
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => {
                let body = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line}"));
                (name.to_string(), parse_labels(body, line))
            }
        };
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad name: {line}"
        );
        samples.insert((name, labels), value);
    }
    samples
}

/// `k="v",k2="v2"` with `\"`, `\\` and `\n` escapes in values.
fn parse_labels(mut body: &str, line: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    while !body.is_empty() {
        let (key, rest) = body
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label: {line}"));
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => panic!("bad escape: {line}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unclosed label value: {line}"),
            }
        };
        labels.insert(key.to_string(), value);
        body = rest[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&rest[end + 1..]);
    }
    labels
}

/// The value of `name` with exactly `labels`; 0 when the series is absent.
fn value(samples: &HashMap<Series, f64>, name: &str, labels: &[(&str, &str)]) -> f64 {
    let labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples
        .get(&(name.to_string(), labels))
        .copied()
        .unwrap_or(0.0)
}

fn present(samples: &HashMap<Series, f64>, name: &str) -> bool {
    samples.keys().any(|(n, _)| n == name)
}

async fn scrape(client: &reqwest::Client, url: &str, token: Option<&str>) -> HashMap<Series, f64> {
    let mut request = client.get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    parse(&response.text().await.unwrap())
}

fn directory_users() -> f64 {
    directory_json()["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["users"].as_array().unwrap().len())
        .sum::<usize>() as f64
}

#[tokio::test]
async fn the_named_series_move_as_requests_are_made() {
    let config = format!(
        "[metrics]\non_main_listener = true\nbearer_token = \"{SECRET}\"\n\
         [throttle.tenants]\n\"{OTHER_TENANT}\" = \"2/60s\"\n"
    );
    let server =
        TestServer::start_with_config(&config, &["--clock", "manual", "--throttle", "off"]).await;
    let url = server.url("/metrics");

    // Protected: no token or another token is refused in Graph's envelope.
    let refused = server.client.get(&url).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(
        refused.headers().contains_key("www-authenticate"),
        "a 401 carries its bearer challenge"
    );
    let answer = Answer::read(
        server
            .client
            .get(&url)
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    answer.assert_error(401, "InvalidAuthenticationToken");

    let before = scrape(&server.client, &url, Some(SECRET)).await;
    assert_eq!(value(&before, "presenced_users", &[]), directory_users());
    assert_eq!(value(&before, "presenced_ready", &[]), 1.0);
    for gauge in [
        "presenced_scheduler_deadlines_due",
        "presenced_scheduler_lag_seconds",
        "presenced_scheduler_max_lag_seconds",
        "presenced_outbox_entries",
        "presenced_outbox_oldest_due_age_seconds",
        "presenced_live_sessions",
    ] {
        assert!(present(&before, gauge), "{gauge} missing");
    }

    // Requests by route template and status; token validations by outcome.
    let adele = server.adele();
    let path = format!("/v1.0/users/{ADELE}/presence");
    assert_eq!(server.get(&path, &adele).await.status, 200);
    assert_eq!(server.get(&path, &adele).await.status, 200);
    let mut forged = adele.clone();
    let last = if forged.ends_with('A') { "B" } else { "A" };
    forged.replace_range(forged.len() - 1.., last);
    assert_eq!(server.get(&path, &forged).await.status, 401);
    let anonymous = server.client.get(server.url(&path)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);

    // A write: the store commits.
    server
        .post(
            &format!("{path}/setPresence"),
            &server.app(),
            json!({"sessionId": APP, "availability": "Busy", "activity": "InACall", "expirationDuration": "PT5M"}),
        )
        .await
        .assert_done();

    // The other tenant's app may make 2 requests a minute.
    let outsider = server.token(OTHER_TENANT, None, "Presence.Read.All");
    let outsider_path = format!("/v1.0/users/{OUTSIDER}/presence");
    let mut throttled = 0;
    for _ in 0..5 {
        if server.get(&outsider_path, &outsider).await.status == 429 {
            throttled += 1;
        }
    }
    assert_eq!(throttled, 3);

    let after = scrape(&server.client, &url, Some(SECRET)).await;
    let delta = |name: &str, labels: &[(&str, &str)]| {
        value(&after, name, labels) - value(&before, name, labels)
    };
    let route = |status: &'static str| [("route", "/users/{id}/presence"), ("status", status)];
    assert_eq!(delta("presenced_http_requests_total", &route("200")), 4.0);
    assert_eq!(delta("presenced_http_requests_total", &route("401")), 2.0);
    assert_eq!(delta("presenced_http_requests_total", &route("429")), 3.0);
    assert_eq!(
        delta(
            "presenced_http_request_duration_seconds_count",
            &[("route", "/users/{id}/presence")]
        ),
        9.0
    );
    // The first scrape is counted once it is answered.
    assert!(
        delta(
            "presenced_http_requests_total",
            &[("route", "/metrics"), ("status", "200")]
        ) >= 1.0
    );
    assert_eq!(
        delta(
            "presenced_throttled_requests_total",
            &[("limit", "app_tenant")]
        ),
        3.0
    );
    let validations =
        |outcome: &'static str| delta("presenced_token_validations_total", &[("outcome", outcome)]);
    // Adele's, the app's and the outsider's tokens are new; each is then cached.
    assert_eq!(validations("valid"), 3.0);
    assert_eq!(validations("cache_hit"), 5.0);
    assert_eq!(validations("bad_signature"), 1.0);
    assert_eq!(validations("missing"), 1.0);
    assert!(delta("presenced_store_commit_seconds_count", &[]) >= 1.0);
    assert!(delta("presenced_store_commit_writes_sum", &[]) >= 1.0);

    // The expiration is a deadline the scheduler handles once the clock passes it.
    server.advance("PT10M").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = scrape(&server.client, &url, Some(SECRET)).await;
        let processed = value(&now, "presenced_scheduler_deadlines_processed_total", &[]);
        if processed > value(&after, "presenced_scheduler_deadlines_processed_total", &[]) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler handled nothing in 10 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_presenced"))
        .arg("status")
        .args(args)
        .output()
        .expect("run presenced status")
}

both! {
#[tokio::test]
async fn a_dedicated_listener_serves_metrics_and_the_status_command_reports() {
    let port = free_port();
    let config = format!("[metrics]\nlisten = \"127.0.0.1:{port}\"\n");
    let server = TestServer::start_with_config(&config, &["--clock", "manual"]).await;

    // Off the API's listener: there it is an unknown path.
    let answer = server.get("/metrics", &server.app()).await;
    answer.assert_error(404, "NotFound");
    let samples = scrape(
        &server.client,
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
    )
    .await;
    assert_eq!(value(&samples, "presenced_users", &[]), directory_users());

    let output = status(&["--url", &server.base]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("ready:          yes\n"), "{stdout}");
    let backend = if server.redis.is_some() { "redis" } else { "embedded" };
    assert!(
        stdout.contains(&format!("store:          {backend}\n")),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("users:          {}\n", directory_users())),
        "{stdout}"
    );
    assert!(stdout.contains(&format!("version:        {}\n", env!("CARGO_PKG_VERSION"))));

    let output = status(&["--url", &server.base, "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let json: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(json["ready"], true);
    assert_eq!(json["users"].as_f64(), Some(directory_users()));
    assert_eq!(json["liveSessions"], 0);
    assert_eq!(json["outbox"]["entries"], 0);
    assert_eq!(json["scheduler"]["lagSeconds"], 0.0);

    // A user removed from the directory leaves the count at once.
    let removed = Answer::read(
        server
            .client
            .delete(server.url(&format!("/admin/tenants/{TENANT}/users/{LEE}")))
            .bearer_auth(server.app())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(removed.status, 204, "{}", removed.text);
    let samples = scrape(
        &server.client,
        &format!("http://127.0.0.1:{port}/metrics"),
        None,
    )
    .await;
    assert_eq!(
        value(&samples, "presenced_users", &[]),
        directory_users() - 1.0
    );

    // Nothing listening: exit 2 and a clear line on stderr.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let output = status(&["--url", &closed, "--timeout", "PT2S"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot reach"));
    // Not a URL: exit 2 too.
    assert_eq!(status(&["--url", "nonsense"]).status.code(), Some(2));
}
}

/// `presenced status --json`'s outbox entries, polled (at most 10 s) until
/// they are `expected`.
pub(crate) async fn outbox_entries_become(server: &TestServer, expected: u64) {
    let started = Instant::now();
    loop {
        let output = status(&["--url", &server.base, "--json"]);
        let json: Value = serde_json::from_slice(&output.stdout).unwrap_or(Value::Null);
        if json["outbox"]["entries"] == expected {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "outbox entries never became {expected}: {json}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

both! {
#[tokio::test]
async fn the_status_command_counts_the_outbox_on_either_store() {
    use crate::notifications::{WAIT, server, set_presence, subscribe_to};
    use crate::receiver::{Behaviour, Receiver};

    let (server, _dir) = server("").await;
    let hook = Receiver::start(Behaviour::Failing).await;
    subscribe_to(&server, &hook, ADELE).await;
    outbox_entries_become(&server, 0).await;
    // The endpoint refuses: the notification waits in the outbox, retried.
    set_presence(&server, ADELE, "Busy", "InACall").await;
    outbox_entries_become(&server, 1).await;
    let started = Instant::now();
    while hook.failures() < 2 && started.elapsed() < WAIT {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(hook.failures() >= 2, "retried: {}", hook.failures());
    outbox_entries_become(&server, 1).await;
    // Accepted: the outbox is empty again.
    hook.set(Behaviour::Healthy);
    assert_eq!(hook.wait_for(1, WAIT).await.len(), 1);
    outbox_entries_become(&server, 0).await;
}
}
