//! Checkouts under faults that black-box tests cannot time: a claim of fresh items whose
//! transaction fails after the cursor already moved past them.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use labeling_core::ports::{Condition, Item, Key, Page, Query, Table, TableError, Update, Write};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

/// The embedded table, failing the next transaction that would create a task when asked.
struct Faulty {
    inner: SqliteTable,
    fail_next_task_claim: AtomicBool,
}

#[async_trait]
impl Table for Faulty {
    async fn get(&self, key: &Key) -> Result<Option<Item>, TableError> {
        self.inner.get(key).await
    }
    async fn batch_get(&self, keys: &[Key]) -> Result<Vec<Item>, TableError> {
        self.inner.batch_get(keys).await
    }
    async fn put(&self, item: Item, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.put(item, condition).await
    }
    async fn update(
        &self,
        key: &Key,
        update: Update,
        condition: Option<Condition>,
    ) -> Result<Item, TableError> {
        self.inner.update(key, update, condition).await
    }
    async fn delete(&self, key: &Key, condition: Option<Condition>) -> Result<(), TableError> {
        self.inner.delete(key, condition).await
    }
    async fn transact(&self, writes: Vec<Write>) -> Result<(), TableError> {
        let creates_task = writes.iter().any(|w| w.key().sk.starts_with("TASK#"));
        if creates_task && self.fail_next_task_claim.swap(false, Ordering::SeqCst) {
            return Err(TableError::Unavailable(
                "injected outage while claiming fresh items".into(),
            ));
        }
        self.inner.transact(writes).await
    }
    async fn query(&self, query: Query) -> Result<Page, TableError> {
        self.inner.query(query).await
    }
}

#[tokio::test]
async fn items_parked_after_a_failed_claim_are_handed_out_by_the_next_checkout() {
    let fixture = Direct::new("parked-claim", |inner| Faulty {
        inner,
        fail_next_task_claim: AtomicBool::new(false),
    });
    fixture.add_images("img", 3).await;
    let project = fixture
        .project("parked", "image_classification_multiclass", &["a"])
        .await;

    fixture
        .table
        .fail_next_task_claim
        .store(true, Ordering::SeqCst);
    assert!(
        fixture
            .service
            .labeling()
            .checkout(&fixture.admin, &project)
            .await
            .is_err(),
        "the injected outage fails the checkout that moved the cursor"
    );

    // The parked item waits at the front of the queue: the next checkout hands it out
    // instead of answering contention.
    let task = fixture
        .service
        .labeling()
        .checkout(&fixture.admin, &project)
        .await
        .expect("a checkout after the outage succeeds")
        .expect("work is left");
    assert_eq!(task.items.len(), 1);
    fixture
        .service
        .labeling()
        .release(&fixture.admin, &project, &task.task_id)
        .await
        .unwrap();

    let keys = fixture.drain(&project).await;
    let unique: HashSet<&String> = keys.iter().collect();
    assert_eq!(keys.len(), 3, "every item is handed out: {keys:?}");
    assert_eq!(unique.len(), 3, "no item is handed out twice: {keys:?}");
    let dashboard = fixture
        .service
        .dashboard()
        .dashboard(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(dashboard.skipped, 3);
}
