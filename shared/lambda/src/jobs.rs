//! Queue-driven work: SQS event source mappings call a function with a batch; each message runs
//! in its own span and failures are reported per message, so only those are retried.

use std::sync::Arc;

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use labeling_core::Service;
use labeling_core::usecases::ingest::JobError;
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument;

/// Runs every message of the batch; returns the ids of those to retry.
pub async fn handle_batch(service: &Service, event: SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    for record in event.records {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.unwrap_or_default();
        // Jobs count their own runs and give up on the last one the queue allows (ingest and
        // export records hold the count): the receive count is for the logs.
        let receive_count = record
            .attributes
            .get("ApproximateReceiveCount")
            .cloned()
            .unwrap_or_default();
        let span = tracing::info_span!("job", message_id = %id, %receive_count);
        // The uploads queue carries S3's notifications, the jobs queue the service's own jobs.
        let outcome = match crate::s3_events::parse_object_created(&body) {
            Some(objects) => service.objects_created(&objects).instrument(span).await,
            None => service.run_job(&body).instrument(span).await,
        };
        match outcome {
            Ok(()) => {}
            Err(JobError::Malformed(reason)) => {
                // Retrying cannot help; drop it (it is logged) instead of poisoning the batch.
                tracing::error!(message_id = %id, %reason, "dropping a malformed job");
            }
            Err(error) => {
                tracing::warn!(message_id = %id, %error, "job failed; it will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// Serves SQS batches as a Lambda function.
pub async fn run_jobs(service: Arc<Service>) -> anyhow::Result<()> {
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let service = service.clone();
        async move { Ok::<_, lambda_runtime::Error>(handle_batch(&service, event.payload).await) }
    }))
    .await
    .map_err(|error| anyhow::anyhow!("lambda runtime: {error}"))
}
