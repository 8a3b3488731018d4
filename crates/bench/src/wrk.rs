//! Closed-loop runs driven by `wrk`, so that the load generator is never the
//! limit of a measured rate.
//!
//! A [`Workload`] writes raw requests; a pool of them, sampled with the
//! run's seed, goes into a Lua script whose `request()` hook picks one at
//! random per request and puts a fresh random user id in place of the
//! pool entry's first one (user ids all have the same width, so
//! `Content-Length` stays right). The script's `done()` hook prints one
//! `presenced-bench KEY VALUE…` line per figure — requests, duration, bytes,
//! errors, non-2xx answers, per-kind counts and the latency distribution at
//! every tenth of a percentile — which [`run`] parses into an [`Outcome`].
//! `wrk` has no warm-up of its own: the warm-up is a separate, discarded run.
//!
//! Fixed-rate runs stay with the workspace generator ([`crate::load`]):
//! `wrk` is closed-loop only, and its pacing would not be free of
//! coordinated omission.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};

use crate::load::{self, Outcome, Plan, Rng, Workload};

/// Requests of the pool the script picks from, at most.
const POOL: usize = 1024;
/// The pool's total size, at most: a bulk request is ~25 kB.
const POOL_BYTES: usize = 4 << 20;
/// How a user id starts in the requests ([`crate::workload::user_id`]).
const USER_PREFIX: &[u8] = b"00000000-0000-4000-8000-";
/// The digits after it.
const USER_DIGITS: usize = 12;
/// Longest wait for one answer; a later one counts as an error.
const TIMEOUT: &str = "10s";

/// Makes sure `program` is on the PATH, installing the Debian `package` that
/// has it (`apt-get install -y`, then after `apt-get update` if that fails)
/// when it is not.
pub fn require(program: &str, package: &str) -> anyhow::Result<()> {
    let found = |program: &str| {
        Command::new("sh")
            .args(["-c", &format!("command -v {program}")])
            .output()
            .is_ok_and(|out| out.status.success())
    };
    if found(program) {
        return Ok(());
    }
    eprintln!(
        "presenced-bench: `{program}` is not installed; installing the Debian package {package} (apt-get install -y {package})"
    );
    let install = || {
        Command::new("apt-get")
            .args(["install", "-y", "-q", package])
            .status()
            .is_ok_and(|status| status.success())
    };
    if !install() {
        let _ = Command::new("apt-get").args(["update", "-q"]).status();
        install();
    }
    if !found(program) {
        bail!(
            "`{program}` is needed and could not be installed: install the Debian package {package} (apt-get install -y {package}) and run again"
        );
    }
    Ok(())
}

/// One pool entry: its kind, and its bytes split around the first user
/// id's digits (no split when it names no user).
struct Entry {
    kind: usize,
    head: Vec<u8>,
    tail: Option<Vec<u8>>,
}

fn pool(workload: &dyn Workload, seed: u64) -> anyhow::Result<Vec<Entry>> {
    let mut rng = Rng::new(seed);
    let mut entries = Vec::new();
    let mut bytes = 0;
    while entries.len() < POOL && bytes < POOL_BYTES {
        let mut request = Vec::new();
        let Some(kind) = workload.next(&mut rng, &mut request) else {
            break;
        };
        bytes += request.len();
        let digits = request
            .windows(USER_PREFIX.len())
            .position(|w| w == USER_PREFIX)
            .map(|at| at + USER_PREFIX.len())
            .filter(|at| at + USER_DIGITS <= request.len());
        entries.push(match digits {
            Some(at) => Entry {
                kind,
                tail: Some(request[at + USER_DIGITS..].to_vec()),
                head: {
                    request.truncate(at);
                    request
                },
            },
            None => Entry {
                kind,
                head: request,
                tail: None,
            },
        });
    }
    if entries.is_empty() {
        bail!("an empty workload");
    }
    Ok(entries)
}

/// `bytes` as a Lua string literal.
fn lua_string(out: &mut String, bytes: &[u8]) {
    out.push('"');
    for &byte in bytes {
        match byte {
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(byte)),
            _ => {
                let _ = write!(out, "\\{byte:03}");
            }
        }
    }
    out.push('"');
}

