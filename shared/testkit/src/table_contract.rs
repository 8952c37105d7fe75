//! The `Table` contract: one public async function per case, each on a fresh table;
//! [`crate::table_contract_tests`] makes each case a test of its own.

use std::sync::Arc;

use labeling_core::ports::table::{
    MAX_BATCH_GET, MAX_ITEM_BYTES, MAX_QUERY_PAGE_BYTES, MAX_TRANSACTION_WRITES,
};
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Page, Query, SkRange, Table, TableError, Update, Write,
};
use serde_json::json;

/// What every case runs on: a fresh, empty table.
pub type Fixture = Arc<dyn Table>;

/// The partition keys of the cases start with this.
const PREFIX: &str = "contract";

fn attrs(value: serde_json::Value) -> Attrs {
    value.as_object().cloned().unwrap()
}

pub async fn put_get_and_conditions(table: &Fixture) {
    let prefix = PREFIX;
    let key = Key::new(format!("{prefix}#conditions"), "A");
    assert_eq!(
        table.get(&key).await.unwrap(),
        None,
        "a missing item reads as None"
    );
    table
        .put(
            Item::new(
                key.clone(),
                attrs(json!({"n": 1, "s": "x", "nested": {"list": [1, "two", null, true]}})),
            ),
            Some(Condition::NotExists),
        )
        .await
        .unwrap();
    let read = table
        .get(&key)
        .await
        .unwrap()
        .expect("the item was written");
    assert_eq!(
        read.attrs["nested"],
        json!({"list": [1, "two", null, true]}),
        "values round-trip"
    );
    let again = table
        .put(
            Item::new(key.clone(), attrs(json!({"n": 2}))),
            Some(Condition::NotExists),
        )
        .await;
    assert!(
        matches!(again, Err(TableError::ConditionFailed { index: 0 })),
        "not-exists fails on an existing item: {again:?}"
    );
    assert_eq!(
        table.get(&key).await.unwrap().unwrap().attrs["n"],
        json!(1),
        "a failed condition writes nothing"
    );
    table
        .put(
            Item::new(key.clone(), attrs(json!({"n": 2}))),
            Some(Condition::equals("n", 1)),
        )
        .await
        .unwrap();
    assert!(
        table
            .delete(&key, Some(Condition::less_than("n", 2)))
            .await
            .unwrap_err()
            .is_condition_failed(),
        "less-than is strict"
    );
    table
        .delete(
            &key,
            Some(Condition::Or(vec![
                Condition::less_than("n", 2),
                Condition::equals("n", 2),
            ])),
        )
        .await
        .unwrap();
    assert_eq!(
        table.get(&key).await.unwrap(),
        None,
        "delete removes the item"
    );
}

