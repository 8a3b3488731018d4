//! Test support shared by the crates' test binaries: a Redis Cluster on
//! loopback, started by the tests that need it and stopped with them.
//!
//! [`RedisCluster::start`] runs Debian's `redis-server` (3 masters by
//! default, replicas on request) on free loopback ports in a temporary
//! directory, joins them with `CLUSTER ADDSLOTSRANGE` / `CLUSTER MEET` /
//! `CLUSTER REPLICATE`, and waits (bounded) until every node reports
//! `cluster_state:ok`. [`RedisCluster::shared`] is the one cluster of a test
//! binary; tests keep apart by a key prefix from
//! [`RedisCluster::unique_prefix`].
//!
//! Nothing is left running: every `redis-server` runs under a small `sh`
//! watchdog that holds a pipe from the test process and stops the server
//! when the pipe closes, which happens on [`Drop`] and also when the test
//! process exits without dropping (a `static` is never dropped) or dies.
//!
//! For tests and the benchmark (crates/bench starts its `redis` scenario's
//! cluster with it), never for presenced itself: it spawns processes and
//! polls them with short, bounded waits.

use std::fmt;
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The number of hash slots of a Redis Cluster.
pub const SLOTS: u16 = 16_384;

/// How long any one step of starting a cluster may take.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);
/// Pause between two polls of a node.
const POLL: Duration = Duration::from_millis(20);

/// What cluster to start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClusterOptions {
    pub masters: usize,
    /// Replicas of each master (failover tests want 1).
    pub replicas_per_master: usize,
    /// `cluster-node-timeout`: how long a master may be unreachable before
    /// its replica takes over.
    pub node_timeout: Duration,
    /// `appendonly yes` (with `appendfsync everysec`), as production runs.
    pub appendonly: bool,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            masters: 3,
            replicas_per_master: 0,
            node_timeout: Duration::from_millis(2_000),
            appendonly: false,
        }
    }
}

/// Why a cluster could not be started or asked something.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterError(pub String);

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ClusterError {}

fn err(message: impl Into<String>) -> ClusterError {
    ClusterError(message.into())
}

/// One `redis-server` of the cluster.
struct Node {
    port: u16,
    bus_port: u16,
    /// The watchdog shell; it stops the server when `stdin` closes.
    watchdog: Child,
    stdin: Option<ChildStdin>,
    log: PathBuf,
}

/// A running Redis Cluster on loopback; stopped on drop.
pub struct RedisCluster {
    nodes: Vec<Node>,
    masters: usize,
    started_in: Duration,
    dir: tempfile::TempDir,
}

impl fmt::Debug for RedisCluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisCluster")
            .field("ports", &self.ports())
            .field("masters", &self.masters)
            .field("started_in", &self.started_in)
            .field("dir", &self.dir.path())
            .finish()
    }
}

static SHARED: LazyLock<RedisCluster> = LazyLock::new(|| {
    RedisCluster::start(ClusterOptions::default())
        .unwrap_or_else(|e| panic!("could not start the shared test Redis Cluster: {e}"))
});

static PREFIXES: AtomicU64 = AtomicU64::new(0);

