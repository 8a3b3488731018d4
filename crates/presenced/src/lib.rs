//! presenced: a self-hostable presence service that speaks the Microsoft
//! Graph presence API.
//!
//! # Layout
//! - [`api`]: the only module that knows Graph's URLs, JSON and errors.
//! - [`backend`]: which store holds the state, and the identity provider's
//!   state with it (data directory or Redis).
//! - [`clock`]: the system or manual clock presence runs on.
//! - [`directory`]: the directory file (tenants and users).
//! - [`logging`]: the log's writer (a thread that writes lines in batches).
//! - [`notify`]: change notifications: subscriptions, outbox delivery,
//!   time-driven changes, lifecycle events.
//! - [`server`]: start-up, serving, shutdown.
//! - [`status`]: the `presenced status` command (a client of `/admin/status`).
//! - [`telemetry`]: Prometheus metrics and the figures of `presenced status`.
//! - [`transport`]: listeners and connections, and their limits.
//! - [`tls`]: the HTTPS certificate (configured, or a development CA).
//! - [`transfer`]: `presenced export` / `import` (JSON lines).
//!
//! The presence rules live in `presenced-domain`, storage in
//! `presenced-store`, tokens in `presenced-identity`.

pub mod api;
pub mod backend;
pub mod clock;
pub mod config;
pub mod directory;
pub mod logging;
pub mod notify;
pub mod server;
pub mod status;
pub mod telemetry;
pub mod tls;
pub mod transfer;
pub mod transport;
