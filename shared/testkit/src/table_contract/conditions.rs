//! Conditions: not-equals, and/or groups, and comparisons on missing, numeric and string attributes.

use super::{Fixture, PREFIX, attrs};
use labeling_core::ports::{Attrs, Condition, Item, Key, TableError, Update, Write};
use serde_json::json;

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
