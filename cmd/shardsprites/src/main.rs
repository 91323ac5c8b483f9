//! `shardsprites`: bulk operations on a photosrv cluster, built on `photosrv-client`.
//!
//! Items come one per line from `--file` or stdin. Progress, rate and ETA go to stderr;
//! each failed item goes to stdout, one per line, so the output can be fed back in. The
//! exit status is 0 when every item succeeded, 1 when any failed, 2 on bad usage.

use clap::{Parser, Subcommand};
use futures_util::stream::{self, Stream, StreamExt};
use indicatif::{ProgressBar, ProgressStyle};
use photosrv_client::{Client, WritePolicy};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;

const EXIT_USAGE: u8 = 2;

#[derive(Parser)]
#[command(
    name = "shardsprites",
    version,
    about = "Bulk put/fetch/delete/verify/repair on a photosrv cluster"
)]
struct Cli {
    /// The photosrv config file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// The datacenter (default: the config's `dc`, or its only one).
    #[arg(long)]
    dc: Option<String>,
    /// Items processed at once.
    #[arg(long, default_value_t = 16)]
    workers: usize,
    /// Use the migration ring.
    #[arg(long)]
    migration: bool,
    /// Items, one per line (default: stdin).
    #[arg(long, global = true)]
    file: Option<PathBuf>,
    /// How many items stdin will bring, for the ETA.
    #[arg(long, global = true)]
    total: Option<u64>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = 60_000)]
    timeout_ms: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Store local files (items are paths; the key is the path without a leading ./).
    Put {
        /// Skip keys already present, with the same size, on every replica.
        #[arg(long)]
        check: bool,
        /// Write only to this node (items whose shard does not include it are skipped).
        #[arg(long)]
        one_node: Option<String>,
        /// Count an item stored when this many replicas took it (default: all).
        #[arg(long)]
        min_ok: Option<usize>,
    },
    /// Download URLs and store each under its URL path.
    Fetch {
        /// Fetch through this HTTP proxy.
        #[arg(long)]
        proxy: Option<String>,
        /// Count an item stored when this many replicas took it (default: all).
        #[arg(long)]
        min_ok: Option<usize>,
    },
    /// Delete keys from every replica.
    Delete,
    /// Print local files that do not belong on a shard; delete them with --yes-really.
    Dellocal {
        /// The shard this machine holds, e.g. shard3.
        #[arg(long)]
        shard: String,
        /// Really delete (otherwise only print).
        #[arg(long)]
        yes_really: bool,
    },
    /// HEAD every replica of every key; print keys missing somewhere or differing in size.
    Verify,
    /// Copy each missing or differing replica from a node that has the key.
    Repair,
}

/// What became of one item.
enum Outcome {
    Done,
    Skipped,
    /// Printed on stdout; with the reason on stderr.
    Failed(String),
    /// Printed on stdout, not a failure (dellocal's listing).
    Listed,
}

fn key_of_path(path: &str) -> String {
    path.trim_start_matches("./")
        .trim_start_matches('/')
        .to_owned()
}

type Items = Pin<Box<dyn Stream<Item = String> + Send>>;

async fn items(file: Option<&Path>) -> std::io::Result<Items> {
    let reader: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match file {
        Some(path) => Box::new(tokio::fs::File::open(path).await?),
        None => Box::new(tokio::io::stdin()),
    };
    let lines = tokio::io::BufReader::new(reader).lines();
    let stream = stream::unfold(lines, |mut lines| async move {
        loop {
            match lines.next_line().await {
                Ok(Some(line)) if line.trim().is_empty() => continue,
                Ok(Some(line)) => return Some((line.trim().to_owned(), lines)),
                _ => return None,
            }
        }
    });
    Ok(Box::pin(stream))
}

async fn count_lines(path: &Path) -> Option<u64> {
    let text = tokio::fs::read(path).await.ok()?;
    Some(
        text.split(|&b| b == b'\n')
            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
            .count() as u64,
    )
}

