//! The `photosrv` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

fn photosrv() -> Command {
    Command::new(env!("CARGO_BIN_EXE_photosrv"))
}

fn testdata(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata")
        .join(name)
}

#[test]
fn check_config_accepts_the_go_examples_and_the_shipped_example() {
    for config in [
        testdata("go-examples/photosrv.cfg"),
        testdata("go-examples/photosrv-advanced.cfg"),
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/photosrv.cfg"),
    ] {
        let out = photosrv()
            .arg("check-config")
            .arg("--config")
            .arg(&config)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}: {}{}",
            config.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains(": ok: "), "{stdout}");
    }
}

/// check-config says what it checked: the roster (its hosts, or that it lists none and so
/// every node is live) and the migration ring.
#[test]
fn check_config_reports_the_roster_and_the_migration_ring() {
    let dir = tempfile::tempdir().unwrap();
    let (one_ring, two_rings) = (dir.path().join("one.cfg"), dir.path().join("two.cfg"));
    let primary =
        "<dc1>\n<shards>\nshard1 http://127.0.0.1:9001 http://127.0.0.1:9002\n</shards>\n</dc1>\n";
    std::fs::write(&one_ring, format!("<photosrv>\n{primary}</photosrv>\n")).unwrap();
    std::fs::write(
        &two_rings,
        format!(
            "<photosrv>\n{primary}<migration>\nchooser jump\n<dc7>\n<shards>\n\
             shard1 http://127.0.0.1:9003\nshard2 http://127.0.0.1:9004\n</shards>\n</dc7>\n\
             </migration>\n</photosrv>\n"
        ),
    )
    .unwrap();
    let (roster, empty) = (dir.path().join("roster"), dir.path().join("empty"));
    std::fs::write(&roster, "a 127.0.0.1:9001\nb 127.0.0.1:9003\n").unwrap();
    std::fs::write(&empty, "").unwrap();
    let check = |config: &Path, roster: Option<&Path>| {
        let mut command = photosrv();
        command.arg("check-config").arg("--config").arg(config);
        if let Some(roster) = roster {
            command.arg("--roster").arg(roster);
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    // chash: Go's default chooser.
    let serving = |config: &Path, live: usize| {
        format!(
            "{}: ok: 1 datacenter(s) (dc1); serving dc1 with chash: 1 shards, 2 nodes, {live} live",
            config.display()
        )
    };
    assert_eq!(
        check(&one_ring, None),
        format!(
            "{} (no roster: all live); no migration ring\n",
            serving(&one_ring, 2)
        )
    );
    assert_eq!(
        check(&two_rings, Some(&roster)),
        format!(
            "{} (roster {}: 2 hosts); migration ring: jump dc7 (2 shards)\n",
            serving(&two_rings, 1),
            roster.display()
        )
    );
    assert_eq!(
        check(&two_rings, Some(&empty)),
        format!(
            "{} (roster {} lists no host: all live); migration ring: jump dc7 (2 shards)\n",
            serving(&two_rings, 2),
            empty.display()
        )
    );
}

#[test]
fn check_config_lists_every_error_with_file_line_col() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bad.cfg");
    std::fs::write(&config, "<photosrv>\n  chooser jmp\n  <dc1>\n    <shards>\n      shardX http://a\n      shard2,w ftp://b\n    </shards>\n  </dc1>\n</photosrv>\n").unwrap();
    let out = photosrv()
        .arg("check-config")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let name = config.display();
    for expected in [
        format!("{name}:2:11: unknown chooser \"jmp\""),
        format!("{name}:5:7: shard name \"shardx\" must be shard<N>"),
        format!("{name}:6:14: weight \"w\" of shard2 is not a number"),
    ] {
        assert!(
            stderr.contains(&expected),
            "missing {expected:?} in:\n{stderr}"
        );
    }
    // A roster that lists none of the nodes is an error too.
    let roster = dir.path().join("roster");
    std::fs::write(&roster, "x 10.1.1.1:9001\n").unwrap();
    let out = photosrv()
        .arg("check-config")
        .arg("--config")
        .arg(testdata("go-examples/photosrv.cfg"))
        .arg("--roster")
        .arg(&roster)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("lists none of the"));
}

