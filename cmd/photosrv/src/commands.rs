//! The subcommands.

use crate::EXIT_CONFIG;
use clap::Args;
use photosrv_config::{Config, ConfigError, LogFormat, ReplicaMode, Roster, Settings};
use photosrv_placement::path::{routing_key, Rewriter};
use photosrv_placement::Chooser;
use photosrv_router::{Router, RouterOptions};
use std::io::BufRead;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

/// The config file and datacenter, shared by serve, check-config and route.
#[derive(Args)]
pub struct ConfigArgs {
    /// The config file.
    #[arg(long, short = 'c')]
    config: PathBuf,
    /// The datacenter (default: the config's `dc`, or its only one).
    #[arg(long)]
    dc: Option<String>,
}

impl ConfigArgs {
    /// The config, or every error printed and `exit` to return.
    fn load(&self, exit: u8) -> Result<Config, ExitCode> {
        Config::load(&self.config).map_err(|error| {
            print_config_error(&error);
            ExitCode::from(exit)
        })
    }
}

/// `photosrv serve`.
#[derive(Args)]
pub struct ServeArgs {
    #[command(flatten)]
    target: ConfigArgs,
    /// The roster of live hosts (overrides `roster` in the config).
    #[arg(long)]
    roster: Option<PathBuf>,
    /// Client-facing address (default 0.0.0.0:8888).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Admin address (default 127.0.0.1:8080).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
    /// Replica choice: random or multihead.
    #[arg(long)]
    mode: Option<ReplicaMode>,
    /// How long a multi-HEAD race waits (ms).
    #[arg(long)]
    head_timeout_ms: Option<u64>,
    /// TCP connect timeout to a node (ms).
    #[arg(long)]
    connect_timeout_ms: Option<u64>,
    /// Time from a request sent to a node to its response headers (ms).
    #[arg(long)]
    upstream_timeout_ms: Option<u64>,
    /// How long in-flight requests may finish after SIGTERM (ms).
    #[arg(long)]
    grace_period_ms: Option<u64>,
    /// The secret migration switching requires.
    #[arg(long, env = "PHOTOSRV_MIGRATION_KEY", hide_env_values = true)]
    migration_key: Option<String>,
    /// The file the migration state is kept in.
    #[arg(long)]
    migration_state: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long)]
    log_format: Option<LogFormat>,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
}

pub fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,notify=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().flatten_event(true).init(),
        LogFormat::Text => builder.init(),
    }
}

fn print_config_error(error: &ConfigError) {
    match error {
        ConfigError::Invalid(all) => {
            for diagnostic in all {
                eprintln!("{}", diagnostic.render());
            }
        }
        other => eprintln!("{other}"),
    }
}

/// Installs the SIGTERM and SIGINT handlers now (a signal that came before them would kill
/// the process), and returns a future that resolves when either arrives. Call it before
/// announcing that anything is up.
pub fn stop_signal() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let interrupt = signal(SignalKind::interrupt());
    async move {
        match (term, interrupt) {
            (Ok(mut term), Ok(mut interrupt)) => tokio::select! {
                _ = term.recv() => tracing::info!("SIGTERM: stopping"),
                _ = interrupt.recv() => tracing::info!("SIGINT: stopping"),
            },
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!("cannot install signal handlers ({e}): stop with SIGKILL");
                std::future::pending::<()>().await;
            }
        }
    }
}

/// The tokio runtime for `threads` workers (default: one per core), always the multi-thread
/// scheduler: with one thread it served 8-13% more 4 MiB requests than the current-thread one
/// (likely its LIFO slot: the client's task writes a chunk right after it was read), and as
/// many at 4 KiB (docs/benchmarks-history.md, "Sixth session").
fn build_runtime(threads: Option<usize>) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(threads) = threads {
        builder.worker_threads(threads.max(1));
    }
    builder.enable_all().build()
}

/// Raises the soft limit on open files to the hard limit, as Go's runtime has done for every
/// Go program since 1.19 (the Go photosrv included): the usual soft default, 1024, would
/// stop a router at about a thousand clients. Returns the limit in force (Linux never has
/// it unlimited: the kernel's `nr_open` caps it).
fn raise_open_files_limit() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        // Refused where the hard limit is above what the kernel allows (`nr_open`).
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return raised.current.unwrap_or(u64::MAX);
        }
    }
    limit.current.unwrap_or(u64::MAX)
}

