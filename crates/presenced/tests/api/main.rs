//! API tests: the real `presenced` binary driven over loopback HTTP, the way
//! Graph clients drive it. One test binary; `helpers` has `TestServer`.

mod actions;
mod batch;
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
mod users;
