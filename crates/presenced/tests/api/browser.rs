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

/// One Chromium at a time in this test binary: the browser tests take turns.
static ONE_BROWSER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread")]
async fn a_browser_app_signs_in_sets_presence_and_shows_toolkit_badges() {
    let _browser = ONE_BROWSER.lock().await;
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

/// More colleagues for the board, beside Adele, Megan and Lee.
const MORE_PEOPLE: [(&str, &str, &str); 5] = [
    (
        "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        "Alex Wilber",
        "alex.wilber",
    ),
    (
        "2e3d4c5b-6f7a-4b8c-9d0e-1f2a3b4c5d6e",
        "Diego Siciliani",
        "diego.siciliani",
    ),
    (
        "3f4e5d6c-7a8b-4c9d-8e1f-2a3b4c5d6e7f",
        "Isaiah Langer",
        "isaiah.langer",
    ),
    (
        "4a5f6e7d-8b9c-4d0e-9f2a-3b4c5d6e7f8a",
        "Johanna Lorenz",
        "johanna.lorenz",
    ),
    (
        "5b6a7f8e-9c0d-4e1f-8a3b-4c5d6e7f8a9b",
        "Nestor Wilke",
        "nestor.wilke",
    ),
];

/// The board (presenced's own page at `/`) in Chromium: `sdk-tests/browser/board.mjs`
/// signs in through the sign-in page, reads the grid, sees a change made through the API
/// by another client within 1 s, sets the user's own presence and status message, and
/// saves screenshots under `target/browser-test/` (`board-desktop.png`, `board-phone.png`).
#[tokio::test(flavor = "multi_thread")]
async fn the_board_signs_in_shows_live_badges_and_sets_presence() {
    let _browser = ONE_BROWSER.lock().await;
    let suite = tokio::task::spawn_blocking(browser_suite).await.unwrap();
    let mut directory = directory_json();
    let users = directory["tenants"][0]["users"].as_array_mut().unwrap();
    for (id, name, mail) in MORE_PEOPLE {
        users.push(json!({"id": id, "displayName": name,
            "userPrincipalName": format!("{mail}@contoso.com"), "mail": format!("{mail}@contoso.com")}));
    }
    let config = "[notifications]\nlive_stream = true\n";
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), config).unwrap();
    let server = TestServer::start_with_directory(
        &[
            "--throttle",
            "off",
            "--config",
            file.path().to_str().unwrap(),
        ],
        &directory,
    )
    .await;

    // The scene: sessions of a softphone (the app), a status message, a
    // work location, out of office, a preferred state, someone offline.
    let app = server.app();
    let session = |user: &str, availability: &str, activity: &str| {
        let body = json!({"sessionId": APP, "availability": availability,
            "activity": activity, "expirationDuration": "PT1H"});
        let (path, app) = (format!("/v1.0/users/{user}/presence/setPresence"), &app);
        let server = &server;
        async move { server.post(&path, app, body).await.assert_done() }
    };
    let [alex, diego, isaiah, _johanna, nestor] = MORE_PEOPLE.map(|(id, _, _)| id);
    session(ADELE, "Available", "Available").await;
    session(MEGAN, "Available", "Available").await;
    session(LEE, "Busy", "InACall").await;
    session(alex, "Away", "Away").await;
    session(diego, "Available", "Available").await;
    session(isaiah, "Available", "Available").await;
    session(nestor, "Busy", "InAConferenceCall").await;
    let megan = server.token(TENANT, Some(MEGAN), "Presence.ReadWrite");
    server
        .post(
            "/v1.0/me/presence/setStatusMessage",
            &megan,
            json!({"statusMessage": {"message": {"content": "Workshop in Oslo all week", "contentType": "text"}}}),
        )
        .await
        .assert_done();
    server
        .post(
            "/v1.0/me/presence/setManualLocation",
            &megan,
            json!({"workLocationType": "remote"}),
        )
        .await
        .assert_done();
    let isaiah_token = server.token(TENANT, Some(isaiah), "Presence.ReadWrite");
    server
        .post(
            "/v1.0/me/presence/setUserPreferredPresence",
            &isaiah_token,
            json!({"availability": "BeRightBack", "activity": "BeRightBack"}),
        )
        .await
        .assert_done();
    let oof = server
        .client
        .put(server.url(&format!(
            "/admin/tenants/{TENANT}/users/{diego}/outOfOfficeSettings"
        )))
        .bearer_auth(&app)
        .json(&json!({"isOutOfOffice": true, "message": "Back on Monday"}))
        .send()
        .await
        .unwrap();
    assert_eq!(oof.status(), 204);

    let mut people = vec![
        (ADELE, "Adele Vance"),
        (MEGAN, "Megan Bowen"),
        (LEE, "Lee Gu"),
    ];
    people.extend(MORE_PEOPLE.map(|(id, name, _)| (id, name)));
    people.sort_by_key(|(_, name)| *name);
    let ids: Vec<&str> = people.iter().map(|(id, _)| *id).collect();
    let names: Vec<&str> = people.iter().map(|(_, name)| *name).collect();

    let out_dir = workspace().join("target/browser-test");
    std::fs::create_dir_all(&out_dir).unwrap();
    let screenshots = ["board-desktop.png", "board-phone.png"].map(|f| out_dir.join(f));
    for file in &screenshots {
        let _ = std::fs::remove_file(file);
    }
    // The board's own origin, as a name that is not loopback (Chromium maps
    // it to 127.0.0.1): plain http there is not a secure context.
    let port = server.base.rsplit(':').next().unwrap();
    let mut command = Command::new("node");
    command
        .arg("board.mjs")
        .current_dir(&suite)
        .env("BOARD_URL", format!("http://board.test:{port}"))
        .env("PRESENCED_URL", &server.base)
        .env("PRESENCED_TENANT", TENANT)
        .env("PRESENCED_APP", APP)
        .env("PRESENCED_APP_SECRET", APP_SECRET)
        .env("PRESENCED_USER", ADELE)
        .env("PRESENCED_USER_NAME", "adele.vance@contoso.com")
        .env("PRESENCED_USER_PASSWORD", ADELE_PASSWORD)
        .env("PRESENCED_PEOPLE", ids.join(","))
        .env("PRESENCED_PEOPLE_NAMES", names.join(","))
        .env("PRESENCED_CALLER", LEE)
        .env("BROWSER_TEST_DIR", &out_dir);
    let (passed, output) = tokio::task::spawn_blocking(move || run_bounded(command, RUN_LIMIT))
        .await
        .unwrap();
    println!("{output}");
    assert!(passed, "the board run failed:\n{output}");
    assert!(output.contains("board test passed"), "{output}");
    for file in &screenshots {
        let png = std::fs::read(file).expect("the run writes its screenshots");
        assert!(
            png.starts_with(b"\x89PNG\r\n\x1a\n"),
            "{} is not a PNG",
            file.display()
        );
    }

    // What the page set is what the API reads; the other client's change stayed.
    assert_eq!(server.presence_of(ADELE).await, ["Busy", "Busy"]);
    assert_eq!(
        server.presence_of(LEE).await,
        ["DoNotDisturb", "Presenting"]
    );
    // The message and its expiry (which only its owner reads): 4 hours on.
    let adele = server
        .get("/v1.0/me/presence", &server.adele())
        .await
        .json();
    let message = &adele["statusMessage"];
    assert_eq!(
        message["message"]["content"],
        "Reviewing the quarter; back at 3"
    );
    assert_eq!(message["expiryDateTime"]["timeZone"], "UTC", "{message}");
    let expiry: jiff::Timestamp = format!(
        "{}Z",
        message["expiryDateTime"]["dateTime"].as_str().unwrap()
    )
    .parse()
    .unwrap();
    let hours = expiry.duration_since(jiff::Timestamp::now()).as_secs_f64() / 3600.0;
    assert!((3.5..=4.0).contains(&hours), "{message}");
}
