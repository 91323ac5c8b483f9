//! The fault suite: while concurrent clients read objects whose content derives from their
//! key and check every byte, the roster is swapped every few hundred milliseconds, nodes
//! stop and start, one node hangs, one answers 500s, one is slow, the config is reloaded
//! with a broken file, and the migration state is switched. Zero wrong bodies, zero failed
//! requests while a healthy replica exists; 502/503/504 as documented when none does.
//!
//! Bounded: 6 s of chaos by default; `PHOTOSRV_FAULT_SECS=600` for a release soak.

mod support;

use photosrv_config::ReplicaMode;
use photosrv_router::MigrationState;
use photosrv_testkit::{nginx_or_skip, Fault, FaultyNode, NginxNode, RouterBuilder};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::{body_for, client};

const KEYS: usize = 60;

fn key(i: usize) -> String {
    format!("photos/{}/{i}.jpg", i % 5)
}

fn size(i: usize) -> usize {
    2000 + i * 301
}

/// Random mode, then multihead (whose probes take their own path to the nodes), then random
/// with bodies copied by the client connection's task (`direct_bodies on`) and spliced
/// (`splice_bodies on`), one after the other: two suites at once would starve each other of
/// the machine's two cores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_never_serves_a_wrong_byte() {
    let Some(nginx) = nginx_or_skip("chaos_never_serves_a_wrong_byte") else {
        return;
    };
    let secs: u64 = std::env::var("PHOTOSRV_FAULT_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(6);
    for (mode, relay) in [
        (ReplicaMode::Random, "reader"),
        (ReplicaMode::Multihead, "reader"),
        (ReplicaMode::Random, "direct"),
        (ReplicaMode::Random, "splice"),
    ] {
        chaos(&nginx, mode, relay, secs).await;
    }
}

