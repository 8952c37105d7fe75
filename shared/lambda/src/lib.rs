//! What every Lambda function and the GPU worker container share: identity from the API
//! Gateway JWT authorizer, the service wired from the environment on the AWS adapters, and the
//! runners for HTTP (API Gateway payload v2) and SQS (partial batch failures).

pub mod identity;
pub mod jobs;
pub mod s3_events;

use std::sync::Arc;

use anyhow::Context;
use labeling_api::{AppState, router};
use labeling_aws::{Aws, AwsSettings};
use labeling_core::ports::SystemClock;
use labeling_core::{Service, ServiceConfig};

pub use identity::JwtClaims;

/// JSON logs, as CloudWatch reads them best; `RUST_LOG` filters.
pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_current_span(false)
        .without_time()
        .try_init();
}

/// The queues the functions use, from the environment (names, or URLs as the stack gives them).
pub struct Queues {
    pub jobs: String,
    pub exports: String,
}

impl Queues {
    pub fn from_env(settings: &AwsSettings) -> Self {
        Self {
            jobs: settings.jobs_queue.clone(),
            exports: std::env::var("LABELING_EXPORTS_QUEUE")
                .unwrap_or_else(|_| settings.jobs_queue.clone()),
        }
    }
}

/// The service on DynamoDB, S3 and SQS, configured from the environment.
pub async fn service_from_env() -> anyhow::Result<(Arc<Service>, Aws)> {
    let settings = AwsSettings::from_env()?;
    let aws = Aws::connect(&settings).await.context("connecting to AWS")?;
    Ok((Arc::new(service_on(&aws, &settings)), aws))
}

/// The service on already connected AWS adapters.
pub fn service_on(aws: &Aws, settings: &AwsSettings) -> Service {
    let queues = Queues::from_env(settings);
    let config = ServiceConfig {
        system_bucket: settings.bucket.clone(),
        jobs_queue: queues.jobs,
        exports_queue: queues.exports,
        allow_file_sources: false,
        ..ServiceConfig::default()
    };
    Service::new(
        aws.table.clone(),
        aws.blobs.clone(),
        aws.queue.clone(),
        Arc::new(SystemClock),
        config,
    )
}

/// The HTTP router with identities from the JWT authorizer. No local users, no local blob
/// serving: users live in the identity provider and images are served by S3.
pub fn http_app(service: Arc<Service>) -> axum::Router {
    router(AppState {
        service,
        authenticator: Arc::new(JwtClaims::from_env()),
    })
}

/// Serves `app` as a Lambda function when running in Lambda, else on `LABELING_ADDR`
/// (default 127.0.0.1:8080) for a try-out outside Lambda.
pub async fn run_http(app: axum::Router) -> anyhow::Result<()> {
    if std::env::var_os("AWS_LAMBDA_RUNTIME_API").is_some() {
        lambda_http::run(app)
            .await
            .map_err(|error| anyhow::anyhow!("lambda runtime: {error}"))
    } else {
        let addr = std::env::var("LABELING_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("binding {addr}"))?;
        tracing::info!(%addr, "serving outside Lambda");
        axum::serve(listener, app).await.context("serving HTTP")
    }
}
