//! The client against real nginx nodes: replication is exact about what was stored.

use photosrv_client::{Client, WritePolicy};
use photosrv_config::Config;
use photosrv_testkit::{nginx_or_skip, Fault, FaultyNode, NginxNode};
use std::path::Path;
use std::time::{Duration, Instant};

fn config(shards: &[Vec<String>]) -> Config {
    let mut text = String::from("<photosrv>\nchooser jump\n<dc1>\n<shards>\n");
    for (i, nodes) in shards.iter().enumerate() {
        text.push_str(&format!("shard{} {}\n", i + 1, nodes.join(" ")));
    }
    text.push_str("</shards>\n</dc1>\n</photosrv>\n");
    Config::parse(Path::new("t.cfg"), text.as_bytes()).unwrap()
}

/// A client places keys on the ring asked for, primary or migration, in the datacenter
/// chosen; asking for a migration ring the config lacks is refused.
#[test]
fn keys_go_to_the_ring_and_datacenter_chosen() {
    let ring = |name: &str, prefix: &str| {
        format!(
            "<{name}>\nchooser jump\n<dc1>\n<shards>\nshard1 http://{prefix}1:80\n</shards>\n</dc1>\n\
             <dc2>\n<shards>\nshard1 http://{prefix}2:80\n</shards>\n</dc2>\n</{name}>\n"
        )
    };
    let text = ring("photosrv", "primary").replace(
        "</photosrv>",
        &ring("migration", "migration").replace("</migration>\n", "</migration>\n</photosrv>"),
    );
    let two_rings = Config::parse(Path::new("t.cfg"), text.as_bytes()).unwrap();
    for (dc, migration, node) in [
        ("dc1", false, "http://primary1:80"),
        ("dc2", false, "http://primary2:80"),
        ("dc1", true, "http://migration1:80"),
        ("dc2", true, "http://migration2:80"),
    ] {
        let client = Client::builder(two_rings.clone())
            .dc(Some(dc))
            .migration_ring(migration)
            .build()
            .unwrap();
        assert_eq!(client.replicas("a.jpg").nodes, [node], "{dc} {migration}");
    }
    let error = Client::builder(config(&[vec!["http://a:80".into()]]))
        .migration_ring(true)
        .build()
        .unwrap_err();
    assert!(error.to_string().contains("no <migration> ring"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_writes_every_replica_and_reports_each_node() {
    let Some(nginx) = nginx_or_skip("put_writes_every_replica") else {
        return;
    };
    let nodes: Vec<NginxNode> = (0..2).map(|_| NginxNode::start(&nginx).unwrap()).collect();
    let client = Client::builder(config(&[nodes.iter().map(NginxNode::url).collect()]))
        .build()
        .unwrap();
    let report = client.put("a/b.jpg", b"hello".to_vec()).await.unwrap();
    assert_eq!(report.succeeded.len(), 2);
    for node in &nodes {
        assert_eq!(std::fs::read(node.root.join("a/b.jpg")).unwrap(), b"hello");
    }
    assert_eq!(client.get_bytes("a/b.jpg").await.unwrap(), "hello");
    assert_eq!(client.head("a/b.jpg").await.unwrap().len, Some(5));
    assert!(client.exists("a/b.jpg").await.unwrap());

    // A streamed body reaches every replica whole.
    let chunks: Vec<Result<bytes::Bytes, std::io::Error>> = (0..50)
        .map(|i| Ok(bytes::Bytes::from(vec![i as u8; 10_000])))
        .collect();
    client
        .put_stream("s.bin", Some(500_000), futures_util::stream::iter(chunks))
        .await
        .unwrap();
    for node in &nodes {
        let data = std::fs::read(node.root.join("s.bin")).unwrap();
        assert_eq!(data.len(), 500_000);
        assert!(data
            .chunks(10_000)
            .enumerate()
            .all(|(i, c)| c.iter().all(|&b| b == i as u8)));
    }

    let deleted = client.delete("a/b.jpg").await.unwrap();
    assert_eq!(deleted.succeeded.len(), 2);
    assert!(nodes.iter().all(|n| !n.root.join("a/b.jpg").exists()));
    assert!(client.get("a/b.jpg").await.unwrap_err().is_not_found());
    client
        .delete("a/b.jpg")
        .await
        .expect("deleting an absent key is fine");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_under_replicated_write_is_never_reported_stored() {
    let Some(nginx) = nginx_or_skip("under_replicated") else {
        return;
    };
    let mut nodes: Vec<NginxNode> = (0..2).map(|_| NginxNode::start(&nginx).unwrap()).collect();
    let urls: Vec<String> = nodes.iter().map(NginxNode::url).collect();
    nodes[1].stop();
    let strict = Client::builder(config(std::slice::from_ref(&urls)))
        .build()
        .unwrap();
    let err = strict.put("k.jpg", b"x".to_vec()).await.unwrap_err();
    assert!(err.is_under_replicated(), "{err}");
    let report = err.report().unwrap();
    assert_eq!(report.succeeded, [urls[0].clone()]);
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].node, urls[1]);
    assert!(
        report.failed[0].error.is_connect(),
        "{}",
        report.failed[0].error
    );
    assert!(
        err.to_string()
            .contains("stored on 1 of 2 replicas of shard1 (needs 2)"),
        "{err}"
    );

    let lenient = Client::builder(config(std::slice::from_ref(&urls)))
        .write_policy(WritePolicy::MinOk(1))
        .build()
        .unwrap();
    let report = lenient.put("k.jpg", b"x".to_vec()).await.unwrap();
    assert_eq!(
        (report.succeeded.len(), report.failed.len()),
        (1, 1),
        "the report still names the failure"
    );

    // Reads fail over to the live replica.
    for _ in 0..10 {
        assert_eq!(strict.get_bytes("k.jpg").await.unwrap(), "x");
    }
    // Delete cannot be Ok while a replica may still hold the key.
    assert!(strict
        .delete("k.jpg")
        .await
        .unwrap_err()
        .is_under_replicated());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hedged_get_does_not_wait_for_a_slow_replica() {
    let slow = FaultyNode::start(Fault::Slow(Duration::from_secs(3), b"slow"))
        .await
        .unwrap();
    let fast = FaultyNode::start(Fault::Slow(Duration::from_millis(1), b"fast"))
        .await
        .unwrap();
    let client = Client::builder(config(&[vec![slow.url(), fast.url()]]))
        .hedge(Some(Duration::from_millis(50)))
        .build()
        .unwrap();
    for _ in 0..6 {
        let started = Instant::now();
        assert_eq!(client.get_bytes("k").await.unwrap(), "fast");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "waited {:?}",
            started.elapsed()
        );
    }
}
