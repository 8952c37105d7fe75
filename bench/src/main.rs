//! `labeling-bench`: measures the local service. `ingest` times the ingest job over many keys
//! on the embedded adapters; `checkout` drives the whole HTTP server with concurrent labelers;
//! `contention` measures one project's labels a second on a DynamoDB-like table; `featurize`
//! measures the ML backbone's images a second.

mod checkout;
mod contention;
mod detect;
mod export;
mod featurize;
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
        /// Then add this many new files and time the incremental refresh that picks them up.
        #[arg(long)]
        refresh: Option<usize>,
    },
    /// Export a project of labeled images as COCO; compare with label-studio-converter.
    Export {
        #[arg(long, default_value_t = 500_000)]
        images: u64,
        #[arg(long, default_value_t = 4)]
        boxes: u64,
        /// Path of the `label-studio-converter` executable (from PyPI) to compare with.
        #[arg(long)]
        peer: Option<std::path::PathBuf>,
        /// Run the peer on only this many images and scale its time linearly.
        #[arg(long)]
        peer_images: Option<u64>,
    },
    /// (internal) The export itself, in a process of its own so its peak memory is measured.
    #[command(hide = true)]
    ExportChild {
        #[arg(long)]
        data_dir: std::path::PathBuf,
        #[arg(long)]
        project: String,
    },
    /// Drive the HTTP server with concurrent labelers looping checkout then submit.
    Checkout {
        #[arg(long, default_value_t = 32)]
        clients: usize,
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// Run on DynamoDB, S3 and SQS at this emulator endpoint (moto_server) instead of the
        /// embedded store.
        #[arg(long)]
        aws_endpoint: Option<String>,
    },
    /// Labels a second one project sustains on a DynamoDB-like table (transaction conflicts,
    /// per-item throttling), with conflicts, retries and throttles per label.
    Contention {
        /// Client counts, one run each.
        #[arg(long, value_delimiter = ',', default_values_t = [32, 128])]
        clients: Vec<usize>,
        #[arg(long, default_value_t = 20_000)]
        items: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// How long a transaction holds its items, in milliseconds.
        #[arg(long, default_value_t = 2)]
        hold_ms: u64,
    },
    /// Images a second of the ML backbone on N 640x480 JPEGs, against ONNX Runtime alone and
    /// Python onnxruntime + Pillow (paths from `eval "$(./infra/models/prepare.sh)"`).
    Featurize {
        #[arg(long, default_value_t = 256)]
        images: usize,
        #[arg(long, value_delimiter = ',', default_values_t = [1, 8, 32])]
        batch_sizes: Vec<usize>,
        #[arg(long, env = "LABELING_ORT_DYLIB")]
        ort_dylib: std::path::PathBuf,
        #[arg(long, env = "LABELING_BACKBONE")]
        backbone: std::path::PathBuf,
        #[arg(long, env = "LABELING_ML_PYTHON")]
        python: std::path::PathBuf,
        #[arg(long, env = "LABELING_SAMPLE_IMAGES")]
        samples: std::path::PathBuf,
    },
    /// Box prelabels' cost: training time on N labeled pasted scenes and inference images per
    /// second, the head's share of the detection backbone, and held-out AP.
    Detect {
        #[arg(long, default_value_t = 1000)]
        images: usize,
        #[arg(long, default_value_t = 200)]
        held_out: usize,
        #[arg(long, env = "LABELING_ORT_DYLIB")]
        ort_dylib: std::path::PathBuf,
        #[arg(long, env = "LABELING_DETECTION_BACKBONE")]
        detection_backbone: std::path::PathBuf,
        #[arg(long, env = "LABELING_ML_PYTHON")]
        python: std::path::PathBuf,
        /// The scene generator.
        #[arg(long, default_value = "tests/python/scenes.py")]
        scenes_script: std::path::PathBuf,
    },
}

/// The server allocates many small, short-lived values per request (JSON, items, keys);
/// mimalloc serves those markedly faster than the system allocator under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Ingest { keys, refresh } => ingest::run(keys, refresh).await,
        Command::Export {
            images,
            boxes,
            peer,
            peer_images,
        } => export::run(images, boxes, peer, peer_images).await,
        Command::ExportChild { data_dir, project } => export::run_child(&data_dir, &project).await,
        Command::Checkout {
            clients,
            items,
            seconds,
            aws_endpoint,
        } => checkout::run(clients, items, seconds, aws_endpoint).await,
        Command::Contention {
            clients,
            items,
            seconds,
            hold_ms,
        } => contention::run(clients, items, seconds, hold_ms).await,
        Command::Featurize {
            images,
            batch_sizes,
            ort_dylib,
            backbone,
            python,
            samples,
        } => featurize::run(
            images,
            &batch_sizes,
            &featurize::Paths {
                dylib: ort_dylib,
                model: backbone,
                python,
                samples,
            },
        ),
        Command::Detect {
            images,
            held_out,
            ort_dylib,
            detection_backbone,
            python,
            scenes_script,
        } => detect::run(
            images,
            held_out,
            &detect::Paths {
                dylib: ort_dylib,
                model: detection_backbone,
                python,
                script: scenes_script,
            },
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::CommandFactory;

    use super::Cli;

    fn about(subcommand: &str) -> String {
        Cli::command()
            .find_subcommand(subcommand)
            .and_then(|command| command.get_about())
            .map(ToString::to_string)
            .unwrap_or_default()
    }

    #[test]
    fn each_subcommand_is_described_by_its_own_line() {
        assert!(
            about("ingest").starts_with("Time the ingest job"),
            "{}",
            about("ingest")
        );
        assert!(
            about("export").starts_with("Export a project"),
            "{}",
            about("export")
        );
        assert!(
            !about("export").contains("checkout"),
            "the checkout description is not under export: {}",
            about("export")
        );
        assert!(
            about("checkout").starts_with("Drive the HTTP server"),
            "{}",
            about("checkout")
        );
    }

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }
}
