//! Outbound safety: which webhook URLs presenced will call, and the HTTP
//! client that calls them.
//!
//! A URL must be `https`, unless `--webhooks-allow-loopback-http` also
//! allows `http://127.0.0.1`, `http://[::1]` and `http://localhost`. Every
//! address a host resolves to (or an IP literal) must pass the network
//! policy: the deny list (by default loopback, private, link-local, CGNAT
//! and unspecified ranges) refuses it unless the allow list names it. The
//! check runs in the client's resolver, so the address connected to is the
//! address checked (no DNS rebinding between check and connect). Redirects
//! are never followed; timeouts bound every call; response bodies are read
//! up to a bound only.
//!
//! This module knows no subscription and no payload.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

/// Why a URL may not be called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboundError {
    #[error("'{0}' is not an absolute URL")]
    NotAUrl(String),
    #[error(
        "the URL must use https (http is allowed only for 127.0.0.1 and localhost with --webhooks-allow-loopback-http)"
    )]
    NotHttps,
    #[error("the URL must not carry user credentials or a fragment")]
    Credentials,
    #[error("the address {0} is in a network that webhooks may not reach")]
    Denied(IpAddr),
}

/// A network in CIDR notation, such as `10.0.0.0/8` or `fc00::/7`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Network {
    base: IpAddr,
    prefix: u8,
}

impl Network {
    pub fn parse(text: &str) -> Result<Network, String> {
        let (base, prefix) = text.split_once('/').unwrap_or((text, ""));
        let base: IpAddr = base
            .trim()
            .parse()
            .map_err(|_| format!("'{text}' is not a network such as 10.0.0.0/8"))?;
        let max = if base.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("'{text}' has an invalid prefix length"))?
        };
        Ok(Network { base, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.base, ip) {
            (IpAddr::V4(base), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(base) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(base), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(base) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// Networks webhooks may not reach unless allowed.
pub const DEFAULT_DENY: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
];

/// Which targets webhooks may reach.
#[derive(Debug, Clone)]
pub struct TargetPolicy {
    /// `--webhooks-allow-loopback-http`: plain http to loopback, and
    /// loopback addresses, are allowed.
    pub allow_loopback_http: bool,
    /// Networks allowed even though the deny list names them.
    pub allow: Vec<Network>,
    pub deny: Vec<Network>,
}

impl TargetPolicy {
    fn address_allowed(&self, ip: IpAddr) -> bool {
        if self.allow.iter().any(|n| n.contains(ip)) {
            return true;
        }
        if self.allow_loopback_http && ip.is_loopback() {
            return true;
        }
        !self.deny.iter().any(|n| n.contains(ip))
    }

    /// Checks a webhook URL before it is stored or called.
    pub fn check(&self, text: &str) -> Result<Url, OutboundError> {
        let url = Url::parse(text).map_err(|_| OutboundError::NotAUrl(text.to_owned()))?;
        if !url.username().is_empty() || url.password().is_some() || url.fragment().is_some() {
            return Err(OutboundError::Credentials);
        }
        let loopback_host = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" => {}
            "http" if self.allow_loopback_http && loopback_host => {}
            _ => return Err(OutboundError::NotHttps),
        }
        let host = url
            .host_str()
            .ok_or_else(|| OutboundError::NotAUrl(text.to_owned()))?;
        let literal = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = literal.parse::<IpAddr>()
            && !self.address_allowed(ip)
        {
            return Err(OutboundError::Denied(ip));
        }
        Ok(url)
    }
}

/// Resolves names and keeps only the addresses the policy allows.
struct CheckedResolver {
    policy: Arc<TargetPolicy>,
}

impl Resolve for CheckedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = Arc::clone(&self.policy);
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| policy.address_allowed(a.ip()))
                .collect();
            if allowed.is_empty() {
                let ip = found
                    .first()
                    .map_or(IpAddr::from([0, 0, 0, 0]), SocketAddr::ip);
                return Err(Box::new(OutboundError::Denied(ip)) as _);
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The HTTP client for webhooks: no redirects, no proxy, the checked
/// resolver, a connect timeout and an overall `timeout`.
pub fn client(policy: Arc<TargetPolicy>, timeout: Duration) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .connect_timeout(timeout.min(Duration::from_secs(5)))
        .timeout(timeout)
        .pool_max_idle_per_host(8)
        .user_agent(concat!("presenced/", env!("CARGO_PKG_VERSION")))
        .dns_resolver(CheckedResolver { policy })
        .build()
}

