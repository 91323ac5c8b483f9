//! `photosrv serve` as a process: SIGTERM under load, SIGHUP, JSON logs, SO_REUSEPORT.

use photosrv_testkit::{ChildGuard, Fault, FaultyNode};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const PAYLOAD: &[u8] = b"payload-0123456789-abcdefghijklmnopqrstuvwxyz";

/// A running `photosrv serve`, its client address, and its log lines as they come.
type Served = (ChildGuard, SocketAddr, Arc<Mutex<Vec<String>>>);

/// Starts `photosrv serve` on ephemeral ports and returns it with its client address, read
/// from its JSON log; the log lines keep flowing into the returned buffer.
fn serve(config: &std::path::Path) -> Served {
    let (child, serving, log) = serve_with(
        config,
        &[
            "--admin-listen",
            "127.0.0.1:0",
            "--grace-period-ms",
            "10000",
        ],
    );
    let addr = serving["listen"].as_str().unwrap().parse().unwrap();
    (child, addr, log)
}

/// Starts `photosrv serve --listen 127.0.0.1:0 --log-format json` with `flags` and returns
/// it with its "photosrv serving" line; its log lines, those before it included, keep
/// flowing into the returned buffer.
fn serve_with(
    config: &std::path::Path,
    flags: &[&str],
) -> (ChildGuard, serde_json::Value, Arc<Mutex<Vec<String>>>) {
    serve_under("", config, flags)
}

/// [`serve_with`], run by a shell that first runs `ulimit {limits}` unless `limits` is empty.
fn serve_under(
    limits: &str,
    config: &std::path::Path,
    flags: &[&str],
) -> (ChildGuard, serde_json::Value, Arc<Mutex<Vec<String>>>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_photosrv"));
    if !limits.is_empty() {
        command = Command::new("sh");
        command.args([
            "-c",
            &format!("ulimit {limits} && exec \"$0\" \"$@\""),
            env!("CARGO_BIN_EXE_photosrv"),
        ]);
    }
    let mut child = ChildGuard(
        command
            .arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .args(flags)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let (mut serving, mut before) = (None, Vec::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        let value: serde_json::Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        before.push(line);
        if value["message"] == "photosrv serving" {
            serving = Some(value);
            break;
        }
    }
    let log = Arc::new(Mutex::new(before));
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    (child, serving.expect("serve logged that it serves"), log)
}

/// A node answering PAYLOAD after `delay`, a one-shard config over it, and `photosrv serve`
/// on that config. Keep the node and the directory alive while the router runs.
async fn serve_one_node(delay: Duration) -> (FaultyNode, tempfile::TempDir, Served) {
    let node = FaultyNode::start(Fault::Slow(delay, PAYLOAD))
        .await
        .unwrap();
    let (dir, served) = serve_one_shard(&node.url());
    (node, dir, served)
}

/// A one-shard config over the node at `url`, in a directory of its own, and `photosrv
/// serve` on that config. Keep the directory alive while the router runs.
fn serve_one_shard(url: &str) -> (tempfile::TempDir, Served) {
    let (dir, config) = one_shard_config(url);
    let served = serve(&config);
    (dir, served)
}

/// A config of one shard over the node at `url`, in a directory of its own (keep it).
fn one_shard_config(url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("photosrv.cfg");
    let text =
        format!("<photosrv>\n<dc1>\n<shards>\nshard1 {url}\n</shards>\n</dc1>\n</photosrv>\n");
    std::fs::write(&config, text).unwrap();
    (dir, config)
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill")
        .arg(format!("-{name}"))
        .arg(child.id().to_string())
        .status()
        .unwrap()
        .success());
}

