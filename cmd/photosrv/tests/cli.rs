//! The `photosrv` binary as a user runs it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

/// Sends SIGINT to a child we started, by its pid.
fn interrupt(pid: u32) {
    let status = Command::new("kill")
        .arg("-INT")
        .arg(pid.to_string())
        .status()
        .unwrap();
    assert!(status.success());
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

    interrupt(child.id());
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "demo did not stop within 20 s");
        std::thread::sleep(Duration::from_millis(50));
    };
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
