//! `presenced-bench`: benchmarks of presenced against its release binary.
//!
//! ```sh
//! cargo run --release -p presenced-bench -- notify-fade [--users 10000]
//! ```
//!
//! Builds `presenced` (release) first, then runs the benchmark and prints one
//! Markdown line with the figure and the machine.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, bail};

fn usage() -> ! {
    eprintln!("usage: presenced-bench notify-fade [--users N]");
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(command) = args.next() else { usage() };
    if command != "notify-fade" {
        usage();
    }
    let mut users = 10_000;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--users" => {
                users = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .unwrap_or_else(|| usage());
            }
            _ => usage(),
        }
    }
    let presenced = release_binary()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(presenced_bench::notify_fade(&presenced, users))?;
    println!("{}", report.markdown());
    Ok(())
}

/// `target/release/presenced`, built now (a no-op when it is up to date).
fn release_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "presenced",
            "--bin",
            "presenced",
        ])
        .current_dir(&root)
        .status()
        .context("cannot run cargo to build presenced")?;
    if !status.success() {
        bail!("building presenced failed");
    }
    let exe = std::env::current_exe()?;
    let binary = exe
        .parent()
        .context("the benchmark's own path has no directory")?
        .join("presenced");
    if !binary.exists() {
        bail!("{} does not exist", binary.display());
    }
    Ok(binary)
}
