//! The configuration file: settings that do not fit on a command line.
//!
//! `presenced serve --config FILE` (or `PRESENCED_CONFIG`) reads a TOML file;
//! environment variables `PRESENCED_<SECTION>__<KEY>` (note the double
//! underscore between levels, e.g. `PRESENCED_THROTTLE__DEFAULT=off`)
//! override it. Every section is optional and has defaults; unknown keys are
//! refused so that a typo never goes unnoticed. Command-line flags and their
//! plain `PRESENCED_<FLAG>` variables are separate and win over the file
//! where both name the same setting.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// Everything the configuration file can say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub throttle: ThrottleConfig,
    pub tls: TlsConfig,
    pub limits: LimitsConfig,
}

/// Per app per tenant request limits (decisions.md 22).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ThrottleConfig {
    /// `off`, or `REQUESTS/SECONDSs` such as `1500/30s`; overrides `--throttle`.
    pub default: Option<String>,
    /// Per tenant id: `off` or `REQUESTS/SECONDSs`.
    pub tenants: BTreeMap<String, String>,
}

/// The HTTPS listener's certificate. Without both files, a development CA in
/// `<data-dir>/tls/` signs one for `localhost`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM certificate chain, leaf first; used as given.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the leaf certificate.
    pub key_file: Option<PathBuf>,
}

/// Limits at the edge, so that no client can hold the server.
/// Durations are ISO 8601 (`PT30S`, `PT0.5S`).
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LimitsConfig {
    /// Connections served at once over all listeners; more wait in the
    /// listen backlog until one closes.
    pub max_connections: usize,
    /// Bytes of a request's head (request line and header fields); more is
    /// `431` in Graph's envelope.
    pub max_header_bytes: usize,
    /// Concurrent requests (streams) on one HTTP/2 connection.
    pub max_streams_per_connection: u32,
    /// A request that has not been answered by then (a body that arrives
    /// too slowly, a stuck handler) is answered `408`.
    pub request_timeout: String,
    /// Time to send a request's whole head, counted from the connection's
    /// start or the previous answer; also bounds the TLS handshake.
    pub header_read_timeout: String,
    /// A connection with no request in flight for this long is closed.
    pub idle_timeout: String,
    /// Requests failing authentication (401) allowed per client IP address:
    /// `off` or `REQUESTS/SECONDSs`. Over it, every request from that address
    /// is `429` until the budget refills.
    pub unauthenticated: String,
}

impl Default for LimitsConfig {
    fn default() -> LimitsConfig {
        LimitsConfig {
            max_connections: 1024,
            max_header_bytes: 128 * 1024,
            max_streams_per_connection: 100,
            request_timeout: "PT30S".into(),
            header_read_timeout: "PT10S".into(),
            idle_timeout: "PT60S".into(),
            unauthenticated: "300/60s".into(),
        }
    }
}

impl FileConfig {
    /// Reads `file` (if any) and the `PRESENCED_<SECTION>__<KEY>` variables.
    pub fn load(file: Option<&Path>) -> anyhow::Result<FileConfig> {
        let mut figment = Figment::new();
        if let Some(file) = file {
            if !file.exists() {
                anyhow::bail!("configuration file {} does not exist", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let env = Env::prefixed("PRESENCED_")
            .filter(|key| key.as_str().contains("__"))
            .split("__");
        figment
            .merge(env)
            .extract()
            .context("invalid configuration")
    }
}

#[cfg(test)]
// figment::Jail's closures return its own large error type.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_configuration_is_all_defaults() {
        figment::Jail::expect_with(|_| {
            let config = FileConfig::load(None).unwrap();
            assert!(config.throttle.default.is_none());
            assert!(config.tls.cert_file.is_none());
            assert_eq!(config.limits.max_connections, 1024);
            Ok(())
        });
    }

    #[test]
    fn the_file_is_read_and_the_environment_overrides_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "presenced.toml",
                "[throttle]\ndefault = \"100/10s\"\ntenants = { \"4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f\" = \"off\" }\n\
                 [tls]\ncert_file = \"server.pem\"\nkey_file = \"server-key.pem\"\n\
                 [limits]\nmax_connections = 8\nrequest_timeout = \"PT5S\"\n",
            )?;
            jail.set_env("PRESENCED_THROTTLE__DEFAULT", "off");
            jail.set_env("PRESENCED_LIMITS__MAX_CONNECTIONS", "16");
            jail.set_env("PRESENCED_DATA_DIR", "/ignored/here");
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            assert_eq!(config.throttle.default.as_deref(), Some("off"));
            assert_eq!(config.throttle.tenants.len(), 1);
            assert_eq!(config.tls.key_file, Some(PathBuf::from("server-key.pem")));
            assert_eq!(config.limits.max_connections, 16);
            assert_eq!(config.limits.request_timeout, "PT5S");
            assert_eq!(config.limits.idle_timeout, "PT60S");
            Ok(())
        });
    }

    #[test]
    fn unknown_keys_are_refused() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("presenced.toml", "[throttle]\ndefualt = \"off\"\n")?;
            let error = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap_err();
            assert!(format!("{error:#}").contains("defualt"), "{error:#}");
            Ok(())
        });
    }
}
