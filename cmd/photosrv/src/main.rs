//! `photosrv`: the router daemon and its tools. Thin: flags, logging, then the library.

mod commands;
mod demo;

use clap::{Parser, Subcommand};
use std::process::ExitCode;

/// Exit status for a bad config or bad usage (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;

#[derive(Parser)]
#[command(
    name = "photosrv",
    version,
    about = "A consistently hashed HTTP router for static content"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the router.
    Serve(commands::ServeArgs),
    /// Check a config (and roster): exit 0 with a summary, or 1 with every error.
    CheckConfig(commands::CheckArgs),
    /// Print the shard and nodes of each key: KEY<TAB>SHARD<TAB>NODE NODE...
    Route(commands::RouteArgs),
    /// Run one storage node serving the files under a directory.
    Storage(commands::StorageArgs),
    /// Run a whole local cluster (4 storage nodes, a router) with sample images.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => commands::serve(args),
        Command::CheckConfig(args) => commands::check_config(args),
        Command::Route(args) => commands::route(args),
        Command::Storage(args) => commands::storage(args),
        Command::Demo(args) => demo::run(args),
    }
}
