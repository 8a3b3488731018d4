//! The `presenced token` command, used while the server runs.

use std::process::Command;

use crate::helpers::*;

/// `presenced token ARGS` on the server's store.
fn token_command(server: &TestServer, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_presenced"));
    command
        .arg("token")
        .args(args)
        .env("PRESENCED_DATA_DIR", server.data_dir.path());
    if let Some(redis) = &server.redis {
        let (name, value) = redis.env();
        command.args(redis.args()).env(name, value);
    }
    command.output().unwrap()
}

both! {
#[tokio::test]
async fn tokens_minted_by_the_command_while_the_server_runs_are_accepted() {
    let server = TestServer::start().await;
    let app = token_command(
        &server,
        &[
            "--tenant",
            TENANT,
            "--app",
            APP,
            "--roles",
            "Presence.Read.All",
        ],
    );
    assert!(
        app.status.success(),
        "{}",
        String::from_utf8_lossy(&app.stderr)
    );
    let app = String::from_utf8(app.stdout).unwrap();
    assert_eq!(app.lines().count(), 1, "one JWT, nothing else: {app}");
    assert_eq!(
        server
            .get(&format!("/v1.0/users/{ADELE}/presence"), app.trim())
            .await
            .status,
        200
    );

    let args = [
        "--tenant",
        TENANT,
        "--app",
        APP,
        "--user",
        ADELE,
        "--scopes",
        "Presence.Read",
        "--lifetime",
        "PT5M",
    ];
    let delegated = token_command(&server, &args);
    assert!(
        delegated.status.success(),
        "{}",
        String::from_utf8_lossy(&delegated.stderr)
    );
    let delegated = String::from_utf8(delegated.stdout).unwrap();
    assert_eq!(
        server
            .get("/v1.0/me/presence", delegated.trim())
            .await
            .status,
        200
    );
}
}

#[tokio::test]
async fn the_token_command_refuses_incomplete_or_malformed_requests() {
    let server = TestServer::start().await;
    for args in [
        vec!["--tenant", TENANT, "--app", APP],
        vec!["--tenant", TENANT, "--app", APP, "--user", ADELE],
        vec![
            "--tenant",
            "contoso",
            "--app",
            APP,
            "--roles",
            "Presence.Read.All",
        ],
        vec![
            "--tenant",
            TENANT,
            "--app",
            APP,
            "--roles",
            "Presence.Read.All",
            "--lifetime",
            "1:00:00",
        ],
    ] {
        let output = token_command(&server, &args);
        assert!(!output.status.success(), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
    }
}
