//! `presenced-bench`: benchmarks of presenced against its release binary.
//!
//! ```sh
//! cargo run --release -p presenced-bench -- all            # every scenario, writes BENCHMARKS.md
//! cargo run --release -p presenced-bench -- get bulk       # some scenarios, prints the table
//! cargo run --release -p presenced-bench -- all --smoke    # seconds, tiny sizes
//! cargo run --release -p presenced-bench -- notify-fade [--users 10000]
//! ```
//!
//! Builds `presenced` (release) first. `baseline` is the baseline server the
//! scenarios start themselves. Closed-loop runs are driven by `wrk` and the
//! anchors measured with `redis-server`/`redis-benchmark`; each Debian
//! package is installed (`apt-get install -y`) when missing.
//! `--generator workspace` drives the closed-loop runs with the workspace
//! generator instead.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use presenced_bench::baseline::{self, Sizes};
use presenced_bench::process::Binaries;
use presenced_bench::suite::{self, Generator, Scenario, Settings};

const USAGE: &str = "usage:
  presenced-bench all|SCENARIO... [--smoke] [--out FILE] [--users N] [--seconds S] [--connections C] [--threads T] [--sizes N,N,...] [--generator wrk|workspace]
      scenarios: get set bulk mixed scale timers redis; `all` writes BENCHMARKS.md unless --out says otherwise
  presenced-bench notify-fade [--users N]
  presenced-bench baseline --get BYTES --bulk BYTES --action BYTES";

fn usage() -> ! {
    eprintln!("{USAGE}");
    std::process::exit(2);
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => usage(),
        Some("baseline") => {
            let sizes = Sizes::from_args(&args[1..]).unwrap_or_else(|| usage());
            baseline::serve(sizes)
        }
        Some("notify-fade") => notify_fade(&args[1..]),
        Some(_) => scenarios(&args),
    }
}

fn number<T: std::str::FromStr>(value: Option<&String>) -> T {
    value
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| usage())
}

fn notify_fade(args: &[String]) -> anyhow::Result<()> {
    let users = match args {
        [] => 10_000,
        [flag, n] if flag == "--users" => number(Some(n)),
        _ => usage(),
    };
    let presenced = release_binary()?;
    let runtime = tokio::runtime::Runtime::new()?;
    let report = runtime.block_on(presenced_bench::notify_fade(&presenced, users))?;
    println!("{}", report.markdown());
    Ok(())
}

fn scenarios(args: &[String]) -> anyhow::Result<()> {
    let smoke = args.iter().any(|a| a == "--smoke");
    let mut settings = if smoke {
        Settings::smoke()
    } else {
        Settings::full()
    };
    settings.scenarios.clear();
    let mut out = None;
    let mut all = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "all" => all = true,
            "--smoke" => {}
            "--out" => out = Some(PathBuf::from(args.next().unwrap_or_else(|| usage()))),
            "--users" => settings.users = number(args.next()),
            "--seconds" => settings.measure = Duration::from_secs_f64(number(args.next())),
            "--connections" => settings.connections = number(args.next()),
            "--threads" => settings.threads = number(args.next()),
            "--generator" => {
                settings.generator = match args.next().map(String::as_str) {
                    Some("wrk") => Generator::Wrk,
                    Some("workspace") => Generator::Workspace,
                    _ => usage(),
                }
            }
            "--sizes" => {
                settings.scale_sizes = args
                    .next()
                    .map(|list| {
                        list.split(',')
                            .map(|n| number(Some(&n.to_string())))
                            .collect()
                    })
                    .unwrap_or_else(|| usage());
            }
            name => settings
                .scenarios
                .push(Scenario::parse(name).unwrap_or_else(|| usage())),
        }
    }
    if all {
        settings.scenarios = Scenario::ALL.to_vec();
        out = out.or_else(|| Some(workspace().join("BENCHMARKS.md")));
    }
    if settings.scenarios.is_empty()
        || settings.users == 0
        || settings.connections == 0
        || settings.scale_sizes.contains(&0)
    {
        usage();
    }
    let binaries = Binaries {
        presenced: release_binary()?,
        bench: std::env::current_exe()?,
    };
    let mut report = suite::run(&binaries, &settings);
    report.command = format!(
        "cargo run --release -p presenced-bench -- {}",
        std::env::args().skip(1).collect::<Vec<_>>().join(" ")
    );
    report.machine = presenced_bench::report::machine();
    report.setup = suite::setup_lines(&settings);
    let text = report.markdown();
    match out {
        Some(path) => {
            std::fs::write(&path, &text)
                .with_context(|| format!("cannot write {}", path.display()))?;
            println!("{text}\nwritten to {}", path.display());
        }
        None => println!("{text}"),
    }
    // The rows of what completed are written; the run still failed.
    if let Some(reason) = &report.failed {
        bail!("the benchmark stopped: {reason}");
    }
    Ok(())
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `target/release/presenced`, built now (a no-op when it is up to date).
fn release_binary() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
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
        .current_dir(workspace())
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