pub async fn update_is_an_upsert_with_atomic_add(table: &Fixture) {
    let prefix = PREFIX;
    let key = Key::new(format!("{prefix}#update"), "COUNTER");
    let after = table
        .update(
            &key,
            Update::default().add("count", 5).set("name", "c"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        after.attrs["count"],
        json!(5),
        "ADD on a missing item starts at 0"
    );
    let after = table
        .update(
            &key,
            Update::default().add("count", -2).remove("name"),
            Some(Condition::Exists),
        )
        .await
        .unwrap();
    assert_eq!(after.attrs["count"], json!(3));
    assert!(
        !after.attrs.contains_key("name"),
        "REMOVE removes the attribute"
    );
    let refused = table
        .update(
            &Key::new(format!("{prefix}#update"), "MISSING"),
            Update::default().add("count", 1),
            Some(Condition::Exists),
        )
        .await;
    assert!(
        refused.unwrap_err().is_condition_failed(),
        "a conditional update of a missing item fails"
    );
    assert_eq!(
        table
            .get(&Key::new(format!("{prefix}#update"), "MISSING"))
            .await
            .unwrap(),
        None,
        "and creates nothing"
    );
}

pub async fn transactions_are_all_or_nothing(table: &Fixture) {
    let prefix = PREFIX;
    let pk = format!("{prefix}#tx");
    table
        .put(
            Item::new(Key::new(&pk, "EXISTING"), attrs(json!({"v": 1}))),
            None,
        )
        .await
        .unwrap();
    let writes = vec![
        Write::Put {
            item: Item::new(Key::new(&pk, "NEW"), attrs(json!({"v": 1}))),
            condition: Some(Condition::NotExists),
        },
        Write::Update {
            key: Key::new(&pk, "COUNTER"),
            update: Update::default().add("n", 1),
            condition: None,
        },
        Write::Check {
            key: Key::new(&pk, "EXISTING"),
            condition: Condition::equals("v", 2),
        },
    ];
    let outcome = table.transact(writes).await;
    assert!(
        matches!(outcome, Err(TableError::ConditionFailed { index: 2 })),
        "the failing write's index is reported: {outcome:?}"
    );
    assert_eq!(
        table.get(&Key::new(&pk, "NEW")).await.unwrap(),
        None,
        "no write of a failed transaction applies"
    );
    assert_eq!(
        table.get(&Key::new(&pk, "COUNTER")).await.unwrap(),
        None,
        "no write of a failed transaction applies"
    );
    let writes = vec![
        Write::Put {
            item: Item::new(Key::new(&pk, "NEW"), attrs(json!({"v": 1}))),
            condition: Some(Condition::NotExists),
        },
        Write::Update {
            key: Key::new(&pk, "COUNTER"),
            update: Update::default().add("n", 1),
            condition: None,
        },
        Write::Delete {
            key: Key::new(&pk, "EXISTING"),
            condition: Some(Condition::equals("v", 1)),
        },
    ];
    table.transact(writes).await.unwrap();
    assert!(table.get(&Key::new(&pk, "NEW")).await.unwrap().is_some());
    assert_eq!(
        table
            .get(&Key::new(&pk, "COUNTER"))
            .await
            .unwrap()
            .unwrap()
            .attrs["n"],
        json!(1)
    );
    assert_eq!(table.get(&Key::new(&pk, "EXISTING")).await.unwrap(), None);
}

pub async fn limits_are_enforced(table: &Fixture) {
    let prefix = PREFIX;
    let pk = format!("{prefix}#limits");
    let too_many: Vec<Write> = (0..=MAX_TRANSACTION_WRITES)
        .map(|i| Write::Put {
            item: Item::new(Key::new(&pk, format!("{i:04}")), Attrs::new()),
            condition: None,
        })
        .collect();
    assert!(
        matches!(
            table.transact(too_many).await,
            Err(TableError::TooManyWrites(101))
        ),
        "101 writes are refused"
    );
    assert_eq!(
        table
            .query(Query::new(&pk, SkRange::All, 10))
            .await
            .unwrap()
            .items
            .len(),
        0,
        "and none applied"
    );
    let twice = vec![
        Write::Put {
            item: Item::new(Key::new(&pk, "SAME"), Attrs::new()),
            condition: None,
        },
        Write::Delete {
            key: Key::new(&pk, "SAME"),
            condition: None,
        },
    ];
    assert!(
        matches!(
            table.transact(twice).await,
            Err(TableError::DuplicateKeyInTransaction(..))
        ),
        "one item twice in a transaction is refused"
    );
    let big = Item::new(
        Key::new(&pk, "BIG"),
        attrs(json!({"blob": "x".repeat(MAX_ITEM_BYTES)})),
    );
    assert!(
        matches!(
            table.put(big, None).await,
            Err(TableError::ItemTooLarge { .. })
        ),
        "items over 400 KB are refused"
    );
    let growing = table
        .update(
            &Key::new(&pk, "GROWING"),
            Update::default().set("blob", "x".repeat(MAX_ITEM_BYTES)),
            None,
        )
        .await;
    assert!(
        matches!(growing, Err(TableError::ItemTooLarge { .. })),
        "an update may not grow an item past 400 KB"
    );
}

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

pub async fn concurrent_adds_are_not_lost(table: &Fixture) {
    let prefix = PREFIX;
    let key = Key::new(format!("{prefix}#concurrent"), "COUNTER");
    let adds = (0..50).map(|_| table.update(&key, Update::default().add("n", 1), None));
    let results = futures::future::join_all(adds).await;
    let mut seen: Vec<i64> = results
        .into_iter()
        .map(|r| r.unwrap().attrs["n"].as_i64().unwrap())
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        (1..=50).collect::<Vec<_>>(),
        "every atomic ADD returns a distinct value"
    );
}

/// Not-equals holds when the attribute is missing or differs, and fails when it is equal.
pub async fn not_equals_holds_when_the_attribute_is_missing_or_differs(table: &Fixture) {
    let pk = format!("{PREFIX}#not-equals");
    let key = Key::new(&pk, "A");
    table
        .put(
            Item::new(key.clone(), attrs(json!({"state": "open"}))),
            None,
        )
        .await
        .unwrap();
    let not = |name: &str, value: &str| Some(Condition::NotEquals(name.into(), json!(value)));
    table
        .update(&key, Update::default().add("n", 1), not("other", "done"))
        .await
        .expect("a missing attribute is not equal");
    table
        .update(&key, Update::default().add("n", 1), not("state", "done"))
        .await
        .expect("a different value is not equal");
    let refused = table
        .update(&key, Update::default().add("n", 1), not("state", "open"))
        .await;
    assert!(
        matches!(refused, Err(TableError::ConditionFailed { index: 0 })),
        "an equal value fails not-equals: {refused:?}"
    );
    assert_eq!(
        table.get(&key).await.unwrap().unwrap().attrs["n"],
        json!(2),
        "and the refused update applied nothing"
    );
    table
        .put(
            Item::new(Key::new(&pk, "NEW"), Attrs::new()),
            not("state", "x"),
        )
        .await
        .expect("on a missing item every attribute is missing");
}

