//! The load generator: keep-alive HTTP/1.1 connections over loopback.
//!
//! Each connection writes one request, reads its whole response, records the
//! latency and goes on (no pipelining), so `connections` is the number of
//! requests in flight. Requests come from a [`Workload`], which writes each
//! one's bytes straight into the connection's buffer: nothing is parsed or
//! allocated per request beyond that, so the generator stays cheap next to
//! any server. Responses are read by their `Content-Length`.
//!
//! Two paces:
//! - [`Pace::Closed`]: every connection sends its next request as soon as the
//!   previous answer arrived — the server's maximum rate.
//! - [`Pace::Rate`]: a fixed total rate: a pacing thread releases each request
//!   at its instant to the connections in turn. A request released while its
//!   connection still waits for the previous answer counts from its release,
//!   not from when it went out, so a server that falls behind cannot hide its
//!   queue (no coordinated omission).
//!
//! Only answers that arrive inside the measured window count; the first
//! `warmup` is run but not counted. Connections run on `threads` OS threads,
//! each a single-threaded tokio runtime.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::histogram::Histogram;

/// Longest wait for one answer before the run fails.
const ANSWER_LIMIT: Duration = Duration::from_secs(60);
/// Responses larger than this are refused (a bulk answer of 650 is ~300 kB).
const MAX_RESPONSE: usize = 64 * 1024 * 1024;

/// A small, fast pseudo-random generator (SplitMix64); each connection has
/// its own, seeded differently, so runs are varied yet repeatable.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// What a scenario sends.
pub trait Workload: Send + Sync + 'static {
    /// Appends the next request (head and body) to `out` and says which kind
    /// it is (an index into [`Workload::kinds`]); `None` when the workload is
    /// exhausted (a finite one, such as loading every user once).
    fn next(&self, rng: &mut Rng, out: &mut Vec<u8>) -> Option<usize>;

    /// The names of the kinds of request, for the per-kind counts.
    fn kinds(&self) -> &[&'static str];
}

#[derive(Clone, Copy, Debug)]
pub enum Pace {
    Closed,
    /// Requests per second, over all connections.
    Rate(f64),
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub connections: usize,
    pub threads: usize,
    pub warmup: Duration,
    pub measure: Duration,
    pub pace: Pace,
    /// Seeds the connections' generators.
    pub seed: u64,
}

/// What one run measured (inside the measured window only).
#[derive(Clone, Default)]
pub struct Outcome {
    pub requests: u64,
    pub elapsed: Duration,
    pub latency: Histogram,
    /// Answers that were not 2xx.
    pub failures: u64,
    /// The first failing answer's status and body, to say what went wrong.
    pub first_failure: Option<String>,
    /// Requests per kind, in [`Workload::kinds`] order.
    pub kinds: Vec<u64>,
    pub response_bytes: u64,
    /// When the last connection stopped (early when a finite workload ran
    /// out).
    finished: Option<Instant>,
}

