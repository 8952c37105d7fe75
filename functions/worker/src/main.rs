//! The worker container (ECS on GPU capacity): long-polls its queues and runs the jobs they
//! carry with the one job runner (heartbeats while a job runs, backoff on failure, malformed
//! messages dropped), until SIGTERM: then the running job finishes or its message goes back.
//! The ML jobs arrive in a later stage; today it runs the job types that exist.

use std::time::Duration;

use labeling_host::{CancellationToken, Deletion, Policy, Polling, Runner};

/// One message at a time: a GPU job is long, and messages left on the queue go to whichever
/// worker (or new instance) is free first.
const POLLING: Polling = Polling {
    batch: 1,
    wait: Duration::from_secs(20),
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let config = labeling_lambda::Config::from_env()?;
    let (service, aws) = labeling_lambda::service(&config).await?;
    let runner = Runner::new(service, aws.queue, Policy::default(), Deletion::ByRunner);
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        labeling_host::terminated().await;
        on_signal.cancel();
    });
    tracing::info!(queues = ?config.worker_queues, "worker polling");
    runner
        .poll(&config.worker_queues, &POLLING, &shutdown)
        .await;
    tracing::info!("worker stopped");
    Ok(())
}
