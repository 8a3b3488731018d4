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

/// Networks webhooks may not reach unless allowed: every entry of IANA's
/// IPv4 and IPv6 special-purpose address registries, multicast, and the
/// translation and tunnel prefixes (NAT64, 6to4, Teredo) whose addresses
/// lead to an embedded IPv4 address. An IPv4-mapped address is checked as
/// the IPv4 address it maps; an address that embeds an IPv4 address
/// (IPv4-compatible, NAT64, 6to4, Teredo) must pass for the embedded
/// address too (see [`embedded_ipv4`]).
pub const DEFAULT_DENY: &[&str] = &[
    // IPv4 special-purpose registry (RFC 6890 and successors).
    "0.0.0.0/8",          // "this network"
    "10.0.0.0/8",         // private
    "100.64.0.0/10",      // shared address space (CGNAT)
    "127.0.0.0/8",        // loopback
    "169.254.0.0/16",     // link-local (cloud metadata)
    "172.16.0.0/12",      // private
    "192.0.0.0/24",       // IETF protocol assignments
    "192.0.2.0/24",       // documentation (TEST-NET-1)
    "192.31.196.0/24",    // AS112-v4
    "192.52.193.0/24",    // AMT
    "192.88.99.0/24",     // deprecated 6to4 relay anycast
    "192.168.0.0/16",     // private
    "192.175.48.0/24",    // direct delegation AS112
    "198.18.0.0/15",      // benchmarking
    "198.51.100.0/24",    // documentation (TEST-NET-2)
    "203.0.113.0/24",     // documentation (TEST-NET-3)
    "224.0.0.0/4",        // multicast
    "240.0.0.0/4",        // reserved
    "255.255.255.255/32", // limited broadcast (inside 240/4; listed for clarity)
    // IPv6 special-purpose registry.
    "::/128",            // unspecified
    "::1/128",           // loopback
    "::/96",             // IPv4-compatible (deprecated)
    "64:ff9b::/96",      // NAT64 well-known prefix
    "64:ff9b:1::/48",    // local-use NAT64
    "100::/64",          // discard-only
    "2001::/23",         // IETF protocol assignments: Teredo, benchmarking, ORCHID, ...
    "2001:db8::/32",     // documentation
    "2002::/16",         // 6to4
    "2620:4f:8000::/48", // direct delegation AS112
    "3fff::/20",         // documentation
    "5f00::/16",         // segment routing SIDs
    "fc00::/7",          // unique local
    "fe80::/10",         // link-local
    "fec0::/10",         // site-local (deprecated)
    "ff00::/8",          // multicast
];

/// The IPv4 address an IPv6 address carries, for the forms that lead to
/// it: IPv4-compatible (`::a.b.c.d`), NAT64 (`64:ff9b::a.b.c.d`), 6to4
/// (`2002:aabb:ccdd::/48`) and Teredo (the client's address, inverted, in
/// the last 32 bits). IPv4-mapped addresses are handled by
/// [`Network::contains`].
pub fn embedded_ipv4(ip: IpAddr) -> Option<std::net::Ipv4Addr> {
    let IpAddr::V6(v6) = ip else {
        return None;
    };
    let bits = u128::from(v6);
    let low32 = (bits & 0xffff_ffff) as u32;
    let top = |prefix: u32| bits >> (128 - prefix);
    if top(96) == 0 && bits > 1 {
        return Some(low32.into());
    }
    if top(96) == 0x0064_ff9b_0000_0000_0000_0000 {
        return Some(low32.into());
    }
    if top(16) == 0x2002 {
        return Some((((bits >> 80) & 0xffff_ffff) as u32).into());
    }
    if top(32) == 0x2001_0000 {
        return Some((!low32).into());
    }
    None
}

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
    /// Whether an address may be reached: the address itself, and the
    /// IPv4 address it embeds if any, must each be allowed or not denied.
    pub fn address_allowed(&self, ip: IpAddr) -> bool {
        self.single_allowed(ip) && embedded_ipv4(ip).is_none_or(|v4| self.single_allowed(v4.into()))
    }

    fn single_allowed(&self, ip: IpAddr) -> bool {
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

    /// One address inside every special-purpose range, the issue's
    /// examples, and public addresses that stay reachable.
    #[test]
    fn every_special_purpose_range_is_denied_and_public_addresses_pass() {
        let denied = [
            "0.1.2.3",
            "10.0.0.1",
            "100.64.0.1",
            "100.127.255.254",
            "127.0.0.1",
            "127.255.0.9",
            "169.254.169.254",
            "172.16.0.1",
            "172.31.255.255",
            "192.0.0.8",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.168.1.1",
            "192.175.48.1",
            "198.18.0.1",
            "198.19.255.255",
            "198.51.100.7",
            "203.0.113.9",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "::127.0.0.1",
            "::a9fe:a9fe",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:2::1",
            "2001:10::1",
            "2001:20::1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "2002:808:808::1",
            "2620:4f:8000::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fd12:3456::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "ff0e::1",
        ];
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "20.190.128.1",
            "100.63.255.255",
            "100.128.0.1",
            "172.32.0.1",
            "198.20.0.1",
            "223.255.255.254",
            "::ffff:8.8.8.8",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:4860:4860::8888",
        ];
        let strict = policy(false, &[]);
        for text in denied {
            let ip: IpAddr = text.parse().unwrap();
            assert!(!strict.address_allowed(ip), "{text} must be denied");
            let url = match ip {
                IpAddr::V4(v4) => format!("https://{v4}/hook"),
                IpAddr::V6(v6) => format!("https://[{v6}]/hook"),
            };
            assert!(
                matches!(strict.check(&url), Err(OutboundError::Denied(_))),
                "{url} must be refused"
            );
        }
        for text in allowed {
            let ip: IpAddr = text.parse().unwrap();
            assert!(strict.address_allowed(ip), "{text} must be allowed");
        }
        // The URLs, as a client sends them.
        for url in [
            "https://[64:ff9b::a9fe:a9fe]/x",
            "https://[::127.0.0.1]/x",
            "https://[2002:7f00:1::1]/x",
            "https://198.18.0.1/x",
            "https://224.0.0.1/x",
            "https://255.255.255.255/x",
        ] {
            assert!(
                matches!(strict.check(url), Err(OutboundError::Denied(_))),
                "{url} must be refused"
            );
        }
        // An allowed NAT64 prefix still checks the address it leads to.
        let nat64 = policy(false, &["64:ff9b::/96"]);
        assert!(nat64.address_allowed("64:ff9b::8.8.8.8".parse().unwrap()));
        assert!(!nat64.address_allowed("64:ff9b::10.0.0.1".parse().unwrap()));
        // Loopback stays reachable for tests with the flag.
        let tests = policy(true, &[]);
        assert!(tests.address_allowed("127.0.0.1".parse().unwrap()));
        assert!(tests.address_allowed("::1".parse().unwrap()));
        assert!(!tests.address_allowed("10.0.0.1".parse().unwrap()));
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