fn wait_exit(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        // The panic drops the child's guard, which kills it.
        assert!(
            Instant::now() <= deadline,
            "photosrv did not exit within {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Every flag of `serve` reaches the router, over the file's settings: the startup line says
/// what it runs with (not the migration key), and the admin endpoints it listens on show
/// the datacenter, the roster and the migration state in use, and take the key.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_serve_flag_takes_effect() {
    let dir = tempfile::tempdir().unwrap();
    let (config, roster, state) = (
        dir.path().join("photosrv.cfg"),
        dir.path().join("roster"),
        dir.path().join("migration-state"),
    );
    let shards = |nodes: &str| format!("<shards>\nshard1 {nodes}\n</shards>\n");
    let text = format!(
        "<photosrv>\nchooser jump\nhead_timeout_ms 0\nupstream_timeout_ms 100\n\
         <dc1>\n{}</dc1>\n<dc2>\n{}</dc2>\n\
         <migration>\nchooser jump\n<dc2>\n{}</dc2>\n</migration>\n</photosrv>\n",
        shards("http://127.0.0.1:9"),
        shards("http://127.0.0.1:10 http://127.0.0.1:11"),
        shards("http://127.0.0.1:12"),
    );
    std::fs::write(&config, text).unwrap();
    std::fs::write(&roster, "node 127.0.0.1:10\nnode 127.0.0.1:12\n").unwrap();
    std::fs::write(&state, "msBothConfigs").unwrap();
    let admin_port = photosrv_testkit::free_port().unwrap().to_string();
    let admin_listen = format!("127.0.0.1:{admin_port}");
    let (roster_flag, state_flag) = (roster.display().to_string(), state.display().to_string());
    // A head timeout with no mode would mean multihead (as in Go): the mode flag says random.
    let (mut child, serving, _log) = serve_with(
        &config,
        &[
            "--admin-listen",
            &admin_listen,
            "--dc",
            "dc2",
            "--roster",
            &roster_flag,
            "--mode",
            "random",
            "--head-timeout-ms",
            "150",
            "--connect-timeout-ms",
            "1234",
            "--upstream-timeout-ms",
            "4321",
            "--grace-period-ms",
            "7000",
            "--migration-key",
            "s3cret",
            "--migration-state",
            &state_flag,
        ],
    );
    let want = serde_json::json!({
        "admin": admin_listen,
        "mode": "Random",
        "dc": "dc2",
        "roster": roster_flag,
        "head_timeout_ms": 150,
        "connect_timeout_ms": 1234,
        "upstream_timeout_ms": 4321,
        "grace_period_ms": 7000,
        "migration_state": state_flag,
        "migration_switching": true,
    });
    for (field, value) in want.as_object().unwrap() {
        assert_eq!(&serving[field], value, "{field}: {serving}");
    }
    assert!(!serving.to_string().contains("s3cret"), "{serving}");

    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let admin = format!("http://{admin_listen}");
    let table = http
        .get(format!("{admin}/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let table: serde_json::Value = serde_json::from_str(&table).unwrap();
    assert_eq!(table["primary"]["datacenter"], "dc2", "{table}");
    assert_eq!(table["roster_hosts"], 2, "{table}");
    assert_eq!(table["migration_state"], "msBothConfigs", "{table}");
    let finish = http
        .post(format!("{admin}/migration/finish?key=s3cret"))
        .send()
        .await
        .unwrap();
    assert_eq!(finish.status(), 200);
    assert_eq!(std::fs::read_to_string(&state).unwrap(), "msNewConfig");
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_loses_no_request() {
    let (_node, _dir, (mut child, addr, log)) = serve_one_node(Duration::from_millis(150)).await;

    let clients: Vec<_> = (0..50)
        .map(|c| {
            tokio::spawn(async move {
                // A fresh connection per request: each is either refused (after the stop)
                // or accepted, and then it must be answered in full.
                let http = reqwest::Client::builder()
                    .no_proxy()
                    .pool_max_idle_per_host(0)
                    .timeout(Duration::from_secs(10))
                    .build()
                    .unwrap();
                let (mut ok, mut lost) = (0u32, Vec::new());
                for i in 0..400 {
                    match http.get(format!("http://{addr}/c{c}/{i}.jpg")).send().await {
                        Ok(r) if r.status() == 200 => match r.bytes().await {
                            Ok(body) if body == PAYLOAD => ok += 1,
                            other => lost.push(format!("body: {other:?}")),
                        },
                        Ok(r) => lost.push(format!("status {}", r.status())),
                        Err(e) if e.is_connect() => break,
                        Err(e) => lost.push(format!("{e:?}")),
                    }
                }
                (ok, lost)
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(600)).await;
    signal(&child, "TERM");
    let status =
        tokio::task::spawn_blocking(move || wait_exit(&mut child, Duration::from_secs(20)))
            .await
            .unwrap();
    let (mut ok, mut lost) = (0, Vec::new());
    for client in clients {
        let (o, l) = client.await.unwrap();
        ok += o;
        lost.extend(l);
    }
    assert!(status.success(), "exit status {status}");
    assert!(
        lost.is_empty(),
        "{} requests lost, first: {:?}",
        lost.len(),
        lost.first()
    );
    eprintln!("{ok} requests served, none lost, across SIGTERM");
    assert!(ok >= 50, "only {ok} requests were served before the stop");
    let log = log.lock().unwrap();
    let access: Vec<serde_json::Value> = log
        .iter()
        .filter(|l| l.contains("\"target\":\"photosrv::access\""))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        access.len() >= ok as usize,
        "one access line per request: {} lines for {ok} requests",
        access.len()
    );
    // Numbers, not strings, for log pipelines.
    for line in access.iter().filter(|l| l["status"] == 200) {
        assert_eq!(line["bytes"], PAYLOAD.len(), "{line}");
        assert!(line["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{line}");
    }
    assert!(log.iter().any(|l| l.contains("SIGTERM")), "{log:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_and_a_second_router_can_share_the_port() {
    let (_node, _dir, (mut child, addr, log)) = serve_one_node(Duration::from_millis(1)).await;
    signal(&child, "HUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !log.lock().unwrap().iter().any(|l| l.contains("reloaded")) {
        assert!(Instant::now() < deadline, "no reload logged after SIGHUP");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SO_REUSEPORT: a new process can bind the same port while this one runs.
    let second = photosrv_router::bind_reuseport(addr);
    assert!(second.is_ok(), "second bind: {:?}", second.err());
    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

/// The lines log pipelines read: one access line per request, with numbers as numbers, and
/// Go's "Not found" line (JSON after the words) for a key no replica has, and for nothing
/// else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_logged_as_log_pipelines_expect() {
    let files = tempfile::tempdir().unwrap();
    std::fs::write(files.path().join("here.jpg"), PAYLOAD).unwrap();
    let node = FaultyNode::start(Fault::SlowFiles(Duration::ZERO, files.path().to_owned()))
        .await
        .unwrap();
    let (_dir, (mut child, addr, log)) = serve_one_shard(&node.url());
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    // Each request's time as its client saw it, in ms: the router's own count lies within.
    let mut client_ms = Vec::new();
    for (path, status) in [("/here.jpg", 200), ("/missing.jpg", 404), ("/%00.jpg", 400)] {
        let sent = Instant::now();
        let response = http
            .get(format!("http://{addr}{path}"))
            .header("user-agent", "pipeline-test/1")
            .header("referer", "http://referrer.example/page")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        response.bytes().await.unwrap();
        client_ms.push(sent.elapsed().as_secs_f64() * 1000.0);
    }

    let lines = |target: &str| -> Vec<serde_json::Value> {
        let needle = format!("\"target\":\"{target}\"");
        log.lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&needle))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while lines("photosrv::access").len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", log.lock().unwrap());
        std::thread::sleep(Duration::from_millis(20));
    }
    let access = lines("photosrv::access");
    let [ok, missing, refused] = &access[..] else {
        panic!("one access line per request: {access:?}");
    };
    for ((line, path, status), client_ms) in [
        (ok, "/here.jpg", 200),
        (missing, "/missing.jpg", 404),
        (refused, "/%00.jpg", 400),
    ]
    .into_iter()
    .zip(client_ms)
    {
        assert_eq!(line["path"], path, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert!(
            line["ms"]
                .as_f64()
                .is_some_and(|ms| (0.0..=client_ms).contains(&ms)),
            "milliseconds, at most the client's {client_ms}: {line}"
        );
        assert!(line["client"].as_str().unwrap().starts_with("127.0.0.1:"));
    }
    assert_eq!(ok["bytes"], PAYLOAD.len(), "{ok}");
    assert_eq!(ok["node"], node.url(), "{ok}");
    assert_eq!(ok["shard"], "shard1", "{ok}");
    assert_eq!(ok["attempts"], 1, "{ok}");
    assert_eq!(refused["node"], "", "never forwarded: {refused}");

    let not_found = lines("photosrv::notfound");
    let [line] = &not_found[..] else {
        panic!("one Not found line, for the missing key: {not_found:?}");
    };
    let message = line["message"].as_str().unwrap();
    let fields: serde_json::Value =
        serde_json::from_str(message.strip_prefix("Not found: ").unwrap()).unwrap();
    assert_eq!(fields["UserAgent"], "pipeline-test/1");
    assert_eq!(fields["Referer"], "http://referrer.example/page");
    assert_eq!(fields["Status"], "404");
    assert_eq!(fields["URL"], "/missing.jpg");
    assert_eq!(fields["IP"], missing["client"]);

    signal(&child, "TERM");
    assert!(wait_exit(&mut child, Duration::from_secs(10)).success());
}

/// The soft limit on open files is raised to the hard limit, as Go's runtime does: a router
/// kept to the usual soft default (1024) would stop near a thousand clients.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let hard = Command::new("sh")
        .args(["-c", "ulimit -Hn"])
        .output()
        .unwrap();
    let hard: u64 = String::from_utf8_lossy(&hard.stdout)
        .trim()
        .parse()
        .unwrap();
    let (_dir, config) = one_shard_config("http://127.0.0.1:9");
    let soft = (hard / 2).min(256);
    let limits = format!("-Sn {soft}");
    let (child, serving, _log) = serve_under(&limits, &config, &["--admin-listen", "127.0.0.1:0"]);
    assert_eq!(serving["open_files"], hard, "{serving}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap();
    let fields: Vec<&str> = open_files.split_whitespace().collect();
    assert_eq!(
        fields[3..5],
        [hard.to_string(), hard.to_string()],
        "{open_files}"
    );
}

/// A router out of file descriptors answers 503 and blames no node: the node is not counted
/// as failed (nor ejected, which would send its keys elsewhere), and once descriptors are
/// free again the same request is served. The start warns that the limit is too low.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_file_descriptors_is_a_503_that_blames_no_node() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const LIMIT: usize = 40;
    let node = FaultyNode::start(Fault::Slow(Duration::ZERO, PAYLOAD))
        .await
        .unwrap();
    let url = node.url();
    let (_dir, config) = one_shard_config(&url);
    let limits = format!("-n {LIMIT}");
    let (child, serving, log) = serve_under(&limits, &config, &["--admin-listen", "127.0.0.1:0"]);
    assert!(
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("open files limit is below")),
        "{:?}",
        log.lock().unwrap()
    );
    let addr: SocketAddr = serving["listen"].as_str().unwrap().parse().unwrap();
    let admin = serving["admin"].as_str().unwrap().to_owned();
    let open = || {
        std::fs::read_dir(format!("/proc/{}/fd", child.id()))
            .unwrap()
            .count()
    };

    // Idle clients until the router cannot accept one for want of descriptors (the rest
    // wait in the listen backlog), and no connection to the node is open or kept yet.
    let mut clients = Vec::new();
    let out_of_descriptors = || {
        log.lock()
            .unwrap()
            .iter()
            .any(|l| l.contains("accept failed") && l.contains("Too many open files"))
    };
    while !out_of_descriptors() {
        assert!(clients.len() < 2 * LIMIT, "{:?}", log.lock().unwrap());
        clients.push(tokio::net::TcpStream::connect(addr).await.unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let first = clients.first_mut().unwrap();
    first
        .write_all(b"GET /a.jpg HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), first.read_to_end(&mut answer))
        .await
        .unwrap()
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.ends_with("out of file descriptors or memory\n"),
        "{answer}"
    );

    drop(clients);
    let deadline = Instant::now() + Duration::from_secs(10);
    while open() > LIMIT / 2 {
        assert!(
            Instant::now() < deadline,
            "{} descriptors still open",
            open()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let response = http
        .get(format!("http://{addr}/a.jpg"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.bytes().await.unwrap(), PAYLOAD);
    let metrics = http
        .get(format!("http://{admin}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        format!("photosrv_upstream_failures_total{{node=\"{url}\",kind=\"connect\"}} 0"),
        "photosrv_requests_total{method=\"GET\",status=\"503\",shard=\"shard1\"} 1".to_owned(),
        "photosrv_requests_total{method=\"GET\",status=\"200\",shard=\"shard1\"} 1".to_owned(),
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "no {line} in:\n{metrics}"
        );
    }
    let warned = log
        .lock()
        .unwrap()
        .iter()
        .filter(|l| l.contains("the router is out of file descriptors"))
        .count();
    assert_eq!(warned, 1, "{:?}", log.lock().unwrap());
}