pub fn serve(args: ServeArgs) -> ExitCode {
    let config = match args.target.load(EXIT_CONFIG) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let flags = Settings {
        listen: args.listen,
        admin_listen: args.admin_listen,
        roster: args.roster,
        dc: args.target.dc,
        mode: args.mode,
        head_timeout_ms: args.head_timeout_ms,
        connect_timeout_ms: args.connect_timeout_ms,
        upstream_timeout_ms: args.upstream_timeout_ms,
        grace_period_ms: args.grace_period_ms,
        migration_key: args.migration_key,
        migration_state: args.migration_state,
        log_format: args.log_format,
        ..Settings::default()
    };
    let options = RouterOptions::resolve(&config, flags);
    init_logging(options.log_format);
    let threads = args.threads;
    let router = match Router::new(options) {
        Ok(router) => router,
        Err(error) => {
            if let photosrv_router::StartError::Load(
                photosrv_router::ReloadError::Config(e) | photosrv_router::ReloadError::Roster(e),
            ) = &error
            {
                print_config_error(e);
            } else {
                eprintln!("photosrv: {error}");
            }
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match build_runtime(threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("photosrv: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(router)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("photosrv: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(router: Router) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use tokio::signal::unix::{signal, SignalKind};
    // Signal handlers first: a SIGHUP or SIGTERM sent as soon as we say we are up must not
    // meet the default action (which kills the process).
    let stop = stop_signal();
    let mut hup = signal(SignalKind::hangup()).context("cannot install the SIGHUP handler")?;
    let options = router.options().clone();
    let open_files = raise_open_files_limit();
    // Each client connection may hold a connection to a node as well.
    if open_files < 2 * options.max_connections as u64 {
        tracing::warn!(
            open_files,
            max_connections = options.max_connections,
            "the open files limit is below twice max_connections: past it, clients wait to be \
             accepted and requests get 503 (raise the hard limit: LimitNOFILE=, ulimit -Hn)"
        );
    }
    let listener = photosrv_router::bind_reuseport(options.listen)
        .with_context(|| format!("cannot listen on {}", options.listen))?;
    let admin = photosrv_router::bind_reuseport(options.admin_listen)
        .with_context(|| format!("cannot listen on {} (admin)", options.admin_listen))?;
    let _reloader = router.spawn_reloader();
    let hup_router = router.clone();
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading");
            let router = hup_router.clone();
            let _ = tokio::task::spawn_blocking(move || router.reload(true)).await;
        }
    });
    // What it runs with, flags over the file over the defaults: the key itself is not logged.
    let path_or_none = |path: &Option<PathBuf>| {
        path.as_ref()
            .map_or_else(|| "none".to_owned(), |p| p.display().to_string())
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        admin = %admin.local_addr()?,
        mode = ?options.mode,
        dc = %router.table().primary.datacenter,
        roster = %path_or_none(&options.roster_path),
        head_timeout_ms = options.head_timeout.as_millis() as u64,
        connect_timeout_ms = options.connect_timeout.as_millis() as u64,
        upstream_timeout_ms = options.upstream_timeout.as_millis() as u64,
        grace_period_ms = options.grace_period.as_millis() as u64,
        migration_state = %path_or_none(&options.migration_state),
        migration_switching = options.migration_key.is_some(),
        open_files,
        "photosrv serving"
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stopped| *stopped).await;
    };
    let admin_task = tokio::spawn(photosrv_router::serve_admin(
        admin,
        router.clone(),
        wait(stop_rx.clone()),
    ));
    let client_task = tokio::spawn(photosrv_router::serve(listener, router, wait(stop_rx)));
    stop.await;
    let _ = stop_tx.send(true);
    let _ = client_task.await;
    let _ = admin_task.await;
    tracing::info!("stopped");
    Ok(())
}

/// `photosrv check-config`.
#[derive(Args)]
pub struct CheckArgs {
    #[command(flatten)]
    target: ConfigArgs,
    /// A roster to check with it (default: the config's `roster`, if set).
    #[arg(long)]
    roster: Option<PathBuf>,
}

pub fn check_config(args: CheckArgs) -> ExitCode {
    let config = match args.target.load(1) {
        Ok(config) => config,
        Err(code) => return code,
    };
    for warning in &config.warnings {
        eprintln!("warning: {}", warning.render());
    }
    let roster_path = args
        .roster
        .or_else(|| config.settings.roster.as_ref().map(|p| config.resolve(p)));
    let roster = match &roster_path {
        Some(path) => match Roster::load(path) {
            Ok(roster) => roster,
            Err(error) => {
                print_config_error(&error);
                return ExitCode::FAILURE;
            }
        },
        None => Roster::all_live(),
    };
    let selection = match config.select(args.target.dc.as_deref()) {
        Ok(selection) => selection,
        Err(error) => {
            eprintln!("{}: {error}", args.target.config.display());
            return ExitCode::FAILURE;
        }
    };
    if let Err(error) =
        photosrv_router::RoutingTable::build(&config, &roster, args.target.dc.as_deref(), None)
    {
        eprintln!("{}: {error}", args.target.config.display());
        return ExitCode::FAILURE;
    }
    let dc = selection.primary;
    let nodes = dc.shards.iter().map(|s| s.nodes.len()).sum::<usize>();
    let live = dc
        .shards
        .iter()
        .flat_map(|s| &s.nodes)
        .filter(|n| roster.is_live(&n.authority))
        .count();
    let names: Vec<&str> = config
        .primary
        .datacenters
        .iter()
        .map(|d| d.name.as_str())
        .collect();
    let roster_note = match &roster_path {
        Some(path) if roster.is_empty() => {
            format!("roster {} lists no host: all live", path.display())
        }
        Some(path) => format!("roster {}: {} hosts", path.display(), roster.len()),
        None => "no roster: all live".to_owned(),
    };
    let migration = match (&config.migration, selection.migration) {
        (Some(ring), Some(m)) => format!(
            "migration ring: {} {} ({} shards)",
            ring.chooser,
            m.name,
            m.shards.len()
        ),
        _ => "no migration ring".to_owned(),
    };
    println!(
        "{}: ok: {} datacenter(s) ({}); serving {} with {}: {} shards, {} nodes, {} live ({}); {}",
        args.target.config.display(),
        names.len(),
        names.join(", "),
        dc.name,
        config.primary.chooser,
        dc.shards.len(),
        nodes,
        live,
        roster_note,
        migration
    );
    ExitCode::SUCCESS
}

