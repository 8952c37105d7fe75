//! The worker container (ECS on GPU capacity): long-polls its queues and runs the jobs they
//! carry, extending a message's visibility while it works and leaving failures to the queue's
//! redrive policy. The ML jobs arrive in a later stage; today it runs the job types that exist.

use std::time::Duration;

use labeling_core::ports::Queue;

const VISIBILITY: Duration = Duration::from_secs(900);
/// How often a running job's message is made invisible for another [`VISIBILITY`], so a long
/// job is never handed to a second worker while this one is alive.
const HEARTBEAT: Duration = Duration::from_secs(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    labeling_lambda::init_tracing();
    let (service, aws) = labeling_lambda::service_from_env().await?;
    let queues: Vec<String> = std::env::var("LABELING_WORKER_QUEUES")
        .unwrap_or_else(|_| {
            std::env::var("LABELING_ML_QUEUE")
                .unwrap_or_else(|_| service.config().jobs_queue.clone())
        })
        .split(',')
        .map(str::to_owned)
        .collect();
    tracing::info!(?queues, "worker polling");
    loop {
        for queue in &queues {
            let messages = match aws
                .queue
                .receive(queue, 1, VISIBILITY, Duration::from_secs(20))
                .await
            {
                Ok(messages) => messages,
                Err(error) => {
                    tracing::error!(%error, queue, "receive failed");
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    continue;
                }
            };
            for message in messages {
                let job = service.run_job(&message.body);
                tokio::pin!(job);
                let mut heartbeat =
                    tokio::time::interval_at(tokio::time::Instant::now() + HEARTBEAT, HEARTBEAT);
                let outcome = loop {
                    tokio::select! {
                        outcome = &mut job => break outcome,
                        _ = heartbeat.tick() => {
                            if let Err(error) = aws
                                .queue
                                .extend_visibility(queue, &message.receipt, VISIBILITY)
                                .await
                            {
                                tracing::warn!(%error, message_id = %message.id, "could not extend the job's visibility");
                            }
                        }
                    }
                };
                match outcome {
                    Ok(()) => {
                        if let Err(error) = aws.queue.delete(queue, &message.receipt).await {
                            tracing::warn!(%error, "could not delete a finished job");
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, message_id = %message.id, "job failed; the queue will retry it")
                    }
                }
            }
        }
    }
}
