//! Plain-HTTP URLs that would carry credentials: refused unless the peer is this machine
//! (Azurite, a local proxy) or the operator says so.

use std::net::IpAddr;

/// Whether a credential sent to `url` crosses a network in clear: plain `http://` to a
/// host that is not this machine. `link_local` also accepts 169.254.0.0/16 and fe80::/10,
/// where the instance metadata service answers (reachable only from the VM itself).
pub fn crosses_network_in_clear(url: &str, link_local: bool) -> bool {
    let Some(rest) = url
        .get(..7)
        .filter(|s| s.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
    else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.split(':').next().unwrap_or_default(),
    };
    if host.eq_ignore_ascii_case("localhost") {
        return false;
    }
    match host.parse::<IpAddr>() {
        Ok(ip) if ip.is_loopback() => false,
        Ok(IpAddr::V4(v4)) if link_local && v4.is_link_local() => false,
        Ok(IpAddr::V6(v6)) if link_local && (v6.segments()[0] & 0xffc0) == 0xfe80 => false,
        _ => true,
    }
}

/// The error for `key`, whose plain-HTTP URL would carry `what`.
pub fn refused(key: &str, what: &str, allow_key: &str) -> String {
    format!(
        "{key} is plain http to another machine: {what} would cross the network in clear; \
         use https, or set {allow_key} = true to accept that"
    )
}

#[cfg(test)]
mod tests {
    use super::crosses_network_in_clear as clear;

    #[test]
    fn only_plain_http_off_this_machine_crosses_in_clear() {
        assert!(clear("http://acct.blob.core.windows.net/", false));
        assert!(clear("HTTP://10.0.0.4:10000/devstoreaccount1", false));
        assert!(clear("http://localhost.evil.example/", false));
        assert!(clear("http://user@10.1.1.1/", false));
        assert!(!clear("https://acct.blob.core.windows.net/", false));
        assert!(!clear("http://127.0.0.1:10000/devstoreaccount1", false));
        assert!(!clear("http://localhost:10000", false));
        assert!(!clear("http://[::1]:10000/x", false));
        assert!(clear("http://169.254.169.254/metadata", false));
        assert!(!clear("http://169.254.169.254/metadata", true));
        assert!(!clear("http://[fe80::1]/token", true));
    }
}
