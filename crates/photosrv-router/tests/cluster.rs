//! The router in front of real nginx WebDAV nodes: correctness of what it serves,
//! failover, timeouts, hot reload and refusal of hostile paths.

mod support;

use photosrv_config::ReplicaMode;
use photosrv_router::MigrationState;
use photosrv_testkit::{Fault, FaultyNode, RouterBuilder, RouterHandle};
use std::time::{Duration, Instant};
use support::{body_for, client, cluster_with_router, eventually, metric, raw_exchange, Cluster};

/// The shard index (0-based) of `key` in the router's current table.
fn shard_of(router: &photosrv_router::Router, key: &str) -> usize {
    let table = router.table();
    let name = &table.primary.shard_of(key.as_bytes()).name;
    name.trim_start_matches("shard").parse::<usize>().unwrap() - 1
}

fn keys(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| format!("images/hotel/max500/{}/{i}.jpg", i % 7))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_seeded_objects_byte_exact_with_head_and_range() {
    let Some((cluster, router)) = cluster_with_router("serves_seeded_objects", 2, 2).await else {
        return;
    };
    let keys = keys(40);
    for (i, key) in keys.iter().enumerate() {
        cluster.seed(
            shard_of(&router.router, key),
            key,
            &body_for(key, 1000 + i * 997),
        );
    }
    let http = client();
    let mut per_shard = [0usize; 2];
    for (i, key) in keys.iter().enumerate() {
        let want = body_for(key, 1000 + i * 997);
        per_shard[shard_of(&router.router, key)] += 1;
        let url = format!("{}/{key}", router.url());
        let get = http.get(&url).send().await.unwrap();
        assert_eq!(get.status(), 200, "{key}");
        assert!(get.headers().get("via").is_some());
        assert_eq!(get.bytes().await.unwrap(), want, "{key}");

        let head = http.head(&url).send().await.unwrap();
        assert_eq!(head.status(), 200);
        assert_eq!(
            head.headers()["content-length"],
            want.len().to_string().as_str()
        );
        let etag = head.headers()["etag"].clone();

        let range = http
            .get(&url)
            .header("range", "bytes=10-99")
            .send()
            .await
            .unwrap();
        assert_eq!(range.status(), 206);
        assert_eq!(
            range.headers()["content-range"],
            format!("bytes 10-99/{}", want.len()).as_str()
        );
        assert_eq!(range.bytes().await.unwrap(), want[10..100]);

        let cached = http
            .get(&url)
            .header("if-none-match", etag)
            .send()
            .await
            .unwrap();
        assert_eq!(cached.status(), 304);
    }
    assert!(
        per_shard.iter().all(|&n| n > 0),
        "keys reached both shards: {per_shard:?}"
    );
    let missing = http
        .get(format!("{}/images/none.jpg", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_node_costs_no_request() {
    let Some(mut cluster) = Cluster::start("killed_node_costs_no_request", 2, 2) else {
        return;
    };
    for mode in [ReplicaMode::Random, ReplicaMode::Multihead] {
        let router = RouterBuilder::new(cluster.config("jump", ""))
            .mode(mode)
            .start()
            .await
            .unwrap();
        let keys = keys(50);
        for key in &keys {
            cluster.seed(shard_of(&router.router, key), key, &body_for(key, 4096));
        }
        if cluster.nodes[0][0].is_running() {
            cluster.nodes[0][0].stop();
        }
        let http = client();
        let mut failures = 0;
        for i in 0..2000 {
            let key = &keys[i % keys.len()];
            let response = http
                .get(format!("{}/{key}", router.url()))
                .send()
                .await
                .unwrap();
            if response.status() != 200 || response.bytes().await.unwrap() != body_for(key, 4096) {
                failures += 1;
            }
        }
        assert_eq!(failures, 0, "{mode:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanging_node_costs_at_most_the_timeout_and_statuses_are_honest() {
    let Some(cluster) = Cluster::start("hanging_node", 1, 1) else {
        return;
    };
    let hang = FaultyNode::start(Fault::Hang).await.unwrap();
    let fail = FaultyNode::start(Fault::Fail500).await.unwrap();
    let good = &cluster.nodes[0][0];
    let config = format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {} {}\n</shards>\n</dc1>\n<migration>\n<dc1>\n<shards>\nshard1 {} {}\n</shards>\n</dc1>\n</migration>\n</photosrv>\n",
        hang.url(), good.url(), hang.url(), fail.url()
    );
    let router = RouterBuilder::new(config)
        .settings(|s| {
            s.upstream_timeout_ms = Some(300);
            s.migration_key = Some("k".into());
        })
        .start()
        .await
        .unwrap();
    good.seed("a.jpg", b"hello").unwrap();
    let http = client();
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let response = http
            .get(format!("{}/a.jpg", router.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap(), "hello");
        slowest = slowest.max(started.elapsed());
    }
    // One timeout at most per request (then the hanging node is tried last).
    assert!(
        slowest < Duration::from_millis(300 + 1500),
        "slowest request took {slowest:?}"
    );

    // The migration ring alone: a hanging node and a failing one. 502, never 404.
    router
        .router
        .switch_migration(MigrationState::New, Some("k"))
        .unwrap();
    let response = http
        .get(format!("{}/a.jpg", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}

/// One shard of two replicas: one that accepts and never answers, one that answers "hello"
/// at once. Keep both alive while the router runs.
async fn hanging_and_good_replica() -> (FaultyNode, FaultyNode, String) {
    let hang = FaultyNode::start(Fault::Hang).await.unwrap();
    let good = FaultyNode::start(Fault::Slow(Duration::ZERO, b"hello"))
        .await
        .unwrap();
    let config = one_shard(&hang, &good);
    (hang, good, config)
}

/// A config of one shard over two nodes.
fn one_shard(a: &FaultyNode, b: &FaultyNode) -> String {
    format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {} {}\n</shards>\n</dc1>\n</photosrv>\n",
        a.url(),
        b.url()
    )
}

/// A multihead router over `config` with these timeouts.
async fn multihead_router(config: String, head_ms: u64, upstream_ms: u64) -> RouterHandle {
    RouterBuilder::new(config)
        .mode(ReplicaMode::Multihead)
        .settings(|s| {
            s.head_timeout_ms = Some(head_ms);
            s.upstream_timeout_ms = Some(upstream_ms);
        })
        .start()
        .await
        .unwrap()
}

/// A replica that accepts and never answers must not collect a connection from every
/// multi-HEAD race (each would wait out the upstream timeout, 15 s by default: at a thousand
/// requests a second the router would run out of descriptors). Its probes give up at the
/// head timeout, which ejects it: it is then left out of races while the other replica
/// answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_replica_costs_multihead_few_connections() {
    let (hang, _good, config) = hanging_and_good_replica().await;
    let router = multihead_router(config, 100, 10_000).await;
    let http = client();
    let get_all = |n: usize| {
        let (http, url) = (http.clone(), format!("{}/a.jpg", router.url()));
        async move {
            for _ in 0..n {
                let response = http.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(response.bytes().await.unwrap(), "hello");
            }
        }
    };
    let started = Instant::now();
    // Races within the first probe's head timeout each open a connection to it.
    get_all(20).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let opened = hang.accepted();
    assert!(opened >= 1, "the hanging node was never probed");
    // Its probes have timed out: ejected, it gets no probe (and no connection) for 2 s.
    get_all(40).await;
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "the test outlived the ejection"
    );
    assert_eq!(
        hang.accepted(),
        opened,
        "connections opened to an ejected hanging node"
    );
}

/// A race in which no replica answers in time counts once in MultiHeadTimeout, whether
/// the race's deadline or its probes' own timeouts end it (they run out together).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_race_that_runs_out_of_time_is_counted() {
    let (a, b) = (
        FaultyNode::start(Fault::Hang).await.unwrap(),
        FaultyNode::start(Fault::Hang).await.unwrap(),
    );
    let router = multihead_router(one_shard(&a, &b), 30, 60).await;
    let http = client();
    for _ in 0..6 {
        let response = http
            .get(format!("{}/a.jpg", router.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 504);
    }
    let vars: serde_json::Value = http
        .get(format!("{}/debug/vars", router.admin_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(vars["MultiHeadTimeout"], 6);
}

/// When a node's ejection runs out, one request tries it again, not every request that
/// picks it: with a node that never answers, those would each wait out the upstream
/// timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_an_ejection_one_request_tries_the_node_again() {
    let (hang, _good, config) = hanging_and_good_replica().await;
    let router = RouterBuilder::new(config)
        .settings(|s| s.upstream_timeout_ms = Some(300))
        .start()
        .await
        .unwrap();
    let http = client();
    let url = format!("{}/a.jpg", router.url());
    // Until a request has met the hanging node (and failed over): it is ejected.
    while hang.accepted() == 0 {
        let response = http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    // The ejection (2 s) runs out; then 20 requests at once.
    tokio::time::sleep(Duration::from_millis(2_200)).await;
    let before = hang.accepted();
    let requests: Vec<_> = (0..20)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            tokio::spawn(async move {
                let started = Instant::now();
                let response = http.get(&url).send().await.unwrap();
                assert_eq!(response.status(), 200);
                assert_eq!(response.bytes().await.unwrap(), "hello");
                started.elapsed()
            })
        })
        .collect();
    let mut waited = 0;
    for request in requests {
        waited += usize::from(request.await.unwrap() >= Duration::from_millis(250));
    }
    assert!(
        hang.accepted() - before <= 1,
        "{} requests tried the node",
        hang.accepted() - before
    );
    assert!(waited <= 1, "{waited} requests waited out the timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_timeouts_give_504_and_no_live_node_gives_503() {
    let hang = FaultyNode::start(Fault::Hang).await.unwrap();
    let config = format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {}\nshard2 http://127.0.0.1:9\n</shards>\n</dc1>\n</photosrv>\n",
        hang.url()
    );
    let roster = format!("n {}\n", hang.addr);
    let router = RouterBuilder::new(config)
        .roster(roster)
        .settings(|s| s.upstream_timeout_ms = Some(200))
        .start()
        .await
        .unwrap();
    let http = client();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..40 {
        let response = http
            .get(format!("{}/k{i}", router.url()))
            .send()
            .await
            .unwrap();
        seen.insert(response.status().as_u16());
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [503, 504]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roster_symlink_swap_and_in_place_edit_are_honoured_and_garbage_is_not() {
    let Some(cluster) = Cluster::start("roster_reload", 1, 2) else {
        return;
    };
    let (a, b) = (&cluster.nodes[0][0], &cluster.nodes[0][1]);
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .roster(cluster.roster_without(&[]))
        .start()
        .await
        .unwrap();
    let live = |router: &photosrv_router::Router| router.table().primary.shards[0].live.len();
    assert_eq!(live(&router.router), 2);
    let dir = router.dir.path();
    let roster = router.roster_path();

    // In-place edit (truncate and write).
    std::fs::write(&roster, cluster.roster_without(&[b])).unwrap();
    let took = eventually(Duration::from_secs(2), || live(&router.router) == 1).await;
    assert!(took.is_some(), "in-place edit not seen within 2 s");

    // Symlink swap: roster -> roster.v2, replaced by rename.
    std::fs::remove_file(&roster).unwrap();
    std::fs::write(dir.join("roster.v1"), cluster.roster_without(&[a])).unwrap();
    std::fs::write(dir.join("roster.v2"), cluster.roster_without(&[])).unwrap();
    std::os::unix::fs::symlink("roster.v1", &roster).unwrap();
    assert!(eventually(Duration::from_secs(2), || {
        let t = router.router.table();
        t.primary.shards[0].live.len() == 1
            && t.primary.shards[0].live[0].addr.authority == b.authority()
    })
    .await
    .is_some());
    std::os::unix::fs::symlink("roster.v2", dir.join("roster.new")).unwrap();
    std::fs::rename(dir.join("roster.new"), &roster).unwrap();
    assert!(
        eventually(Duration::from_secs(2), || live(&router.router) == 2)
            .await
            .is_some(),
        "symlink swap not seen within 2 s"
    );

    // Garbage keeps the last good roster, and so does a roster listing no node.
    std::fs::write(
        dir.join("roster.v3"),
        b"\x00\xff garbage\nno-port-here x:y\n",
    )
    .unwrap();
    std::os::unix::fs::symlink("roster.v3", dir.join("roster.new")).unwrap();
    std::fs::rename(dir.join("roster.new"), &roster).unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(live(&router.router), 2);
    std::fs::write(dir.join("roster.v3"), "x 10.0.0.1:1\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(live(&router.router), 2);

    // A broken config keeps the last good table too.
    std::fs::write(router.config_path(), "<photosrv>\n<dc1>\n").unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(live(&router.router), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_methods_get_405_and_hostile_paths_never_reach_a_node() {
    let Some((cluster, router)) = cluster_with_router("hostile_paths", 1, 1).await else {
        return;
    };
    let http = client();
    for method in ["PUT", "POST", "DELETE", "PATCH", "OPTIONS"] {
        let response = http
            .request(method.parse().unwrap(), format!("{}/a.jpg", router.url()))
            .body("x")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }
    for (target, want) in [
        ("/", "404"),
        ("/../etc/passwd", "404"),
        ("/%2e%2e/x", "404"),
        ("/.git/x", "404"),
        ("/a/%2E%2E/%2e%2E/etc/passwd", "404"),
        ("/a%00b", "400"),
        ("/a%zz", "400"),
    ] {
        let answer = raw_exchange(
            router.addr,
            format!("GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await;
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {want}")),
            "{target}: {answer}"
        );
    }
    // A control: an ordinary request does reach the node and its log.
    cluster.nodes[0][0].seed("control.jpg", b"c").unwrap();
    assert_eq!(
        http.get(format!("{}/control.jpg", router.url()))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let log = cluster.nodes[0][0].access_log();
    assert!(
        log.contains("GET /control.jpg"),
        "the access log works: {log}"
    );
    for needle in ["passwd", ".git", "%2e", "%2E", "..", "a%00b", "GET / "] {
        assert!(!log.contains(needle), "{needle} reached a node:\n{log}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_through_roster_reloads_see_no_error_and_right_bodies() {
    let Some(cluster) = Cluster::start("concurrent_reloads", 2, 2) else {
        return;
    };
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .roster(cluster.roster_without(&[]))
        .start()
        .await
        .unwrap();
    let keys = keys(100);
    for key in &keys {
        cluster.seed(
            shard_of(&router.router, key),
            key,
            &body_for(key, 4096 + key.len()),
        );
    }
    let url = router.url();
    let clients: Vec<_> = (0..50)
        .map(|c| {
            let (keys, url) = (keys.clone(), url.clone());
            tokio::spawn(async move {
                let http = client();
                let mut bad = Vec::new();
                for i in 0..200 {
                    let key = &keys[(c * 7 + i) % keys.len()];
                    match http.get(format!("{url}/{key}")).send().await {
                        Ok(r) if r.status() == 200 => {
                            if r.bytes()
                                .await
                                .map(|b| b != body_for(key, 4096 + key.len()))
                                .unwrap_or(true)
                            {
                                bad.push(format!("{key}: wrong body"));
                            }
                        }
                        Ok(r) => bad.push(format!("{key}: {}", r.status())),
                        Err(e) => bad.push(format!("{key}: {e}")),
                    }
                }
                bad
            })
        })
        .collect();
    // 20 reloads meanwhile: alternately drop one replica of each shard from the roster.
    let roster = router.roster_path();
    for i in 0..20 {
        let except = [&cluster.nodes[0][i % 2], &cluster.nodes[1][(i + 1) % 2]];
        let text = if i % 2 == 0 {
            cluster.roster_without(&except)
        } else {
            cluster.roster_without(&[])
        };
        let temp = router.dir.path().join("roster.tmp");
        std::fs::write(&temp, text).unwrap();
        std::fs::rename(&temp, &roster).unwrap();
        router.router.reload(false).unwrap();
        tokio::time::sleep(Duration::from_millis(30)).await;
    }
    let mut bad = Vec::new();
    for task in clients {
        bad.extend(task.await.unwrap());
    }
    assert!(
        bad.is_empty(),
        "{} failures, first: {:?}",
        bad.len(),
        bad.first()
    );
}

/// Peak resident memory of this process (VmHWM), in KiB.
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_object_is_streamed_not_buffered() {
    let Some((cluster, router)) = cluster_with_router("large_object_streamed", 1, 1).await else {
        return;
    };
    // Written a MiB at a time, so this process never holds the object whole and its peak
    // RSS is a fair witness of what the router holds.
    let checksum = |h: u64, data: &[u8]| {
        data.iter()
            .fold(h, |h, &b| h.wrapping_mul(31).wrapping_add(u64::from(b)))
    };
    let (chunks, len) = (64, 64 << 20);
    let mut want = 0u64;
    {
        use std::io::Write as _;
        let mut file = std::fs::File::create(cluster.nodes[0][0].root.join("big.bin")).unwrap();
        for i in 0..chunks {
            let chunk = body_for(&format!("big{i}"), 1 << 20);
            want = checksum(want, &chunk);
            file.write_all(&chunk).unwrap();
        }
    }
    let before = peak_rss_kib();
    let mut response = client()
        .get(format!("{}/big.bin", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let (mut got, mut sum) = (0usize, 0u64);
    while let Some(chunk) = response.chunk().await.unwrap() {
        got += chunk.len();
        sum = checksum(sum, &chunk);
    }
    assert_eq!((got, sum), (len, want));
    let grown_mib = (peak_rss_kib().saturating_sub(before)) / 1024;
    eprintln!("peak RSS grew by {grown_mib} MiB while streaming 64 MiB");
    assert!(
        grown_mib < 24,
        "peak RSS grew by {grown_mib} MiB for a 64 MiB object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multihead_serves_from_the_replica_that_has_the_object() {
    let Some(cluster) = Cluster::start("multihead_partial", 1, 3) else {
        return;
    };
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .mode(ReplicaMode::Multihead)
        .start()
        .await
        .unwrap();
    cluster.nodes[0][1].seed("only-one.jpg", b"here").unwrap();
    let http = client();
    for _ in 0..30 {
        let response = http
            .get(format!("{}/only-one.jpg", router.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.bytes().await.unwrap(), "here");
        let head = http
            .head(format!("{}/only-one.jpg", router.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 200);
    }
}

/// HEAD probes go only where replicas race: none in random mode, none to a shard of one
/// replica in multihead mode (its GET goes alone), one per replica of a larger shard. A key
/// no replica has is a 404 in multihead mode too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probes_go_only_to_shards_whose_replicas_race() {
    let Some(cluster) = Cluster::start("probes_where_replicas_race", 1, 3) else {
        return;
    };
    let n = &cluster.nodes[0];
    let config = format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {} {}\nshard2 {}\n</shards>\n</dc1>\n</photosrv>\n",
        n[0].url(),
        n[1].url(),
        n[2].url()
    );
    let random = RouterBuilder::new(config.clone()).start().await.unwrap();
    let keys_in = |shard: usize| -> Vec<String> {
        keys(100)
            .into_iter()
            .filter(|k| shard_of(&random.router, k) == shard)
            .collect()
    };
    let (first_shard, second_shard) = (keys_in(0), keys_in(1));
    let (pair, missing, lone) = (&first_shard[0], &first_shard[1], &second_shard[0]);
    for node in &n[..2] {
        node.seed(pair, b"pair").unwrap();
    }
    n[2].seed(lone, b"lone").unwrap();
    let http = client();
    let get = |router: &RouterHandle, key: &str| {
        let url = format!("{}/{key}", router.url());
        let http = http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let races = "photosrv_multihead_races_total";
    for _ in 0..5 {
        assert_eq!(get(&random, pair).await, (200, "pair".into()));
        assert_eq!(get(&random, lone).await, (200, "lone".into()));
    }
    assert_eq!(metric(&random.admin_url(), races).await, 0);
    for node in n {
        assert!(
            !node.access_log().contains("HEAD "),
            "{}",
            node.access_log()
        );
    }

    let multihead = RouterBuilder::new(config)
        .mode(ReplicaMode::Multihead)
        .start()
        .await
        .unwrap();
    for _ in 0..5 {
        assert_eq!(get(&multihead, lone).await, (200, "lone".into()));
    }
    assert_eq!(metric(&multihead.admin_url(), races).await, 0);
    assert!(
        !n[2].access_log().contains("HEAD "),
        "{}",
        n[2].access_log()
    );
    for _ in 0..5 {
        assert_eq!(get(&multihead, pair).await, (200, "pair".into()));
    }
    assert_eq!(metric(&multihead.admin_url(), races).await, 5);
    let probe = format!("\"HEAD /{pair} ");
    for node in &n[..2] {
        // A race's losing probe may still be finishing, and nginx logs after answering.
        let probed = eventually(Duration::from_secs(5), || {
            node.access_log().matches(&probe).count() == 5
        });
        assert!(probed.await.is_some(), "{}", node.access_log());
    }
    assert_eq!(get(&multihead, missing).await.0, 404);
    assert_eq!(metric(&multihead.admin_url(), races).await, 6);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_are_closed_after_the_header_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let Some(cluster) = Cluster::start("idle_keep_alive", 1, 1) else {
        return;
    };
    cluster.nodes[0][0].seed("a.jpg", b"x").unwrap();
    let router = RouterBuilder::new(cluster.config("jump", "header_read_timeout_ms 300"))
        .start()
        .await
        .unwrap();
    let mut stream = tokio::net::TcpStream::connect(router.addr).await.unwrap();
    stream
        .write_all(b"GET /a.jpg HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    let n = stream.read(&mut buf).await.unwrap();
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    // Idle, keep-alive: the router closes it within the header timeout (plus slack).
    let closed = tokio::time::timeout(Duration::from_secs(3), stream.read(&mut buf)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "idle connection still open: {closed:?}"
    );
}
