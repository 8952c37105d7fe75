//! `labeling-bench`: measures the local service. `ingest` times the ingest job over many keys
//! on the embedded adapters; `checkout` drives the whole HTTP server with concurrent labelers.

mod checkout;
mod counting;
mod ingest;
mod stats;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "labeling-bench",
    about = "Benchmarks of the local labeling service"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time the ingest job (listing and manifest writing) over N empty `.jpg` keys.
    Ingest {
        #[arg(long, default_value_t = 500_000)]
        keys: usize,
    },
    /// Drive the HTTP server with concurrent labelers looping checkout then submit.
    Checkout {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest { keys } => ingest::run(keys).await,
        Command::Checkout {
            clients,
            items,
            seconds,
        } => checkout::run(clients, items, seconds).await,
    }
}
