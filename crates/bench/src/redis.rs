//! The anchors users compare with: Redis, measured in the same run.
//!
//! `redis-server` (the Debian package, installed when missing) is started on
//! a free loopback port in a temporary directory, once durable
//! (`appendonly yes`, `appendfsync always`: a write is acknowledged after
//! its fsync, with group commit) and once without persistence, and
//! `redis-benchmark` drives it with the run's number of connections, random
//! keys over the run's users and values of a presence record's size.
//! `redis-benchmark` counts requests, not seconds: a warm-up of a fixed
//! count gives the rate, from which the measured run's count is set to last
//! about the measured time.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::wrk::require;

/// Value size of a SET: about what presenced stores per presence.
pub const VALUE_BYTES: usize = 128;
/// How long redis-server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(30);
/// Warm-up requests per test.
const WARMUP: u64 = 2_000;

/// A running `redis-server`; dropping it stops it.
pub struct Redis {
    child: Child,
    pub address: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Redis {
    /// `redis-server` on a free loopback port in a fresh directory; durable
    /// with `appendonly yes` and `appendfsync always`, or with no
    /// persistence at all.
    pub fn start(durable: bool) -> anyhow::Result<Redis> {
        require("redis-server", "redis-server")?;
        let dir = tempfile::Builder::new()
            .prefix("presenced-bench-redis")
            .tempdir()?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let mut command = Command::new("redis-server");
        command
            .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
            .args(["--save", "", "--daemonize", "no", "--dir"])
            .arg(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if durable {
            command.args(["--appendonly", "yes", "--appendfsync", "always"]);
        } else {
            command.args(["--appendonly", "no"]);
        }
        let child = command.spawn().context("cannot start redis-server")?;
        let mut redis = Redis {
            child,
            address: SocketAddr::from(([127, 0, 0, 1], port)),
            _dir: dir,
        };
        redis.wait_ready()?;
        Ok(redis)
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let limit = Instant::now() + START_LIMIT;
        loop {
            if let Ok(mut stream) = TcpStream::connect(self.address) {
                stream.set_read_timeout(Some(Duration::from_secs(5)))?;
                let mut answer = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut answer).is_ok()
                    && &answer == b"+PONG\r\n"
                {
                    return Ok(());
                }
            }
            if let Some(status) = self.child.try_wait()? {
                bail!("redis-server exited before it was ready ({status})");
            }
            if Instant::now() > limit {
                bail!("redis-server did not answer PING within {START_LIMIT:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One test of `redis-benchmark`.
#[derive(Clone, Debug)]
pub struct Measured {
    pub requests: u64,
    pub rate: f64,
    pub p50: Duration,
    pub p99: Duration,
}

/// `redis-benchmark --csv`: a header, then `"TEST","rps","avg","min","p50",
/// "p95","p99","max"` per test (milliseconds).
fn parse_csv(text: &str) -> anyhow::Result<Vec<(String, f64, Duration, Duration)>> {
    let mut tests = Vec::new();
    for line in text.lines().filter(|l| !l.starts_with("\"test\"")) {
        let fields: Vec<&str> = line.split(',').map(|f| f.trim_matches('"')).collect();
        if fields.len() < 8 {
            continue;
        }
        let number = |i: usize| -> anyhow::Result<f64> {
            fields[i]
                .parse()
                .with_context(|| format!("redis-benchmark printed a bad figure: {line}"))
        };
        let ms = |i: usize| -> anyhow::Result<Duration> {
            Ok(Duration::from_secs_f64(number(i)?.max(0.0) / 1000.0))
        };
        tests.push((fields[0].to_string(), number(1)?, ms(4)?, ms(6)?));
    }
    if tests.is_empty() {
        bail!("redis-benchmark printed no result:\n{text}");
    }
    Ok(tests)
}

/// What `redis-benchmark` drives: one `redis-server`, or a Redis Cluster
/// through one of its nodes (`--cluster`: each key goes to its slot's master).
#[derive(Clone, Copy, Debug)]
pub enum Target {
    Single(SocketAddr),
    Cluster(u16),
}

impl From<&Redis> for Target {
    fn from(redis: &Redis) -> Target {
        Target::Single(redis.address)
    }
}

fn benchmark(
    target: Target,
    tests: &str,
    connections: usize,
    keys: usize,
    requests: u64,
) -> anyhow::Result<Vec<(String, f64, Duration, Duration)>> {
    let mut command = Command::new("redis-benchmark");
    match target {
        Target::Single(address) => {
            command.args(["-h", "127.0.0.1", "-p", &address.port().to_string()]);
        }
        Target::Cluster(port) => {
            command.args(["-h", "127.0.0.1", "-p", &port.to_string(), "--cluster"]);
        }
    }
    let output = command
        .args(["-c", &connections.to_string()])
        .args(["-n", &requests.to_string()])
        .args(["-r", &keys.max(1).to_string()])
        .args(["-d", &VALUE_BYTES.to_string()])
        .args(["-t", tests, "--csv"])
        .stdin(Stdio::null())
        .output()
        .context("cannot run redis-benchmark")?;
    if !output.status.success() {
        bail!(
            "redis-benchmark failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    parse_csv(&String::from_utf8_lossy(&output.stdout))
}

/// Runs `tests` (`set`, `set,get`) against `target` (a [`Redis`], or
/// [`Target::Cluster`]) for about `measure` after a warm-up, with
/// `connections` clients and random keys among `keys`; one figure per test,
/// in redis-benchmark's order.
pub fn measure(
    target: impl Into<Target>,
    tests: &str,
    connections: usize,
    keys: usize,
    measure: Duration,
) -> anyhow::Result<Vec<(String, Measured)>> {
    require("redis-benchmark", "redis-tools")?;
    let target = target.into();
    let warm = benchmark(target, tests, connections, keys, WARMUP)?;
    let slowest = warm
        .iter()
        .map(|(_, rate, ..)| *rate)
        .fold(f64::INFINITY, f64::min);
    let requests = ((slowest * measure.as_secs_f64()) as u64).max(WARMUP);
    Ok(benchmark(target, tests, connections, keys, requests)?
        .into_iter()
        .map(|(name, rate, p50, p99)| {
            (
                name,
                Measured {
                    requests,
                    rate,
                    p50,
                    p99,
                },
            )
        })
        .collect())
}

/// Calls per command (`cmdstat_hmget` → `HMGET`), summed over the nodes on
/// `ports`, from `INFO commandstats`. Redis counts the commands a Lua script
/// runs as well as the script's own `EVALSHA`.
pub fn command_calls(ports: &[u16]) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut calls = BTreeMap::new();
    for &port in ports {
        let info = presenced_testkit::command(port, &["INFO", "commandstats"])
            .with_context(|| format!("INFO commandstats on port {port}"))?;
        for (name, count) in parse_commandstats(&info) {
            *calls.entry(name).or_insert(0) += count;
        }
    }
    Ok(calls)
}

/// `cmdstat_NAME:calls=N,usec=...` lines; `cluster|info` style
/// subcommands keep their `|`.
fn parse_commandstats(info: &str) -> Vec<(String, u64)> {
    info.lines()
        .filter_map(|line| {
            let (name, fields) = line.trim().strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = fields
                .split(',')
                .find_map(|f| f.strip_prefix("calls="))?
                .parse()
                .ok()?;
            Some((name.to_ascii_uppercase(), calls))
        })
        .collect()
}

/// `after − before`, per command (commands seen only before count 0).
pub fn calls_between(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
) -> BTreeMap<String, u64> {
    after
        .iter()
        .map(|(name, n)| {
            (
                name.clone(),
                n.saturating_sub(before.get(name).copied().unwrap_or(0)),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commandstats_give_calls_per_command() {
        let info = "# Commandstats\r\n\
                    cmdstat_hmget:calls=12,usec=30,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n\
                    cmdstat_evalsha:calls=3,usec=90,usec_per_call=30.00,rejected_calls=0,failed_calls=1\r\n\
                    cmdstat_cluster|info:calls=2,usec=9,usec_per_call=4.50,rejected_calls=0,failed_calls=0\r\n";
        let calls = parse_commandstats(info);
        assert_eq!(
            calls,
            vec![
                ("HMGET".to_string(), 12),
                ("EVALSHA".to_string(), 3),
                ("CLUSTER|INFO".to_string(), 2)
            ]
        );
        let before = BTreeMap::from([("HMGET".to_string(), 10), ("PING".to_string(), 4)]);
        let after = BTreeMap::from([
            ("HMGET".to_string(), 15),
            ("PING".to_string(), 4),
            ("WAIT".to_string(), 2),
        ]);
        assert_eq!(
            calls_between(&before, &after),
            BTreeMap::from([("HMGET".to_string(), 5), ("WAIT".to_string(), 2)])
        );
    }

    #[test]
    fn the_csv_gives_rate_and_percentiles_per_test() {
        let text = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\
                    \"SET\",\"10204.08\",\"0.377\",\"0.152\",\"0.311\",\"0.503\",\"2.703\",\"5.631\"\n\
                    \"GET\",\"46511.62\",\"0.056\",\"0.024\",\"0.055\",\"0.079\",\"0.111\",\"2.767\"\n";
        let tests = parse_csv(text).unwrap();
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[0].0, "SET");
        assert_eq!(tests[0].1, 10204.08);
        assert_eq!(tests[0].2, Duration::from_micros(311));
        assert_eq!(tests[1].3, Duration::from_micros(111));
        assert!(parse_csv("nothing\n").is_err());
    }
}
