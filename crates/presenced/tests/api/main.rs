//! API tests: the real `presenced` binary driven over loopback HTTP, the way
//! Graph clients drive it. One test binary; `helpers` has `TestServer`.

mod actions;
mod captures;
mod cli;
mod durability;
mod edge;
mod errors;
mod extensions;
mod helpers;
mod issuers;
mod metrics;
mod notifications;
mod oauth;
mod provider;
mod reads;
mod receiver;
mod rich;
mod robustness;
mod scheduler;
mod sdk;
mod sdk_env;
mod seed;
mod slow;
mod tls;
