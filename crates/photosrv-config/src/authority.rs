//! `host[:port]`, as written in a node URL or a roster line, split and checked in one place
//! so that the two agree on what a host is.

/// Why a `host[:port]` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum AuthorityError {
    #[error("the host is empty")]
    EmptyHost,
    #[error("an IPv6 address must be in brackets, such as [fe80::1]:9001")]
    UnbracketedIpv6,
    #[error("the host may hold only letters, digits, '-', '.', '_' and '~', or be an IPv6 address in brackets")]
    BadHost,
    /// The text where the port should be.
    #[error("the port must be a number from 1 to 65535")]
    BadPort(String),
}

/// The host (an IPv6 address keeps its brackets) and the port, when one is given.
pub(crate) fn split(authority: &str) -> Result<(&str, Option<u16>), AuthorityError> {
    let (host, port) = if let Some(inside) = authority.strip_prefix('[') {
        let close = inside.find(']').ok_or(AuthorityError::BadHost)?;
        let (address, after) = (&inside[..close], &inside[close + 1..]);
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(AuthorityError::BadHost);
        }
        let port = match after {
            "" => None,
            _ => Some(after.strip_prefix(':').ok_or(AuthorityError::BadHost)?),
        };
        (&authority[..close + 2], port)
    } else {
        let (host, port) = match authority.split_once(':') {
            Some((_, port)) if port.contains(':') => return Err(AuthorityError::UnbracketedIpv6),
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        };
        if host.is_empty() {
            return Err(AuthorityError::EmptyHost);
        }
        if !host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
        {
            return Err(AuthorityError::BadHost);
        }
        (host, port)
    };
    let port = match port {
        None => None,
        // Digits only: `u16::from_str` would take "+80".
        Some(text) => match text.parse::<u16>() {
            Ok(port) if port > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Some(port),
            _ => return Err(AuthorityError::BadPort(text.to_owned())),
        },
    };
    Ok((host, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_and_ports() {
        assert_eq!(split("node1:9001"), Ok(("node1", Some(9001))));
        assert_eq!(split("10.0.0.1"), Ok(("10.0.0.1", None)));
        assert_eq!(split("[fe80::1]:1"), Ok(("[fe80::1]", Some(1))));
        assert_eq!(split("[::1]"), Ok(("[::1]", None)));
        assert_eq!(
            split("[::ffff:10.0.0.1]:65535"),
            Ok(("[::ffff:10.0.0.1]", Some(65535)))
        );
    }

    #[test]
    fn refusals() {
        use AuthorityError::*;
        for (authority, error) in [
            ("", EmptyHost),
            (":9001", EmptyHost),
            ("fe80::1", UnbracketedIpv6),
            ("fe80::1:9001", UnbracketedIpv6),
            ("a]:80", BadHost),
            ("a[b", BadHost),
            ("a%20b", BadHost),
            ("user@host", BadHost),
            ("[::1", BadHost),
            ("[]:80", BadHost),
            ("[::1]80", BadHost),
            ("[::1]:", BadPort(String::new())),
            ("[g::1]", BadHost),
            ("host:", BadPort(String::new())),
            ("host:0", BadPort("0".into())),
            ("host:+80", BadPort("+80".into())),
            ("host:65536", BadPort("65536".into())),
        ] {
            assert_eq!(split(authority), Err(error), "{authority:?}");
        }
    }
}
