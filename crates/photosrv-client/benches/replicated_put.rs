//! Replicated puts vs the raw PUT capacity of the same nodes, in one run.
//!
//! Starts a 2 x 2 nginx cluster (from examples/nginx-storage.conf), then:
//! 1. raw: 20,000 PUTs of 4 KiB spread over the 4 nodes, one node each (the nodes' capacity);
//! 2. replicated: 10,000 files of 4 KiB through `Client::put`, each written to both
//!    replicas of its shard (20,000 PUTs as well).
//!
//! Same concurrency for both. Prints files/s, PUT/s and the ratio files/s / raw PUT/s
//! (target >= 0.5: each file costs two PUTs). `cargo bench -p photosrv-client`.

use bytes::Bytes;
use futures_util::stream::{self, StreamExt};
use photosrv_client::Client;
use photosrv_testkit::{nginx_binary, NginxNode};
use std::path::Path;
use std::time::Instant;

const FILES: usize = 10_000;
const SIZE: usize = 4096;
const CONCURRENCY: usize = 64;

fn main() {
    let Some(nginx) = nginx_binary() else {
        eprintln!("replicated_put: skipped: nginx not found");
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let nodes: Vec<NginxNode> = (0..4).map(|_| NginxNode::start(&nginx).unwrap()).collect();
    let urls: Vec<String> = nodes.iter().map(NginxNode::url).collect();
    let config = format!(
        "<photosrv>\nchooser jump\n<dc1>\n<shards>\nshard1 {} {}\nshard2 {} {}\n</shards>\n</dc1>\n</photosrv>\n",
        urls[0], urls[1], urls[2], urls[3]
    );
    let config = photosrv_config::Config::parse(Path::new("bench.cfg"), config.as_bytes()).unwrap();
    let body = Bytes::from(vec![b'x'; SIZE]);

    runtime.block_on(async {
        let http = reqwest::Client::builder().no_proxy().pool_max_idle_per_host(CONCURRENCY).build().unwrap();
        // Warm up both paths a little.
        for i in 0..200 {
            let _ = http.put(format!("{}/warm/{i}", urls[i % 4])).body(body.clone()).send().await;
        }
        let raw_puts = FILES * 2;
        let started = Instant::now();
        let failures = stream::iter(0..raw_puts)
            .map(|i| {
                let (http, body, url) = (http.clone(), body.clone(), format!("{}/raw/{}/{i}.bin", urls[i % 4], i % 100));
                async move { http.put(url).body(body).send().await.map(|r| r.status().is_success()).unwrap_or(false) }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await;
        let raw_secs = started.elapsed().as_secs_f64();
        assert_eq!(failures, 0, "raw PUTs failed");
        let raw_rate = raw_puts as f64 / raw_secs;

        let client = Client::builder(config).pool_per_node(CONCURRENCY).build().unwrap();
        let started = Instant::now();
        let failures = stream::iter(0..FILES)
            .map(|i| {
                let (client, body) = (client.clone(), body.clone());
                async move { client.put(&format!("replicated/{}/{i}.bin", i % 100), body).await.is_ok() }
            })
            .buffer_unordered(CONCURRENCY)
            .filter(|ok| std::future::ready(!ok))
            .count()
            .await;
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(failures, 0, "replicated puts failed");
        let files_rate = FILES as f64 / secs;
        println!("raw PUT capacity:   {raw_puts} PUTs of {SIZE} B in {raw_secs:.2} s = {raw_rate:.0} PUT/s");
        println!("replicated put:     {FILES} files x 2 replicas in {secs:.2} s = {files_rate:.0} files/s ({:.0} PUT/s)", files_rate * 2.0);
        println!("ratio files/s / raw PUT/s = {:.2} (target >= 0.50; 0.50 means replication costs nothing beyond its two writes)", files_rate / raw_rate);
    });
}