fn progress(total: Option<u64>, label: &str) -> ProgressBar {
    let bar = match total {
        Some(n) => ProgressBar::new(n).with_style(
            ProgressStyle::with_template(
                "{prefix} [{elapsed_precise}] {wide_bar} {pos}/{len} {per_sec} ETA {eta}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{prefix} [{elapsed_precise}] {spinner} {pos} {per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.set_prefix(label.to_owned());
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("shardsprites: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> ExitCode {
    let usage = |message: String| {
        eprintln!("shardsprites: {message}");
        ExitCode::from(EXIT_USAGE)
    };
    let config = match photosrv_config::Config::load(&cli.config) {
        Ok(config) => config,
        Err(e) => return usage(e.to_string()),
    };
    let min_ok = match &cli.command {
        Command::Put { min_ok, .. } | Command::Fetch { min_ok, .. } => *min_ok,
        _ => None,
    };
    let client = Client::builder(config)
        .dc(cli.dc.as_deref())
        .migration_ring(cli.migration)
        .write_policy(min_ok.map_or(WritePolicy::All, WritePolicy::MinOk))
        .timeout(Duration::from_millis(cli.timeout_ms))
        .pool_per_node(cli.workers.max(1))
        .build();
    let client = match client {
        Ok(client) => client,
        Err(e) => return usage(e.to_string()),
    };
    let fetcher = match &cli.command {
        Command::Fetch { proxy, .. } => {
            let builder = reqwest::Client::builder().timeout(Duration::from_millis(cli.timeout_ms));
            let builder = match proxy {
                Some(proxy) => match reqwest::Proxy::all(proxy) {
                    Ok(p) => builder.proxy(p),
                    Err(e) => return usage(format!("--proxy {proxy}: {e}")),
                },
                None => builder.no_proxy(),
            };
            match builder.build() {
                Ok(c) => Some(c),
                Err(e) => return usage(format!("HTTP client: {e}")),
            }
        }
        _ => None,
    };
    if let Command::Dellocal { shard, .. } = &cli.command {
        let known: Vec<&str> = client.shards().iter().map(|s| s.name.as_str()).collect();
        if !known.contains(&shard.as_str()) {
            return usage(format!(
                "--shard {shard}: no such shard (have {})",
                known.join(", ")
            ));
        }
    }
    if let Command::Put {
        one_node: Some(node),
        ..
    } = &cli.command
    {
        if !node.starts_with("http://") && !node.starts_with("https://") {
            return usage(format!(
                "--one-node {node}: expected a node URL such as http://node1:9001"
            ));
        }
    }
    let total = match (&cli.file, cli.total) {
        (_, Some(n)) => Some(n),
        (Some(path), None) => count_lines(path).await,
        (None, None) => None,
    };
    let input = match items(cli.file.as_deref()).await {
        Ok(input) => input,
        Err(e) => {
            return usage(format!(
                "{}: {e}",
                cli.file.as_deref().unwrap_or(Path::new("stdin")).display()
            ))
        }
    };
    let label = match &cli.command {
        Command::Put { .. } => "put",
        Command::Fetch { .. } => "fetch",
        Command::Delete => "delete",
        Command::Dellocal { .. } => "dellocal",
        Command::Verify => "verify",
        Command::Repair => "repair",
    };
    let bar = progress(total, label);
    let started = Instant::now();
    let command = &cli.command;
    let (client, fetcher) = (&client, fetcher.as_ref());
    let mut results = input
        .map(|item| async move {
            let outcome = process(command, client, fetcher, &item).await;
            (item, outcome)
        })
        .buffer_unordered(cli.workers.max(1));
    let (mut done, mut skipped, mut failed, mut listed) = (0u64, 0u64, 0u64, 0u64);
    let mut stdout = std::io::stdout().lock();
    while let Some((item, outcome)) = results.next().await {
        match outcome {
            Outcome::Done => done += 1,
            Outcome::Skipped => skipped += 1,
            Outcome::Listed => {
                listed += 1;
                let _ = writeln!(stdout, "{item}");
            }
            Outcome::Failed(why) => {
                failed += 1;
                let _ = writeln!(stdout, "{item}");
                bar.suspend(|| eprintln!("{label}: {why}"));
            }
        }
        bar.inc(1);
    }
    let _ = stdout.flush();
    bar.finish_and_clear();
    let elapsed = started.elapsed().as_secs_f64();
    let items = done + skipped + failed + listed;
    eprintln!(
        "{label}: {items} items: {done} ok, {skipped} skipped, {failed} failed{} in {elapsed:.1}s ({:.0}/s)",
        if listed > 0 { format!(", {listed} listed") } else { String::new() },
        items as f64 / elapsed.max(1e-9)
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

async fn process(
    command: &Command,
    client: &Client,
    fetcher: Option<&reqwest::Client>,
    item: &str,
) -> Outcome {
    match command {
        Command::Put {
            check, one_node, ..
        } => put(client, item, *check, one_node.as_deref()).await,
        Command::Fetch { .. } => match fetcher {
            Some(fetcher) => fetch(client, fetcher, item).await,
            None => Outcome::Failed(format!("{item}: no HTTP client")),
        },
        Command::Delete => match client.delete(item).await {
            Ok(_) => Outcome::Done,
            Err(e) => Outcome::Failed(e.to_string()),
        },
        Command::Dellocal { shard, yes_really } => {
            let key = key_of_path(item);
            if client.replicas(&key).name == *shard {
                return Outcome::Skipped;
            }
            if *yes_really {
                if let Err(e) = tokio::fs::remove_file(item).await {
                    return Outcome::Failed(format!("{item}: {e}"));
                }
            }
            Outcome::Listed
        }
        Command::Verify => verify(client, item).await,
        Command::Repair => repair(client, item).await,
    }
}

async fn put(client: &Client, path: &str, check: bool, one_node: Option<&str>) -> Outcome {
    let key = key_of_path(path);
    let len = match tokio::fs::metadata(path).await {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => return Outcome::Failed(format!("{path}: not a file")),
        Err(e) => return Outcome::Failed(format!("{path}: {e}")),
    };
    if let Some(node) = one_node {
        let node = node.trim_end_matches('/');
        if !client.replicas(&key).nodes.iter().any(|n| n == node) {
            return Outcome::Skipped;
        }
        if check
            && matches!(client.head_on(node, &key).await, Ok(Some(info)) if info.len == Some(len))
        {
            return Outcome::Skipped;
        }
        let body = match tokio::fs::read(path).await {
            Ok(body) => body,
            Err(e) => return Outcome::Failed(format!("{path}: {e}")),
        };
        return match client.put_to(node, &key, body.into()).await {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(e.to_string()),
        };
    }
    if check {
        let replicas = client.head_replicas(&key).await;
        if replicas
            .iter()
            .all(|(_, r)| matches!(r, Ok(Some(info)) if info.len == Some(len)))
        {
            return Outcome::Skipped;
        }
    }
    match client.put_file(&key, Path::new(path)).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn fetch(client: &Client, fetcher: &reqwest::Client, url: &str) -> Outcome {
    let Ok(parsed) = reqwest::Url::parse(url) else {
        return Outcome::Failed(format!("{url}: not a URL"));
    };
    let key = match photosrv_placement::path::normalize(parsed.path().as_bytes()) {
        Ok(path) => String::from_utf8_lossy(&path[1..]).into_owned(),
        Err(e) => return Outcome::Failed(format!("{url}: {e}")),
    };
    let response = match fetcher.get(parsed).send().await {
        Ok(r) if r.status().is_success() => r,
        Ok(r) => return Outcome::Failed(format!("{url}: HTTP {}", r.status().as_u16())),
        Err(e) => return Outcome::Failed(format!("{url}: {e}")),
    };
    let len = response.content_length();
    let body = response
        .bytes_stream()
        .map(|chunk| chunk.map_err(std::io::Error::other));
    match client.put_stream(&key, len, body).await {
        Ok(_) => Outcome::Done,
        Err(e) => Outcome::Failed(e.to_string()),
    }
}

async fn verify(client: &Client, key: &str) -> Outcome {
    let replicas = client.head_replicas(key).await;
    let mut problems = Vec::new();
    let mut sizes = Vec::new();
    for (node, result) in &replicas {
        match result {
            Ok(Some(info)) => sizes.push((node, info.len)),
            Ok(None) => problems.push(format!("missing on {node}")),
            Err(e) => problems.push(e.to_string()),
        }
    }
    if sizes.windows(2).any(|w| w[0].1 != w[1].1) {
        let listed: Vec<String> = sizes
            .iter()
            .map(|(n, l)| format!("{n}={}", l.map_or("?".into(), |l| l.to_string())))
            .collect();
        problems.push(format!("sizes differ: {}", listed.join(" ")));
    }
    if problems.is_empty() {
        Outcome::Done
    } else {
        Outcome::Failed(format!("{key}: {}", problems.join("; ")))
    }
}

async fn repair(client: &Client, key: &str) -> Outcome {
    let replicas = client.head_replicas(key).await;
    // The size most replicas agree on is taken as right.
    let mut counts: Vec<(Option<u64>, usize)> = Vec::new();
    for (_, result) in &replicas {
        if let Ok(Some(info)) = result {
            match counts.iter_mut().find(|(len, _)| *len == info.len) {
                Some(entry) => entry.1 += 1,
                None => counts.push((info.len, 1)),
            }
        }
    }
    let Some(&(good_len, _)) = counts.iter().max_by_key(|(_, n)| *n) else {
        return Outcome::Failed(format!("{key}: no replica has it"));
    };
    let Some(source) = replicas
        .iter()
        .find(|(_, r)| matches!(r, Ok(Some(info)) if info.len == good_len))
        .map(|(n, _)| n.clone())
    else {
        return Outcome::Failed(format!("{key}: no replica has it"));
    };
    let mut problems = Vec::new();
    let mut copied = 0;
    for (node, result) in &replicas {
        let healthy = matches!(result, Ok(Some(info)) if info.len == good_len);
        if healthy {
            continue;
        }
        match client.copy(key, &source, node).await {
            Ok(()) => copied += 1,
            Err(e) => problems.push(e.to_string()),
        }
    }
    match (problems.is_empty(), copied) {
        (true, 0) => Outcome::Skipped,
        (true, _) => Outcome::Done,
        (false, _) => Outcome::Failed(format!("{key}: {}", problems.join("; "))),
    }
}
