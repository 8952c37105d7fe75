//! `labeling`: run the service on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use labeling_aws::AwsSettings;
use labeling_core::Actor;
use labeling_local::client::Client;
use labeling_local::{Local, Options, Store, demo};

#[derive(Parser)]
#[command(
    name = "labeling",
    version,
    about = "Serverless data labeling, on one machine"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API and run background jobs, on the embedded storage or on AWS.
    Serve(ServeArgs),
    /// Upload a folder of images into a dataset (created if missing), resuming where it stopped.
    Upload {
        folder: PathBuf,
        #[arg(long)]
        dataset: String,
        /// Files uploaded at once.
        #[arg(long, default_value_t = 8)]
        parallel: usize,
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "LABELING_SERVER")]
        server: String,
        #[arg(long, env = "LABELING_TOKEN")]
        token: String,
    },
    /// Export a project's labels through a running server and download them.
    Export {
        /// Project id or name.
        project: String,
        #[arg(long, default_value = "coco", value_parser = ["coco", "jsonl"])]
        format: String,
        #[arg(long)]
        out: PathBuf,
        /// Include images nobody labeled yet (COCO images without annotations).
        #[arg(long)]
        include_unlabeled: bool,
        #[arg(long, default_value = "http://127.0.0.1:8080", env = "LABELING_SERVER")]
        server: String,
        #[arg(long, env = "LABELING_TOKEN")]
        token: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "./labeling-data", env = "LABELING_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080", env = "LABELING_ADDR")]
    addr: SocketAddr,
    /// The first admin's token (only on a fresh data directory); generated if absent.
    #[arg(long, env = "LABELING_ADMIN_TOKEN")]
    admin_token: Option<String>,
    /// Do not create the demo project on a fresh data directory.
    #[arg(long)]
    no_demo: bool,
    /// `embedded` (SQLite, folders, in-process queue) or `aws` (DynamoDB, S3, SQS).
    #[arg(long, default_value = "embedded", value_parser = ["embedded", "aws"])]
    store: String,
    /// DynamoDB table (aws store).
    #[arg(long, env = "LABELING_TABLE", default_value = "labeling")]
    table: String,
    /// S3 bucket for the service's own objects, exports and the demo (aws store).
    #[arg(long, env = "LABELING_BUCKET", default_value = "labeling-data")]
    bucket: String,
    /// SQS queue of background jobs (aws store); its dead-letter queue is `<name>-dlq`.
    #[arg(long, env = "LABELING_JOBS_QUEUE", default_value = "labeling-jobs")]
    jobs_queue: String,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    region: String,
    /// Endpoint of an AWS emulator such as moto_server (aws store).
    #[arg(long, env = "LABELING_AWS_ENDPOINT")]
    aws_endpoint: Option<String>,
    /// Create the table, bucket and queues when missing (aws store).
    #[arg(long)]
    create_resources: bool,
}

/// The server allocates many small, short-lived values per request (JSON, items, keys);
/// mimalloc serves those markedly faster than the system allocator under concurrency.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,labeling_core=info".into()),
        )
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args).await,
        Command::Upload {
            folder,
            dataset,
            parallel,
            server,
            token,
        } => {
            let summary = Client::new(&server, &token)
                .upload(&folder, &dataset, parallel)
                .await?;
            println!(
                "dataset {dataset}: {} files uploaded ({} bytes), {} already there; use \"source\": \"dataset:{dataset}\" in a project",
                summary.uploaded, summary.bytes, summary.skipped
            );
            Ok(())
        }
        Command::Export {
            project,
            format,
            out,
            include_unlabeled,
            server,
            token,
        } => {
            let view = Client::new(&server, &token)
                .export(&project, &format, include_unlabeled, &out)
                .await?;
            println!(
                "wrote {} ({} items, {} annotations; also at {})",
                out.display(),
                view["progress"]["items_written"],
                view["progress"]["annotations_written"],
                view["location"].as_str().unwrap_or("?")
            );
            Ok(())
        }
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let mut options = Options::new(&args.data_dir);
    options.admin_token = args.admin_token;
    let demo_bucket = if args.store == "aws" {
        options.store = Store::Aws {
            settings: AwsSettings {
                table: args.table,
                bucket: args.bucket.clone(),
                jobs_queue: args.jobs_queue,
                region: args.region,
                endpoint: args.aws_endpoint,
            },
            create_resources: args.create_resources,
        };
        args.bucket
    } else {
        demo::DEMO_BUCKET.to_owned()
    };
    let local = Local::open(options).await?;
    let listener = tokio::net::TcpListener::bind(args.addr)
        .await
        .with_context(|| format!("binding {}", args.addr))?;
    let address = listener.local_addr()?;
    local.set_public_base(&format!("http://{address}"));
    let fresh = local.new_admin_token.is_some();
    let mut demo_project = None;
    if fresh && !args.no_demo {
        let admin = Actor::admin("admin");
        demo_project = Some(
            demo::create_demo(
                &local.service,
                local.blobs.as_ref(),
                &demo_bucket,
                &admin,
                24,
            )
            .await?,
        );
    }
    println!(
        "labeling is listening on http://{address} (data in {}, {} store)",
        args.data_dir.display(),
        args.store
    );
    if let Some(token) = &local.new_admin_token {
        println!("admin token (shown once, keep it): {token}");
    }
    if let Some(project) = demo_project {
        println!(
            "demo project {project} is ready: POST http://{address}/projects/{project}/tasks/checkout"
        );
    }
    local
        .serve(listener, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}
