//! shardsprites against a 2 x 2 nginx cluster, as an operator runs it.

use photosrv_testkit::{nginx_or_skip, NginxNode};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Setup {
    nodes: Vec<Vec<NginxNode>>,
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Setup {
    fn start(test: &str) -> Option<Setup> {
        let nginx = nginx_or_skip(test)?;
        let nodes: Vec<Vec<NginxNode>> = (0..2)
            .map(|_| (0..2).map(|_| NginxNode::start(&nginx).unwrap()).collect())
            .collect();
        let dir = tempfile::tempdir().unwrap();
        let mut text = String::from("<photosrv>\nchooser jump\n<dc1>\n<shards>\n");
        for (i, shard) in nodes.iter().enumerate() {
            text.push_str(&format!(
                "shard{} {} {}\n",
                i + 1,
                shard[0].url(),
                shard[1].url()
            ));
        }
        text.push_str("</shards>\n</dc1>\n</photosrv>\n");
        let config = dir.path().join("photosrv.cfg");
        std::fs::write(&config, text).unwrap();
        Some(Setup { nodes, dir, config })
    }

    /// Writes `n` local files under `files/` and returns their item paths (./files/...).
    fn files(&self, n: usize) -> Vec<String> {
        (0..n)
            .map(|i| {
                let item = format!("./images/{}/{i}.jpg", i % 10);
                let path = self.dir.path().join(&item);
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, content(i)).unwrap();
                item
            })
            .collect()
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        use std::io::Write as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardsprites"))
            .current_dir(self.dir.path())
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    /// The shard index (0-based) of a key, as the router computes it.
    fn shard_of(&self, key: &str) -> usize {
        let config = photosrv_config::Config::load(&self.config).unwrap();
        let dc = config.select(None).unwrap().primary;
        let names: Vec<&str> = dc.shards.iter().map(|s| s.name.as_str()).collect();
        photosrv_placement::Chooser::new(config.primary.chooser, &names).choose(key.as_bytes())
    }
}

fn content(i: usize) -> Vec<u8> {
    format!("file {i} ").repeat(50 + i % 17).into_bytes()
}

fn lines(out: &Output) -> BTreeSet<String> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

fn key(item: &str) -> &str {
    item.trim_start_matches("./")
}

#[test]
fn put_stores_every_replica_byte_exact() {
    let Some(s) = Setup::start("put_stores_every_replica") else {
        return;
    };
    let items = s.files(300);
    let out = s.run(&["--workers", "8", "put"], &items.join("\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(lines(&out).is_empty());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("300 items: 300 ok"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (i, item) in items.iter().enumerate() {
        let shard = s.shard_of(key(item));
        for node in &s.nodes[shard] {
            assert_eq!(
                std::fs::read(node.root.join(key(item))).unwrap(),
                content(i),
                "{item} on {}",
                node.url()
            );
        }
        for node in &s.nodes[1 - shard] {
            assert!(
                !node.root.join(key(item)).exists(),
                "{item} on the wrong shard"
            );
        }
    }
    // --check skips what is already everywhere.
    let list = s.dir.path().join("items");
    std::fs::write(&list, items.join("\n")).unwrap();
    let out = s.run(&["put", "--check", "--file", list.to_str().unwrap()], "");
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("300 skipped"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_stopped_node_fails_exactly_its_items_then_verify_and_repair_heal_them() {
    let Some(mut s) = Setup::start("stopped_node_repair") else {
        return;
    };
    let items = s.files(200);
    s.nodes[1][0].stop();
    let out = s.run(&["put"], &items.join("\n"));
    assert_eq!(out.status.code(), Some(1));
    let expected: BTreeSet<String> = items
        .iter()
        .filter(|i| s.shard_of(key(i)) == 1)
        .cloned()
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(
        lines(&out),
        expected,
        "stdout lists exactly the items of the stopped node's shard"
    );

    s.nodes[1][0].restart().unwrap();
    let keys: Vec<&str> = items.iter().map(|i| key(i)).collect();
    let out = s.run(&["verify"], &keys.join("\n"));
    assert_eq!(out.status.code(), Some(1));
    let missing: BTreeSet<String> = expected.iter().map(|i| key(i).to_owned()).collect();
    assert_eq!(lines(&out), missing, "verify finds the missing replicas");

    let out = s.run(&["repair"], &keys.join("\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = s.run(&["verify"], &keys.join("\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    for item in &expected {
        let i: usize = key(item)
            .rsplit('/')
            .next()
            .unwrap()
            .trim_end_matches(".jpg")
            .parse()
            .unwrap();
        assert_eq!(
            std::fs::read(s.nodes[1][0].root.join(key(item))).unwrap(),
            content(i)
        );
    }
    // A key on no replica cannot be repaired.
    let out = s.run(&["repair"], "nowhere/at-all.jpg\n");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out),
        BTreeSet::from(["nowhere/at-all.jpg".to_owned()])
    );
}

#[test]
fn delete_leaves_no_replica_and_dellocal_needs_yes_really() {
    let Some(s) = Setup::start("delete_and_dellocal") else {
        return;
    };
    let items = s.files(60);
    assert!(s.run(&["put"], &items.join("\n")).status.success());
    let keys: Vec<&str> = items.iter().map(|i| key(i)).collect();

    let foreign: BTreeSet<String> = items
        .iter()
        .filter(|i| s.shard_of(key(i)) != 0)
        .cloned()
        .collect();
    let out = s.run(&["dellocal", "--shard", "shard1"], &items.join("\n"));
    assert!(out.status.success());
    assert_eq!(
        lines(&out),
        foreign,
        "dellocal lists the files that do not belong on shard1"
    );
    assert!(
        items.iter().all(|i| s.dir.path().join(i).exists()),
        "nothing deleted without --yes-really"
    );
    let out = s.run(
        &["dellocal", "--shard", "shard1", "--yes-really"],
        &items.join("\n"),
    );
    assert!(out.status.success());
    for item in &items {
        assert_eq!(
            s.dir.path().join(item).exists(),
            !foreign.contains(item),
            "{item}"
        );
    }
    assert_eq!(
        s.run(&["dellocal", "--shard", "shard9"], "").status.code(),
        Some(2)
    );

    let out = s.run(&["delete"], &keys.join("\n"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for node in s.nodes.iter().flatten() {
        for k in &keys {
            assert!(!node.root.join(k).exists(), "{k} left on {}", node.url());
        }
    }
}

#[test]
fn fetch_stores_urls_under_their_path() {
    let Some(s) = Setup::start("fetch_urls") else {
        return;
    };
    let origin = &s.nodes[0][0];
    origin.seed("origin/photo.jpg", b"from the origin").unwrap();
    let url = format!("{}/origin/photo.jpg", origin.url());
    let out = s.run(
        &["fetch"],
        &format!("{url}\n{}/origin/missing.jpg\n", origin.url()),
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        lines(&out),
        BTreeSet::from([format!("{}/origin/missing.jpg", origin.url())])
    );
    let shard = s.shard_of("origin/photo.jpg");
    for node in &s.nodes[shard] {
        assert_eq!(
            std::fs::read(node.root.join("origin/photo.jpg")).unwrap(),
            b"from the origin"
        );
    }
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_shardsprites"))
        .args(["--config", "/nonexistent.cfg", "verify"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = Command::new(env!("CARGO_BIN_EXE_shardsprites"))
        .args(["frobnicate"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}
