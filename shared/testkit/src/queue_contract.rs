//! The `Queue` contract: one public async function per case, each on a fresh queue;
//! [`crate::queue_contract_tests`] makes each case a test of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use labeling_core::ports::queue::DEAD_LETTER_SUFFIX;
use labeling_core::ports::{Queue, QueueError};

/// Moves the adapter's clock forward: the embedded queue reads a fake clock; an emulator
/// needs a real, short sleep.
pub type Advance = Box<dyn Fn(Duration) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// What every case runs on: queue `name` (and its dead-letter queue `name-dlq`), empty, whose
/// adapter moves a message to the dead-letter queue after `max_receives` deliveries.
pub struct Fixture {
    pub queue: Arc<dyn Queue>,
    pub name: String,
    pub max_receives: u32,
    pub advance: Advance,
}

const VISIBILITY: Duration = Duration::from_secs(2);
const NO_WAIT: Duration = Duration::ZERO;
const WAIT: Duration = Duration::from_secs(1);

impl Fixture {
    /// Past one visibility timeout.
    async fn past_visibility(&self) {
        (self.advance)(VISIBILITY + Duration::from_millis(100)).await;
    }

    async fn receive(&self, wait: Duration) -> Vec<labeling_core::ports::Message> {
        self.queue
            .receive(&self.name, 10, VISIBILITY, wait)
            .await
            .unwrap()
    }

    async fn send(&self, body: &str) {
        self.queue.send(&self.name, body, NO_WAIT).await.unwrap();
    }
}

pub async fn a_new_queue_is_empty(fixture: &Fixture) {
    assert!(
        fixture.receive(NO_WAIT).await.is_empty(),
        "a new queue is empty"
    );
}

pub async fn a_received_message_is_invisible_while_in_flight(fixture: &Fixture) {
    fixture.send("job-1").await;
    let first = fixture.receive(WAIT).await;
    assert_eq!(first.len(), 1, "a sent message is received");
    assert_eq!(first[0].body, "job-1");
    assert_eq!(first[0].receive_count, 1);
    assert!(
        fixture.receive(NO_WAIT).await.is_empty(),
        "an in-flight message is invisible"
    );
}

pub async fn an_undeleted_message_comes_back_after_its_visibility_timeout(fixture: &Fixture) {
    fixture.send("job-1").await;
    let first = fixture.receive(WAIT).await;
    assert_eq!(first.len(), 1);
    fixture.past_visibility().await;
    let second = fixture.receive(WAIT).await;
    assert_eq!(
        second.len(),
        1,
        "an undeleted message comes back after its visibility timeout"
    );
    assert_eq!(second[0].receive_count, 2);
    assert!(
        matches!(
            fixture.queue.delete(&fixture.name, &first[0].receipt).await,
            Err(QueueError::InvalidReceipt) | Ok(())
        ),
        "a stale receipt never errors otherwise"
    );
}

pub async fn extended_visibility_holds(fixture: &Fixture) {
    fixture.send("job-1").await;
    let got = fixture.receive(WAIT).await;
    assert_eq!(got.len(), 1);
    fixture
        .queue
        .extend_visibility(&fixture.name, &got[0].receipt, Duration::from_secs(30))
        .await
        .unwrap();
    fixture.past_visibility().await;
    assert!(
        fixture.receive(NO_WAIT).await.is_empty(),
        "extended visibility holds"
    );
}

pub async fn a_deleted_message_is_never_delivered_again(fixture: &Fixture) {
    fixture.send("job-1").await;
    let got = fixture.receive(WAIT).await;
    assert_eq!(got.len(), 1);
    fixture
        .queue
        .delete(&fixture.name, &got[0].receipt)
        .await
        .unwrap();
    fixture.past_visibility().await;
    assert!(
        fixture.receive(Duration::from_millis(300)).await.is_empty(),
        "a deleted message does not come back"
    );
}

pub async fn a_message_received_too_often_moves_to_the_dead_letter_queue(fixture: &Fixture) {
    fixture.send("poison").await;
    for delivery in 1..=fixture.max_receives {
        let got = fixture.receive(WAIT).await;
        assert_eq!(
            got.len(),
            1,
            "delivery {delivery} of {}",
            fixture.max_receives
        );
        fixture.past_visibility().await;
    }
    assert!(
        fixture.receive(Duration::from_millis(300)).await.is_empty(),
        "after max receives the message is not delivered again"
    );
    let dead_letters = format!("{}{DEAD_LETTER_SUFFIX}", fixture.name);
    let dead = fixture
        .queue
        .receive(&dead_letters, 10, VISIBILITY, WAIT)
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "it sits in the dead-letter queue");
    assert_eq!(dead[0].body, "poison");
}

pub async fn a_delayed_message_waits_out_its_delay(fixture: &Fixture) {
    fixture
        .queue
        .send(&fixture.name, "later", Duration::from_secs(2))
        .await
        .unwrap();
    assert!(
        fixture.receive(NO_WAIT).await.is_empty(),
        "not before its delay"
    );
    (fixture.advance)(Duration::from_millis(2100)).await;
    let got = fixture.receive(WAIT).await;
    assert_eq!(got.len(), 1, "after its delay");
    assert_eq!(got[0].body, "later");
}

pub async fn a_receive_returns_at_most_max_messages(fixture: &Fixture) {
    for body in ["1", "2", "3"] {
        fixture.send(body).await;
    }
    let mut bodies = Vec::new();
    for _ in 0..10 {
        let got = fixture
            .queue
            .receive(&fixture.name, 2, VISIBILITY, WAIT)
            .await
            .unwrap();
        assert!(got.len() <= 2, "at most max: {got:?}");
        bodies.extend(got.into_iter().map(|m| m.body));
        if bodies.len() == 3 {
            break;
        }
    }
    bodies.sort();
    assert_eq!(bodies, ["1", "2", "3"], "each message once");
}
