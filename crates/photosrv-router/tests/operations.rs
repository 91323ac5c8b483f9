//! What operators rely on: migration switching and its persistence, the admin endpoints and
//! the metrics' counts.

mod support;

use photosrv_router::MigrationState;
use photosrv_testkit::RouterBuilder;
use std::time::Duration;
use support::{client, cluster_with_router, eventually, get_json, get_text, metric, Cluster};

/// Old ring: shard1 on node A. New ring: shard1 on node B.
fn two_ring_config(old: &str, new: &str, extra: &str) -> String {
    format!(
        "<photosrv>\nchooser jump\n{extra}\n<dc1>\n<shards>\nshard1 {old}\n</shards>\n</dc1>\n<migration>\nchooser jump\n<dc1>\n<shards>\nshard1 {new}\n</shards>\n</dc1>\n</migration>\n</photosrv>\n"
    )
}

async fn admin_post(url: &str) -> (u16, String) {
    let response = client().post(url).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_switching_needs_post_and_the_key_and_survives_a_restart() {
    let Some(cluster) = Cluster::start("migration_switching", 1, 2) else {
        return;
    };
    let (old, new) = (&cluster.nodes[0][0], &cluster.nodes[0][1]);
    old.seed("only-old.jpg", b"old").unwrap();
    new.seed("only-new.jpg", b"new").unwrap();
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("migration-state");
    let config = two_ring_config(&old.url(), &new.url(), "");
    let start = || {
        let state_file = state_file.clone();
        RouterBuilder::new(config.clone()).settings(move |s| {
            s.migration_key = Some("s3cret".into());
            s.migration_state = Some(state_file);
        })
    };
    let router = start().start().await.unwrap();
    let admin = router.admin_url();
    let get = |path: &'static str| {
        let url = format!("{}/{path}", router.url());
        async move {
            let r = client().get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    assert_eq!(get("only-old.jpg").await, (200, "old".into()));
    assert_eq!(get("only-new.jpg").await.0, 404);

    // Wrong key, missing key, GET: the state never changes.
    assert_eq!(
        admin_post(&format!("{admin}/migration/start?key=wrong"))
            .await
            .0,
        403
    );
    assert_eq!(admin_post(&format!("{admin}/migration/start")).await.0, 403);
    assert_eq!(
        admin_post(&format!("{admin}/migration/start?key=s3cre"))
            .await
            .0,
        403
    );
    let response = client()
        .get(format!("{admin}/migration/start?key=s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "POST");
    assert_eq!(router.router.migration_state(), MigrationState::Old);
    assert!(!state_file.exists());

    // The right key: "both" serves keys from either ring.
    let (status, text) = admin_post(&format!("{admin}/migration/start?key=s3cret")).await;
    assert_eq!(
        (status, text.trim()),
        (
            200,
            "currentMigrationState = msBothConfigs (was msOldConfig)"
        )
    );
    assert_eq!(
        std::fs::read_to_string(&state_file).unwrap(),
        "msBothConfigs"
    );
    assert_eq!(get("only-old.jpg").await, (200, "old".into()));
    assert_eq!(get("only-new.jpg").await, (200, "new".into()));

    // A restart resumes the saved state.
    router.stop(std::time::Duration::from_secs(5)).await;
    let router = start().start().await.unwrap();
    assert_eq!(router.router.migration_state(), MigrationState::Both);
    let vars = get_json(&format!("{}/debug/vars", router.admin_url())).await;
    assert_eq!(vars["MigrationState"], "msBothConfigs");

    // "new" serves from the new ring only.
    assert_eq!(
        admin_post(&format!(
            "{}/migration/finish?key=s3cret",
            router.admin_url()
        ))
        .await
        .0,
        200
    );
    let r = client()
        .get(format!("{}/only-old.jpg", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "msNewConfig");

    // "abort" goes back to the old ring; an unknown action changes nothing.
    let (status, text) = admin_post(&format!(
        "{}/migration/abort?key=s3cret",
        router.admin_url()
    ))
    .await;
    assert_eq!(
        (status, text.trim()),
        (200, "currentMigrationState = msOldConfig (was msNewConfig)")
    );
    assert_eq!(std::fs::read_to_string(&state_file).unwrap(), "msOldConfig");
    let (status, _) = admin_post(&format!(
        "{}/migration/restart?key=s3cret",
        router.admin_url()
    ))
    .await;
    assert_eq!(status, 404);
    assert_eq!(router.router.migration_state(), MigrationState::Old);
}

/// While both rings serve, a key only the old ring has costs random mode a GET to the new
/// ring (its 404) and a retry, counted once per request; multihead mode asks the new ring's
/// replicas with HEADs only and, as all say 404, sends its one GET to the old ring.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_only_the_old_ring_has_costs_one_retry_or_heads_only() {
    use photosrv_config::ReplicaMode;
    let Some(cluster) = Cluster::start("old_ring_fallback", 2, 2) else {
        return;
    };
    let (old, new) = (&cluster.nodes[0], &cluster.nodes[1]);
    cluster.seed(0, "only-old.jpg", b"old");
    let urls = |nodes: &[photosrv_testkit::NginxNode]| {
        nodes.iter().map(|n| n.url()).collect::<Vec<_>>().join(" ")
    };
    let config = two_ring_config(&urls(old), &urls(new), "");
    let state_dir = tempfile::tempdir().unwrap();
    let state_file = state_dir.path().join("migration-state");
    std::fs::write(&state_file, "msBothConfigs").unwrap();
    let start = |mode| {
        let state_file = state_file.clone();
        RouterBuilder::new(config.clone())
            .mode(mode)
            .settings(move |s| s.migration_state = Some(state_file))
            .start()
    };
    let get = |url: String| async move {
        let response = client().get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    };
    let retries = "photosrv_retries_total";

    let random = start(ReplicaMode::Random).await.unwrap();
    assert_eq!(random.router.migration_state(), MigrationState::Both);
    for _ in 0..4 {
        let url = format!("{}/only-old.jpg", random.url());
        assert_eq!(get(url).await, (200, "old".into()));
    }
    assert_eq!(metric(&random.admin_url(), retries).await, 4);
    let gets = |nodes: &[photosrv_testkit::NginxNode]| {
        nodes
            .iter()
            .map(|n| n.access_log().matches("\"GET /only-old.jpg ").count())
            .sum::<usize>()
    };
    // nginx logs a request after it has sent the answer.
    let logged = |new_gets, old_gets| {
        eventually(Duration::from_secs(5), move || {
            (gets(new), gets(old)) == (new_gets, old_gets)
        })
    };
    assert!(logged(4, 4).await.is_some(), "{:?}", (gets(new), gets(old)));

    let multihead = start(ReplicaMode::Multihead).await.unwrap();
    for _ in 0..4 {
        let url = format!("{}/only-old.jpg", multihead.url());
        assert_eq!(get(url).await, (200, "old".into()));
    }
    assert_eq!(metric(&multihead.admin_url(), retries).await, 0);
    assert!(
        logged(4, 8).await.is_some(),
        "multihead sent GETs to the new ring: {:?}",
        (gets(new), gets(old))
    );
    let url = format!("{}/nowhere.jpg", multihead.url());
    assert_eq!(get(url).await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_is_refused_without_a_key_or_a_migration_ring() {
    let Some(cluster) = Cluster::start("switch_refused", 1, 1) else {
        return;
    };
    let no_key = RouterBuilder::new(cluster.config("jump", ""))
        .start()
        .await
        .unwrap();
    let (status, text) = admin_post(&format!("{}/migration/start?key=", no_key.admin_url())).await;
    assert_eq!(status, 403, "{text}");
    assert!(text.contains("no migration key is configured"), "{text}");
    let no_ring = RouterBuilder::new(cluster.config("jump", ""))
        .settings(|s| s.migration_key = Some("k".into()))
        .start()
        .await
        .unwrap();
    let (status, text) =
        admin_post(&format!("{}/migration/start?key=k", no_ring.admin_url())).await;
    assert_eq!(status, 409);
    assert!(text.contains("no <migration> ring"), "{text}");
    assert_eq!(no_ring.router.migration_state(), MigrationState::Old);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn debug_vars_has_every_go_name_and_metrics_count_exactly() {
    let Some((_cluster, router)) = cluster_with_router("metrics_count", 2, 1).await else {
        return;
    };
    let http = client();
    let vars = get_json(&format!("{}/debug/vars", router.admin_url())).await;
    for name in [
        "Requests",
        "Errors",
        "MultiHeadTimeout",
        "MissingShards",
        "MigrationState",
        "BuildVersion",
        "cmdline",
    ] {
        assert!(vars.get(name).is_some(), "/debug/vars lacks {name}: {vars}");
    }
    assert!(
        vars["MissingShards"]["Primary"].is_array()
            && vars["MissingShards"]["Migration"].is_array()
    );
    assert_eq!(vars["MigrationState"], "msOldConfig");

    // The requests counted with labels holding `part` (all of them for "").
    let metrics_url = format!("{}/metrics", router.admin_url());
    let requests_total = |part: &'static str| {
        let metrics_url = metrics_url.clone();
        async move {
            let text = get_text(&metrics_url).await;
            text.lines()
                .filter(|l| l.starts_with("photosrv_requests_total{") && l.contains(part))
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum::<u64>()
        }
    };
    let before = requests_total("").await;
    let labels = [
        r#"method="GET",status="404",shard="shard"#,
        r#"method="HEAD",status="404",shard="shard"#,
        r#"method="GET",status="400",shard="""#,
        r#"method="HEAD",status="400",shard="""#,
    ];
    let mut before_by_label = Vec::new();
    for part in labels {
        before_by_label.push(requests_total(part).await);
    }
    for i in 0..37 {
        let path = if i % 3 == 0 {
            format!("/missing/{i}")
        } else {
            "/a%00b".to_owned()
        };
        let method = if i % 2 == 0 {
            reqwest::Method::GET
        } else {
            reqwest::Method::HEAD
        };
        http.request(method, format!("{}{path}", router.url()))
            .send()
            .await
            .unwrap();
    }
    assert_eq!(requests_total("").await - before, 37);
    // By method, status and shard: the missing keys were routed to a shard (0, 6, ... 36 by
    // GET; 3, 9, ... 33 by HEAD), the refused paths to none.
    for (part, (was, want)) in labels
        .into_iter()
        .zip(before_by_label.into_iter().zip([7, 6, 12, 12]))
    {
        assert_eq!(requests_total(part).await - was, want, "{part}");
    }
    let text = get_text(&format!("{}/metrics", router.admin_url())).await;
    for name in [
        "photosrv_upstream_latency_seconds_bucket",
        "photosrv_retries_total",
        "photosrv_multihead_races_total",
        "photosrv_multihead_timeouts_total",
        "photosrv_shards_without_live_node",
        "photosrv_migration_state",
        "photosrv_build_info",
        "photosrv_reloads_total",
    ] {
        assert!(
            text.contains(name) || name == "photosrv_reloads_total",
            "/metrics lacks {name}"
        );
    }
    router.router.reload(true).unwrap();
    let text = get_text(&format!("{}/metrics", router.admin_url())).await;
    assert!(
        text.contains("photosrv_reloads_total{result=\"ok\"} 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_introspection_endpoints() {
    let Some(cluster) = Cluster::start("health_endpoints", 2, 1) else {
        return;
    };
    let router = RouterBuilder::new(cluster.config("jump", ""))
        .roster(cluster.roster_without(&[]))
        .start()
        .await
        .unwrap();
    let http = client();
    let admin = router.admin_url();
    assert_eq!(
        http.get(format!("{admin}/live"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("{admin}/ready"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let route = get_json(&format!("{admin}/route?key=images/a.jpg")).await;
    assert_eq!(route["key"], "images/a.jpg");
    let shard = route["rings"][0]["shard"].as_str().unwrap();
    let node_of = |shard: &str| match shard {
        "shard1" => &cluster.nodes[0][0],
        _ => &cluster.nodes[1][0],
    };
    // Each node of a shard: its URL, whether the roster lists it, whether it is ejected.
    let node =
        |url: String, live: bool| serde_json::json!({"url": url, "live": live, "ejected": false});
    assert_eq!(
        route["rings"][0]["nodes"],
        serde_json::json!([node(node_of(shard).url(), true)]),
        "{route}"
    );
    let config = get_json(&format!("{admin}/config")).await;
    assert_eq!(config["primary"]["shards"].as_array().unwrap().len(), 2);
    assert_eq!(
        config["primary"]["shards"][1]["nodes"],
        serde_json::json!([node(cluster.nodes[1][0].url(), true)])
    );
    let gauge = |metrics: &str, ring: &str| {
        let name = format!("photosrv_shards_without_live_node{{ring=\"{ring}\"}} ");
        metrics
            .lines()
            .find_map(|line| line.strip_prefix(&name))
            .map(str::to_owned)
    };
    let metrics = get_text(&format!("{admin}/metrics")).await;
    assert_eq!(
        gauge(&metrics, "primary").as_deref(),
        Some("0"),
        "{metrics}"
    );
    assert_eq!(gauge(&metrics, "migration").as_deref(), Some("0"));

    // Take shard2's only node out of the roster: not ready, and why.
    std::fs::write(
        router.roster_path(),
        cluster.roster_without(&[&cluster.nodes[1][0]]),
    )
    .unwrap();
    router.router.reload(false).unwrap();
    let ready = http.get(format!("{admin}/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert!(ready.text().await.unwrap().contains("primary shard2"));
    let vars = get_json(&format!("{admin}/debug/vars")).await;
    assert_eq!(
        vars["MissingShards"]["Primary"],
        serde_json::json!(["shard2"])
    );
    let metrics = get_text(&format!("{admin}/metrics")).await;
    assert_eq!(
        gauge(&metrics, "primary").as_deref(),
        Some("1"),
        "{metrics}"
    );
    let config = get_json(&format!("{admin}/config")).await;
    assert_eq!(
        config["primary"]["shards"][1]["nodes"],
        serde_json::json!([node(cluster.nodes[1][0].url(), false)])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watcher_does_not_reread_files_on_its_own_reads() {
    use notify::event::{AccessKind, EventKind};
    use notify::Watcher as _;
    let router = RouterBuilder::new(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://127.0.0.1:1\n</shards>\n</dc1>\n</photosrv>\n",
    )
    .roster("n 127.0.0.1:1\n")
    // The poll must not read within the test's second.
    .settings(|s| s.reload_poll_ms = Some(60_000))
    .start()
    .await
    .unwrap();
    // Let the reloader's first check pass.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let (tx, rx) = std::sync::mpsc::channel();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let _ = tx.send(event);
        }
    })
    .unwrap();
    watcher
        .watch(router.dir.path(), notify::RecursiveMode::NonRecursive)
        .unwrap();
    // Someone reads the config (a backup, a `cat`): not a change.
    std::fs::read(router.config_path()).unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1_000)).await;
    let opens = rx
        .try_iter()
        .filter(|e| matches!(e.kind, EventKind::Access(AccessKind::Open(_))))
        .count();
    assert_eq!(opens, 1, "only the test's own read opened a file");
}

/// A change is seen by watching the files' directories, not only by the poll: with a poll
/// of ten minutes, an in-place edit of the roster and a symlink swapped in by rename still
/// take effect. A reload with nothing changed publishes nothing; a forced one does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn changes_are_seen_without_waiting_for_the_poll() {
    use photosrv_router::Reloaded;
    use std::time::{Duration, Instant};
    let router = RouterBuilder::new(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://127.0.0.1:1 http://127.0.0.1:2\n</shards>\n</dc1>\n</photosrv>\n",
    )
    .roster("n 127.0.0.1:1\nm 127.0.0.1:2\n")
    .settings(|s| s.reload_poll_ms = Some(600_000))
    .start()
    .await
    .unwrap();
    let live = || router.router.table().primary.shards[0].live.len();
    assert_eq!(live(), 2);
    // Each change is made again every half second until it is seen, so a change made
    // before the watches were in place is not what the test waits for.
    let roster = router.roster_path();
    let dir = router.dir.path().to_owned();
    let changes: [(&dyn Fn(), usize); 2] = [
        (&|| std::fs::write(&roster, "n 127.0.0.1:1\n").unwrap(), 1),
        (
            &|| {
                std::fs::write(dir.join("roster.v2"), "n 127.0.0.1:1\nm 127.0.0.1:2\n").unwrap();
                let _ = std::fs::remove_file(dir.join("roster.new"));
                std::os::unix::fs::symlink("roster.v2", dir.join("roster.new")).unwrap();
                std::fs::rename(dir.join("roster.new"), &roster).unwrap();
            },
            2,
        ),
    ];
    for (change, want) in changes {
        let until = Instant::now() + Duration::from_secs(10);
        while live() != want {
            assert!(Instant::now() < until, "not seen in 10 s: {} live", live());
            change();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
    assert_eq!(router.router.reload(false).unwrap(), Reloaded::Unchanged);
    assert_eq!(
        router.router.reload(true).unwrap(),
        Reloaded::Changed(vec![])
    );
}

/// A reloader that was stopped, or whose handle was dropped, starts no reload after that;
/// `stop` returns once a reload under way has finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_reloader_reloads_nothing() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("photosrv.cfg");
    std::fs::write(
        &config_path,
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://127.0.0.1:1 http://127.0.0.1:2\n</shards>\n</dc1>\n</photosrv>\n",
    )
    .unwrap();
    let roster = dir.path().join("roster");
    std::fs::write(&roster, "n 127.0.0.1:1\n").unwrap();
    let settings = photosrv_config::Settings {
        roster: Some(roster.clone()),
        reload_poll_ms: Some(20),
        ..Default::default()
    };
    let config = photosrv_config::Config::load(&config_path).unwrap();
    let router =
        photosrv_router::Router::new(photosrv_router::RouterOptions::resolve(&config, settings))
            .unwrap();
    let live = || router.table().primary.shards[0].live.len();
    for stop in [true, false] {
        let reloader = router.spawn_reloader();
        // It runs: a change is taken up.
        let want = 3 - live();
        let hosts = ["n 127.0.0.1:1\n", "n 127.0.0.1:1\nm 127.0.0.1:2\n"];
        std::fs::write(&roster, hosts[want - 1]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while live() != want {
            assert!(Instant::now() < deadline, "the reloader does not run");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if stop {
            reloader.stop().await;
        } else {
            drop(reloader);
            // A reload under way when the handle went may still finish: give it time.
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        std::fs::write(&roster, hosts[2 - want]).unwrap();
        // Fifteen polls' time.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(live(), want, "reloaded after it was stopped (stop: {stop})");
    }
}

/// `/ready` asks for a live node in every shard of the rings the migration state reads:
/// the old ring, both, or the new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_follows_the_rings_in_use() {
    let config = two_ring_config("http://127.0.0.1:1", "http://127.0.0.1:2", "");
    let http = client();
    // Which node the roster lists, then per state: the status and what is missing.
    let cases = [
        (
            "a 127.0.0.1:1\n",
            [
                (200, "ready"),
                (503, "not ready: no live node in migration shard1"),
                (503, "not ready: no live node in migration shard1"),
            ],
        ),
        (
            "b 127.0.0.1:2\n",
            [
                (503, "not ready: no live node in primary shard1"),
                (503, "not ready: no live node in primary shard1"),
                (200, "ready"),
            ],
        ),
    ];
    for (roster, per_state) in cases {
        let router = RouterBuilder::new(config.clone())
            .roster(roster)
            .settings(|s| s.migration_key = Some("k".into()))
            .start()
            .await
            .unwrap();
        let states = [
            MigrationState::Old,
            MigrationState::Both,
            MigrationState::New,
        ];
        for (state, (status, text)) in states.into_iter().zip(per_state) {
            router.router.switch_migration(state, Some("k")).unwrap();
            let ready = http
                .get(format!("{}/ready", router.admin_url()))
                .send()
                .await
                .unwrap();
            assert_eq!(ready.status(), status, "{roster:?} {state:?}");
            assert_eq!(ready.text().await.unwrap().trim(), text);
        }
    }
}

/// The admin endpoints answer GET and HEAD; other methods get 405 with the methods allowed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_answer_get_and_head_only() {
    let router = RouterBuilder::new(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 http://127.0.0.1:1\n</shards>\n</dc1>\n</photosrv>\n",
    )
    .start()
    .await
    .unwrap();
    let http = client();
    let url = format!("{}/live", router.admin_url());
    assert_eq!(http.head(&url).send().await.unwrap().status(), 200);
    for method in ["POST", "PUT", "DELETE"] {
        let response = http
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                &url,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(response.headers()["allow"], "GET, HEAD");
    }
}
