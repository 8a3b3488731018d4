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
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

/// Serialises installs: the two suites may start at the same time.
static INSTALL: Mutex<()> = Mutex::new(());

fn run(command: &mut Command, what: &str) {
    let output = command.output().unwrap_or_else(|e| panic!("{what}: cannot run: {e}"));
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
        run(Command::new("python3").args(["-m", "venv"]).arg(&venv), "python3 -m venv");
        run(
            Command::new(&python).args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"]).arg(&requirements),
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
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(&dir), "npm ci in sdk-tests/js");
        std::fs::write(&marker, lock).unwrap();
    }
    dir
}
