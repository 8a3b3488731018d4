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
use std::path::Path;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::Deserialize;

/// Everything the configuration file can say.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    pub throttle: ThrottleConfig,
    pub notifications: NotificationsConfig,
}

/// Change notifications (`[notifications]`). Durations are ISO 8601.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotificationsConfig {
    /// How long failed notifications are retried before `missed` (default `PT4H`).
    pub retry_window: Option<String>,
    /// The first retry's delay (default `PT1S`); later ones double.
    pub retry_initial: Option<String>,
    /// The longest delay between retries (default `PT5M`).
    pub retry_max: Option<String>,
    /// How long an endpoint has to echo the validation token (default `PT10S`).
    pub handshake_timeout: Option<String>,
    /// How long one delivery may take (default `PT10S`).
    pub delivery_timeout: Option<String>,
    /// How long before expiry `reauthorizationRequired` is sent (default `PT15M`).
    pub reauthorize_before: Option<String>,
    /// Extension: subscriptions with application permissions.
    pub app_subscriptions: bool,
    /// Extension: more than 650 ids in one subscription.
    pub unlimited_ids: bool,
    /// Extension: the Server-Sent Events live stream.
    pub live_stream: bool,
    /// Networks webhooks may reach even though the deny list names them.
    pub allow_networks: Vec<String>,
    /// Networks webhooks may not reach; default: loopback, private,
    /// link-local, CGNAT and unspecified ranges.
    pub deny_networks: Option<Vec<String>>,
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
            Ok(())
        });
    }

    #[test]
    fn the_file_is_read_and_the_environment_overrides_it() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "presenced.toml",
                "[throttle]\ndefault = \"100/10s\"\ntenants = { \"4f5e1d6c-2b3a-4c9d-8e7f-0a1b2c3d4e5f\" = \"off\" }\n",
            )?;
            jail.set_env("PRESENCED_THROTTLE__DEFAULT", "off");
            jail.set_env("PRESENCED_DATA_DIR", "/ignored/here");
            let config = FileConfig::load(Some(Path::new("presenced.toml"))).unwrap();
            assert_eq!(config.throttle.default.as_deref(), Some("off"));
            assert_eq!(config.throttle.tenants.len(), 1);
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
