//! The SDK environments of `sdk-tests/`, built on first use from the pinned
//! files: a Python virtual environment under `target/sdk-env/python`
//! (`sdk-tests/python/requirements.txt`), one for schemathesis under
//! `target/sdk-env/schemathesis` (`sdk-tests/schemathesis/requirements.txt`),
//! and the JavaScript packages of
//! `sdk-tests/js` and `sdk-tests/node-auth` (`npm ci`). A missing `python3` or `npm` fails the test
//! that needs it: nothing is skipped.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Serialises installs: several tests may need the environment at once.
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

/// The Python of the environment, installed if the requirements changed.
pub fn python() -> PathBuf {
    python_env("python")
}

/// The `st` command of schemathesis (`sdk-tests/schemathesis/requirements.txt`,
/// in a virtual environment of its own under `target/sdk-env/schemathesis`).
pub fn schemathesis() -> PathBuf {
    python_env("schemathesis")
        .parent()
        .expect("the venv's bin directory")
        .join("st")
}

/// The Python of the virtual environment `target/sdk-env/<name>`, with
/// `sdk-tests/<name>/requirements.txt` installed if it changed.
fn python_env(name: &str) -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let root = workspace();
    let requirements = root.join("sdk-tests").join(name).join("requirements.txt");
    let venv = root.join("target/sdk-env").join(name);
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
            &format!("pip install -r sdk-tests/{name}/requirements.txt"),
        );
        std::fs::write(&marker, wanted).unwrap();
    }
    python
}

/// `sdk-tests/js` with its locked packages installed.
pub fn node_suite() -> PathBuf {
    npm_suite("js")
}

/// `sdk-tests/node-auth` (MSAL for Node, Azure Identity) with its locked packages installed.
pub fn node_auth_suite() -> PathBuf {
    npm_suite("node-auth")
}

fn npm_suite(name: &str) -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace().join("sdk-tests").join(name);
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
    let marker = dir.join("node_modules/.installed-lock.json");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(lock.as_str()) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            &format!("npm ci in sdk-tests/{name}"),
        );
        std::fs::write(&marker, lock).unwrap();
    }
    dir
}

/// `sdk-tests/browser` with its locked packages installed: msal-browser, the
/// Graph Toolkit, esbuild (which bundles the page) and playwright-core (which
/// drives the system's Chromium; it downloads no browser).
pub fn browser_suite() -> PathBuf {
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = workspace().join("sdk-tests/browser");
    let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
    let marker = dir.join("node_modules/.installed-lock.json");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(lock.as_str()) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(&dir),
            "npm ci in sdk-tests/browser",
        );
        std::fs::write(&marker, lock).unwrap();
    }
    dir
}
