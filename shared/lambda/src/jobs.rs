//! Queue-driven work on Lambda: an SQS event source mapping calls a function with a batch, and
//! the one job runner (`labeling_host::Runner`) runs it, as it does for the local server and the
//! worker container. Each record carries its receipt handle and its queue's ARN, so the
//! runner's heartbeats and retry backoff reach the message here too; the event source deletes
//! every record not reported as failed (a finished job, a malformed one), and the others come
//! back when the runner said.

use std::sync::Arc;

use async_trait::async_trait;
use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use labeling_core::Service;
use labeling_core::ports::{Message, Queue};
use labeling_core::usecases::ingest::JobError;
use labeling_host::{CancellationToken, Deletion, Delivery, JobHandler, Policy, Runner, Work};
use lambda_runtime::{LambdaEvent, service_fn};

/// What the Lambda functions' queues carry: the uploads queue brings S3's object-created
/// notifications (parsed here, at the edge that receives them), the jobs queues the service's
/// own jobs.
pub struct QueuedWork(pub Arc<Service>);

#[async_trait]
impl JobHandler for QueuedWork {
    async fn run(&self, body: &str) -> Result<(), JobError> {
        match crate::s3_events::parse_object_created(body) {
            Some(objects) => self.0.refreshes().objects_created(&objects).await,
            None => self.0.jobs().run_job(body).await,
        }
    }
}

/// The runner of a Lambda function's batches, on the queue adapter that can reach the queues
/// the records come from. `endpoint` is an emulator's (`LABELING_AWS_ENDPOINT`), if any.
pub fn lambda_runner(handler: Arc<dyn JobHandler>, queue: Arc<dyn Queue>) -> Runner {
    Runner::new(handler, queue, Policy::default(), Deletion::ByEventSource)
}

/// Runs every record of the batch; returns the ids of those to retry. The batch's S3
/// notifications are merged into one job run first (one refresh call for the whole batch; if
/// it fails, every record it covers is retried); each other record is a job of its own.
pub async fn handle_batch(
    runner: &Runner,
    endpoint: Option<&str>,
    event: SqsEvent,
) -> SqsBatchResponse {
    let mut notifications = Vec::new();
    let mut covered = Vec::new();
    let mut works = Vec::new();
    for record in event.records {
        let delivery = delivery(record, endpoint);
        match crate::s3_events::notification(&delivery.message.body) {
            Some(notification) => {
                if notification == crate::s3_events::Notification::Test {
                    // S3 checks the queue when notifications are set up: nothing to ingest.
                    tracing::info!(message_id = %delivery.message.id, "S3 test event received");
                }
                notifications.push(notification);
                covered.push(delivery);
            }
            None => works.push(Work::from(delivery)),
        }
    }
    if !covered.is_empty() {
        works.insert(
            0,
            Work {
                body: crate::s3_events::merge(notifications),
                deliveries: covered,
            },
        );
    }
    // Lambda stops a function by its timeout, not by a signal: nothing to cancel here.
    let fates = runner
        .run_works(works.clone(), &CancellationToken::new())
        .await;
    let mut response = SqsBatchResponse::default();
    for (work, fates) in works.into_iter().zip(fates) {
        for (delivery, fate) in work.deliveries.into_iter().zip(fates) {
            if !fate.leaves_the_queue() {
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = delivery.message.id;
                response.batch_item_failures.push(failure);
            }
        }
    }
    response
}

/// A record as the runner takes it. Missing parts are empty: a record without a body is
/// dropped as malformed, one without a receipt or ARN runs without heartbeats.
fn delivery(record: SqsMessage, endpoint: Option<&str>) -> Delivery {
    let receive_count = record
        .attributes
        .get("ApproximateReceiveCount")
        .and_then(|count| count.parse().ok())
        .unwrap_or(1);
    Delivery {
        queue: record
            .event_source_arn
            .as_deref()
            .and_then(|arn| queue_url(arn, endpoint))
            .unwrap_or_default(),
        message: Message {
            id: record.message_id.unwrap_or_default(),
            receipt: record.receipt_handle.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
            receive_count,
        },
    }
}

/// The URL of the queue `arn:<partition>:sqs:<region>:<account>:<name>`: SQS's own endpoint of
/// the region, or an emulator's (which serves queues under `/<account>/<name>` too).
pub fn queue_url(arn: &str, endpoint: Option<&str>) -> Option<String> {
    let mut parts = arn.split(':');
    let (Some("arn"), Some(partition), Some("sqs"), Some(region), Some(account), Some(name), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return None;
    };
    if [partition, region, account, name]
        .iter()
        .any(|part| part.is_empty())
    {
        return None;
    }
    Some(match endpoint {
        Some(endpoint) => format!("{}/{account}/{name}", endpoint.trim_end_matches('/')),
        None => {
            let domain = match partition {
                "aws-cn" => "amazonaws.com.cn",
                _ => "amazonaws.com",
            };
            format!("https://sqs.{region}.{domain}/{account}/{name}")
        }
    })
}

/// Serves SQS batches as a Lambda function.
pub async fn run_jobs(runner: Runner, endpoint: Option<String>) -> anyhow::Result<()> {
    let runner = Arc::new(runner);
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        let runner = runner.clone();
        let endpoint = endpoint.clone();
        async move {
            Ok::<_, lambda_runtime::Error>(
                handle_batch(&runner, endpoint.as_deref(), event.payload).await,
            )
        }
    }))
    .await
    .map_err(|error| anyhow::anyhow!("lambda runtime: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_url_comes_from_the_arn_of_the_record() {
        let arn = "arn:aws:sqs:eu-west-1:123456789012:stack-jobs";
        assert_eq!(
            queue_url(arn, None).as_deref(),
            Some("https://sqs.eu-west-1.amazonaws.com/123456789012/stack-jobs")
        );
        assert_eq!(
            queue_url("arn:aws-cn:sqs:cn-north-1:1:q", None).as_deref(),
            Some("https://sqs.cn-north-1.amazonaws.com.cn/1/q")
        );
        assert_eq!(
            queue_url(arn, Some("http://127.0.0.1:5000/")).as_deref(),
            Some("http://127.0.0.1:5000/123456789012/stack-jobs")
        );
        for bad in [
            "",
            "arn:aws:s3:::bucket",
            "arn:aws:sqs:eu-west-1:1",
            "arn:aws:sqs::1:q",
            "arn:aws:sqs:r:1:q:x",
        ] {
            assert_eq!(queue_url(bad, None), None, "{bad}");
        }
    }
}