impl RedisCluster {
    /// The one 3-master cluster of this test binary, started on first use.
    pub fn shared() -> &'static RedisCluster {
        &SHARED
    }

    /// Starts a cluster and waits until it serves every slot.
    pub fn start(options: ClusterOptions) -> Result<Self, ClusterError> {
        if options.masters == 0 {
            return Err(err("a cluster needs at least one master"));
        }
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("presenced-redis-cluster-")
            .tempdir()
            .map_err(|e| err(format!("temporary directory: {e}")))?;
        let total = options.masters * (1 + options.replicas_per_master);
        let ports = free_ports(total * 2)?;
        let mut cluster = RedisCluster {
            nodes: Vec::with_capacity(total),
            masters: options.masters,
            started_in: Duration::ZERO,
            dir,
        };
        for pair in ports.chunks(2) {
            let node = spawn_node(cluster.dir.path(), pair[0], pair[1], &options)?;
            cluster.nodes.push(node);
        }
        for node in &cluster.nodes {
            wait_until(&format!("node {} answers PING", node.port), || {
                Ok(command(node.port, &["PING"]).is_ok_and(|r| r == "PONG"))
            })
            .map_err(|e| cluster.with_log(node, e))?;
        }
        cluster.join(&options)?;
        cluster.started_in = started.elapsed();
        Ok(cluster)
    }

    /// Assigns slots, meets every node, sets up replicas, waits for `ok`.
    fn join(&self, options: &ClusterOptions) -> Result<(), ClusterError> {
        let masters = &self.nodes[..self.masters];
        let per = SLOTS as usize / self.masters;
        for (i, node) in masters.iter().enumerate() {
            let first = i * per;
            let last = if i + 1 == self.masters {
                SLOTS as usize - 1
            } else {
                first + per - 1
            };
            command(
                node.port,
                &[
                    "CLUSTER",
                    "ADDSLOTSRANGE",
                    &first.to_string(),
                    &last.to_string(),
                ],
            )?;
        }
        for (i, node) in self.nodes.iter().enumerate() {
            // Distinct epochs, as `redis-cli --cluster create` sets them, so
            // that no node has to resolve a collision first.
            command(
                node.port,
                &["CLUSTER", "SET-CONFIG-EPOCH", &(i + 1).to_string()],
            )?;
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            command(
                first.port,
                &[
                    "CLUSTER",
                    "MEET",
                    "127.0.0.1",
                    &node.port.to_string(),
                    &node.bus_port.to_string(),
                ],
            )?;
        }
        let total = self.nodes.len();
        for node in &self.nodes {
            wait_until(
                &format!("node {} knows all {total} nodes", node.port),
                || {
                    let info = command(node.port, &["CLUSTER", "INFO"])?;
                    Ok(
                        info_field(&info, "cluster_known_nodes")
                            == Some(total.to_string().as_str()),
                    )
                },
            )?;
        }
        if options.replicas_per_master > 0 {
            let replicas = &self.nodes[self.masters..];
            for (j, replica) in replicas.iter().enumerate() {
                let master = &masters[j % self.masters];
                let id = command(master.port, &["CLUSTER", "MYID"])?;
                command(replica.port, &["CLUSTER", "REPLICATE", &id])?;
            }
            for replica in replicas {
                wait_until(&format!("replica {} in sync", replica.port), || {
                    let info = command(replica.port, &["INFO", "replication"])?;
                    Ok(info_field(&info, "master_link_status") == Some("up")
                        && info_field(&info, "master_sync_in_progress") == Some("0"))
                })?;
            }
        }
        for node in &self.nodes {
            wait_until(
                &format!("node {} reports cluster_state:ok", node.port),
                || {
                    let info = command(node.port, &["CLUSTER", "INFO"])?;
                    Ok(info_field(&info, "cluster_state") == Some("ok"))
                },
            )?;
        }
        // Every node must see every other in its role too, or a client's
        // first `CLUSTER SLOTS` may miss a replica.
        let expected_slaves = (self.masters * options.replicas_per_master).to_string();
        for node in &self.nodes {
            wait_until(&format!("node {} sees every replica", node.port), || {
                let nodes = command(node.port, &["CLUSTER", "NODES"])?;
                let slaves = nodes.lines().filter(|l| l.contains("slave")).count();
                Ok(slaves.to_string() == expected_slaves)
            })?;
        }
        Ok(())
    }

    /// How long [`start`](Self::start) took.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Every node's port, masters first.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// The masters' ports, as started (a failover changes who is master).
    pub fn master_ports(&self) -> Vec<u16> {
        self.nodes[..self.masters].iter().map(|n| n.port).collect()
    }

    /// `redis://127.0.0.1:PORT` of every master: seed URLs for a client.
    pub fn urls(&self) -> Vec<String> {
        self.master_ports()
            .iter()
            .map(|p| format!("redis://127.0.0.1:{p}"))
            .collect()
    }

    /// A key prefix no other test of this process uses, readable in
    /// `redis-cli` (`NAME-N:`); keep it free of `{`/`}`.
    pub fn unique_prefix(&self, name: &str) -> String {
        let n = PREFIXES.fetch_add(1, Ordering::Relaxed);
        let name: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{name}-{n}:")
    }

    /// Sends one command to one node and returns its reply as text (see
    /// [`command`]).
    pub fn command(&self, port: u16, args: &[&str]) -> Result<String, ClusterError> {
        command(port, args)
    }

    /// [`command_bytes`] on one node.
    pub fn command_bytes(&self, port: u16, args: &[&[u8]]) -> Result<String, ClusterError> {
        command_bytes(port, args)
    }

    /// The node serving `key`'s slot now, found by asking any node and
    /// following its `MOVED` answer.
    pub fn node_of(&self, key: &str) -> Result<u16, ClusterError> {
        // Killed nodes do not answer: ask the others.
        let slot = self
            .nodes
            .iter()
            .find_map(|n| command(n.port, &["CLUSTER", "KEYSLOT", key]).ok())
            .ok_or_else(|| err("no node answers"))?;
        let slot: u16 = slot
            .parse()
            .map_err(|_| err(format!("CLUSTER KEYSLOT answered {slot}")))?;
        for node in &self.nodes {
            let Ok(nodes) = command(node.port, &["CLUSTER", "NODES"]) else {
                continue;
            };
            for line in nodes.lines() {
                let fields: Vec<&str> = line.split(' ').collect();
                if fields.len() < 9 || !fields[2].contains("master") || fields[2].contains("fail") {
                    continue;
                }
                let serves = fields[8..].iter().any(|range| {
                    let mut ends = range.splitn(2, '-');
                    let lo = ends.next().and_then(|s| s.parse::<u16>().ok());
                    let hi = ends.next().map_or(lo, |s| s.parse::<u16>().ok());
                    matches!((lo, hi), (Some(lo), Some(hi)) if (lo..=hi).contains(&slot))
                });
                if serves {
                    let port = fields[1]
                        .split(['@', ':'])
                        .nth(1)
                        .and_then(|p| p.parse().ok());
                    return port
                        .ok_or_else(|| err(format!("unreadable CLUSTER NODES line {line}")));
                }
            }
        }
        Err(err(format!("no master serves slot {slot}")))
    }

    /// SIGKILLs one node (failover tests); its watchdog then ends too.
    pub fn kill_node(&mut self, port: u16) -> Result<(), ClusterError> {
        let info = command(port, &["INFO", "server"])?;
        let pid = info_field(&info, "process_id")
            .ok_or_else(|| err(format!("node {port} did not tell its process id")))?
            .to_string();
        let status = Command::new("kill")
            .args(["-KILL", &pid])
            .status()
            .map_err(|e| err(format!("kill: {e}")))?;
        if !status.success() {
            return Err(err(format!("kill -KILL {pid} failed")));
        }
        if let Some(node) = self.nodes.iter_mut().find(|n| n.port == port) {
            node.stdin.take();
        }
        Ok(())
    }

    /// Starts a node killed by [`RedisCluster::kill_node`] again, on its
    /// ports and with its cluster configuration, and waits (bounded) until
    /// it answers; it rejoins the cluster with the slots it had (its data is
    /// gone unless `appendonly`).
    pub fn restart_node(
        &mut self,
        port: u16,
        options: &ClusterOptions,
    ) -> Result<(), ClusterError> {
        let index = self
            .nodes
            .iter()
            .position(|n| n.port == port)
            .ok_or_else(|| err(format!("no node on port {port}")))?;
        let bus_port = self.nodes[index].bus_port;
        let mut old = std::mem::replace(
            &mut self.nodes[index],
            spawn_node(self.dir.path(), port, bus_port, options)?,
        );
        let _ = old.watchdog.wait();
        wait_until(&format!("node {port} answers"), || {
            Ok(command(port, &["PING"])? == "PONG")
        })
    }

    fn with_log(&self, node: &Node, e: ClusterError) -> ClusterError {
        let log = std::fs::read_to_string(&node.log).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(20).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        err(format!(
            "{e}; log of node {}:\n{}",
            node.port,
            tail.join("\n")
        ))
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.stdin.take();
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        for node in &mut self.nodes {
            loop {
                match node.watchdog.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = node.watchdog.kill();
                        let _ = node.watchdog.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(POLL),
                }
            }
        }
    }
}

