//! The official SDKs, unmodified, against presenced over HTTPS: the Python
//! suite (msgraph-sdk with azure-identity) and the JavaScript suite
//! (@microsoft/microsoft-graph-client) in `sdk-tests/`.
//!
//! Each test installs its SDK on first use ([`crate::sdk_env`]) from the
//! pinned versions in the repository, then starts presenced with its
//! development CA and runs the suite.

use std::process::Command;

use crate::helpers::*;
use crate::sdk_env::{node_auth_suite, node_suite, python, workspace};

/// A server on HTTPS whose other tenant is throttled hard (2 requests per 2
/// seconds), so that the suites see a 429 and a retry that then succeeds.
async fn server() -> TestServer {
    let config = format!(
        "[throttle]\ndefault = \"off\"\n[throttle.tenants]\n\"{OTHER_TENANT}\" = \"2/2s\"\n"
    );
    TestServer::start_with_config(&config, &["--tls-listen", "127.0.0.1:0"]).await
}

/// What the suites are told: where presenced is and who may call it.
fn suite_env(server: &TestServer) -> Vec<(&'static str, String)> {
    let ca = server
        .data_dir
        .path()
        .join("tls/ca.pem")
        .display()
        .to_string();
    let url = server.tls_base.clone().expect("presenced serves HTTPS");
    [
        ("PRESENCED_URL", url),
        ("REQUESTS_CA_BUNDLE", ca.clone()),
        ("SSL_CERT_FILE", ca.clone()),
        ("NODE_EXTRA_CA_CERTS", ca),
        ("PRESENCED_TENANT", TENANT.into()),
        ("PRESENCED_APP", APP.into()),
        ("PRESENCED_APP_SECRET", APP_SECRET.into()),
        ("PRESENCED_READER_APP", OTHER_APP.into()),
        ("PRESENCED_READER_SECRET", "wallboard-secret".into()),
        ("PRESENCED_THROTTLED_TENANT", OTHER_TENANT.into()),
        ("PRESENCED_THROTTLED_APP", APP.into()),
        ("PRESENCED_THROTTLED_SECRET", OTHER_TENANT_SECRET.into()),
        ("PRESENCED_THROTTLED_USER", OUTSIDER.into()),
        ("PRESENCED_USER", ADELE.into()),
        ("PRESENCED_USER_NAME", "adele.vance@contoso.com".into()),
        ("PRESENCED_USER_PASSWORD", ADELE_PASSWORD.into()),
        ("PRESENCED_OTHER_USER", MEGAN.into()),
        ("PRESENCED_NOBODY", NOBODY.into()),
    ]
    .into_iter()
    .collect()
}

/// Runs a suite to its end; its whole output, or a failure that shows it.
async fn run_suite(mut command: Command, name: &str) -> String {
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("cannot run the {name} suite: {e}"));
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the {name} suite failed:\n{report}"
    );
    report
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_runs_unchanged_against_presenced() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let server = server().await;
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(workspace().join("sdk-tests/python"))
        .envs(suite_env(&server));
    let report = run_suite(command, "Python SDK").await;
    assert!(report.contains(" passed"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_javascript_client_runs_unchanged_against_presenced() {
    let suite = tokio::task::spawn_blocking(node_suite).await.unwrap();
    let server = server().await;
    let mut command = Command::new("node");
    command
        .arg("--test")
        .current_dir(&suite)
        .envs(suite_env(&server));
    let report = run_suite(command, "JavaScript client").await;
    assert!(report.contains("# fail 0"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn msal_node_and_azure_identity_sign_in_with_presenced() {
    use crate::idp::code::{REDIRECT, SPA, directory};
    let suite = tokio::task::spawn_blocking(node_auth_suite).await.unwrap();
    let server =
        TestServer::start_with_directory(&["--tls-listen", "127.0.0.1:0"], &directory()).await;
    let mut command = Command::new("node");
    command
        .arg("--test")
        .current_dir(&suite)
        .envs(suite_env(&server))
        .env("PRESENCED_PUBLIC_APP", SPA)
        .env("PRESENCED_REDIRECT_URI", REDIRECT);
    let report = run_suite(command, "MSAL for Node and Azure Identity").await;
    assert!(report.contains("# pass 4"), "{report}");
    assert!(report.contains("# fail 0"), "{report}");
}
