//! Reads: queries paged in sort-key order within ranges and a megabyte, and batch gets.

use super::{Fixture, PREFIX, attrs};
use labeling_core::ports::table::{MAX_BATCH_GET, MAX_QUERY_PAGE_BYTES};
use labeling_core::ports::{Attrs, Item, Key, Page, Query, SkRange};
use serde_json::json;

pub async fn queries_page_in_sort_key_order(table: &Fixture) {
    let prefix = PREFIX;
    let pk = format!("{prefix}#query");
    for sk in ["A#2", "A#1", "B#1", "L#0005", "L#0010", "A#3"] {
        table
            .put(Item::new(Key::new(&pk, sk), attrs(json!({"sk": sk}))), None)
            .await
            .unwrap();
    }
    table
        .put(
            Item::new(Key::new(format!("{pk}-other"), "A#0"), Attrs::new()),
            None,
        )
        .await
        .unwrap();
    let sks = |page: &Page| {
        page.items
            .iter()
            .map(|i| i.key.sk.clone())
            .collect::<Vec<_>>()
    };
    let page = table
        .query(Query::new(&pk, SkRange::BeginsWith("A#".into()), 2))
        .await
        .unwrap();
    assert_eq!(sks(&page), ["A#1", "A#2"], "begins-with in order, limited");
    assert_eq!(
        page.last_evaluated.as_deref(),
        Some("A#2"),
        "a limited page says where it stopped"
    );
    let mut next = Query::new(&pk, SkRange::BeginsWith("A#".into()), 2);
    next.start_after = page.last_evaluated;
    let page = table.query(next).await.unwrap();
    assert_eq!(
        sks(&page),
        ["A#3"],
        "the next page starts after the last key"
    );
    assert_eq!(
        page.last_evaluated, None,
        "the last page has no continuation"
    );
    let page = table
        .query(Query::new(&pk, SkRange::LessThan("L#0006".into()), 10))
        .await
        .unwrap();
    assert_eq!(
        sks(&page),
        ["A#1", "A#2", "A#3", "B#1", "L#0005"],
        "less-than is strict and ordered"
    );
    let page = table
        .query(Query::new(
            &pk,
            SkRange::Between("A#2".into(), "B#1".into()),
            10,
        ))
        .await
        .unwrap();
    assert_eq!(sks(&page), ["A#2", "A#3", "B#1"], "between is inclusive");
    let batch = table
        .batch_get(&[
            Key::new(&pk, "A#1"),
            Key::new(&pk, "NOPE"),
            Key::new(&pk, "B#1"),
        ])
        .await
        .unwrap();
    let mut found: Vec<_> = batch.iter().map(|i| i.key.sk.clone()).collect();
    found.sort();
    assert_eq!(found, ["A#1", "B#1"], "batch get leaves missing items out");
}

/// Every sort-key range pages the same way: `start_after` resumes strictly after the last key
/// of the previous page, and paging through gives exactly the range in order.
pub async fn every_range_pages_with_start_after(table: &Fixture) {
    let pk = format!("{PREFIX}#ranges");
    let sks = ["A#1", "A#2", "A#3", "B#1", "B#2", "L#1", "L#2"];
    for sk in sks {
        table
            .put(Item::new(Key::new(&pk, sk), Attrs::new()), None)
            .await
            .unwrap();
    }
    let cases = [
        (SkRange::All, &sks[..]),
        (SkRange::BeginsWith("B#".into()), &sks[3..5]),
        (SkRange::LessThan("B#2".into()), &sks[..4]),
        (SkRange::Between("A#2".into(), "L#1".into()), &sks[1..6]),
        (SkRange::Between("B#1".into(), "B#1".into()), &sks[3..4]),
    ];
    for (range, expected) in cases {
        for limit in [1, 2, 3] {
            let mut seen = Vec::new();
            let mut start_after = None;
            let mut pages = 0;
            loop {
                let mut query = Query::new(&pk, range.clone(), limit);
                query.start_after = start_after;
                let page = table.query(query).await.unwrap();
                pages += 1;
                assert!(
                    page.items.len() <= limit,
                    "{range:?}: at most {limit} a page"
                );
                seen.extend(page.items.iter().map(|i| i.key.sk.clone()));
                start_after = page.last_evaluated;
                if start_after.is_none() || pages > sks.len() {
                    break;
                }
            }
            assert_eq!(seen, expected, "{range:?} in pages of {limit}");
        }
    }
}

/// A page holds at most 1 MB of items, whatever its limit, and says where it stopped.
pub async fn a_query_page_holds_at_most_one_megabyte(table: &Fixture) {
    let pk = format!("{PREFIX}#megabyte");
    let blob = "x".repeat(300 * 1024);
    for sk in ["1", "2", "3", "4", "5"] {
        table
            .put(
                Item::new(Key::new(&pk, sk), attrs(json!({"blob": blob}))),
                None,
            )
            .await
            .unwrap();
    }
    let mut seen = Vec::new();
    let mut start_after = None;
    loop {
        let mut query = Query::new(&pk, SkRange::All, 100);
        query.start_after = start_after;
        let page = table.query(query).await.unwrap();
        let bytes: usize = page.items.iter().map(Item::size_bytes).sum();
        assert!(
            bytes <= MAX_QUERY_PAGE_BYTES,
            "a page of {} items holds {bytes} bytes",
            page.items.len()
        );
        assert!(!page.items.is_empty(), "a page makes progress");
        seen.extend(page.items.iter().map(|i| i.key.sk.clone()));
        start_after = page.last_evaluated;
        if start_after.is_none() {
            break;
        }
    }
    assert_eq!(
        seen,
        ["1", "2", "3", "4", "5"],
        "paging reads every item once"
    );
}

/// Batch get takes at most 100 keys, and a key asked twice comes back once.
pub async fn batch_get_takes_at_most_100_keys_and_answers_each_item_once(table: &Fixture) {
    let pk = format!("{PREFIX}#batch");
    let key = Key::new(&pk, "A");
    table
        .put(Item::new(key.clone(), Attrs::new()), None)
        .await
        .unwrap();
    let found = table.batch_get(&[key.clone(), key.clone()]).await.unwrap();
    assert_eq!(found.len(), 1, "a key asked twice is one item: {found:?}");
    let too_many: Vec<Key> = (0..=MAX_BATCH_GET)
        .map(|i| Key::new(&pk, format!("{i}")))
        .collect();
    assert!(
        table.batch_get(&too_many).await.is_err(),
        "101 keys are refused"
    );
    assert!(
        table.batch_get(&[]).await.unwrap().is_empty(),
        "no keys, no items"
    );
}
