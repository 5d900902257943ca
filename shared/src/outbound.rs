//! The one HTTP client for calls to services outside AWS (rest-api and
//! webhook actions, JIRA): connect and total timeouts, no redirects, no
//! proxy, a bounded response, and no connection to a loopback, link-local
//! (cloud metadata), private or otherwise internal address unless the
//! deployment's allow-list names it. The check runs on the addresses the
//! connection actually uses (our own resolver hands them to the client), so a
//! name that resolves differently the second time cannot slip past it.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, StatusCode};
use thiserror::Error;

use crate::action::ActionError;
use crate::config::ConfigError;
use crate::protect::breaker::{Breakers, Open, Outcome};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The most of a response body read; the rest is not waited for.
pub const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Networks a deployment lets calls reach although they are internal
/// (`PAO_EGRESS_ALLOW`: comma-separated CIDRs, such as `10.20.0.0/16`).
#[derive(Debug, Clone, Default)]
pub struct AllowList(Vec<IpNet>);

impl AllowList {
    pub const VARIABLE: &'static str = "PAO_EGRESS_ALLOW";

    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        list.split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ConfigError::Invalid {
                        name: Self::VARIABLE,
                        reason: format!("`{entry}` is neither an address nor a CIDR"),
                    })
            })
            .collect::<Result<_, _>>()
            .map(Self)
    }

    /// Whether a call may connect to `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        !is_internal(ip) || self.0.iter().any(|net| net.contains(&ip))
    }
}

/// The base URL of a service PAO sends credentials to (setting `name`):
/// https, or http on this machine's loopback only (the local stack's
/// fakes); without a trailing slash.
pub fn service_url(name: &'static str, url: &str) -> Result<String, ConfigError> {
    let parsed = reqwest::Url::parse(url).map_err(|err| ConfigError::Invalid {
        name,
        reason: err.to_string(),
    })?;
    let loopback = matches!(parsed.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
    if parsed.scheme() != "https" && !(parsed.scheme() == "http" && loopback) {
        return Err(ConfigError::Invalid {
            name,
            reason: "must be an https URL (http only on this machine's loopback)".to_string(),
        });
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// Addresses that are not the public internet: loopback, private, link-local
/// (169.254.169.254 is the instance metadata service), shared, unspecified,
/// multicast, documentation and IPv6 unique-local, and IPv4 inside IPv6.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 198 && (b == 18 || b == 19))
                || a >= 240
        }
        IpAddr::V6(v6) => {
            let segments = v6.segments();
            let [first, second, ..] = segments;
            // IPv4 carried in IPv6: mapped (::ffff:a.b.c.d), compatible
            // (::a.b.c.d, which also covers :: and ::1) and 6to4 (2002:…).
            if let Some(v4) = v6.to_ipv4() {
                return is_internal(IpAddr::V4(v4));
            }
            if first == 0x2002 {
                let [a, b] = second.to_be_bytes();
                let [c, d] = segments[2].to_be_bytes();
                return is_internal(IpAddr::V4(std::net::Ipv4Addr::new(a, b, c, d)));
            }
            v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || (first & 0xffc0) == 0xfec0 // site local (deprecated)
                || (first == 0x2001 && (second == 0x0db8 || second == 0)) // documentation, Teredo
                || first == 0x0064 // NAT64
        }
    }
}

/// Resolves names and keeps only the addresses the allow-list permits.
struct GuardedResolver {
    allow: Arc<AllowList>,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = resolved
                .iter()
                .copied()
                .filter(|addr| allow.permits(addr.ip()))
                .collect();
            if permitted.is_empty() {
                return Err(Box::new(EgressError::Refused(format!(
                    "{host} resolves only to internal addresses"
                ))) as _);
            }
            Ok(Box::new(permitted.into_iter()) as Addrs)
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum EgressError {
    /// The destination is not one PAO may call (SSRF guard, bad URL).
    #[error("{0}")]
    Refused(String),
    #[error("no answer within {0} s")]
    Timeout(u64),
    /// Could not connect or the connection broke: worth another try.
    #[error("{0}")]
    Connection(String),
    /// Not called: the target's circuit breaker is open.
    #[error("{0}")]
    Open(Open),
}

impl EgressError {
    /// The action's failure, `described` saying which call: a refused
    /// destination is fatal; an open breaker is retried once it may probe;
    /// the rest is retried.
    pub fn into_action(self, described: &str) -> ActionError {
        match self {
            Self::Refused(reason) => ActionError::Fatal(format!("{described}: {reason}")),
            Self::Open(open) => ActionError::not_called(
                format!("{described}: {open}"),
                u32::try_from(open.seconds).unwrap_or(u32::MAX),
            ),
            other => ActionError::Retryable(format!("{described}: {other}")),
        }
    }
}

/// One call to make.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: Method,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<serde_json::Value>,
    pub timeout: Duration,
}

/// What came back: the status, the headers and at most
/// [`MAX_RESPONSE_BYTES`] of body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    /// A header's value as text, if present and readable.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

#[derive(Clone)]
pub struct Egress {
    client: reqwest::Client,
    allow: Arc<AllowList>,
    breakers: Option<Arc<Breakers>>,
}

