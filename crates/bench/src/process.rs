//! The processes a benchmark runs: `presenced` and the baseline.
//!
//! Each is started as a child with its output piped; it is ready when it
//! prints `… listening on http://ADDR`. Dropping the handle kills it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

/// How long a process may take to say it listens.
const START_LIMIT: Duration = Duration::from_secs(120);

pub struct Process {
    child: Child,
    pub address: SocketAddr,
    /// From spawning until it said it listens.
    pub started_in: Duration,
}

impl Process {
    /// Starts `program` with `args` and waits until it listens.
    pub fn start(program: &Path, args: &[String]) -> anyhow::Result<Process> {
        use std::io::{BufRead, BufReader};
        let spawned = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let stdout = child.stdout.take().context("no stdout")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            for line in lines.by_ref().map_while(Result::ok) {
                if let Some((_, address)) = line.split_once(" listening on http://") {
                    let _ = sender.send(address.trim().to_string());
                    break;
                }
            }
            // Keep draining, so the child never blocks on a full pipe.
            for _ in lines {}
        });
        let address = receiver.recv_timeout(START_LIMIT);
        let started_in = spawned.elapsed();
        let mut process = Process {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], 0)),
            started_in,
        };
        let address = match address {
            Ok(address) => address,
            Err(_) => {
                let status = process.child.try_wait().ok().flatten();
                bail!(
                    "{} did not start listening within {START_LIMIT:?} (exit status: {status:?})",
                    program.display()
                );
            }
        };
        process.address = address
            .parse()
            .with_context(|| format!("{} printed a bad address {address}", program.display()))?;
        Ok(process)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory now, from `/proc/<pid>/status` (`VmRSS`).
    pub fn resident_bytes(&self) -> anyhow::Result<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .context("cannot read the process's status")?;
        let kib: u64 = status
            .lines()
            .find_map(|line| line.strip_prefix("VmRSS:"))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in the process's status")?;
        Ok(kib * 1024)
    }

    /// Stops the process with SIGTERM (a clean shutdown), waiting up to a
    /// minute, then kills it.
    pub fn stop(mut self) -> anyhow::Result<()> {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.pid().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if self.child.try_wait()?.is_some() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!("the process did not stop within a minute of SIGTERM")
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The binaries a benchmark runs.
#[derive(Clone, Debug)]
pub struct Binaries {
    pub presenced: PathBuf,
    /// The `presenced-bench` binary, for its `baseline` command.
    pub bench: PathBuf,
}

/// `target/<profile>/presenced` as seen from a test binary in
/// `target/<profile>/deps/`: what the workspace's tests run against.
pub fn presenced_beside_tests() -> PathBuf {
    let exe = std::env::current_exe().expect("the running test has a path");
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("a test binary lives in target/<profile>/deps");
    let binary = profile_dir.join("presenced");
    assert!(
        binary.exists(),
        "{} is missing: build it first (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}