/// The script: the pool, the `request()` hook and the `done()` report.
pub fn script(workload: &dyn Workload, users: usize, seed: u64) -> anyhow::Result<String> {
    let entries = pool(workload, seed)?;
    let kinds = workload.kinds().len().max(1);
    let mut out = String::with_capacity(entries.iter().map(|e| e.head.len() + 64).sum());
    out.push_str("-- presenced-bench: requests for wrk\nlocal pool = {\n");
    for entry in &entries {
        let _ = write!(out, "{{{}, ", entry.kind + 1);
        lua_string(&mut out, &entry.head);
        if let Some(tail) = &entry.tail {
            out.push_str(", ");
            lua_string(&mut out, tail);
        }
        out.push_str("},\n");
    }
    let _ = write!(
        out,
        r#"}}
local users = {users}
local kinds = {kinds}
local threads = {{}}

function setup(thread)
  table.insert(threads, thread)
  thread:set("seed", {seed} + #threads)
end

function init(args)
  math.randomseed(seed)
  counts = {{}}
  for k = 1, kinds do counts[k] = 0 end
end

function request()
  local entry = pool[math.random(#pool)]
  counts[entry[1]] = counts[entry[1]] + 1
  if entry[3] then
    return entry[2] .. string.format("%0{USER_DIGITS}d", math.random(0, users - 1)) .. entry[3]
  end
  return entry[2]
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("presenced-bench requests %d\n", summary.requests))
  io.write(string.format("presenced-bench duration_us %d\n", summary.duration))
  io.write(string.format("presenced-bench bytes %d\n", summary.bytes))
  io.write(string.format("presenced-bench errors %d %d %d %d\n", e.connect, e.read, e.write, e.timeout))
  io.write(string.format("presenced-bench non2xx %d\n", e.status))
  for _, thread in ipairs(threads) do
    local counts = thread:get("counts")
    local line = "presenced-bench kinds"
    for k = 1, kinds do line = line .. " " .. string.format("%d", counts[k] or 0) end
    io.write(line .. "\n")
  end
  local line = "presenced-bench latency_us"
  -- wrk's percentile(100) is 0: the last step is the maximum.
  for i = 1, 999 do line = line .. " " .. string.format("%d", latency:percentile(i / 10)) end
  line = line .. " " .. string.format("%d", latency.max)
  io.write(line .. "\n")
end
"#
    );
    Ok(out)
}

/// What `wrk`'s `done()` printed.
#[derive(Debug, Default)]
struct Summary {
    requests: u64,
    duration: Duration,
    bytes: u64,
    /// connect, read, write, timeout.
    errors: [u64; 4],
    non_2xx: u64,
    kinds: Vec<u64>,
    /// Latency at each tenth of a percentile, 0.1 % to 99.9 %, then the
    /// maximum.
    latency: Vec<Duration>,
}

fn parse(output: &str, kinds: usize) -> anyhow::Result<Summary> {
    let mut summary = Summary {
        kinds: vec![0; kinds],
        ..Summary::default()
    };
    let mut seen = 0;
    for line in output.lines() {
        let Some(rest) = line.strip_prefix("presenced-bench ") else {
            continue;
        };
        let mut words = rest.split_ascii_whitespace();
        let key = words.next().unwrap_or_default();
        let numbers = words
            .map(str::parse::<u64>)
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("wrk printed a bad figure: {line}"))?;
        let one = || numbers.first().copied().context("a figure without a value");
        match key {
            "requests" => summary.requests = one()?,
            "duration_us" => summary.duration = Duration::from_micros(one()?),
            "bytes" => summary.bytes = one()?,
            "non2xx" => summary.non_2xx = one()?,
            "errors" if numbers.len() == 4 => {
                summary.errors.copy_from_slice(&numbers);
            }
            "kinds" => {
                for (total, count) in summary.kinds.iter_mut().zip(numbers) {
                    *total += count;
                }
            }
            "latency_us" if numbers.len() == 1000 => {
                summary.latency = numbers.into_iter().map(Duration::from_micros).collect();
            }
            _ => bail!("wrk printed an unexpected line: {line}"),
        }
        seen += 1;
    }
    if seen < 6 || summary.latency.is_empty() || summary.duration.is_zero() {
        bail!("wrk's report is incomplete:\n{output}");
    }
    Ok(summary)
}

impl Summary {
    fn outcome(self) -> Outcome {
        let mut outcome = Outcome::default();
        outcome.requests = self.requests;
        outcome.elapsed = self.duration;
        outcome.failures = self.non_2xx + self.errors.iter().sum::<u64>();
        outcome.kinds = self.kinds;
        outcome.response_bytes = self.bytes;
        // wrk's distribution at a tenth of a percentile's resolution, each
        // step carrying its share of the requests (shares rounded so that
        // they add up, and small runs keep their shape).
        let steps = self.latency.len() as u64;
        let mut before = 0;
        for (step, latency) in (1..).zip(&self.latency) {
            let upto = (self.requests * step + steps / 2) / steps;
            outcome.latency.record_n(*latency, upto - before);
            before = upto;
        }
        outcome
    }
}

fn wrk(
    address: SocketAddr,
    script: &Path,
    plan: &Plan,
    seconds: u64,
) -> anyhow::Result<std::process::Output> {
    let output = Command::new("wrk")
        .arg(format!("-t{}", plan.threads.min(plan.connections)))
        .arg(format!("-c{}", plan.connections))
        .arg(format!("-d{seconds}s"))
        .args(["--timeout", TIMEOUT, "-s"])
        .arg(script)
        .arg(format!("http://{address}/"))
        .output()
        .context("cannot run wrk")?;
    if !output.status.success() {
        bail!(
            "wrk failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

/// `workload` against `address` for the plan's warm-up (when a second or
/// more: wrk counts whole seconds) and then its measured time, rounded to
/// whole seconds (at least one). The plan's pace is ignored: wrk is
/// closed-loop. Answers that are not 2xx, and connection errors, count as
/// failures; the first is described by sending one pool request alone.
pub fn run(
    address: SocketAddr,
    workload: Arc<dyn Workload>,
    users: usize,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    require("wrk", "wrk")?;
    let dir = tempfile::Builder::new()
        .prefix("presenced-bench-wrk")
        .tempdir()?;
    let path = dir.path().join("requests.lua");
    let text = script(&*workload, users.max(1), plan.seed)?;
    std::fs::write(&path, &text).with_context(|| format!("cannot write {}", path.display()))?;
    let warmup = plan.warmup.as_secs_f64().round() as u64;
    if warmup > 0 {
        wrk(address, &path, plan, warmup)?;
    }
    let seconds = (plan.measure.as_secs_f64().round() as u64).max(1);
    let output = wrk(address, &path, plan, seconds)?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let mut outcome = parse(&stdout, workload.kinds().len())?.outcome();
    if outcome.failures > 0 {
        let mut request = Vec::new();
        let mut rng = Rng::new(plan.seed);
        workload.next(&mut rng, &mut request);
        outcome.first_failure = Some(match load::exchange(address, &request) {
            Ok((status, body)) => format!(
                "wrk counted failures; a sample request alone got {status} {}",
                String::from_utf8_lossy(&body)
            ),
            Err(error) => format!("wrk counted failures; a sample request alone: {error:#}"),
        });
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Two;

    impl Workload for Two {
        fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize> {
            let kind = rng.below(2);
            if kind == 0 {
                out.extend_from_slice(
                    b"GET /v1.0/users/00000000-0000-4000-8000-000000000007/presence HTTP/1.1\r\n\r\n",
                );
            } else {
                out.extend_from_slice(b"GET /\"\\\x01 HTTP/1.1\r\n\r\n");
            }
            Some(kind)
        }

        fn kinds(&self) -> &[&'static str] {
            &["user", "other"]
        }
    }

    #[test]
    fn the_script_splits_requests_at_the_user_id_and_escapes_bytes() {
        let text = script(&Two, 10, 1).unwrap();
        assert!(
            text.contains(
                r#"{1, "GET /v1.0/users/00000000-0000-4000-8000-", "/presence HTTP/1.1\r\n\r\n"},"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"{2, "GET /\"\\\001 HTTP/1.1\r\n\r\n"},"#),
            "{text}"
        );
        assert!(text.contains("local users = 10\n"), "{text}");
    }

    #[test]
    fn the_report_parses_into_an_outcome() {
        let mut text = String::from(
            "Running 1s test\npresenced-bench requests 2000\npresenced-bench duration_us 1000000\n\
             presenced-bench bytes 5000\npresenced-bench errors 0 0 0 1\npresenced-bench non2xx 2\n\
             presenced-bench kinds 600 400\npresenced-bench kinds 500 500\npresenced-bench latency_us",
        );
        for step in 1..=1000 {
            text += &format!(" {step}");
        }
        let outcome = parse(&text, 2).unwrap().outcome();
        assert_eq!(outcome.requests, 2000);
        assert_eq!(outcome.rate(), 2000.0);
        assert_eq!(outcome.failures, 3);
        assert_eq!(outcome.kinds, vec![1100, 900]);
        assert_eq!(outcome.latency.count(), 2000);
        let p50 = outcome.latency.quantile(0.5).as_micros();
        assert!((499..=501).contains(&p50), "{p50}");
        let p99 = outcome.latency.quantile(0.99).as_micros();
        assert!((989..=991).contains(&p99), "{p99}");
        // A run of fewer requests than steps keeps its distribution.
        text = text.replace("requests 2000", "requests 100");
        let outcome = parse(&text, 2).unwrap().outcome();
        assert_eq!(outcome.latency.count(), 100);
        let p50 = outcome.latency.quantile(0.5).as_micros();
        assert!((490..=510).contains(&p50), "{p50}");
        assert!(parse("presenced-bench requests 1\n", 2).is_err());
        assert!(parse("presenced-bench requests x\n", 2).is_err());
    }
}
