//! Where an issuer's keys come from: a JWKS file, a JWKS URL, or OIDC discovery, and the one step that
//! loads the current key set from there.
//!
//! HTTP goes through the [`Fetch`] trait, so that tests can serve documents without a network;
//! [`HttpFetch`] is the real client. Every fetch is bounded in time and size.

use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use reqwest::Url;
use serde::Deserialize;

use crate::jwks::{JwksError, KeySet};
use crate::validate::IssuerPattern;

/// The largest JWKS or discovery document read. Entra's key set is a few kilobytes.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The path a discovery document lives at, under its issuer (OpenID Connect Discovery 1.0, section 4).
pub const DISCOVERY_PATH: &str = "/.well-known/openid-configuration";

/// Where an issuer publishes its keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// A JWK set in a local file, read again at every refresh.
    File(PathBuf),
    /// A JWK set at a URL.
    Url(Url),
    /// An OpenID Connect discovery document whose `jwks_uri` names the JWK set.
    Discovery(Url),
}

impl KeySource {
    /// A JWK set at `url`: HTTPS, or plain HTTP on a loopback address only.
    pub fn jwks_url(url: &str) -> Result<KeySource, SourceError> {
        Ok(KeySource::Url(checked_url(url)?))
    }

    /// A discovery document at `url`: HTTPS, or plain HTTP on a loopback address only.
    pub fn discovery_url(url: &str) -> Result<KeySource, SourceError> {
        Ok(KeySource::Discovery(checked_url(url)?))
    }

    /// The discovery document of a fixed issuer: `<issuer>/.well-known/openid-configuration`. A
    /// per-tenant template has no single document; its discovery URL must be given.
    pub fn discovery_of_issuer(issuer: &str) -> Result<KeySource, SourceError> {
        if issuer.contains(IssuerPattern::TENANT_PLACEHOLDER) {
            return Err(SourceError::TemplateDiscovery);
        }
        KeySource::discovery_url(&format!("{}{DISCOVERY_PATH}", issuer.trim_end_matches('/')))
    }
}

impl fmt::Display for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::File(path) => write!(f, "JWKS file {}", path.display()),
            KeySource::Url(url) => write!(f, "JWKS {url}"),
            KeySource::Discovery(url) => write!(f, "discovery {url}"),
        }
    }
}

