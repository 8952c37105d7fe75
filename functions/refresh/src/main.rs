//! Lambda `refresh`: ingest and refresh jobs from the jobs queue (SQS event source, partial
//! batch failures).

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let config = labeling_lambda::Config::from_env()?;
    labeling_lambda::run_job_function(&config).await
}
