//! AWS adapters of the ports: a DynamoDB table, S3 blobs and an SQS job queue, with the
//! settings that name them, the code that creates them (for tests against an emulator and for
//! first runs), and a counter of the requests the clients send.
//!
//! `LABELING_AWS_ENDPOINT` points every client at an emulator (moto in the tests); S3 then uses
//! path-style addressing, and static test credentials unless credentials are in the
//! environment.

mod bucket_regions;
pub mod counter;
pub mod dynamo_table;
mod error;
pub mod s3_blobs;
pub mod sqs_queue;

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region};
use aws_sdk_dynamodb::config::Credentials;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TableStatus,
};
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use aws_sdk_sqs::types::QueueAttributeName;
use labeling_core::ports::queue::DEAD_LETTER_SUFFIX;

pub use counter::{RequestCounter, Service};
pub use dynamo_table::DynamoTable;
pub use s3_blobs::S3Blobs;
pub use sqs_queue::SqsQueue;

/// Names of the AWS resources the service uses, and where to reach them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSettings {
    pub table: String,
    pub bucket: String,
    pub jobs_queue: String,
    pub region: String,
    /// An emulator's endpoint (`http://127.0.0.1:5000`); None for AWS itself.
    pub endpoint: Option<String>,
}

/// The three adapters, sharing one request counter.
#[derive(Clone)]
pub struct Aws {
    pub table: Arc<DynamoTable>,
    pub blobs: Arc<S3Blobs>,
    pub queue: Arc<SqsQueue>,
    pub requests: RequestCounter,
}