/// And holds only when every condition does; an empty And always holds, an empty Or never.
pub async fn and_needs_every_condition_and_empty_groups_are_true_and_false(table: &Fixture) {
    let pk = format!("{PREFIX}#and");
    let key = Key::new(&pk, "A");
    table
        .put(Item::new(key.clone(), attrs(json!({"a": 1, "b": 2}))), None)
        .await
        .unwrap();
    let both = Condition::And(vec![Condition::equals("a", 1), Condition::equals("b", 2)]);
    table
        .update(&key, Update::default().set("seen", true), Some(both))
        .await
        .expect("both hold");
    let one = Condition::And(vec![Condition::equals("a", 1), Condition::equals("b", 3)]);
    assert!(
        table
            .update(&key, Update::default().set("seen", false), Some(one))
            .await
            .unwrap_err()
            .is_condition_failed(),
        "one of two is not enough"
    );
    assert_eq!(
        table.get(&key).await.unwrap().unwrap().attrs["seen"],
        json!(true)
    );
    table
        .update(
            &key,
            Update::default().add("n", 1),
            Some(Condition::And(vec![])),
        )
        .await
        .expect("an empty And holds");
    table
        .put(
            Item::new(Key::new(&pk, "NEW"), Attrs::new()),
            Some(Condition::And(vec![])),
        )
        .await
        .expect("an empty And holds on a missing item too");
    assert!(
        table
            .update(
                &key,
                Update::default().add("n", 1),
                Some(Condition::Or(vec![]))
            )
            .await
            .unwrap_err()
            .is_condition_failed(),
        "an empty Or fails"
    );
    let write = Write::Check {
        key: key.clone(),
        condition: Condition::And(vec![Condition::Exists, Condition::less_than("a", 2)]),
    };
    table
        .transact(vec![write])
        .await
        .expect("And in a transaction's check");
}

/// Comparisons need the attribute: equals and less-than fail when it is missing; less-than
/// compares numbers as numbers and strings in byte order; Exists and NotExists guard puts and
/// deletes as they guard updates.
pub async fn comparisons_need_the_attribute_and_order_numbers_and_strings(table: &Fixture) {
    let pk = format!("{PREFIX}#compare");
    let key = Key::new(&pk, "A");
    table
        .put(
            Item::new(key.clone(), attrs(json!({"n": 9, "s": "b"}))),
            None,
        )
        .await
        .unwrap();
    let refused = |condition: Condition| {
        let table = table.clone();
        let key = key.clone();
        async move {
            table
                .update(&key, Update::default().add("x", 1), Some(condition))
                .await
                .is_err_and(|e| e.is_condition_failed())
        }
    };
    assert!(
        refused(Condition::equals("missing", 1)).await,
        "equals on a missing attribute"
    );
    assert!(
        refused(Condition::less_than("missing", 1)).await,
        "less-than on a missing attribute"
    );
    assert!(
        !refused(Condition::less_than("n", 10)).await,
        "9 < 10 as numbers, not as text"
    );
    assert!(
        refused(Condition::less_than("n", 9)).await,
        "less-than is strict"
    );
    assert!(
        !refused(Condition::less_than("s", "c")).await,
        "\"b\" < \"c\""
    );
    assert!(
        refused(Condition::less_than("s", "a")).await,
        "\"b\" is not < \"a\""
    );
    assert!(
        table
            .put(
                Item::new(Key::new(&pk, "B"), Attrs::new()),
                Some(Condition::Exists)
            )
            .await
            .unwrap_err()
            .is_condition_failed(),
        "a put on a missing item with Exists fails"
    );
    assert_eq!(
        table.get(&Key::new(&pk, "B")).await.unwrap(),
        None,
        "and writes nothing"
    );
    assert!(
        table
            .delete(&key, Some(Condition::NotExists))
            .await
            .unwrap_err()
            .is_condition_failed(),
        "a delete of an existing item with NotExists fails"
    );
    assert!(
        table.get(&key).await.unwrap().is_some(),
        "and deletes nothing"
    );
    table
        .delete(&key, Some(Condition::Exists))
        .await
        .expect("Exists holds on the item");
    assert_eq!(table.get(&key).await.unwrap(), None);
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