impl Egress {
    /// The guarded client. Fails rather than fall back to a client without
    /// the guard (which would follow redirects and proxies anywhere).
    pub fn new(allow: AllowList) -> Result<Self, reqwest::Error> {
        let allow = Arc::new(allow);
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver {
                allow: allow.clone(),
            }))
            .user_agent(concat!("pao/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            client,
            allow,
            breakers: None,
        })
    }

    /// Calls go through the circuit breaker of their target (host and port).
    pub fn with_breakers(mut self, breakers: Arc<Breakers>) -> Self {
        self.breakers = Some(breakers);
        self
    }

    /// Makes the call, unless the target's breaker is open. A call that
    /// found no answer (no connection, a time-out) or a 5xx counts as a
    /// failure of its target; a refused destination never reaches it.
    pub async fn send(&self, call: Call) -> Result<Reply, EgressError> {
        let url = self.check(&call.url)?;
        let Some(breakers) = &self.breakers else {
            return self.call(url, call).await;
        };
        let target = format!(
            "{}:{}",
            url.host_str().unwrap_or_default(),
            url.port_or_known_default().unwrap_or_default()
        );
        let ticket = breakers.admit(&target).await.map_err(EgressError::Open)?;
        let outcome = self.call(url, call).await;
        let verdict = match &outcome {
            Ok(reply) if reply.status.is_server_error() => Outcome::Failed,
            Ok(_) => Outcome::Succeeded,
            Err(EgressError::Timeout(_) | EgressError::Connection(_)) => Outcome::Failed,
            // Refused before it left (a name resolving only to internal
            // addresses): the target said nothing either way.
            Err(_) => Outcome::NotCalled,
        };
        breakers.settle(ticket, verdict).await;
        outcome
    }

    /// The URL, if PAO may call it at all.
    fn check(&self, url: &str) -> Result<reqwest::Url, EgressError> {
        let url = reqwest::Url::parse(url)
            .map_err(|err| EgressError::Refused(format!("`{url}` is not a URL: {err}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EgressError::Refused(format!(
                "only http and https URLs may be called, not {}",
                url.scheme()
            )));
        }
        // An address in the URL is never resolved, so it is checked here.
        let Some(host) = url.host_str() else {
            return Err(EgressError::Refused("the URL has no host".to_string()));
        };
        let literal = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .ok();
        if let Some(ip) = literal.filter(|ip| !self.allow.permits(*ip)) {
            return Err(EgressError::Refused(format!(
                "{ip} is an internal address PAO may not call"
            )));
        }
        Ok(url)
    }

    async fn call(&self, url: reqwest::Url, call: Call) -> Result<Reply, EgressError> {
        let seconds = call.timeout.as_secs();
        let mut request = self.client.request(call.method, url).timeout(call.timeout);
        for (name, value) in &call.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &call.body {
            request = request.json(body);
        }
        let classify = |err: reqwest::Error| classify(err, seconds);
        let mut response = request.send().await.map_err(classify)?;
        let status = response.status();
        let headers = response.headers().clone();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(classify)? {
            let room = MAX_RESPONSE_BYTES - body.len();
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if body.len() == MAX_RESPONSE_BYTES {
                break;
            }
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }
}

/// A failed call in words that never include the request (its headers may
/// hold a secret): only what went wrong.
fn classify(err: reqwest::Error, seconds: u64) -> EgressError {
    use std::error::Error as _;
    if err.is_timeout() {
        return EgressError::Timeout(seconds);
    }
    let mut source = err.source();
    while let Some(cause) = source {
        if let Some(refused) = cause.downcast_ref::<EgressError>() {
            return refused.clone();
        }
        source = cause.source();
    }
    if err.is_builder() {
        return EgressError::Refused(
            "the call cannot be built (a header name or value is invalid)".to_string(),
        );
    }
    let reason = if err.is_connect() {
        "could not connect"
    } else {
        "the connection failed"
    };
    EgressError::Connection(reason.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_recognised() {
        for internal in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "fd00:ec2::254",
            "::169.254.169.254",
            "2002:a9fe:a9fe::1",
            "2002:7f00:1::",
            "fec0::1",
            "2001:0:4136:e378::1",
            "64:ff9b::a9fe:a9fe",
        ] {
            assert!(is_internal(ip(internal)), "{internal}");
        }
        for public in [
            "93.184.216.34",
            "1.1.1.1",
            "2606:4700:4700::1111",
            "172.32.0.1",
            "2002:0808:0808::1",
            "::8.8.8.8",
        ] {
            assert!(!is_internal(ip(public)), "{public}");
        }
    }

    #[test]
    fn the_allow_list_opens_only_what_it_names() {
        let allow = AllowList::parse("127.0.0.1, 10.20.0.0/16").unwrap();
        assert!(allow.permits(ip("127.0.0.1")));
        assert!(allow.permits(ip("10.20.5.5")));
        assert!(!allow.permits(ip("10.21.0.1")));
        assert!(!allow.permits(ip("169.254.169.254")));
        assert!(allow.permits(ip("1.1.1.1")));
        assert!(AllowList::parse("localhost").is_err());
        assert!(AllowList::parse("").unwrap().0.is_empty());
    }

    #[tokio::test]
    async fn internal_destinations_are_refused_before_any_connection() {
        let egress = Egress::new(AllowList::default()).unwrap();
        for url in [
            "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
            "http://127.0.0.1:1/",
            "http://[::1]:1/",
            "http://localhost:1/",
            "file:///etc/passwd",
            "not a url",
        ] {
            let call = Call {
                method: Method::GET,
                url: url.to_string(),
                headers: Vec::new(),
                body: None,
                timeout: Duration::from_secs(1),
            };
            let err = egress.send(call).await.unwrap_err();
            assert!(matches!(err, EgressError::Refused(_)), "{url}: {err:?}");
        }
    }
}
