//! `photosrv demo`: a whole cluster on one machine, in one command, with nothing to set up.
//! Four storage nodes (2 shards x 2 replicas) and a router, in one process, on loopback;
//! everything lives in a temporary directory that is removed on Ctrl-C.

use crate::commands::{init_logging, stop_signal};
use clap::Args;
use photosrv_config::{Config, LogFormat, Settings};
use photosrv_router::{Router, RouterOptions};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;

/// `photosrv demo`.
#[derive(Args)]
pub struct DemoArgs {
    /// Where the router listens.
    #[arg(long, default_value = "127.0.0.1:8888")]
    listen: SocketAddr,
    /// Where the admin endpoints listen.
    #[arg(long, default_value = "127.0.0.1:8080")]
    admin_listen: SocketAddr,
}

/// The sample images: SVGs drawn here, so the demo needs no files of its own.
fn sample_images() -> Vec<(String, String)> {
    let colours = [
        ("sunrise", "#f4a261"),
        ("sea", "#2a9d8f"),
        ("forest", "#386641"),
        ("night", "#264653"),
        ("dune", "#e9c46a"),
        ("rose", "#e76f51"),
    ];
    colours
        .iter()
        .enumerate()
        .map(|(i, (name, colour))| {
            let svg = format!(
                "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"320\" height=\"200\">\
                 <rect width=\"320\" height=\"200\" fill=\"{colour}\"/>\
                 <circle cx=\"{}\" cy=\"100\" r=\"{}\" fill=\"#ffffff\" opacity=\"0.6\"/>\
                 <text x=\"16\" y=\"184\" font-family=\"sans-serif\" font-size=\"20\" fill=\"#ffffff\">photosrv demo: {name}</text></svg>\n",
                60 + i * 40,
                20 + i * 8
            );
            (format!("images/demo/{name}.svg"), svg)
        })
        .collect()
}

fn fail(message: String) -> ExitCode {
    eprintln!("photosrv demo: {message}");
    ExitCode::FAILURE
}

pub fn run(args: DemoArgs) -> ExitCode {
    init_logging(LogFormat::Text);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => return fail(format!("cannot start the runtime: {error}")),
    };
    runtime.block_on(demo(args))
}