/// `photosrv route`.
#[derive(Args)]
pub struct RouteArgs {
    #[command(flatten)]
    target: ConfigArgs,
    /// Place keys on the migration ring instead of the primary one.
    #[arg(long)]
    migration: bool,
    /// Keys, or paths starting with `/` (normalised like the router does). None: stdin.
    keys: Vec<String>,
}

pub fn route(args: RouteArgs) -> ExitCode {
    let config = match args.target.load(EXIT_CONFIG) {
        Ok(config) => config,
        Err(code) => return code,
    };
    let selection = match config.select(args.target.dc.as_deref()) {
        Ok(selection) => selection,
        Err(error) => {
            eprintln!("{}: {error}", args.target.config.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let (dc, kind) = if args.migration {
        match (selection.migration, &config.migration) {
            (Some(dc), Some(ring)) => (dc, ring.chooser),
            _ => {
                eprintln!(
                    "{}: the config has no <migration> ring",
                    args.target.config.display()
                );
                return ExitCode::from(EXIT_CONFIG);
            }
        }
    } else {
        (selection.primary, config.primary.chooser)
    };
    let names: Vec<&str> = dc.shards.iter().map(|s| s.name.as_str()).collect();
    let chooser = Chooser::new(kind, &names);
    let rewriter = Rewriter::new(config.rewrites.clone());
    let mut failed = false;
    let mut out = std::io::stdout().lock();
    let mut one = |key: &str| {
        let routed = if key.starts_with('/') {
            routing_key(key.as_bytes(), &rewriter)
        } else {
            Ok(key.as_bytes().to_vec())
        };
        match routed {
            Ok(bytes) => {
                let shard = &dc.shards[chooser.choose(&bytes)];
                let nodes: Vec<&str> = shard.nodes.iter().map(|n| n.url.as_str()).collect();
                use std::io::Write as _;
                let _ = writeln!(
                    out,
                    "{}\t{}\t{}",
                    String::from_utf8_lossy(&bytes),
                    shard.name,
                    nodes.join(" ")
                );
            }
            Err(error) => {
                eprintln!("{key}: {error}");
                failed = true;
            }
        }
    };
    if args.keys.is_empty() {
        for line in std::io::stdin().lock().lines().map_while(Result::ok) {
            let key = line.trim();
            if !key.is_empty() {
                one(key);
            }
        }
    } else {
        for key in &args.keys {
            one(key);
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// `photosrv storage`.
#[derive(Args)]
pub struct StorageArgs {
    /// The directory to store files in (must exist).
    #[arg(long)]
    root: PathBuf,
    /// The address to serve on.
    #[arg(long, default_value = "127.0.0.1:9001")]
    listen: SocketAddr,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: LogFormat,
    /// Worker threads (default: one per core).
    #[arg(long)]
    threads: Option<usize>,
    /// The largest PUT body taken, in bytes; a larger one gets 413.
    #[arg(long, default_value_t = photosrv_storage::DEFAULT_MAX_BODY_BYTES)]
    max_body_bytes: u64,
}

pub fn storage(args: StorageArgs) -> ExitCode {
    init_logging(args.log_format);
    let storage = match photosrv_storage::Storage::open_with_limit(&args.root, args.max_body_bytes)
    {
        Ok(storage) => storage,
        Err(error) => {
            eprintln!("photosrv storage: {}: {error}", args.root.display());
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let runtime = match build_runtime(args.threads) {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("photosrv storage: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let stop = stop_signal();
        let listener = match photosrv_router::bind_reuseport(args.listen) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!(
                    "photosrv storage: cannot listen on {}: {error}",
                    args.listen
                );
                return ExitCode::FAILURE;
            }
        };
        let listen = listener.local_addr().unwrap_or(args.listen);
        let open_files = raise_open_files_limit();
        tracing::info!(root = %storage.root().display(), %listen, open_files, "storage node serving");
        photosrv_storage::serve(listener, storage, stop).await;
        ExitCode::SUCCESS
    })
}