/// Starts `redis-server` under a watchdog shell: the server runs in the
/// background, the shell blocks reading its stdin (a pipe from this process)
/// and stops the server when that pipe closes.
fn spawn_node(
    dir: &Path,
    port: u16,
    bus_port: u16,
    options: &ClusterOptions,
) -> Result<Node, ClusterError> {
    let log = dir.join(format!("node-{port}.log"));
    let timeout = options.node_timeout.as_millis().to_string();
    let appendonly = if options.appendonly { "yes" } else { "no" };
    let args: Vec<String> = [
        "--port",
        &port.to_string(),
        "--cluster-port",
        &bus_port.to_string(),
        "--bind",
        "127.0.0.1",
        "--cluster-enabled",
        "yes",
        "--cluster-config-file",
        &format!("nodes-{port}.conf"),
        "--cluster-node-timeout",
        &timeout,
        "--dir",
        &dir.to_string_lossy(),
        "--dbfilename",
        &format!("dump-{port}.rdb"),
        "--appendonly",
        appendonly,
        "--appendfilename",
        &format!("appendonly-{port}.aof"),
        "--appenddirname",
        &format!("aof-{port}"),
        "--save",
        "",
        "--logfile",
        &log.to_string_lossy(),
        "--daemonize",
        "no",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let script = r#"redis-server "$@" & pid=$!
read -r _ignored
kill "$pid" 2>/dev/null
wait "$pid""#;
    let mut watchdog = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("redis-node")
        .args(&args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            err(format!(
                "could not run sh/redis-server (is redis-server installed?): {e}"
            ))
        })?;
    let stdin = watchdog.stdin.take();
    Ok(Node {
        port,
        bus_port,
        watchdog,
        stdin,
        log,
    })
}