impl Outcome {
    pub fn rate(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    fn merge(&mut self, other: Outcome) {
        self.requests += other.requests;
        self.latency.merge(&other.latency);
        self.failures += other.failures;
        self.first_failure = self.first_failure.take().or(other.first_failure);
        if self.kinds.len() < other.kinds.len() {
            self.kinds.resize(other.kinds.len(), 0);
        }
        for (mine, theirs) in self.kinds.iter_mut().zip(other.kinds) {
            *mine += theirs;
        }
        self.response_bytes += other.response_bytes;
        self.finished = self.finished.max(other.finished);
    }
}

/// Runs `workload` against `address` as `plan` says; fails if a connection
/// cannot be made or an answer is malformed or late.
pub fn run(
    address: SocketAddr,
    workload: Arc<dyn Workload>,
    plan: &Plan,
) -> anyhow::Result<Outcome> {
    if plan.connections == 0 || plan.threads == 0 {
        bail!("a load needs at least one connection and one thread");
    }
    let start = Instant::now() + Duration::from_millis(20);
    let measure_from = start + plan.warmup;
    let end = measure_from + plan.measure;
    // At a fixed rate, one pacing thread releases each request at its
    // instant, to the connections in turn.
    let mut tickets = Vec::new();
    let pacer = match plan.pace {
        Pace::Closed => None,
        Pace::Rate(rate) if rate > 0.0 => {
            let (senders, receivers): (Vec<_>, Vec<_>) = (0..plan.connections)
                .map(|_| tokio::sync::mpsc::unbounded_channel())
                .unzip();
            tickets = receivers.into_iter().map(Some).collect();
            Some(std::thread::spawn(move || pace(&senders, start, end, rate)))
        }
        Pace::Rate(rate) => bail!("a rate of {rate} requests/s"),
    };
    let threads = plan.threads.min(plan.connections);
    let mut handles = Vec::new();
    for thread in 0..threads {
        let mine: Vec<(usize, Option<Tickets>)> = (thread..plan.connections)
            .step_by(threads)
            .map(|n| (n, tickets.get_mut(n).and_then(Option::take)))
            .collect();
        let workload = Arc::clone(&workload);
        let seed = plan.seed;
        handles.push(std::thread::spawn(move || -> anyhow::Result<Outcome> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut tasks = tokio::task::JoinSet::new();
                for (n, tickets) in mine {
                    let workload = Arc::clone(&workload);
                    let window = Window {
                        first: start,
                        measure_from,
                        end,
                    };
                    let rng = Rng::new(seed ^ (n as u64).wrapping_mul(0xA076_1D64_78BD_642F));
                    tasks.spawn(connection(address, workload, rng, window, tickets));
                }
                let mut total = Outcome::default();
                while let Some(done) = tasks.join_next().await {
                    total.merge(done??);
                }
                Ok(total)
            })
        }));
    }
    let mut total = Outcome {
        kinds: vec![0; workload.kinds().len()],
        ..Outcome::default()
    };
    for handle in handles {
        let outcome = handle
            .join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
        total.merge(outcome);
    }
    if let Some(pacer) = pacer {
        pacer
            .join()
            .map_err(|_| anyhow::anyhow!("the pacing thread panicked"))?;
    }
    let finished = total.finished.unwrap_or(end).min(end);
    total.elapsed = finished.saturating_duration_since(measure_from);
    Ok(total)
}

#[derive(Clone, Copy)]
struct Window {
    first: Instant,
    measure_from: Instant,
    end: Instant,
}

/// Release instants of a connection's requests, at a fixed rate.
type Tickets = tokio::sync::mpsc::UnboundedReceiver<Instant>;

/// Releases request `i` at `start + i / rate` to connection `i mod n`,
/// sending the instant it was released; a connection still busy with its
/// previous request finds the ticket waiting, and the time it waited counts
/// against the server. A thread's sleep is far finer than the async timer's
/// millisecond, so releases are not bunched.
fn pace(
    senders: &[tokio::sync::mpsc::UnboundedSender<Instant>],
    start: Instant,
    end: Instant,
    rate: f64,
) {
    for i in 0u64.. {
        let due = start + Duration::from_secs_f64(i as f64 / rate);
        if due >= end {
            break;
        }
        let now = Instant::now();
        if due > now {
            std::thread::sleep(due - now);
        }
        let _ = senders[(i % senders.len() as u64) as usize].send(Instant::now());
    }
}

async fn connection(
    address: SocketAddr,
    workload: Arc<dyn Workload>,
    mut rng: Rng,
    window: Window,
    mut tickets: Option<Tickets>,
) -> anyhow::Result<Outcome> {
    let mut outcome = Outcome {
        kinds: vec![0; workload.kinds().len()],
        ..Outcome::default()
    };
    let mut stream = None;
    let mut request = Vec::with_capacity(4096);
    let mut answer = Vec::with_capacity(16 * 1024);
    tokio::time::sleep_until(window.first.into()).await;
    loop {
        if Instant::now() >= window.end {
            break;
        }
        request.clear();
        let Some(kind) = workload.next(&mut rng, &mut request) else {
            break;
        };
        let sent = match &mut tickets {
            Some(tickets) => match tickets.recv().await {
                Some(released) => released,
                None => break,
            },
            None => Instant::now(),
        };
        let open = match &mut stream {
            Some(open) => open,
            None => {
                let fresh = TcpStream::connect(address)
                    .await
                    .with_context(|| format!("cannot connect to {address}"))?;
                fresh.set_nodelay(true)?;
                stream.insert(fresh)
            }
        };
        open.write_all(&request)
            .await
            .context("sending a request")?;
        let head = tokio::time::timeout(ANSWER_LIMIT, read_answer(open, &mut answer))
            .await
            .context("no answer within a minute")??;
        let done = Instant::now();
        if head.close {
            stream = None;
        }
        if done < window.measure_from || done > window.end {
            continue;
        }
        outcome.requests += 1;
        outcome.kinds[kind] += 1;
        outcome.response_bytes += answer.len() as u64;
        outcome.latency.record(done - sent);
        if !(200..300).contains(&head.status) {
            outcome.failures += 1;
            if outcome.first_failure.is_none() {
                let body = String::from_utf8_lossy(&answer[head.length..]);
                let line = request.split(|b| *b == b'\r').next().unwrap_or_default();
                outcome.first_failure = Some(format!(
                    "{} -> {} {}",
                    String::from_utf8_lossy(line),
                    head.status,
                    body.chars().take(300).collect::<String>()
                ));
            }
        }
    }
    outcome.finished = Some(Instant::now());
    Ok(outcome)
}

