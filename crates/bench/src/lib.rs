//! Benchmarks that drive a real `presenced` process over loopback.
//!
//! The benchmarks use the binary, its flags and files, the Graph API and the
//! admin calls, like any client; only [`timers`] prepares its data directory
//! through the embedded store, to place a million expiries in real time.
//!
//! - [`suite`]: the scenarios of `BENCHMARKS.md` (get, set, bulk, mixed,
//!   scale, timers), each against `presenced` and against a [`baseline`]
//!   server in the same run; closed-loop runs driven by `wrk` ([`wrk`]),
//!   fixed-rate runs and the finite load by the [`load`] generator, and
//!   [`redis`] as the anchor users compare with.
//! - [`notify_fade`]: how long N simultaneous fades take to reach a webhook.

pub mod baseline;
pub mod histogram;
pub mod load;
pub mod notify_fade;
pub mod process;
pub mod redis;
pub mod report;
pub mod suite;
pub mod timers;
pub mod workload;
pub mod wrk;

pub use notify_fade::{FadeReport, notify_fade};