/// A URL keys may be fetched from. Plain HTTP would let anyone on the path substitute the keys, so it is
/// allowed for loopback addresses only (a sidecar, tests).
fn checked_url(text: &str) -> Result<Url, SourceError> {
    let invalid = |reason: &str| SourceError::InvalidUrl {
        url: text.to_owned(),
        reason: reason.to_owned(),
    };
    let url = Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err(invalid(
            "plain http is allowed for loopback addresses only; use https",
        )),
        _ => Err(invalid("not an http(s) URL")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host_str() {
        Some("localhost") => true,
        Some(host) => host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Why keys could not be loaded from a source, or a source is not acceptable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("{url} is not a usable URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "discovery needs a fixed issuer; for a '{{tenantid}}' template give discovery_url or jwks_url"
    )]
    TemplateDiscovery,
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("GET {url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("GET {url}: no answer within {after:?}")]
    Timeout { url: String, after: Duration },
    #[error("{url}: not a discovery document ({reason})")]
    Discovery { url: String, reason: String },
    #[error("{location}: {error}")]
    Jwks { location: String, error: JwksError },
}

/// A future as [`Fetch`] returns it.
pub type FetchFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, String>> + Send + 'a>>;

/// Gets a document's bytes over HTTP. Errors are reasons, for logs.
pub trait Fetch: Send + Sync + 'static {
    fn get<'a>(&'a self, url: &'a Url) -> FetchFuture<'a>;
}

/// The real HTTP client: rustls, a timeout per request, at most [`MAX_DOCUMENT_BYTES`] read.
#[derive(Debug, Clone)]
pub struct HttpFetch {
    client: reqwest::Client,
}

impl HttpFetch {
    pub fn new(timeout: Duration) -> Result<HttpFetch, String> {
        crate::install_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("presenced/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(HttpFetch { client })
    }
}

impl Fetch for HttpFetch {
    fn get<'a>(&'a self, url: &'a Url) -> FetchFuture<'a> {
        Box::pin(async move {
            let mut response = self
                .client
                .get(url.clone())
                .header("accept", "application/json")
                .send()
                .await
                .map_err(reason)?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(reason)? {
                if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                    return Err(format!(
                        "the document is larger than {MAX_DOCUMENT_BYTES} bytes"
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        })
    }
}

/// reqwest's message with its causes, without the URL (the caller names it): "error sending request:
/// client error (Connect): tcp connect error: Connection refused".
fn reason(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[derive(Deserialize)]
struct DiscoveryDocument {
    issuer: Option<String>,
    jwks_uri: String,
}

/// Loads key sets from one source: the step the refresh task repeats.
pub(crate) struct Loader {
    pub source: KeySource,
    pub fetch: std::sync::Arc<dyn Fetch>,
    /// Bounds every fetch, whatever the [`Fetch`] does.
    pub timeout: Duration,
    /// The configured issuer, to compare with a discovery document's.
    pub issuer: String,
    /// The `jwks_uri` found by discovery, reused until a fetch from it fails.
    pub jwks_uri: Option<Url>,
}

impl Loader {
    /// The source's current key set.
    pub async fn load(&mut self) -> Result<KeySet, SourceError> {
        match &self.source {
            KeySource::File(path) => {
                let path = path.clone();
                let read = {
                    let path = path.clone();
                    tokio::task::spawn_blocking(move || std::fs::read(path)).await
                };
                let bytes = read
                    .map_err(|e| e.to_string())
                    .and_then(|read| read.map_err(|e| e.to_string()))
                    .map_err(|reason| SourceError::File {
                        path: path.clone(),
                        reason,
                    })?;
                KeySet::parse(&bytes).map_err(|error| SourceError::Jwks {
                    location: path.display().to_string(),
                    error,
                })
            }
            KeySource::Url(url) => {
                let url = url.clone();
                self.jwks_at(&url).await
            }
            KeySource::Discovery(discovery) => {
                let discovery = discovery.clone();
                let jwks_uri = match self.jwks_uri.clone() {
                    Some(uri) => uri,
                    None => self.discover(&discovery).await?,
                };
                let result = self.jwks_at(&jwks_uri).await;
                // A failing jwks_uri may have moved: discover again next time.
                self.jwks_uri = result.is_ok().then_some(jwks_uri);
                result
            }
        }
    }

    async fn jwks_at(&self, url: &Url) -> Result<KeySet, SourceError> {
        let bytes = self.get(url).await?;
        KeySet::parse(&bytes).map_err(|error| SourceError::Jwks {
            location: url.to_string(),
            error,
        })
    }

    async fn discover(&self, url: &Url) -> Result<Url, SourceError> {
        let bytes = self.get(url).await?;
        let invalid = |reason: String| SourceError::Discovery {
            url: url.to_string(),
            reason,
        };
        let document: DiscoveryDocument =
            serde_json::from_slice(&bytes).map_err(|e| invalid(e.to_string()))?;
        if let Some(issuer) = &document.issuer
            && issuer != &self.issuer
        {
            tracing::warn!(
                configured = %self.issuer,
                discovered = %issuer,
                "the discovery document names another issuer; trusting the configured one"
            );
        }
        match checked_url(&document.jwks_uri) {
            Ok(uri) => Ok(uri),
            Err(SourceError::InvalidUrl { reason, .. }) => {
                Err(invalid(format!("jwks_uri {}: {reason}", document.jwks_uri)))
            }
            Err(other) => Err(other),
        }
    }

    async fn get(&self, url: &Url) -> Result<Vec<u8>, SourceError> {
        match tokio::time::timeout(self.timeout, self.fetch.get(url)).await {
            Ok(Ok(bytes)) => Ok(bytes),
            Ok(Err(reason)) => Err(SourceError::Fetch {
                url: url.to_string(),
                reason,
            }),
            Err(_) => Err(SourceError::Timeout {
                url: url.to_string(),
                after: self.timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_come_over_https_or_from_loopback_only() {
        for ok in [
            "https://login.microsoftonline.com/common/discovery/v2.0/keys",
            "http://127.0.0.1:8081/jwks",
            "http://localhost/jwks",
            "http://[::1]:9000/jwks",
        ] {
            assert!(KeySource::jwks_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com/jwks",
            "http://10.0.0.1/jwks",
            "ftp://127.0.0.1/jwks",
            "file:///etc/jwks.json",
            "not a url",
            "",
        ] {
            assert!(
                matches!(
                    KeySource::jwks_url(bad),
                    Err(SourceError::InvalidUrl { .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn discovery_of_a_fixed_issuer_is_under_its_well_known_path() {
        assert_eq!(
            KeySource::discovery_of_issuer("https://accounts.example.com/").unwrap(),
            KeySource::Discovery(
                Url::parse("https://accounts.example.com/.well-known/openid-configuration")
                    .unwrap()
            )
        );
        assert_eq!(
            KeySource::discovery_of_issuer("https://login.microsoftonline.com/{tenantid}/v2.0"),
            Err(SourceError::TemplateDiscovery)
        );
    }
}