/// What the response head said.
struct Head {
    status: u16,
    /// Length of the head in the buffer (the body follows).
    length: usize,
    close: bool,
}

/// Reads one whole response into `buffer` (cleared first).
async fn read_answer(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> anyhow::Result<Head> {
    buffer.clear();
    let mut searched = 0;
    let head_end = loop {
        if stream.read_buf(buffer).await? == 0 {
            bail!("the server closed the connection");
        }
        if let Some(at) = find_head_end(&buffer[searched..]) {
            break searched + at;
        }
        searched = buffer.len().saturating_sub(3);
        if buffer.len() > 64 * 1024 {
            bail!("a response head over 64 KiB");
        }
    };
    let head = parse_head(&buffer[..head_end])?;
    let total = head_end + head.1;
    if total > MAX_RESPONSE {
        bail!("a response of {total} bytes");
    }
    while buffer.len() < total {
        buffer.reserve(total - buffer.len());
        if stream.read_buf(buffer).await? == 0 {
            bail!("the server closed the connection in a response body");
        }
    }
    if buffer.len() > total {
        bail!("bytes after a response that nobody asked for");
    }
    Ok(Head {
        status: head.0,
        length: head_end,
        close: head.2,
    })
}

/// One request on a fresh connection, outside any measurement: its status
/// and body.
pub fn exchange(address: SocketAddr, request: &[u8]) -> anyhow::Result<(u16, Vec<u8>)> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address)
        .with_context(|| format!("cannot connect to {address}"))?;
    stream.set_read_timeout(Some(ANSWER_LIMIT))?;
    stream.write_all(request)?;
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let read = stream.read(&mut chunk)?;
        if read == 0 {
            bail!("the server closed the connection before answering");
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(head_end) = find_head_end(&buffer) {
            let (status, length, _) = parse_head(&buffer[..head_end])?;
            if buffer.len() >= head_end + length {
                return Ok((status, buffer[head_end..head_end + length].to_vec()));
            }
        }
    }
}

/// The index just past `\r\n\r\n`, if the buffer holds a whole head.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// Status, body length and whether the server will close the connection.
fn parse_head(head: &[u8]) -> anyhow::Result<(u16, usize, bool)> {
    let text = std::str::from_utf8(head).context("a response head that is not UTF-8")?;
    let mut lines = text.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .with_context(|| format!("a malformed status line: {status_line:?}"))?;
    let (mut length, mut close) = (None, false);
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse().context("a malformed Content-Length")?);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            bail!("a chunked response (Transfer-Encoding: {value}); answers need a Content-Length");
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    // 204 and 304 have no body by definition.
    let length = match (status, length) {
        (204 | 304, _) => 0,
        (_, Some(length)) => length,
        (_, None) => bail!("a {status} response without Content-Length"),
    };
    Ok((status, length, close))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_gives_status_length_and_close() {
        let head =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 42\r\n\r\n";
        assert_eq!(find_head_end(head), Some(head.len()));
        assert_eq!(parse_head(head).unwrap(), (200, 42, false));
        let closing = b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 3\r\n\r\n";
        assert_eq!(parse_head(closing).unwrap(), (400, 3, true));
        assert_eq!(
            parse_head(b"HTTP/1.1 204 No Content\r\n\r\n").unwrap(),
            (204, 0, false)
        );
    }

    #[test]
    fn heads_without_a_length_are_refused() {
        assert!(parse_head(b"HTTP/1.1 200 OK\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
        assert!(parse_head(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn the_generator_is_uniform_enough() {
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[rng.below(10)] += 1;
        }
        assert!(
            counts.iter().all(|c| (9_000..11_000).contains(c)),
            "{counts:?}"
        );
    }
}
