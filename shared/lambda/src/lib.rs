//! What every Lambda function and the GPU worker container share: identity from the API
//! Gateway JWT authorizer, the service wired from the typed configuration on the AWS adapters,
//! and the runners for HTTP (API Gateway payload v2) and SQS (partial batch failures).

pub mod identity;
pub mod jobs;
pub mod s3_events;

use std::sync::Arc;

use anyhow::Context;
use labeling_api::auth::GroupRoles;
use labeling_api::web::SignIn;
use labeling_api::{AppState, router};
use labeling_aws::Aws;
use labeling_core::Service;
use labeling_core::ports::SystemClock;

pub use identity::JwtClaims;
pub use labeling_host::Config;

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

/// The service on DynamoDB, S3 and SQS, as `config` names them.
pub async fn service(config: &Config) -> anyhow::Result<(Arc<Service>, Aws)> {
    let aws = Aws::connect(&config.aws)
        .await
        .context("connecting to AWS")?;
    Ok((Arc::new(service_on(&aws, config)), aws))
}

/// The service on already connected AWS adapters.
pub fn service_on(aws: &Aws, config: &Config) -> Service {
    Service::new(
        Arc::new(labeling_host::Retrying::new(aws.table.clone())),
        aws.blobs.clone(),
        aws.queue.clone(),
        Arc::new(SystemClock),
        config.service_config(),
    )
}

/// The HTTP router with identities from the JWT authorizer. No local users, no local blob
/// serving: users live in the identity provider and images are served by S3. The web app
/// signs in with Cognito when the stack names its app client; refused at start when the
/// client id or endpoint is malformed.
pub fn http_app(service: Arc<Service>, config: &Config) -> anyhow::Result<axum::Router> {
    let sign_in = match &config.cognito_client_id {
        Some(client_id) => SignIn::cognito(&config.cognito_endpoint, client_id)
            .map_err(|reason| anyhow::anyhow!("LABELING_COGNITO_*: {reason}"))?,
        None => SignIn::Token,
    };
    Ok(router(AppState {
        service,
        authenticator: Arc::new(JwtClaims(GroupRoles::new(
            &config.admin_group,
            &config.labeler_group,
        ))),
        sign_in: Arc::new(sign_in),
    }))
}

/// Serves `app` as a Lambda function when running in Lambda, else on `config.addr` for a
/// try-out outside Lambda.
pub async fn run_http(config: &Config, app: axum::Router) -> anyhow::Result<()> {
    if config.in_lambda {
        lambda_http::run(app)
            .await
            .map_err(|error| anyhow::anyhow!("lambda runtime: {error}"))
    } else {
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .with_context(|| format!("binding {}", config.addr))?;
        tracing::info!(addr = %config.addr, "serving outside Lambda");
        axum::serve(listener, app).await.context("serving HTTP")
    }
}

/// A queue-driven function: the service's jobs, from the SQS event source, by the one runner.
pub async fn run_job_function(config: &Config) -> anyhow::Result<()> {
    let (service, aws) = service(config).await?;
    let runner = jobs::lambda_runner(Arc::new(jobs::QueuedWork(service)), aws.queue.clone());
    jobs::run_jobs(runner, config.aws.endpoint.clone()).await
}