impl Aws {
    /// Builds the clients from the default credential chain and `settings`.
    pub async fn connect(settings: &AwsSettings) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest())
            .region(Region::new(settings.region.clone()));
        if let Some(endpoint) = &settings.endpoint {
            // moto answers a burst of concurrent transactions with the odd 500 (its own
            // "dictionary changed size during iteration"): retry those longer than AWS needs.
            loader = loader
                .endpoint_url(endpoint)
                .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(10));
            let has_credentials = [
                "AWS_ACCESS_KEY_ID",
                "AWS_PROFILE",
                "AWS_WEB_IDENTITY_TOKEN_FILE",
            ]
            .iter()
            .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
            if !has_credentials {
                loader = loader.credentials_provider(Credentials::new(
                    "testing",
                    "testing",
                    None,
                    None,
                    "labeling-emulator",
                ));
            }
        }
        let shared = loader.load().await;
        let requests = RequestCounter::default();
        let dynamodb = aws_sdk_dynamodb::Client::from_conf(
            aws_sdk_dynamodb::config::Builder::from(&shared)
                .interceptor(requests.interceptor(Service::DynamoDb))
                .build(),
        );
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&shared)
                .force_path_style(settings.endpoint.is_some())
                // Since aws-sdk-s3 1.69 every upload carries a CRC32 by default: parts of a
                // multipart upload created without an algorithm then make S3 refuse the
                // completion.
                .request_checksum_calculation(
                    aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
                )
                .interceptor(requests.interceptor(Service::S3))
                .build(),
        );
        let sqs = aws_sdk_sqs::Client::from_conf(
            aws_sdk_sqs::config::Builder::from(&shared)
                .interceptor(requests.interceptor(Service::Sqs))
                .build(),
        );
        Ok(Self {
            table: Arc::new(if settings.endpoint.is_some() {
                DynamoTable::for_emulator(dynamodb, settings.table.clone())
            } else {
                DynamoTable::new(dynamodb, settings.table.clone())
            }),
            blobs: Arc::new(S3Blobs::new(s3)),
            queue: Arc::new(SqsQueue::new(sqs)),
            requests,
        })
    }

    /// Creates what `settings` names, unless it exists: the table (on demand, string `PK` hash
    /// key and `SK` range key), the bucket, and the jobs queue with its dead-letter queue
    /// `<queue>-dlq`, to which SQS moves a message received more than `max_receives` times.
    pub async fn create_resources(
        &self,
        settings: &AwsSettings,
        max_receives: u32,
    ) -> anyhow::Result<()> {
        self.create_table(&settings.table).await?;
        self.create_bucket(&settings.bucket, &settings.region)
            .await?;
        self.create_queue(&settings.jobs_queue, max_receives)
            .await?;
        Ok(())
    }

    async fn create_table(&self, table: &str) -> anyhow::Result<()> {
        let client = self.table.client();
        let attribute = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
        };
        let key = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
        };
        let created = client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute(dynamo_table::PK)?)
            .attribute_definitions(attribute(dynamo_table::SK)?)
            .key_schema(key(dynamo_table::PK, KeyType::Hash)?)
            .key_schema(key(dynamo_table::SK, KeyType::Range)?)
            .send()
            .await;
        match created {
            Ok(_) => tracing::info!(table, "table created"),
            Err(error) if error.code() == Some("ResourceInUseException") => {}
            Err(error) => bail!("creating table {table}: {}", DisplayErrorContext(&error)),
        }
        // A new table takes a few seconds to become usable on AWS (moto makes it at once).
        for _ in 0..120 {
            let described = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!("describing table {table}: {}", DisplayErrorContext(&e))
                })?;
            if described.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        bail!("table {table} did not become active within a minute")
    }

    /// Creates `bucket` in `region` unless it is already ours.
    pub async fn create_bucket(&self, bucket: &str, region: &str) -> anyhow::Result<()> {
        let mut request = self.blobs.client().create_bucket().bucket(bucket);
        // us-east-1 is the one region that takes no location constraint.
        if region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(region))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => {
                tracing::info!(bucket, "bucket created");
                Ok(())
            }
            Err(error) if error.code() == Some("BucketAlreadyOwnedByYou") => Ok(()),
            Err(error) => bail!("creating bucket {bucket}: {}", DisplayErrorContext(&error)),
        }
    }

    async fn create_queue(&self, queue: &str, max_receives: u32) -> anyhow::Result<()> {
        // A queue given by its URL (as the stack passes them) is created by its name.
        let queue = queue.rsplit('/').next().unwrap_or(queue);
        let client = self.queue.client();
        // Creating a queue that exists returns its URL, as long as no attribute differs: create
        // both bare, then set their attributes, so a changed `max_receives` applies too.
        let create = |name: String| async move {
            client
                .create_queue()
                .queue_name(&name)
                .send()
                .await
                .map_err(|e| anyhow::anyhow!("creating queue {name}: {}", DisplayErrorContext(&e)))?
                .queue_url()
                .map(str::to_owned)
                .with_context(|| format!("creating queue {name}: no URL in the answer"))
        };
        let dead_letters = format!("{queue}{DEAD_LETTER_SUFFIX}");
        let dead_letters_url = create(dead_letters.clone()).await?;
        let queue_url = create(queue.to_owned()).await?;
        let dead_letters_arn = client
            .get_queue_attributes()
            .queue_url(&dead_letters_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "reading the ARN of {dead_letters}: {}",
                    DisplayErrorContext(&e)
                )
            })?
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::QueueArn))
            .cloned()
            .with_context(|| format!("queue {dead_letters} has no ARN"))?;
        // Dead letters are kept as long as SQS allows (14 days), to be looked at.
        client
            .set_queue_attributes()
            .queue_url(&dead_letters_url)
            .attributes(QueueAttributeName::MessageRetentionPeriod, "1209600")
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "configuring queue {dead_letters}: {}",
                    DisplayErrorContext(&e)
                )
            })?;
        let redrive = serde_json::json!({
            "deadLetterTargetArn": dead_letters_arn,
            "maxReceiveCount": max_receives.to_string(),
        });
        client
            .set_queue_attributes()
            .queue_url(&queue_url)
            .attributes(QueueAttributeName::RedrivePolicy, redrive.to_string())
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!("configuring queue {queue}: {}", DisplayErrorContext(&e))
            })?;
        Ok(())
    }
}