async fn demo(args: DemoArgs) -> ExitCode {
    let stop = stop_signal();
    let busy = |addr: SocketAddr, what: &str, flag: &str, error: std::io::Error| {
        fail(format!("cannot listen on {addr} for the {what}: {error}. Is another photosrv running? Choose another address with {flag} 127.0.0.1:PORT"))
    };
    // Bind the public ports first: a busy port is the likeliest failure.
    let listener = match tokio::net::TcpListener::bind(args.listen).await {
        Ok(l) => l,
        Err(e) => return busy(args.listen, "router", "--listen", e),
    };
    let admin = match tokio::net::TcpListener::bind(args.admin_listen).await {
        Ok(l) => l,
        Err(e) => return busy(args.admin_listen, "admin endpoints", "--admin-listen", e),
    };
    let (router_addr, admin_addr) = match (listener.local_addr(), admin.local_addr()) {
        (Ok(a), Ok(b)) => (a, b),
        _ => return fail("cannot read the bound addresses".to_owned()),
    };
    let dir = match tempfile::Builder::new().prefix("photosrv-demo").tempdir() {
        Ok(dir) => dir,
        Err(e) => return fail(format!("cannot create a temporary directory: {e}")),
    };
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // Four storage nodes: shard1 = nodes 1 and 2, shard2 = nodes 3 and 4.
    let mut tasks = Vec::new();
    let mut nodes = Vec::new();
    for i in 1..=4 {
        let root = dir.path().join(format!("node{i}"));
        let started = async {
            std::fs::create_dir_all(&root)?;
            let storage = photosrv_storage::Storage::open(&root)?;
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let addr = listener.local_addr()?;
            Ok::<_, std::io::Error>((storage, listener, addr))
        };
        match started.await {
            Ok((storage, listener, addr)) => {
                tasks.push(tokio::spawn(photosrv_storage::serve(
                    listener,
                    storage,
                    stopped(stop_rx.clone()),
                )));
                nodes.push((addr, root));
            }
            Err(e) => return fail(format!("cannot start storage node {i}: {e}")),
        }
    }
    let config_path = dir.path().join("photosrv.cfg");
    let mut config_text = String::from(
        "# Written by `photosrv demo`.\n<photosrv>\n  chooser jump\n  <demo>\n    <shards>\n",
    );
    for (shard, pair) in nodes.chunks(2).enumerate() {
        let _ = writeln!(
            config_text,
            "      shard{} http://{} http://{}",
            shard + 1,
            pair[0].0,
            pair[1].0
        );
    }
    config_text.push_str("    </shards>\n  </demo>\n</photosrv>\n");
    let roster_path = dir.path().join("roster");
    let roster: String = nodes
        .iter()
        .enumerate()
        .map(|(i, (addr, _))| format!("node{} {addr}\n", i + 1))
        .collect();
    if let Err(e) = std::fs::write(&config_path, &config_text)
        .and_then(|()| std::fs::write(&roster_path, &roster))
    {
        return fail(format!("cannot write the config: {e}"));
    }
    let config = match Config::load(&config_path) {
        Ok(config) => config,
        Err(e) => return fail(format!("the generated config is invalid: {e}")),
    };
    let flags = Settings {
        listen: Some(router_addr),
        admin_listen: Some(admin_addr),
        roster: Some(roster_path.clone()),
        ..Settings::default()
    };
    let router = match Router::new(RouterOptions::resolve(&config, flags)) {
        Ok(router) => router,
        Err(e) => return fail(format!("cannot start the router: {e}")),
    };

    // Every sample image on both replicas of its shard, as a client would write it.
    let table = router.table();
    let samples = sample_images();
    for (key, svg) in &samples {
        let shard = table.primary.shard_of(key.as_bytes());
        for node in &shard.configured {
            let Some((_, root)) = nodes
                .iter()
                .find(|(addr, _)| addr.to_string() == node.addr.authority)
            else {
                continue;
            };
            let path = root.join(key);
            let written = path
                .parent()
                .map_or(Ok(()), std::fs::create_dir_all)
                .and_then(|()| std::fs::write(&path, svg));
            if let Err(e) = written {
                return fail(format!("cannot store {key}: {e}"));
            }
        }
    }
    drop(table);
    let reloader = router.spawn_reloader();
    tasks.push(tokio::spawn(photosrv_router::serve(
        listener,
        router.clone(),
        stopped(stop_rx.clone()),
    )));
    tasks.push(tokio::spawn(photosrv_router::serve_admin(
        admin,
        router.clone(),
        stopped(stop_rx),
    )));
    print_welcome(
        router_addr,
        admin_addr,
        &nodes,
        dir.path(),
        &samples,
        &router,
    );

    stop.await;
    let _ = stop_tx.send(true);
    for task in tasks {
        let _ = task.await;
    }
    reloader.stop().await;
    let path = dir.path().to_path_buf();
    if let Err(e) = dir.close() {
        return fail(format!("cannot remove {}: {e}", path.display()));
    }
    println!("photosrv demo: stopped; removed {}", path.display());
    ExitCode::SUCCESS
}

fn print_welcome(
    router: SocketAddr,
    admin: SocketAddr,
    nodes: &[(SocketAddr, std::path::PathBuf)],
    dir: &Path,
    samples: &[(String, String)],
    r: &Router,
) {
    let table = r.table();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "photosrv demo is running. Ctrl-C stops everything and removes {}",
        dir.display()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "  router         http://{router}/");
    let _ = writeln!(
        out,
        "  admin          http://{admin}/  (/metrics, /debug/vars, /ready, /route?key=, /config)"
    );
    for (i, (addr, root)) in nodes.iter().enumerate() {
        let _ = writeln!(
            out,
            "  storage node{}  http://{addr}/  (shard{}, files in {})",
            i + 1,
            i / 2 + 1,
            root.display()
        );
    }
    let _ = writeln!(
        out,
        "  config         {}",
        dir.join("photosrv.cfg").display()
    );
    let _ = writeln!(
        out,
        "  roster         {}  (edit it: the router reloads within a second)",
        dir.join("roster").display()
    );
    let _ = writeln!(out);
    let _ = writeln!(out, "Sample images (each on both replicas of its shard):");
    for (key, _) in samples {
        let shard = &table.primary.shard_of(key.as_bytes()).name;
        let _ = writeln!(out, "  http://{router}/{key}  ({shard})");
    }
    let first = &samples[0].0;
    let _ = writeln!(out);
    let _ = writeln!(out, "Try:");
    let _ = writeln!(out, "  curl -i http://{router}/{first}");
    let _ = writeln!(out, "  curl -I http://{router}/{first}");
    let _ = writeln!(out, "  curl -H 'Range: bytes=0-99' http://{router}/{first}");
    let _ = writeln!(out, "  curl 'http://{admin}/route?key={first}'");
    let _ = writeln!(out, "  curl -X PUT --data-binary @/etc/hostname http://{}/hello.txt   # store on a node directly", nodes[0].0);
    let _ = writeln!(out, "  curl http://{admin}/metrics");
    print!("{out}");
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
}
