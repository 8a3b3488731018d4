//! The official SDKs, unmodified, against presenced over HTTPS: the Python
//! suite (msgraph-sdk with azure-identity) and the JavaScript suite
//! (@microsoft/microsoft-graph-client) in `sdk-tests/`.
//!
//! Each test installs its SDK on first use — a Python virtual environment
//! under `target/sdk-env`, `npm ci` in `sdk-tests/js` — from the pinned
//! versions in the repository, then starts presenced with its development CA
//! and runs the suite. A missing `python3` or `npm` fails the test: the
//! suites are part of the test run, never skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::helpers::*;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Serialises installs: the two suites may start at the same time.
static INSTALL: Mutex<()> = Mutex::new(());

fn run(command: &mut Command, what: &str) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// The Python of a virtual environment holding `sdk-tests/python/requirements.txt`.
fn python() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace();
    let requirements = root.join("sdk-tests/python/requirements.txt");
    let venv = root.join("target/sdk-env/python");
    let python = venv.join("bin/python");
    let marker = venv.join("installed-requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).unwrap();
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(wanted.as_str()) {
        run(
            Command::new("python3").args(["-m", "venv"]).arg(&venv),
            "python3 -m venv",
        );
        run(
            Command::new(&python)
                .args([
                    "-m",
                    "pip",
                    "install",
                    "--quiet",
                    "--disable-pip-version-check",
                    "-r",
                ])
                .arg(&requirements),
            "pip install -r sdk-tests/python/requirements.txt",
        );
        std::fs::write(&marker, wanted).unwrap();
    }
    python
}

/// `sdk-tests/js` with its locked packages installed.
fn node_suite() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace().join("sdk-tests/js");
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
    let marker = dir.join("node_modules/.installed-lock.json");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(lock.as_str()) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci in sdk-tests/js",
        );
        std::fs::write(&marker, lock).unwrap();
    }
    dir
}

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

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_sdk_runs_unchanged_against_presenced() {
    let python = tokio::task::spawn_blocking(python).await.unwrap();
    let server = server().await;
    let suite = workspace().join("sdk-tests/python");
    let mut command = Command::new(python);
    command
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .envs(suite_env(&server));
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the Python SDK suite failed:\n{report}"
    );
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
    let output = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "the JavaScript client suite failed:\n{report}"
    );
    assert!(report.contains("# fail 0"), "{report}");
}
