//! What the client says when nodes fail: which kind of failure, where, and that an answer
//! it did not expect is never taken for success or for a missing key.

use photosrv_client::{Client, Error};
use photosrv_config::Config;
use photosrv_testkit::{Fault, FaultyNode};
use std::path::Path;
use std::time::Duration;

fn url(node: &FaultyNode) -> String {
    format!("http://{}", node.addr)
}

/// A config of one shard of `nodes`.
fn config(nodes: &[String]) -> Config {
    let text = format!(
        "<photosrv>\n<dc1>\n<shards>\nshard1 {}\n</shards>\n</dc1>\n</photosrv>\n",
        nodes.join(" ")
    );
    Config::parse(Path::new("t.cfg"), text.as_bytes()).unwrap()
}

/// A client over one shard of `nodes`, giving up on a request after 300 ms.
fn client(nodes: &[String]) -> Client {
    Client::builder(config(nodes))
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap()
}

/// A loopback address nothing listens on.
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    format!("http://{}", listener.local_addr().unwrap())
}

/// A node that serves `files` (name, body) from a directory of its own, 404 for the rest.
async fn serving(files: &[(&str, &str)]) -> (FaultyNode, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    let node = FaultyNode::start(Fault::SlowFiles(Duration::ZERO, dir.path().to_path_buf()))
        .await
        .unwrap();
    (node, dir)
}

#[tokio::test]
async fn a_get_that_fails_everywhere_says_how_and_where() {
    let hang = FaultyNode::start(Fault::Hang).await.unwrap();
    let fail = FaultyNode::start(Fault::Fail500).await.unwrap();
    let err = client(&[url(&hang), url(&fail)])
        .get("k.jpg")
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        !err.is_connect() && !err.is_not_found() && !err.is_under_replicated(),
        "{err}"
    );
    assert_eq!((err.status(), err.url()), (None, None));
    // Each replica asked once.
    assert!(
        matches!(&err, Error::AllFailed { errors, .. } if errors.len() == 2),
        "{err}"
    );
    let text = err.to_string();
    assert!(text.starts_with("k.jpg: every replica failed: "), "{text}");
    assert!(
        text.contains(&format!("{}/k.jpg: HTTP 500", url(&fail))),
        "{text}"
    );
    assert!(text.contains("; "), "{text}");

    let err = client(&[closed_port()]).get("k.jpg").await.unwrap_err();
    assert!(err.is_connect() && !err.is_timeout(), "{err}");

    // One replica without the key and one failing is not "not found": the key may be on
    // the failing one.
    let (empty, _dir) = serving(&[]).await;
    let err = client(&[url(&empty), url(&fail)])
        .get("k.jpg")
        .await
        .unwrap_err();
    assert!(!err.is_not_found(), "{err}");
    let err = client(&[url(&empty)]).get("k.jpg").await.unwrap_err();
    assert!(err.is_not_found(), "{err}");
}

#[tokio::test]
async fn a_node_s_own_answer_is_an_error_with_its_status_and_url() {
    let fail = FaultyNode::start(Fault::Fail500).await.unwrap();
    let client = client(&[url(&fail)]);
    let err = client
        .put_to(&url(&fail), "k.jpg", bytes::Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    let where_ = format!("{}/k.jpg", url(&fail));
    assert_eq!(err.url(), Some(where_.as_str()));
    assert!(!err.is_not_found() && !err.is_timeout() && !err.is_connect());

    // A delete a node answers with 500 is not counted as done.
    let err = client.delete("k.jpg").await.unwrap_err();
    assert!(err.is_under_replicated(), "{err}");
    let report = err.report().unwrap();
    assert_eq!(report.failed.len(), 1);
    assert_eq!(report.failed[0].to_string(), format!("{where_}: HTTP 500"));
    assert_eq!(client.shards().len(), 1);
}

#[tokio::test]
async fn exists_is_false_only_when_every_replica_says_404() {
    let (has, _dir) = serving(&[("here.jpg", "x")]).await;
    let (empty, _dir2) = serving(&[]).await;
    let fail = FaultyNode::start(Fault::Fail500).await.unwrap();
    let both = client(&[url(&has), url(&empty)]);
    assert!(both.exists("here.jpg").await.unwrap());
    assert!(!both.exists("absent.jpg").await.unwrap());
    let err = client(&[url(&fail)]).exists("here.jpg").await.unwrap_err();
    assert!(err.to_string().contains("HTTP 500"), "{err}");

    // Every replica's answer, in config order.
    let answers = client(&[url(&has), url(&fail)])
        .head_replicas("here.jpg")
        .await;
    assert_eq!(answers.len(), 2);
    assert_eq!(answers[0].0, url(&has));
    assert_eq!(
        answers[0].1.as_ref().unwrap().as_ref().unwrap().len,
        Some(1)
    );
    assert_eq!(answers[1].0, url(&fail));
    assert_eq!(answers[1].1.as_ref().unwrap_err().status(), Some(500));
}

#[tokio::test]
async fn a_hedged_get_asks_each_replica_once_at_most() {
    let hangs = [
        FaultyNode::start(Fault::Hang).await.unwrap(),
        FaultyNode::start(Fault::Hang).await.unwrap(),
    ];
    let hedged = Client::builder(config(&[url(&hangs[0]), url(&hangs[1])]))
        .timeout(Duration::from_millis(300))
        .hedge(Some(Duration::from_millis(20)))
        .build()
        .unwrap();
    let err = hedged.get("k.jpg").await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(
        matches!(&err, Error::AllFailed { errors, .. } if errors.len() == 2),
        "{err}"
    );
}
