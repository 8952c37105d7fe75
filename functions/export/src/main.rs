//! Lambda `export`: export jobs from the exports queue, streamed into the bucket (SQS event
//! source, partial batch failures).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let (service, _aws) = labeling_lambda::service_from_env().await?;
    labeling_lambda::jobs::run_jobs(service).await
}
