//! Condition and update expressions, with the `#name`/`:value` placeholders DynamoDB wants.

use std::collections::{BTreeSet, HashMap};

use aws_sdk_dynamodb::types::AttributeValue;
use labeling_core::ports::{Condition, Update};
use serde_json::Value;

use super::values::to_attribute;
use super::{AttributeMap, PK};

/// The attribute an update that changes nothing removes.
const NO_SUCH_ATTRIBUTE: &str = "labeling:no-such-attribute";

/// Placeholders of one request's expressions: each attribute name gets one `#nN`, each value
/// its own `:vN`. DynamoDB refuses unused placeholders, so they are only made on use.
#[derive(Debug, Default)]
pub(super) struct Expressions {
    names: HashMap<String, String>,
    placeholders: HashMap<String, String>,
    values: AttributeMap,
}

impl Expressions {
    pub(super) fn name(&mut self, name: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(name) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.placeholders.len());
        self.placeholders
            .insert(name.to_owned(), placeholder.clone());
        self.names.insert(placeholder.clone(), name.to_owned());
        placeholder
    }

    pub(super) fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    pub(super) fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::Exists => format!("attribute_exists({})", self.name(PK)),
            Condition::NotExists => format!("attribute_not_exists({})", self.name(PK)),
            Condition::Equals(name, value) => self.comparison(name, "=", value),
            Condition::NotEquals(name, value) => {
                let name = self.name(name);
                let value = self.value(to_attribute(value));
                format!("(attribute_not_exists({name}) OR {name} <> {value})")
            }
            Condition::LessThan(name, value) => self.comparison(name, "<", value),
            Condition::And(all) if all.is_empty() => self.always(true),
            Condition::Or(any) if any.is_empty() => self.always(false),
            Condition::And(all) => self.join(all, " AND "),
            Condition::Or(any) => self.join(any, " OR "),
        }
    }

    fn comparison(&mut self, name: &str, operator: &str, value: &Value) -> String {
        let name = self.name(name);
        let value = self.value(to_attribute(value));
        format!("{name} {operator} {value}")
    }

    fn join(&mut self, conditions: &[Condition], operator: &str) -> String {
        let parts: Vec<String> = conditions.iter().map(|c| self.condition(c)).collect();
        format!("({})", parts.join(operator))
    }

    /// DynamoDB has no literal true or false; an item exists or it does not.
    fn always(&mut self, truth: bool) -> String {
        let pk = self.name(PK);
        if truth {
            format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))")
        } else {
            format!("(attribute_exists({pk}) AND attribute_not_exists({pk}))")
        }
    }

    /// The update expression. The port applies REMOVE, then SET, then ADD; DynamoDB refuses two
    /// actions on one attribute, so those are folded into one SET first, with the same outcome.
    /// An update that changes nothing removes an attribute no item has: DynamoDB needs an
    /// action, and still creates a missing item, as the port's `update` does.
    pub(super) fn update(&mut self, update: &Update) -> String {
        let mut set = update.set.clone();
        let mut add = Vec::new();
        for (name, delta) in &update.add {
            if let Some(value) = set.get(name) {
                let base = value.as_i64().unwrap_or(0);
                set.insert(name.clone(), Value::from(base.saturating_add(*delta)));
            } else if update.remove.contains(name) {
                set.insert(name.clone(), Value::from(*delta));
            } else {
                add.push((name, *delta));
            }
        }
        let remove: BTreeSet<&String> = update
            .remove
            .iter()
            .filter(|name| !set.contains_key(*name))
            .collect();
        let mut clauses = Vec::new();
        if !set.is_empty() {
            let assignments: Vec<String> = set
                .iter()
                .map(|(name, value)| {
                    let name = self.name(name);
                    let value = self.value(to_attribute(value));
                    format!("{name} = {value}")
                })
                .collect();
            clauses.push(format!("SET {}", assignments.join(", ")));
        }
        if !add.is_empty() {
            let additions: Vec<String> = add
                .iter()
                .map(|(name, delta)| {
                    let name = self.name(name);
                    let value = self.value(AttributeValue::N(delta.to_string()));
                    format!("{name} {value}")
                })
                .collect();
            clauses.push(format!("ADD {}", additions.join(", ")));
        }
        if !remove.is_empty() {
            let names: Vec<String> = remove.iter().map(|name| self.name(name)).collect();
            clauses.push(format!("REMOVE {}", names.join(", ")));
        }
        if clauses.is_empty() {
            return format!("REMOVE {}", self.name(NO_SUCH_ATTRIBUTE));
        }
        clauses.join(" ")
    }

    pub(super) fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    pub(super) fn values(&self) -> Option<AttributeMap> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    #[test]
    fn conditions_use_placeholders() {
        let mut exprs = Expressions::default();
        let text = exprs.condition(&Condition::Or(vec![
            Condition::NotExists,
            Condition::And(vec![
                Condition::equals("round", 2),
                Condition::NotEquals("state".into(), json!("done")),
                Condition::less_than("round", 3),
            ]),
        ]));
        assert_eq!(
            text,
            "(attribute_not_exists(#n0) OR (#n1 = :v0 AND (attribute_not_exists(#n2) OR #n2 <> :v1) AND #n1 < :v2))"
        );
        assert_eq!(exprs.names().unwrap().len(), 3);
        assert_eq!(exprs.values().unwrap().len(), 3);
    }

    #[test]
    fn updates_fold_overlapping_actions() {
        let mut exprs = Expressions::default();
        let update = Update::default()
            .set("a", 1)
            .add("a", 2)
            .add("b", 1)
            .remove("c")
            .remove("d")
            .add("d", 4)
            .remove("a");
        let text = exprs.update(&update);
        assert_eq!(text, "SET #n0 = :v0, #n1 = :v1 ADD #n2 :v2 REMOVE #n3");
        let names = exprs.names().unwrap();
        assert_eq!(names["#n0"], "a");
        assert_eq!(names["#n1"], "d");
        assert_eq!(names["#n2"], "b");
        assert_eq!(names["#n3"], "c");
        let values = exprs.values().unwrap();
        assert_eq!(values[":v0"], AttributeValue::N("3".into()));
        assert_eq!(values[":v1"], AttributeValue::N("4".into()));
        assert_eq!(
            Expressions::default().update(&Update::default()),
            "REMOVE #n0"
        );
    }
}
