//! Writes: puts, gets and deletes under conditions, upserts with atomic adds, transactions, size limits.

use super::{Fixture, PREFIX, attrs};
use labeling_core::ports::table::{MAX_ITEM_BYTES, MAX_TRANSACTION_WRITES};
use labeling_core::ports::{
    Attrs, Condition, Item, Key, Query, SkRange, TableError, Update, Write,
};
use serde_json::json;

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