/// `relay`: who passes bodies on to clients, "reader", "direct" or "splice".
async fn chaos(nginx: &std::path::Path, mode: ReplicaMode, relay: &str, secs: u64) {
    let label = format!("{mode:?}, {relay}");
    // Two shards of three nginx replicas; every object on every node, so any ring and any
    // migration state finds it.
    let mut nodes: Vec<NginxNode> = (0..6).map(|_| NginxNode::start(nginx).unwrap()).collect();
    for node in &nodes {
        for i in 0..KEYS {
            node.seed(&key(i), &body_for(&key(i), size(i))).unwrap();
        }
    }
    let hang = FaultyNode::start(Fault::Hang).await.unwrap();
    let fail = FaultyNode::start(Fault::Fail500).await.unwrap();
    let slow = FaultyNode::start(Fault::SlowFiles(
        Duration::from_millis(200),
        nodes[0].root.clone(),
    ))
    .await
    .unwrap();
    let urls: Vec<String> = nodes.iter().map(NginxNode::url).collect();
    // The migration ring moves keys (chash over three shards, nodes regrouped), but like
    // the primary ring it keeps three nginx per shard, so one dropped from the roster and
    // one stopped still leave a healthy replica in either ring.
    let config = format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {} {} {} {} {}\nshard2 {} {} {} {}\n</shards>\n</dc1>\n<migration>\nchooser chash\n<dc1>\n<shards>\nshard1 {} {} {}\nshard2 {} {} {} {}\nshard3 {} {} {}\n</shards>\n</dc1>\n</migration>\n</photosrv>\n",
        urls[0], urls[1], urls[2], hang.url(), slow.url(),
        urls[3], urls[4], urls[5], fail.url(),
        urls[0], urls[1], urls[2],
        urls[3], urls[4], urls[5], fail.url(),
        urls[0], urls[1], urls[2],
    );
    let all_authorities: Vec<String> = nodes
        .iter()
        .map(NginxNode::authority)
        .chain([
            hang.addr.to_string(),
            fail.addr.to_string(),
            slow.addr.to_string(),
        ])
        .collect();
    let roster_of = move |skip: &[usize]| -> String {
        all_authorities
            .iter()
            .enumerate()
            .filter(|(i, _)| !skip.contains(i))
            .map(|(_, a)| format!("n {a}\n"))
            .collect()
    };
    let router = RouterBuilder::new(config.clone())
        .roster(roster_of(&[]))
        .mode(mode)
        .settings(|s| {
            s.upstream_timeout_ms = Some(400);
            s.migration_key = Some("k".into());
            s.direct_bodies = Some(relay == "direct");
            s.splice_bodies = Some(relay == "splice");
        })
        .start()
        .await
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (served, wrong, failed) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let failures = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..16)
        .map(|c| {
            let (stop, served, wrong, failed, failures, url) = (
                stop.clone(),
                served.clone(),
                wrong.clone(),
                failed.clone(),
                failures.clone(),
                router.url(),
            );
            tokio::spawn(async move {
                let http = client();
                let mut i = c;
                while !stop.load(Ordering::Relaxed) {
                    i = (i * 7 + 3) % KEYS;
                    let k = key(i);
                    match http.get(format!("{url}/{k}")).send().await {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(body) if body == body_for(&k, size(i)) => {
                                served.fetch_add(1, Ordering::Relaxed)
                            }
                            Ok(_) => wrong.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                failures.lock().unwrap().push(format!("{k}: body: {e}"));
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        },
                        Ok(r) => {
                            failures
                                .lock()
                                .unwrap()
                                .push(format!("{k}: {}", r.status()));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                        Err(e) => {
                            failures.lock().unwrap().push(format!("{k}: {e}"));
                            failed.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                }
            })
        })
        .collect();

    // The chaos, on a plain thread (stopping nginx blocks). Never more than one nginx of a
    // primary shard down at once, so a healthy replica always exists.
    let roster_path = router.roster_path();
    let config_path = router.config_path();
    let handle = router.router.clone();
    let chaos_roster = roster_of.clone();
    let chaos = std::thread::spawn(move || {
        let roster_of = chaos_roster;
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut step = 0usize;
        let mut down: Option<usize> = None;
        let mut actions = 0;
        while Instant::now() < deadline {
            step += 1;
            match step % 5 {
                0 => {
                    // Roster swap by rename: drop one nginx of each shard, or none.
                    let skip = if step.is_multiple_of(2) {
                        vec![step % 3, 3 + (step + 1) % 3]
                    } else {
                        vec![]
                    };
                    let temp = roster_path.with_extension("new");
                    std::fs::write(&temp, roster_of(&skip)).unwrap();
                    std::fs::rename(&temp, &roster_path).unwrap();
                }
                1 => match down.take() {
                    Some(i) => nodes[i].restart().unwrap(),
                    None => {
                        let i = (step / 5) % 6;
                        nodes[i].stop_gracefully();
                        down = Some(i);
                    }
                },
                2 => {
                    std::fs::write(
                        &config_path,
                        "<photosrv>\n<dc1>\n<shards>\nshard1 nonsense\n",
                    )
                    .unwrap();
                    std::thread::sleep(Duration::from_millis(150));
                    std::fs::write(&config_path, &config).unwrap();
                }
                3 => {
                    let state = [
                        MigrationState::Both,
                        MigrationState::New,
                        MigrationState::Old,
                    ][(step / 5) % 3];
                    handle.switch_migration(state, Some("k")).unwrap();
                }
                _ => {
                    let _ = handle.reload(true);
                }
            }
            actions += 1;
            std::thread::sleep(Duration::from_millis(250));
        }
        if let Some(i) = down {
            nodes[i].restart().unwrap();
        }
        handle
            .switch_migration(MigrationState::Old, Some("k"))
            .unwrap();
        (nodes, actions)
    });
    let (nodes, actions) = tokio::task::spawn_blocking(move || chaos.join().unwrap())
        .await
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let (served, wrong, failed) = (
        served.load(Ordering::Relaxed),
        wrong.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos, {label}: {actions} actions, {served} requests served right, {wrong} wrong, {failed} failed"
    );
    assert_eq!(wrong, 0, "{label}: wrong bodies served");
    assert_eq!(
        failed,
        0,
        "{label}: failed while a healthy replica existed: {:?}",
        failures.lock().unwrap().iter().take(5).collect::<Vec<_>>()
    );
    assert!(served > 100, "{label}: only {served} requests in {secs} s");

    // No healthy replica left in shard2 (its three nginx down, the 500 node remains): 502.
    // shard1 keeps the slow node and the hanging one.
    let mut nodes = nodes;
    for node in &mut nodes[3..] {
        node.stop();
    }
    let http = client();
    let table = router.router.table();
    let shard2_key = (0..KEYS)
        .map(key)
        .find(|k| table.primary.shard_of(k.as_bytes()).name == "shard2")
        .unwrap();
    let r = http
        .get(format!("{}/{shard2_key}", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502, "{label}");
    // The roster lists none of shard2's nodes: 503.
    std::fs::write(router.roster_path(), roster_of(&[3, 4, 5, 7])).unwrap();
    router.router.reload(false).unwrap();
    let r = http
        .get(format!("{}/{shard2_key}", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503, "{label}");
    // Only a hanging node left for shard1: 504.
    std::fs::write(router.roster_path(), roster_of(&[0, 1, 2, 8])).unwrap();
    router.router.reload(false).unwrap();
    let shard1_key = (0..KEYS)
        .map(key)
        .find(|k| table.primary.shard_of(k.as_bytes()).name == "shard1")
        .unwrap();
    let r = http
        .get(format!("{}/{shard1_key}", router.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504, "{label}");
}
