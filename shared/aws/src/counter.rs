//! Counts the HTTP requests the SDK clients send, per service, with an SDK interceptor
//! registered on each client's config. Benchmarks and tests read it to check how many round
//! trips a use case costs (requests are what AWS bills and what adds latency).
//!
//! A retried request counts once per attempt. Presigning runs the same pipeline up to the
//! point of sending but sends nothing, so presigned requests are not counted.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_dynamodb::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_dynamodb::config::{ConfigBag, Intercept, RuntimeComponents, SharedInterceptor};
use aws_sdk_dynamodb::error::BoxError;

/// The AWS service a client talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    DynamoDb,
    S3,
    Sqs,
}

#[derive(Debug, Default)]
struct Counts {
    dynamodb: AtomicU64,
    s3: AtomicU64,
    sqs: AtomicU64,
}

impl Counts {
    fn of(&self, service: Service) -> &AtomicU64 {
        match service {
            Service::DynamoDb => &self.dynamodb,
            Service::S3 => &self.s3,
            Service::Sqs => &self.sqs,
        }
    }
}

/// Request counts shared by every clone; register [`RequestCounter::interceptor`] on a client's
/// config to count its requests.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter {
    counts: Arc<Counts>,
}

impl RequestCounter {
    /// An interceptor counting the requests of a client of `service` into this counter.
    pub fn interceptor(&self, service: Service) -> SharedInterceptor {
        SharedInterceptor::new(CountingInterceptor {
            counts: self.counts.clone(),
            service,
        })
    }

    pub fn total(&self) -> u64 {
        self.dynamodb() + self.s3() + self.sqs()
    }

    pub fn dynamodb(&self) -> u64 {
        self.get(Service::DynamoDb)
    }

    pub fn s3(&self) -> u64 {
        self.get(Service::S3)
    }

    pub fn sqs(&self) -> u64 {
        self.get(Service::Sqs)
    }

    pub fn get(&self, service: Service) -> u64 {
        self.counts.of(service).load(Ordering::Relaxed)
    }

    pub fn reset(&self) {
        for service in [Service::DynamoDb, Service::S3, Service::Sqs] {
            self.counts.of(service).store(0, Ordering::Relaxed);
        }
    }
}

#[derive(Debug)]
struct CountingInterceptor {
    counts: Arc<Counts>,
    service: Service,
}

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "RequestCounter"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        // A presigned request carries its signature in the query and is never sent by us.
        if context.request().uri().contains("X-Amz-Signature=") {
            return Ok(());
        }
        self.counts.of(self.service).fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
