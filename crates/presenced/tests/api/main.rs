//! API tests: the real `presenced` binary driven over loopback HTTP, the way
//! Graph clients drive it. One test binary; `helpers` has `TestServer`.
//!
//! Tests inside `both! { ... }` run twice, `NAME::embedded` and `NAME::redis`
//! (this binary's one Redis Cluster, a key prefix per server): actions,
//! batch, captures, cli (token command), edge (SIGTERM), errors, extensions,
//! idp (code, issuer), limits, metrics (the status command), notifications,
//! oauth, reads, refusals, rich, scheduler, seed, users. `redis` covers what
//! only Redis has (several nodes, the shared key and clock, a lost master,
//! stale subscription index entries); transfer moves data between the two.
//!
//! Embedded only: cors (headers of the HTTP layer) and the rest of edge
//! (transport: timeouts, the connection cap, oversized heads, the
//! unauthenticated throttle; none of it reaches the store), durability
//! (SIGKILL and the data file), diskfull, the data-directory upgrade and
//! restart tests of robustness, tls (the development CA in the data
//! directory), the named metrics series (the status command and its figures
//! run on both), the SDK, browser and fuzz suites (they test the HTTP
//! surface, the same on either store), issuers, slow, and the scheduler's lag
//! report (on Redis the deadline index keeps handled deadlines a moment: see
//! scheduler.rs).

mod actions;
mod batch;
mod board;
mod browser;
mod captures;
mod cli;
mod cors;
mod diskfull;
mod durability;
mod edge;
mod errors;
mod extensions;
mod fuzz;
mod helpers;
pub mod idp;
mod issuers;
mod limits;
mod metrics;
mod multinode;
mod notifications;
mod oauth;
mod openapi;
mod provider;
mod reads;
mod receiver;
mod redis;
mod refusals;
mod rich;
mod robustness;
mod scheduler;
mod sdk;
mod sdk_env;
mod seed;
mod slow;
mod tls;
mod transfer;
mod users;
