//! Fuzz targets on the stable toolchain: `proptest` properties over arbitrary
//! and structured input, for the Graph path parser, durations, token
//! parsing, and the JSON bodies of every action and of subscriptions.
//!
//! Each target first replays its committed seed corpus
//! (`crates/presenced/fuzz-corpus/<target>/`, taken from the SDK captures and
//! the spec's examples), then mutates and generates inputs. Every target is
//! bounded by a case count and a time budget, and runs in the normal test
//! command. Properties: nothing panics; a refusal is a 4xx in Graph's
//! envelope; parse → print → parse round-trips where a printer exists.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};

use crate::helpers::*;

/// The seed files of one target, in name order.
fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz-corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|f| std::fs::read(f).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// Seeds mutated the way coverage fuzzers do: bytes flipped, inserted,
/// removed, or the input cut short.
fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec((any::<prop::sample::Index>(), 0u8..4, any::<u8>()), 0..6),
    )
        .prop_map(|(mut seed, edits)| {
            for (at, kind, byte) in edits {
                if seed.is_empty() {
                    seed.push(byte);
                    continue;
                }
                let i = at.index(seed.len());
                match kind {
                    0 => seed[i] = byte,
                    1 => seed.insert(i, byte),
                    2 => {
                        seed.remove(i);
                    }
                    _ => seed.truncate(i),
                }
            }
            seed
        })
}

/// Seeds, mutated seeds and arbitrary bytes.
fn inputs(target: &str) -> impl Strategy<Value = Vec<u8>> {
    let seeds = corpus(target);
    prop_oneof![
        3 => mutated(seeds),
        1 => prop::collection::vec(any::<u8>(), 0..128),
    ]
}

/// Runs `check` on every seed, then on generated inputs until `cases` ran
/// or `budget` passed.
async fn run<F, Fut>(target: &str, cases: u32, budget: Duration, mut check: F)
where
    F: FnMut(Vec<u8>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let started = Instant::now();
    for seed in corpus(target) {
        check(seed).await;
    }
    let mut runner = TestRunner::new(Config {
        cases,
        ..Config::default()
    });
    let strategy = inputs(target);
    for _ in 0..cases {
        if started.elapsed() > budget {
            break;
        }
        check(strategy.new_tree(&mut runner).unwrap().current()).await;
    }
}

#[tokio::test]
async fn the_graph_path_parser_never_panics_and_is_deterministic() {
    use presenced::api::route;
    run("route", 5000, Duration::from_secs(5), |bytes| async move {
        let text = String::from_utf8_lossy(&bytes);
        let first = route::parse(&text);
        let again = route::parse(&text);
        assert_eq!(first.is_some(), again.is_some(), "{text:?}");
        if let Some((version, graph)) = first {
            assert!(
                text.starts_with(&format!("/{}", version.as_str())),
                "{text:?}"
            );
            assert!(!graph.template().is_empty());
        }
    })
    .await;
}

#[tokio::test]
async fn durations_never_panic_and_round_trip_through_their_text() {
    use presenced_domain::DurationSyntax;
    use presenced_domain::duration::{format_duration, parse_duration};
    run(
        "duration",
        5000,
        Duration::from_secs(5),
        |bytes| async move {
            let text = String::from_utf8_lossy(&bytes);
            for syntax in [DurationSyntax::Iso8601, DurationSyntax::AlsoPythonTimedelta] {
                if let Ok(duration) = parse_duration(&text, syntax) {
                    let printed = format_duration(duration);
                    assert_eq!(
                        parse_duration(&printed, DurationSyntax::Iso8601),
                        Ok(duration),
                        "{text:?} printed as {printed:?}"
                    );
                } else {
                    // Refusals name what is wrong.
                    let error = parse_duration(&text, syntax).unwrap_err();
                    assert!(!error.to_string().is_empty());
                }
            }
        },
    )
    .await;
}

/// A 4xx in Graph's envelope, or success; never a 5xx.
fn assert_graph_shaped(what: &str, input: &[u8], answer: &Answer) {
    assert!(
        answer.status < 500,
        "{what} {:?}: {} {}",
        String::from_utf8_lossy(input),
        answer.status,
        answer.text
    );
    if answer.status >= 400 {
        let code = answer.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{what}: not the envelope: {}", answer.text))
            .to_owned();
        answer.assert_error(answer.status, &code);
    }
}

#[tokio::test]
async fn token_parsing_refuses_every_forged_token_in_the_envelope() {
    // The per-address authentication guard would answer 429 after a few
    // hundred refusals; this target is about the token parser.
    let server = TestServer::start_with_config(
        "[limits]\nunauthenticated = \"off\"\n",
        &["--clock", "manual", "--throttle", "off"],
    )
    .await;
    let server = &server;
    run("token", 400, Duration::from_secs(20), |bytes| async move {
        let Ok(value) = reqwest::header::HeaderValue::from_bytes(&bytes) else {
            return;
        };
        let mut with_scheme = b"Bearer ".to_vec();
        with_scheme.extend_from_slice(&bytes);
        for header in [
            Some(value),
            reqwest::header::HeaderValue::from_bytes(&with_scheme).ok(),
        ]
        .into_iter()
        .flatten()
        {
            let response = server
                .client
                .get(server.url("/v1.0/me/presence"))
                .header("authorization", header)
                .send()
                .await
                .unwrap();
            let answer = Answer::read(response).await;
            assert_eq!(
                answer.status,
                401,
                "{:?}: {}",
                String::from_utf8_lossy(&bytes),
                answer.text
            );
            answer.assert_error(401, "InvalidAuthenticationToken");
        }
    })
    .await;
}

#[tokio::test]
async fn the_json_bodies_of_every_action_and_of_subscriptions_get_graph_shaped_answers() {
    let server = TestServer::start_with(&["--clock", "manual", "--throttle", "off"]).await;
    let server = &server;
    let app = server.app();
    let app = &app;
    let actions = [
        "setPresence",
        "clearPresence",
        "setUserPreferredPresence",
        "clearUserPreferredPresence",
        "setStatusMessage",
        "setManualLocation",
        "setAutomaticLocation",
        "clearAutomaticLocation",
        "clearLocation",
        "getPresencesByUserId",
    ];
    for action in actions {
        let path = if action == "getPresencesByUserId" {
            "/v1.0/communications/getPresencesByUserId".to_owned()
        } else {
            format!("/v1.0/users/{ADELE}/presence/{action}")
        };
        let path = &path;
        run(
            &format!("action-{action}"),
            60,
            Duration::from_secs(6),
            |body| async move {
                let answer = server
                    .post_raw(path, app, Some("application/json"), &body)
                    .await;
                assert_graph_shaped(path, &body, &answer);
            },
        )
        .await;
    }
    let delegated = server.adele();
    let delegated = &delegated;
    run(
        "subscriptions",
        60,
        Duration::from_secs(6),
        |body| async move {
            let answer = server
                .post_raw(
                    "/v1.0/subscriptions",
                    delegated,
                    Some("application/json"),
                    &body,
                )
                .await;
            assert_graph_shaped("POST /v1.0/subscriptions", &body, &answer);
        },
    )
    .await;
    run(
        "subscriptions-patch",
        60,
        Duration::from_secs(6),
        |body| async move {
            let response = server
                .client
                .patch(server.url("/v1.0/subscriptions/00000000-0000-4000-8000-000000000001"))
                .bearer_auth(delegated)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let answer = Answer::read(response).await;
            assert_graph_shaped("PATCH /v1.0/subscriptions/{id}", &body, &answer);
        },
    )
    .await;
    let health = server
        .client
        .get(server.url("/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
