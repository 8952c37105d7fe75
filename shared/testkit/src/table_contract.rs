//! The `Table` contract.

use labeling_core::ports::table::{MAX_ITEM_BYTES, MAX_TRANSACTION_WRITES};
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Query, SkRange, Table, TableError, Update, Write,
};
use serde_json::json;

fn attrs(value: serde_json::Value) -> Attrs {
    value.as_object().cloned().unwrap()
}

/// Runs every check of the contract against `table`; `pk_prefix` isolates the run.
pub async fn run(table: &dyn Table, pk_prefix: &str) {
    put_get_and_conditions(table, pk_prefix).await;
    update_is_an_upsert_with_atomic_add(table, pk_prefix).await;
    transactions_are_all_or_nothing(table, pk_prefix).await;
    limits_are_enforced(table, pk_prefix).await;
    queries_page_in_sort_key_order(table, pk_prefix).await;
    concurrent_adds_are_not_lost(table, pk_prefix).await;
}

async fn put_get_and_conditions(table: &dyn Table, prefix: &str) {
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

async fn update_is_an_upsert_with_atomic_add(table: &dyn Table, prefix: &str) {
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

async fn transactions_are_all_or_nothing(table: &dyn Table, prefix: &str) {
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

async fn limits_are_enforced(table: &dyn Table, prefix: &str) {
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

async fn queries_page_in_sort_key_order(table: &dyn Table, prefix: &str) {
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
    let sks = |page: &labeling_core::ports::Page| {
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
    let mut descending = Query::new(&pk, SkRange::All, 2);
    descending.descending = true;
    assert_eq!(
        sks(&table.query(descending).await.unwrap()),
        ["L#0010", "L#0005"],
        "descending order"
    );
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

async fn concurrent_adds_are_not_lost(table: &dyn Table, prefix: &str) {
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
