//! Where batchdrop may send a webhook: `http://` or `https://` only, and never to an address
//! that reaches the machine's own cloud metadata service (169.254.0.0/16, fd00:ec2::254, the
//! other link-local ranges, the unspecified address, and their IPv4-mapped forms). The URL is
//! checked when the configuration is read; the host is resolved and every address it resolves
//! to checked again before each delivery, and the request goes to exactly those addresses (so a
//! name cannot resolve to a safe address for the check and a metadata one for the request).

use reqwest::Url;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// Why a webhook URL or the address it resolves to is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error("{url:?} is not a URL: {reason}")]
    NotAUrl { url: String, reason: String },
    #[error("only http and https URLs are allowed, not {0}:")]
    Scheme(String),
    #[error("the URL has no host")]
    NoHost,
    #[error("{host} is {ip}, a link-local or metadata address: refused")]
    Forbidden { host: String, ip: IpAddr },
    #[error("cannot resolve {host}: {message}")]
    Resolve { host: String, message: String },
}

impl AddressError {
    /// Whether the same URL may work later (a name that did not resolve now).
    pub fn is_retryable(&self) -> bool {
        matches!(self, AddressError::Resolve { .. })
    }
}

/// The parsed URL if it may be a webhook's: http(s), with a host, and a literal IP host not
/// forbidden (a name is checked when it is resolved, by [`resolve`]).
pub fn check_url(url: &str) -> Result<Url, AddressError> {
    let parsed = Url::parse(url).map_err(|e| AddressError::NotAUrl {
        url: url.chars().take(200).collect(),
        reason: e.to_string(),
    })?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(AddressError::Scheme(parsed.scheme().to_string()));
    }
    let host = parsed.host_str().ok_or(AddressError::NoHost)?;
    // A literal address (`[…]` for IPv6; the URL parser has normalised IPv4 forms).
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        check_ip(host, ip)?;
    }
    Ok(parsed)
}

/// Refuses link-local (169.254.0.0/16, fe80::/10), metadata (fd00:ec2::254) and unspecified
/// addresses, IPv4-mapped ones included.
pub fn check_ip(host: &str, ip: IpAddr) -> Result<(), AddressError> {
    let forbidden = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6 == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254)
                || v6.is_unspecified()
        }
    };
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4),
        IpAddr::V4(_) => None,
    };
    if forbidden(ip) || mapped.is_some_and(forbidden) {
        return Err(AddressError::Forbidden {
            host: host.to_string(),
            ip,
        });
    }
    Ok(())
}

/// The addresses `url`'s host resolves to, every one of them allowed; refused if any is not.
pub async fn resolve(url: &Url) -> Result<Vec<SocketAddr>, AddressError> {
    let host = url.host_str().ok_or(AddressError::NoHost)?;
    let port = url.port_or_known_default().unwrap_or(443);
    // `[::1]` → `::1` for the resolver.
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
        .await
        .map_err(|e| AddressError::Resolve {
            host: host.to_string(),
            message: e.to_string(),
        })?
        .collect();
    if addrs.is_empty() {
        return Err(AddressError::Resolve {
            host: host.to_string(),
            message: "no address".into(),
        });
    }
    for addr in &addrs {
        check_ip(host, addr.ip())?;
    }
    Ok(addrs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> bool {
        matches!(check_url(url), Err(AddressError::Forbidden { .. }))
    }

    #[test]
    fn only_http_and_https_are_allowed() {
        assert!(check_url("https://hooks.example.com/x").is_ok());
        assert!(check_url("http://127.0.0.1:8080/x").is_ok());
        assert_eq!(
            check_url("ftp://example.com/x").err(),
            Some(AddressError::Scheme("ftp".into()))
        );
        assert!(matches!(
            check_url("file:///etc/passwd"),
            Err(AddressError::Scheme(_))
        ));
        assert!(matches!(
            check_url("not a url"),
            Err(AddressError::NotAUrl { .. })
        ));
    }

    #[test]
    fn metadata_and_link_local_addresses_are_refused_in_every_form() {
        assert!(refused("http://169.254.169.254/latest/meta-data/"));
        assert!(refused("http://169.254.1.1:80/"));
        assert!(refused("http://[fd00:ec2::254]/"));
        assert!(refused("http://[fe80::1]/"));
        assert!(refused("http://[::ffff:169.254.169.254]/"));
        assert!(refused("http://0.0.0.0:9000/"));
        assert!(!refused("http://[::1]:9000/"));
        assert!(!refused("http://10.0.0.5/"));
    }

    #[tokio::test]
    async fn a_name_is_checked_by_what_it_resolves_to() -> Result<(), AddressError> {
        let url = check_url("http://localhost:9/")?;
        let addrs = resolve(&url).await?;
        assert!(addrs.iter().all(|a| a.ip().is_loopback()));
        Ok(())
    }
}
