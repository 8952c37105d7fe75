//! The `Queue` port on SQS. Queue arguments of the port are queue names; they are resolved to
//! URLs with `GetQueueUrl` once and cached. SQS does the rest: visibility timeouts, receive
//! counts and, through each queue's redrive policy (see `Aws::create_resources`), dead-lettering
//! to `<name>-dlq`.
//!
//! SQS takes whole seconds: visibility timeouts and waits are rounded up, waits capped at 20 s.
//!
//! SQS accepts a receipt from an earlier delivery of a message and may still delete the
//! message with it (moto always does), which the port forbids: a consumer that lost its lease
//! would delete a message another consumer is working on. So the adapter remembers the latest
//! receipt of each message it received (the most recent [`REMEMBERED_RECEIPTS`]) and refuses,
//! as `InvalidReceipt`, a receipt it knows to be superseded. Across processes SQS decides.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{MessageSystemAttributeName, QueueAttributeName};
use labeling_core::ports::queue::MAX_RECEIVE_BATCH;
use labeling_core::ports::{Message, Queue, QueueError};

use crate::error::{failure, invalid_answer};

/// SQS's longest long poll.
const MAX_WAIT_SECONDS: u64 = 20;
/// SQS's longest visibility timeout (12 hours).
const MAX_VISIBILITY_SECONDS: u64 = 43_200;
/// SQS's longest delivery delay (15 minutes).
const MAX_DELAY_SECONDS: u64 = 900;
/// How many receipts the adapter remembers to tell stale ones.
pub const REMEMBERED_RECEIPTS: usize = 10_000;

pub struct SqsQueue {
    client: Client,
    urls: Mutex<HashMap<String, String>>,
    receipts: Mutex<Receipts>,
}

/// The receipts of recent deliveries: which message each is for, and each message's latest.
#[derive(Debug, Default)]
struct Receipts {
    message_of: HashMap<String, String>,
    latest: HashMap<String, String>,
    order: VecDeque<String>,
}

impl Receipts {
    fn delivered(&mut self, message_id: &str, receipt: &str) {
        self.message_of
            .insert(receipt.to_owned(), message_id.to_owned());
        self.latest
            .insert(message_id.to_owned(), receipt.to_owned());
        self.order.push_back(receipt.to_owned());
        while self.order.len() > REMEMBERED_RECEIPTS {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(message_id) = self.message_of.remove(&oldest)
                && self.latest.get(&message_id) == Some(&oldest)
            {
                self.latest.remove(&message_id);
            }
        }
    }

    /// True when a later delivery of the same message superseded `receipt`.
    fn is_stale(&self, receipt: &str) -> bool {
        self.message_of
            .get(receipt)
            .and_then(|message_id| self.latest.get(message_id))
            .is_some_and(|latest| latest != receipt)
    }

    fn deleted(&mut self, receipt: &str) {
        if let Some(message_id) = self.message_of.get(receipt) {
            self.latest.remove(message_id);
        }
    }
}

impl SqsQueue {
    pub fn new(client: Client) -> Self {
        Self {
            client,
            urls: Mutex::new(HashMap::new()),
            receipts: Mutex::new(Receipts::default()),
        }
    }

    fn receipts(&self) -> std::sync::MutexGuard<'_, Receipts> {
        // Every update leaves the maps usable: a poisoned lock is still consistent enough.
        self.receipts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_receipt(&self, receipt: &str) -> Result<(), QueueError> {
        if self.receipts().is_stale(receipt) {
            return Err(QueueError::InvalidReceipt);
        }
        Ok(())
    }

    pub fn client(&self) -> &Client {
        &self.client
    }

    fn urls(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        // The cache holds whole entries only: a poisoned lock is still consistent.
        self.urls
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The URL of queue `name`, from the cache or `GetQueueUrl`. A queue given by its URL
    /// (as the stack's functions are) is used as it is, so they need no `sqs:GetQueueUrl`.
    pub async fn url(&self, name: &str) -> Result<String, QueueError> {
        if name.starts_with("https://") || name.starts_with("http://") {
            return Ok(name.to_owned());
        }
        if let Some(url) = self.urls().get(name) {
            return Ok(url.clone());
        }
        let output = self
            .client
            .get_queue_url()
            .queue_name(name)
            .send()
            .await
            .map_err(|e| self.queue_error("GetQueueUrl", name, e))?;
        let url = output
            .queue_url()
            .ok_or_else(|| {
                QueueError::Unavailable(invalid_answer("GetQueueUrl", "no queue URL in the answer"))
            })?
            .to_owned();
        self.urls().insert(name.to_owned(), url.clone());
        Ok(url)
    }

    /// Maps an SQS error; a missing queue also leaves the cache, in case it is made again.
    fn queue_error<E>(&self, operation: &'static str, name: &str, error: SdkError<E>) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match error.code() {
            Some("QueueDoesNotExist" | "AWS.SimpleQueueService.NonExistentQueue") => {
                self.urls().remove(name);
                QueueError::NoSuchQueue(name.to_owned())
            }
            _ => QueueError::Unavailable(failure(operation, error)),
        }
    }

