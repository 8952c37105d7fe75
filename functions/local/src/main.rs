//! `labeling`: run the service on one machine.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use labeling_aws::AwsSettings;
use labeling_core::Actor;
use labeling_local::client::Client;
use labeling_local::http::Limits;
use labeling_local::ml_setup::MlBackbone;
use labeling_local::{Local, Options, ServeOptions, Store, demo};

/// The shortest admin token accepted: a token is the only thing between the network and
/// every project, so it must not be guessable.
const MIN_ADMIN_TOKEN_CHARS: usize = 32;

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
// Parsed once at start: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
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
        #[arg(long, env = "LABELING_TOKEN", hide_env_values = true)]
        token: String,
    },
    /// Print the OpenAPI document of the HTTP API (the one `/openapi.json` serves) and exit.
    Openapi,
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
        #[arg(long, env = "LABELING_TOKEN", hide_env_values = true)]
        token: String,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    #[arg(long, default_value = "./labeling-data", env = "LABELING_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, default_value = "127.0.0.1:8080", env = "LABELING_ADDR")]
    addr: SocketAddr,
    /// The first admin's token (only on a fresh data directory); generated if absent. At least
    /// 32 printable ASCII characters, no spaces (e.g. `openssl rand -hex 24`).
    #[arg(long, env = "LABELING_ADMIN_TOKEN", hide_env_values = true)]
    admin_token: Option<String>,
    /// The base of signed image and upload URLs when clients reach the server by another
    /// address, such as a TLS proxy in front (embedded store): http(s), no query or fragment.
    /// Default: the bound address.
    #[arg(long, env = "LABELING_PUBLIC_URL", value_parser = parse_public_url)]
    public_url: Option<String>,
    /// Seconds a client has to send a request's whole header; also how long an idle
    /// keep-alive connection stays open.
    #[arg(long, env = "LABELING_HEADER_TIMEOUT", value_name = "SECONDS",
          default_value_t = Limits::default().header_read_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    header_timeout: u64,
    /// Seconds a connection may move no byte either way (a stalled body, an unread response)
    /// before it is closed.
    #[arg(long, env = "LABELING_IDLE_TIMEOUT", value_name = "SECONDS",
          default_value_t = Limits::default().idle_timeout.as_secs(),
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    idle_timeout: u64,
    /// Connections served at once; more wait in the accept queue. Keep it below the open-file
    /// limit (`ulimit -n`).
    #[arg(long, env = "LABELING_MAX_CONNECTIONS",
          default_value_t = Limits::default().max_connections as u64,
          value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    max_connections: u64,
    /// Do not create the demo project on a fresh data directory.
    #[arg(long)]
    no_demo: bool,
    /// ONNX Runtime's shared library for ML assist (`libonnxruntime.so.1.32.0` from the
    /// `onnxruntime` wheel). With --ml-backbone; without both, the server runs
    /// infra/models/prepare.sh (when run from a checkout) in the background on start.
    #[arg(long, env = "LABELING_ORT_DYLIB", requires = "ml_backbone")]
    ml_dylib: Option<PathBuf>,
    /// The ONNX backbone for ML assist (EfficientNet-Lite0 from infra/models/prepare.sh).
    #[arg(long, env = "LABELING_BACKBONE", requires = "ml_dylib")]
    ml_backbone: Option<PathBuf>,
    /// The ONNX detection backbone whose feature maps box prelabels read
    /// (`efficientnet-lite0-features.onnx` from infra/models/prepare.sh); without it, object
    /// detection projects are labeled by hand.
    #[arg(long, env = "LABELING_DETECTION_BACKBONE", requires = "ml_backbone")]
    ml_detection_backbone: Option<PathBuf>,
    /// Run without ML assist (no ONNX Runtime, no preparation).
    #[arg(long, conflicts_with_all = ["ml_dylib", "ml_backbone", "ml_detection_backbone"])]
    no_ml: bool,
    /// Where the service keeps its data.
    #[arg(long, value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
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
    /// Sign in with this Cognito user pool (`REGION_ID`): the web app asks for a user name and
    /// password, and the pool's tokens are accepted (groups `labeling-admins` and `labelers`
    /// give the roles) beside the users file's.
    #[arg(
        long,
        env = "LABELING_COGNITO_USER_POOL_ID",
        requires = "cognito_client_id"
    )]
    cognito_user_pool_id: Option<String>,
    /// The pool's app client (no secret; USER_PASSWORD_AUTH and REFRESH_TOKEN_AUTH allowed).
    #[arg(
        long,
        env = "LABELING_COGNITO_CLIENT_ID",
        requires = "cognito_user_pool_id"
    )]
    cognito_client_id: Option<String>,
    /// Cognito's endpoint, for an emulator (default: the pool's region on AWS).
    #[arg(
        long,
        env = "LABELING_COGNITO_ENDPOINT",
        requires = "cognito_user_pool_id"
    )]
    cognito_endpoint: Option<String>,
}

/// The `--store` flag, parsed once: clap refuses anything else, naming the choices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StoreKind {
    /// SQLite, folders and an in-process queue under the data directory.
    Embedded,
    /// DynamoDB, S3 and SQS (or an emulator at --aws-endpoint).
    Aws,
}