#[test]
fn route_prints_key_shard_and_nodes_from_args_and_stdin() {
    let config = testdata("go-examples/photosrv.cfg");
    let out = photosrv()
        .arg("route")
        .arg("--config")
        .arg(&config)
        .args(["images/hello.jpg", "/images//hello%2Ejpg?x=1"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines,
        [
            "images/hello.jpg\tshard1\thttp://node1:9001",
            "images/hello.jpg\tshard1\thttp://node1:9001"
        ]
    );

    let mut child = photosrv()
        .arg("route")
        .arg("--config")
        .arg(&config)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write as _;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"a\n\nimages/hotel/affiliate/hello.jpg\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 2);

    let out = photosrv()
        .arg("route")
        .arg("--config")
        .arg(&config)
        .arg("/../etc/passwd")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

/// `route --migration` places keys on the migration ring, with its own chooser and nodes.
#[test]
fn route_places_keys_on_the_migration_ring_when_asked() {
    use photosrv_placement::Chooser;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("two.cfg");
    std::fs::write(
        &config,
        "<photosrv>\nchooser chash\n<dc1>\n<shards>\nshard1 http://p1\nshard2 http://p2\n</shards>\n</dc1>\n\
         <migration>\nchooser jump\n<dc1>\n<shards>\nshard1 http://m1\nshard2 http://m2\nshard3 http://m3\n\
         </shards>\n</dc1>\n</migration>\n</photosrv>\n",
    )
    .unwrap();
    let keys: Vec<String> = (0..20).map(|i| format!("images/{i}.jpg")).collect();
    for (migration, kind, names, prefix) in [
        (false, "chash", &["shard1", "shard2"][..], "http://p"),
        (
            true,
            "jump",
            &["shard1", "shard2", "shard3"][..],
            "http://m",
        ),
    ] {
        let mut command = photosrv();
        command
            .arg("route")
            .arg("--config")
            .arg(&config)
            .args(&keys);
        if migration {
            command.arg("--migration");
        }
        let out = command.output().unwrap();
        assert!(out.status.success(), "{out:?}");
        let chooser = Chooser::new(kind.parse().unwrap(), names);
        let want: String = keys
            .iter()
            .map(|key| {
                let n = chooser.choose(key.as_bytes()) + 1;
                format!("{key}\tshard{n}\t{prefix}{n}\n")
            })
            .collect();
        assert_eq!(String::from_utf8(out.stdout).unwrap(), want, "{kind}");
    }
    let out = photosrv()
        .args(["route", "--migration", "--config"])
        .arg(testdata("go-examples/photosrv.cfg"))
        .arg("a.jpg")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no <migration> ring"));
}

/// `photosrv storage` serves a directory: a PUT is stored and read back, SIGTERM stops it
/// cleanly, and a root that does not exist is a clear error.
#[test]
fn storage_serves_a_directory_until_sigterm() {
    let root = tempfile::tempdir().unwrap();
    let mut child = photosrv_testkit::ChildGuard(
        photosrv()
            .arg("storage")
            .arg("--root")
            .arg(root.path())
            .args(["--listen", "127.0.0.1:0", "--log-format", "json"])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let listen = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|line| {
            let value: serde_json::Value = serde_json::from_str(&line).ok()?;
            (value["message"] == "storage node serving")
                .then(|| value["listen"].as_str().unwrap().to_owned())
        })
        .expect("the node logged where it listens");
    assert!(!listen.ends_with(":0"), "{listen}");
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let url = format!("http://{listen}/a/b.jpg");
    assert_eq!(http.put(&url).body("hello").send().unwrap().status(), 201);
    assert_eq!(
        std::fs::read(root.path().join("a/b.jpg")).unwrap(),
        b"hello"
    );
    assert_eq!(http.get(&url).send().unwrap().text().unwrap(), "hello");
    let status = stop(&mut child, "TERM", Duration::from_secs(10));
    assert!(status.success(), "{status}");

    let missing = root.path().join("missing");
    let out = photosrv()
        .arg("storage")
        .arg("--root")
        .arg(&missing)
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&missing.display().to_string()), "{stderr}");
}

/// Sends `signal` to a child we started, by its pid, and waits up to `limit` for it to exit
/// (a test that fails here drops the child's guard, which kills it).
fn stop(child: &mut Child, signal: &str, limit: Duration) -> ExitStatus {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "not stopped within {limit:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn demo_runs_a_cluster_and_ctrl_c_leaves_nothing_behind() {
    let mut child = photosrv_testkit::ChildGuard(
        photosrv()
            .args([
                "demo",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let (mut router, mut admin, mut dir, mut sample) =
        (String::new(), String::new(), PathBuf::new(), String::new());
    for line in lines.by_ref() {
        let line = line.unwrap();
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["router", url] => router = url.trim_end_matches('/').to_owned(),
            ["admin", url, ..] => admin = url.trim_end_matches('/').to_owned(),
            ["config", path] => dir = Path::new(path).parent().unwrap().to_path_buf(),
            [url, _shard] if url.starts_with("http://") && sample.is_empty() => {
                sample = (*url).to_owned()
            }
            ["Try:"] => break,
            _ => {}
        }
    }
    assert!(
        !router.is_empty() && !admin.is_empty() && !sample.is_empty(),
        "demo printed its URLs"
    );
    assert!(dir.exists());
    let http = reqwest::blocking::Client::builder()
        .no_proxy()
        .build()
        .unwrap();
    let response = http.get(&sample).send().unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/svg+xml");
    assert!(response.text().unwrap().starts_with("<svg"));
    assert_eq!(
        http.get(format!("{admin}/ready")).send().unwrap().status(),
        200
    );
    // The roster it wrote is the router's: a host taken out of it is seen within seconds,
    // as the welcome text promises.
    let roster_hosts = || {
        let text = http
            .get(format!("{admin}/config"))
            .send()
            .unwrap()
            .text()
            .unwrap();
        let table: serde_json::Value = serde_json::from_str(&text).unwrap();
        table["roster_hosts"].as_u64().unwrap()
    };
    assert_eq!(roster_hosts(), 4);
    let roster = dir.join("roster");
    let text = std::fs::read_to_string(&roster).unwrap();
    let fewer: String = text.lines().skip(1).map(|l| format!("{l}\n")).collect();
    std::fs::write(&roster, fewer).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while roster_hosts() != 3 {
        assert!(
            Instant::now() < deadline,
            "the roster's change was not seen"
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    let status = stop(&mut child, "INT", Duration::from_secs(20));
    assert!(status.success(), "demo exits 0 on Ctrl-C: {status}");
    assert!(!dir.exists(), "{} was removed", dir.display());
    assert!(
        http.get(&sample).send().is_err(),
        "nothing listens any more"
    );
}

#[test]
fn demo_on_a_busy_port_says_so() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let out = photosrv()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on 127.0.0.1:{port} for the router")),
        "{stderr}"
    );
    assert!(stderr.contains("--listen"), "{stderr}");
}