/// Reads at most `limit` bytes of a response body; the rest is dropped.
pub async fn read_bounded(mut response: reqwest::Response, limit: usize) -> Vec<u8> {
    let mut out = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = limit.saturating_sub(out.len());
        out.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if out.len() >= limit {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow_loopback_http: bool, allow: &[&str]) -> TargetPolicy {
        TargetPolicy {
            allow_loopback_http,
            allow: allow.iter().map(|n| Network::parse(n).unwrap()).collect(),
            deny: DEFAULT_DENY
                .iter()
                .map(|n| Network::parse(n).unwrap())
                .collect(),
        }
    }

    #[test]
    fn urls_are_checked_against_scheme_and_networks() {
        type Case<'a> = (bool, &'a [&'a str], &'a str, Result<(), OutboundError>);
        let cases: &[Case] = &[
            (false, &[], "https://hooks.example.com/x?a=1", Ok(())),
            (
                false,
                &[],
                "http://hooks.example.com/x",
                Err(OutboundError::NotHttps),
            ),
            (
                false,
                &[],
                "http://127.0.0.1:9/x",
                Err(OutboundError::NotHttps),
            ),
            (true, &[], "http://127.0.0.1:9/x", Ok(())),
            (true, &[], "http://localhost:9/x", Ok(())),
            (true, &[], "http://10.0.0.1/x", Err(OutboundError::NotHttps)),
            (
                false,
                &[],
                "https://127.0.0.1/x",
                Err(OutboundError::Denied([127, 0, 0, 1].into())),
            ),
            (
                false,
                &[],
                "https://10.1.2.3/x",
                Err(OutboundError::Denied([10, 1, 2, 3].into())),
            ),
            (false, &["10.1.0.0/16"], "https://10.1.2.3/x", Ok(())),
            (
                false,
                &[],
                "https://169.254.169.254/latest",
                Err(OutboundError::Denied([169, 254, 169, 254].into())),
            ),
            (
                false,
                &[],
                "https://[::ffff:10.0.0.1]/x",
                Err(OutboundError::Denied("::ffff:10.0.0.1".parse().unwrap())),
            ),
            (
                false,
                &[],
                "https://user:pw@hooks.example.com/",
                Err(OutboundError::Credentials),
            ),
            (
                false,
                &[],
                "not a url",
                Err(OutboundError::NotAUrl("not a url".into())),
            ),
            (
                false,
                &[],
                "ftp://hooks.example.com/",
                Err(OutboundError::NotHttps),
            ),
        ];
        for (loopback, allow, url, expected) in cases {
            let got = policy(*loopback, allow).check(url).map(|_| ());
            assert_eq!(&got, expected, "{url}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        assert!(
            Network::parse("10.0.0.0/8")
                .unwrap()
                .contains([10, 9, 8, 7].into())
        );
        assert!(
            !Network::parse("10.0.0.0/8")
                .unwrap()
                .contains([11, 0, 0, 1].into())
        );
        assert!(
            Network::parse("0.0.0.0/0")
                .unwrap()
                .contains([1, 2, 3, 4].into())
        );
        assert!(
            Network::parse("fc00::/7")
                .unwrap()
                .contains("fd12::1".parse().unwrap())
        );
        assert!(Network::parse("10.0.0.0/33").is_err());
        assert!(Network::parse("nonsense").is_err());
    }
}