impl std::fmt::Display for StoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StoreKind::Embedded => "embedded",
            StoreKind::Aws => "aws",
        })
    }
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
        Command::Openapi => {
            println!("{}", labeling_api::openapi_json());
            Ok(())
        }
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

/// A `--public-url`: an http(s) URL without credentials, query or fragment (signed URLs append
/// their own path and query to it).
fn parse_public_url(text: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(text).map_err(|error| format!("not a URL: {error}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("the public URL must start with http:// or https://".to_owned());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("the public URL needs a host".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the public URL must have no query (?...) or fragment (#...)".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the public URL must carry no user name or password".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// Refuses a guessable admin token, or one that cannot travel in an `Authorization` header.
/// The message never repeats the token.
fn check_admin_token(token: &str) -> anyhow::Result<()> {
    if !token.chars().all(|c| c.is_ascii_graphic()) {
        anyhow::bail!(
            "the admin token (--admin-token or LABELING_ADMIN_TOKEN) may hold only printable ASCII \
             characters, without spaces or control characters"
        );
    }
    let length = token.chars().count();
    if length < MIN_ADMIN_TOKEN_CHARS {
        anyhow::bail!(
            "the admin token (--admin-token or LABELING_ADMIN_TOKEN) is too short: {length} \
             characters, at least {MIN_ADMIN_TOKEN_CHARS} are needed (e.g. `openssl rand -hex 24`), \
             or leave it out to have one generated"
        );
    }
    Ok(())
}

/// Where ML assist's backbone comes from: the given files, else the preparation script of the
/// checkout the server runs from, else none (and why).
fn ml_backbone(
    no_ml: bool,
    dylib: Option<PathBuf>,
    model: Option<PathBuf>,
    detection: Option<PathBuf>,
) -> MlBackbone {
    if no_ml {
        return MlBackbone::Off("the server was started with --no-ml".to_owned());
    }
    if let (Some(dylib), Some(model)) = (dylib, model) {
        return MlBackbone::Files {
            dylib,
            model,
            detection,
        };
    }
    let script = PathBuf::from("infra/models/prepare.sh");
    if script.is_file() {
        MlBackbone::Prepare { script }
    } else {
        MlBackbone::Off(
            "no backbone: pass --ml-dylib and --ml-backbone (see infra/models/prepare.sh)"
                .to_owned(),
        )
    }
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    if let Some(token) = &args.admin_token {
        check_admin_token(token)?;
    }
    let token_given = args.admin_token.is_some();
    let serve_options = ServeOptions {
        limits: Limits {
            header_read_timeout: Duration::from_secs(args.header_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            max_connections: usize::try_from(args.max_connections).unwrap_or(usize::MAX),
            ..Limits::default()
        },
        public_url: args.public_url.clone(),
    };
    let mut options = Options::new(&args.data_dir);
    options.admin_token = args.admin_token;
    options.ml_backbone = ml_backbone(
        args.no_ml,
        args.ml_dylib,
        args.ml_backbone,
        args.ml_detection_backbone,
    );
    if let (Some(pool), Some(client)) = (&args.cognito_user_pool_id, &args.cognito_client_id) {
        options.cognito = Some(labeling_local::cognito::CognitoSettings::new(
            pool,
            client,
            args.cognito_endpoint.as_deref(),
        )?);
    }
    let demo_bucket = if args.store == StoreKind::Aws {
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
    if !address.ip().is_loopback() {
        tracing::warn!(
            %address,
            "listening beyond this machine over plain HTTP: tokens and labels travel in clear; \
             put a TLS proxy in front and pass its address as --public-url"
        );
    }
    let public_base = serve_options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{address}"));
    local.set_public_base(&public_base);
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
    if serve_options.public_url.is_some() {
        println!("signed URLs point at {public_base}");
    }
    match (&local.new_admin_token, token_given) {
        (Some(_), true) => println!("admin token: the one you gave"),
        (Some(token), false) => println!("admin token (shown once, keep it): {token}"),
        (None, true) => println!(
            "admin token: unchanged (--admin-token only applies to a fresh data directory)"
        ),
        (None, false) => {}
    }
    if let Some(project) = demo_project {
        println!(
            "demo project {project} is ready: POST http://{address}/projects/{project}/tasks/checkout"
        );
    }
    local
        .serve_with(listener, serve_options, labeling_host::terminated())
        .await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use clap::Parser;

    use super::*;

    fn store(flag: &[&str]) -> Result<StoreKind, String> {
        let args = ["labeling", "serve"].iter().chain(flag);
        match Cli::try_parse_from(args)
            .map_err(|e| e.to_string())?
            .command
        {
            Command::Serve(args) => Ok(args.store),
            _ => Err("not serve".to_owned()),
        }
    }

    #[test]
    fn the_store_flag_is_one_of_two_stores_parsed_once() {
        assert!(store(&[]) == Ok(StoreKind::Embedded));
        assert!(store(&["--store", "aws"]) == Ok(StoreKind::Aws));
        let refused = store(&["--store", "s3"]).unwrap_err();
        assert!(
            refused.contains("embedded") && refused.contains("aws"),
            "{refused}"
        );
    }
}