    /// Maps the error of a call that takes a receipt: a stale or unknown receipt is
    /// `InvalidReceipt`.
    fn receipt_error<E>(
        &self,
        operation: &'static str,
        name: &str,
        error: SdkError<E>,
    ) -> QueueError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        match error.code() {
            Some(
                "ReceiptHandleIsInvalid"
                | "InvalidIdFormat"
                | "MessageNotInflight"
                | "AWS.SimpleQueueService.MessageNotInflight"
                | "InvalidParameterValue",
            ) => QueueError::InvalidReceipt,
            _ => self.queue_error(operation, name, error),
        }
    }
}

/// Whole seconds, rounded up, at most `max`.
fn seconds(duration: Duration, max: u64) -> i32 {
    let whole = duration.as_secs() + u64::from(duration.subsec_nanos() > 0);
    i32::try_from(whole.min(max)).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    #[tracing::instrument(level = "debug", skip_all, fields(queue = %queue))]
    async fn send(&self, queue: &str, body: &str, delay: Duration) -> Result<String, QueueError> {
        let url = self.url(queue).await?;
        let mut request = self.client.send_message().queue_url(url).message_body(body);
        if !delay.is_zero() {
            request = request.delay_seconds(seconds(delay, MAX_DELAY_SECONDS));
        }
        let output = request
            .send()
            .await
            .map_err(|e| self.queue_error("SendMessage", queue, e))?;
        output.message_id().map(str::to_owned).ok_or_else(|| {
            QueueError::Unavailable(invalid_answer("SendMessage", "no message id in the answer"))
        })
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %queue, max = max))]
    async fn receive(
        &self,
        queue: &str,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Message>, QueueError> {
        let url = self.url(queue).await?;
        let max = i32::try_from(max.clamp(1, MAX_RECEIVE_BATCH)).unwrap_or(1);
        let output = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
            .wait_time_seconds(seconds(wait, MAX_WAIT_SECONDS))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| self.queue_error("ReceiveMessage", queue, e))?;
        let mut messages = Vec::new();
        let mut receipts = self.receipts();
        for message in output.messages() {
            let (Some(id), Some(receipt)) = (message.message_id(), message.receipt_handle()) else {
                return Err(QueueError::Unavailable(invalid_answer(
                    "ReceiveMessage",
                    "a message without an id or a receipt handle",
                )));
            };
            let receive_count = message
                .attributes()
                .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                .and_then(|count| count.parse().ok())
                .unwrap_or(1);
            receipts.delivered(id, receipt);
            messages.push(Message {
                id: id.to_owned(),
                receipt: receipt.to_owned(),
                body: message.body().unwrap_or_default().to_owned(),
                receive_count,
            });
        }
        Ok(messages)
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %queue))]
    async fn delete(&self, queue: &str, receipt: &str) -> Result<(), QueueError> {
        self.check_receipt(receipt)?;
        let url = self.url(queue).await?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(receipt)
            .send()
            .await
            .map_err(|e| self.receipt_error("DeleteMessage", queue, e))?;
        self.receipts().deleted(receipt);
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %queue))]
    async fn extend_visibility(
        &self,
        queue: &str,
        receipt: &str,
        visibility: Duration,
    ) -> Result<(), QueueError> {
        self.check_receipt(receipt)?;
        let url = self.url(queue).await?;
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(receipt)
            .visibility_timeout(seconds(visibility, MAX_VISIBILITY_SECONDS))
            .send()
            .await
            .map_err(|e| self.receipt_error("ChangeMessageVisibility", queue, e))?;
        Ok(())
    }

    #[tracing::instrument(level = "debug", skip_all, fields(queue = %queue))]
    async fn depth(&self, queue: &str) -> Result<u64, QueueError> {
        let url = self.url(queue).await?;
        let counted = [
            QueueAttributeName::ApproximateNumberOfMessages,
            QueueAttributeName::ApproximateNumberOfMessagesNotVisible,
            QueueAttributeName::ApproximateNumberOfMessagesDelayed,
        ];
        let output = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .set_attribute_names(Some(counted.to_vec()))
            .send()
            .await
            .map_err(|e| self.queue_error("GetQueueAttributes", queue, e))?;
        let attributes = output.attributes();
        Ok(counted
            .iter()
            .filter_map(|name| attributes.and_then(|a| a.get(name)))
            .filter_map(|count| count.parse::<u64>().ok())
            .sum())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_round_up_to_whole_seconds_and_cap() {
        assert_eq!(seconds(Duration::ZERO, 20), 0);
        assert_eq!(seconds(Duration::from_millis(300), 20), 1);
        assert_eq!(seconds(Duration::from_secs(2), 20), 2);
        assert_eq!(seconds(Duration::from_secs(60), 20), 20);
    }

    #[test]
    fn a_later_delivery_makes_earlier_receipts_stale() {
        let mut receipts = Receipts::default();
        receipts.delivered("m1", "r1");
        assert!(!receipts.is_stale("r1"));
        assert!(
            !receipts.is_stale("unknown"),
            "unknown receipts are for SQS to judge"
        );
        receipts.delivered("m1", "r2");
        assert!(receipts.is_stale("r1"));
        assert!(!receipts.is_stale("r2"));
        receipts.deleted("r2");
        assert!(!receipts.is_stale("r1"), "after a delete SQS judges");
        for i in 0..REMEMBERED_RECEIPTS {
            receipts.delivered(&format!("m{i}"), &format!("x{i}"));
        }
        assert!(receipts.message_of.len() <= REMEMBERED_RECEIPTS);
        assert!(receipts.latest.len() <= REMEMBERED_RECEIPTS);
    }
}
