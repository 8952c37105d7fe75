//! The `Queue` contract. `advance` moves the adapter's clock past a visibility timeout (the
//! embedded queue reads the fake clock; an emulator needs a real, short sleep).

use std::future::Future;
use std::time::Duration;

use labeling_core::ports::queue::DEAD_LETTER_SUFFIX;
use labeling_core::ports::{Queue, QueueError};

/// Runs every check against `queue`, on queue `name` (and `name-dlq`), whose adapter moves a
/// message to the dead-letter queue after `max_receives` deliveries.
pub async fn run<A, F>(queue: &dyn Queue, name: &str, max_receives: u32, advance: A)
where
    A: Fn(Duration) -> F,
    F: Future<Output = ()>,
{
    let visibility = Duration::from_secs(2);
    let none = Duration::ZERO;
    assert!(
        queue
            .receive(name, 10, visibility, none)
            .await
            .unwrap()
            .is_empty(),
        "a new queue is empty"
    );
    queue.send(name, "job-1", none).await.unwrap();
    let first = queue
        .receive(name, 10, visibility, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(first.len(), 1, "a sent message is received");
    assert_eq!(first[0].body, "job-1");
    assert_eq!(first[0].receive_count, 1);
    assert!(
        queue
            .receive(name, 10, visibility, none)
            .await
            .unwrap()
            .is_empty(),
        "an in-flight message is invisible"
    );

    advance(visibility + Duration::from_millis(100)).await;
    let second = queue
        .receive(name, 10, visibility, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        second.len(),
        1,
        "an undeleted message comes back after its visibility timeout"
    );
    assert_eq!(second[0].receive_count, 2);
    assert!(
        matches!(
            queue.delete(name, &first[0].receipt).await,
            Err(QueueError::InvalidReceipt) | Ok(())
        ),
        "a stale receipt never errors otherwise"
    );
    queue
        .extend_visibility(name, &second[0].receipt, Duration::from_secs(30))
        .await
        .unwrap();
    advance(visibility + Duration::from_millis(100)).await;
    assert!(
        queue
            .receive(name, 10, visibility, none)
            .await
            .unwrap()
            .is_empty(),
        "extended visibility holds"
    );
    queue.delete(name, &second[0].receipt).await.unwrap();

    queue.send(name, "poison", none).await.unwrap();
    for delivery in 1..=max_receives {
        let got = queue
            .receive(name, 10, visibility, Duration::from_secs(1))
            .await
            .unwrap();
        assert_eq!(got.len(), 1, "delivery {delivery} of {max_receives}");
        advance(visibility + Duration::from_millis(100)).await;
    }
    assert!(
        queue
            .receive(name, 10, visibility, Duration::from_millis(300))
            .await
            .unwrap()
            .is_empty(),
        "after max receives the message is not delivered again"
    );
    let dead_letters = format!("{name}{DEAD_LETTER_SUFFIX}");
    let dead = queue
        .receive(&dead_letters, 10, visibility, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(dead.len(), 1, "it sits in the dead-letter queue");
    assert_eq!(dead[0].body, "poison");
}