/// `n` distinct ports that were free on 127.0.0.1 a moment ago (all bound
/// at once, so none repeats).
fn free_ports(n: usize) -> Result<Vec<u16>, ClusterError> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((Ipv4Addr::LOCALHOST, 0)))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("no free loopback port: {e}")))?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(|e| err(format!("no free loopback port: {e}")))
}

/// Polls `ready` until it says yes, for at most [`STEP_TIMEOUT`]; errors on
/// the way count as "not yet".
fn wait_until(
    what: &str,
    mut ready: impl FnMut() -> Result<bool, ClusterError>,
) -> Result<(), ClusterError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    let mut last = String::new();
    loop {
        match ready() {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => last = e.0,
        }
        if Instant::now() >= deadline {
            let why = if last.is_empty() {
                String::new()
            } else {
                format!(" (last error: {last})")
            };
            return Err(err(format!(
                "timed out after {STEP_TIMEOUT:?} waiting until {what}{why}"
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// A `field:value` line of an `INFO`-style reply.
pub fn info_field<'a>(info: &'a str, field: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .map(str::trim)
}

/// Sends one command to the node on `port` of 127.0.0.1 over a fresh
/// connection and returns the reply as text: a status or bulk string as is,
/// an integer in decimal, an array's elements one per line. An error reply
/// (`-ERR ...`, `-MOVED ...`) is an `Err`. No redirection is followed.
pub fn command(port: u16, args: &[&str]) -> Result<String, ClusterError> {
    let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
    command_bytes(port, &args)
}

/// [`command`] with arguments as bytes, for keys and values that are not
/// text (presenced's keys hold raw 16-byte ids). The reply is read as
/// [`command`] reads it.
pub fn command_bytes(port: u16, args: &[&[u8]]) -> Result<String, ClusterError> {
    let io = |e: std::io::Error| err(format!("node {port}: {e}"));
    let stream =
        TcpStream::connect_timeout(&(Ipv4Addr::LOCALHOST, port).into(), Duration::from_secs(2))
            .map_err(io)?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream
        .set_write_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    let mut request = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        request.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        request.extend_from_slice(arg);
        request.extend_from_slice(b"\r\n");
    }
    (&stream).write_all(&request).map_err(io)?;
    let mut reader = BufReader::new(stream);
    read_reply(&mut reader, port, 0)
}

fn read_reply(reader: &mut impl BufRead, port: u16, depth: usize) -> Result<String, ClusterError> {
    let io = |e: std::io::Error| err(format!("node {port}: {e}"));
    let mut line = String::new();
    reader.read_line(&mut line).map_err(io)?;
    let line = line.trim_end_matches(['\r', '\n']);
    let (kind, rest) = line
        .split_at_checked(1)
        .ok_or_else(|| err(format!("node {port}: connection closed")))?;
    match kind {
        "+" | ":" => Ok(rest.to_string()),
        "-" => Err(err(format!("node {port}: {rest}"))),
        "$" => {
            let Ok(len) = rest.parse::<usize>() else {
                return Ok(String::new()); // $-1: nil
            };
            let mut body = vec![0; len + 2];
            reader.read_exact(&mut body).map_err(io)?;
            body.truncate(len);
            String::from_utf8(body).map_err(|_| err(format!("node {port}: reply is not UTF-8")))
        }
        "*" if depth < 4 => {
            let len = rest.parse::<usize>().unwrap_or(0);
            let items = (0..len)
                .map(|_| read_reply(reader, port, depth + 1))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(items.join("\n"))
        }
        _ => Err(err(format!("node {port}: unexpected reply {line}"))),
    }
}
