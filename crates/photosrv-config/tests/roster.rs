//! The roster of live hosts: what counts as a HOST:PORT, and what an empty roster means.
//! (Its agreement with Go's parser is in go_compat.rs.)

use photosrv_config::Roster;
use std::path::Path;

fn refusal(text: &str) -> String {
    match Roster::parse(Path::new("r"), text.as_bytes()) {
        Ok(roster) => panic!("accepted {text:?}: {roster:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_roster_that_lists_nobody_makes_every_node_live() {
    let all = Roster::all_live();
    assert!(all.is_empty());
    assert!(all.is_live("anything:1"));
    assert_eq!(all, Roster::parse(Path::new("r"), b"# nobody\n").unwrap());
    let one = Roster::parse(Path::new("r"), b"n1 Host1:9001\n").unwrap();
    assert!(!one.is_empty());
    assert!(one.is_live("host1:9001"), "hosts match case-insensitively");
    assert!(!one.is_live("host2:9001"));
}

#[test]
fn hosts_with_brackets_or_without_a_port_are_accepted() {
    let roster =
        Roster::parse(Path::new("r"), b"a [fe80::1]:9001\nb host\nc 10.0.0.1:1\n").unwrap();
    assert_eq!(roster.len(), 3);
    assert!(roster.is_live("[fe80::1]:9001"));
    assert!(roster.is_live("host"));
}

#[test]
fn anything_but_a_host_and_a_port_is_refused() {
    let only = "only a host and a port may be given";
    for (host, why) in [
        ("host/x:1", only),
        ("user@host:1", only),
        ("host\u{7}:1", only),
        (":9001", "the host is empty"),
        ("fe80::1:9001", "an IPv6 address must be in brackets, such as [fe80::1]:9001"),
        ("a]:80", "the host may hold only letters, digits, '-', '.', '_' and '~', or be an IPv6 address in brackets"),
        ("host:0", "the port must be a number from 1 to 65535"),
        ("host:+80", "the port must be a number from 1 to 65535"),
        ("host:65536", "the port must be a number from 1 to 65535"),
    ] {
        assert_eq!(
            refusal(&format!("n {host}\n")),
            format!("r:1:3: {host:?} is not a HOST:PORT: {why}")
        );
    }
}
