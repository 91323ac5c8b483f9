//! Node URLs: scheme, host, port and base path, and what is refused.

use photosrv_config::NodeAddr;

#[test]
fn each_part_of_a_node_url() {
    // URL, https, authority, host, port, base path.
    for (url, tls, authority, host, port, base_path) in [
        ("http://node1:9001", false, "node1:9001", "node1", 9001, ""),
        ("http://node1", false, "node1", "node1", 80, ""),
        ("HTTPS://Node1", true, "Node1", "Node1", 443, ""),
        ("https://n:8443/base/", true, "n:8443", "n", 8443, "/base"),
        ("http://[::1]:1", false, "[::1]:1", "[::1]", 1, ""),
        // An IPv6 address without a port (refused until the thirteenth session).
        ("http://[::1]", false, "[::1]", "[::1]", 80, ""),
    ] {
        let node = NodeAddr::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        assert_eq!(
            (
                node.url.as_str(),
                node.tls,
                node.authority.as_str(),
                node.host.as_str()
            ),
            (url, tls, authority, host)
        );
        assert_eq!(
            (node.port, node.base_path.as_str()),
            (port, base_path),
            "{url}"
        );
    }
}

#[test]
fn what_is_not_a_node_url_is_refused_with_the_reason() {
    for (url, rest) in [
        ("http://a:0", " has port 0: expected a number from 1 to 65535"),
        ("http://a:65536", " has port 65536: expected a number from 1 to 65535"),
        ("http://a:+80", " has port \"+80\": expected a number from 1 to 65535"),
        ("http://a:", " has port \"\": expected a number from 1 to 65535"),
        ("http://:80", " has no host: expected an http:// or https:// URL with a host, such as http://node1:9001"),
        ("http://fe80::1:80", ": an IPv6 address must be in brackets, such as [fe80::1]:9001"),
        // Accepted, with a host of "a]:80", until the thirteenth session.
        ("http://a]:80", ": the host may hold only letters, digits, '-', '.', '_' and '~', or be an IPv6 address in brackets"),
        ("http://[::1]x", ": the host may hold only letters, digits, '-', '.', '_' and '~', or be an IPv6 address in brackets"),
        ("http://u@a:80", " has user info, which is not supported"),
        ("http://a:80/?q", " has a query or fragment: expected an http:// or https:// URL with a host, such as http://node1:9001"),
    ] {
        assert_eq!(NodeAddr::parse(url), Err(format!("node {url:?}{rest}")));
    }
}
