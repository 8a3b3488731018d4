//! A browser app, unmodified libraries, in headless Chromium: the page of
//! `sdk-tests/browser/app` signs in against presenced's identity provider,
//! reads and sets presence cross-origin with `fetch`, and shows the Graph
//! Toolkit's `mgt-person` badges. `sdk-tests/browser/run.mjs` drives it with
//! playwright-core and Debian's Chromium (`/usr/bin/chromium`, installed by
//! `.ci/run`), which trusts presenced's development CA through a throwaway
//! NSS database (`certutil`). The page is served from its own loopback
//! origin.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::helpers::*;
use crate::sdk_env::{browser_suite, workspace};

/// The page's registration: a public client (no secret) whose redirect URI
/// is the page's origin.
const BOARD: &str = "3c9d2e1f-8a7b-4c6d-9e5f-1a2b3c4d5e6f";

/// How the page signs in: `msal` (MSAL.js, authorization code with PKCE,
/// redirect through presenced's sign-in page) or `password` (the page
/// posts the password grant to the token endpoint).
const SIGN_IN: &str = "msal";

/// How long the whole browser run may take, install excluded.
const RUN_LIMIT: Duration = Duration::from_secs(240);

/// The test directory with the page's application added.
fn directory(app_origin: &str) -> Value {
    let mut directory = directory_json();
    directory["tenants"][0]["applications"]
        .as_array_mut()
        .unwrap()
        .push(json!({
            "appId": BOARD,
            "displayName": "Presence board",
            "redirectUris": [format!("{app_origin}/")],
            "scopes": ["Presence.Read", "Presence.Read.All", "Presence.ReadWrite", "User.ReadBasic.All"]
        }));
    directory
}

/// A loopback port nobody listens on now, for the page's own server (its
/// redirect URI is registered before it starts).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Runs `command` to its end or kills it after `limit`; (success, output).
fn run_bounded(mut command: Command, limit: Duration) -> (bool, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run node: {e}"));
    let mut stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let output = format!("{}\n{}", out.join().unwrap(), err.join().unwrap());
    match status {
        Some(status) => (status.success(), output),
        None => (false, format!("killed after {limit:?}\n{output}")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_app_signs_in_sets_presence_and_shows_toolkit_badges() {
    let suite = tokio::task::spawn_blocking(browser_suite).await.unwrap();
    let port = free_port();
    let app_origin = format!("http://127.0.0.1:{port}");
    let server = TestServer::start_with_directory(
        &["--throttle", "off", "--tls-listen", "127.0.0.1:0"],
        &directory(&app_origin),
    )
    .await;
    let out_dir = workspace().join("target/browser-test");
    std::fs::create_dir_all(&out_dir).unwrap();
    let screenshot: PathBuf = out_dir.join("presence-board.png");
    let _ = std::fs::remove_file(&screenshot);

    let mut command = Command::new("node");
    command
        .arg("run.mjs")
        .current_dir(&suite)
        .env("PRESENCED_URL", server.tls_base.clone().unwrap())
        .env("PRESENCED_CA", server.data_dir.path().join("tls/ca.pem"))
        .env(
            "NODE_EXTRA_CA_CERTS",
            server.data_dir.path().join("tls/ca.pem"),
        )
        .env("PRESENCED_TENANT", TENANT)
        .env("PRESENCED_SPA_APP", BOARD)
        .env("PRESENCED_APP", APP)
        .env("PRESENCED_APP_SECRET", APP_SECRET)
        .env("PRESENCED_USER", ADELE)
        .env("PRESENCED_USER_NAME", "adele.vance@contoso.com")
        .env("PRESENCED_USER_PASSWORD", ADELE_PASSWORD)
        .env("PRESENCED_PEOPLE", format!("{ADELE},{MEGAN},{LEE}"))
        .env("PRESENCED_PEOPLE_NAMES", "Adele Vance,Megan Bowen,Lee Gu")
        .env("PRESENCED_SIGN_IN", SIGN_IN)
        .env("APP_PORT", port.to_string())
        .env("BROWSER_TEST_DIR", &out_dir);
    let (passed, output) = tokio::task::spawn_blocking(move || run_bounded(command, RUN_LIMIT))
        .await
        .unwrap();
    println!("{output}");
    assert!(passed, "the browser run failed:\n{output}");
    assert!(output.contains("browser test passed"), "{output}");

    // The screenshot is a PNG of the page.
    let png = std::fs::read(&screenshot).expect("the run writes its screenshot");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    println!("screenshot: {}", screenshot.display());

    // What the page set is what the API reads; what the API set stayed.
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "Busy"]);
    assert_eq!(server.presence_of(MEGAN).await, ["Available", "Available"]);
    assert_eq!(
        server.presence_of(LEE).await,
        ["DoNotDisturb", "Presenting"]
    );
}
