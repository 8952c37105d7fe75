//! The round's counters spread over shard rows: the dashboard adds the base row and every
//! shard, so a round counted on its base row before sharding (the old layout) keeps its counts
//! while labeling goes on in the shards.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use labeling_core::domain::labeling::{SubmissionInput, SubmittedItemInput};
use labeling_core::keys;
use labeling_core::ports::{Query, Table, Update};
use labeling_embedded::SqliteTable;
use labeling_tests::direct::Direct;

fn plain(name: &str) -> Direct<SqliteTable> {
    Direct::new(name, |inner| inner)
}

/// Checks out and submits `tasks` tasks, labeling every item `class`.
async fn label(fixture: &Direct<SqliteTable>, project: &str, tasks: usize, class: &str) -> u64 {
    let labeling = fixture.service.labeling();
    let mut labeled = 0;
    for _ in 0..tasks {
        let task = labeling
            .checkout(&fixture.admin, project)
            .await
            .unwrap()
            .unwrap();
        let items = task
            .items
            .iter()
            .map(|item| SubmittedItemInput {
                item_id: Some(item.item_id),
                labels: Some(vec![class.to_owned()]),
                ..Default::default()
            })
            .collect();
        let receipt = labeling
            .submit(
                &fixture.admin,
                project,
                &task.task_id,
                SubmissionInput { items },
            )
            .await
            .unwrap();
        labeled += receipt.labeled as u64;
    }
    labeled
}

/// Rewrites round 0's counters as rows written before sharding held them: every shard's
/// counters added to the base row, the shards deleted.
async fn fold_shards_into_the_base_row(fixture: &Direct<SqliteTable>, project: &str) {
    let rows = fixture
        .table
        .query(Query::new(
            keys::project_pk(project),
            keys::stats_range(0),
            100,
        ))
        .await
        .unwrap()
        .items;
    let base = keys::stats(project, 0);
    let mut totals: BTreeMap<String, i64> = BTreeMap::new();
    for row in rows.iter().filter(|row| row.key != base) {
        for (name, value) in &row.attrs {
            if let Some(n) = value.as_i64() {
                *totals.entry(name.clone()).or_default() += n;
            }
        }
        fixture.table.delete(&row.key, None).await.unwrap();
    }
    assert!(!totals.is_empty(), "labeling wrote shard rows");
    let update = totals
        .iter()
        .fold(Update::default(), |update, (name, n)| update.add(name, *n));
    fixture.table.update(&base, update, None).await.unwrap();
}

#[tokio::test]
async fn a_round_counted_on_its_base_row_keeps_its_counts_when_labeling_goes_on_in_shards() {
    let fixture = plain("stats-old-layout");
    fixture.add_images("img", 12).await;
    let project = fixture
        .project(
            "old-layout",
            "image_classification_multiclass",
            &["cat", "dog"],
        )
        .await;
    let cats = label(&fixture, &project, 3, "cat").await;
    fold_shards_into_the_base_row(&fixture, &project).await;

    let dashboard = fixture
        .service
        .dashboard()
        .dashboard(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(dashboard.labeled, cats, "the base row's counts are read");
    assert_eq!(dashboard.label_distribution["cat"], cats);

    let dogs = fixture
        .drain_with(&project, |_| SubmittedItemInput {
            labels: Some(vec!["dog".to_owned()]),
            ..Default::default()
        })
        .await
        .len() as u64;
    let dashboard = fixture
        .service
        .dashboard()
        .dashboard(&fixture.admin, &project)
        .await
        .unwrap();
    assert_eq!(cats + dogs, 12);
    assert_eq!(dashboard.labeled, 12, "base row and shards add up");
    assert_eq!(
        dashboard.label_distribution,
        BTreeMap::from([("cat".to_owned(), cats), ("dog".to_owned(), dogs)])
    );
    assert_eq!(
        (
            dashboard.pending.not_in_task,
            dashboard.pending.in_task,
            dashboard.pending.queued
        ),
        (0, 0, 0)
    );
}
