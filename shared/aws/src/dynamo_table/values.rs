//! JSON values as DynamoDB attribute values and back, and items as attribute maps.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use labeling_core::ports::{Attrs, Item, Key, TableError};
use serde_json::{Number, Value};

use super::{AttributeMap, PK, SK};
use crate::error::invalid_answer;

/// A JSON value as a DynamoDB attribute value.
pub(super) fn to_attribute(value: &Value) -> AttributeValue {
    match value {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(n) => AttributeValue::N(n.to_string()),
        Value::String(s) => AttributeValue::S(s.clone()),
        Value::Array(values) => AttributeValue::L(values.iter().map(to_attribute).collect()),
        Value::Object(map) => AttributeValue::M(
            map.iter()
                .map(|(name, value)| (name.clone(), to_attribute(value)))
                .collect(),
        ),
    }
}

/// A DynamoDB attribute value as JSON; sets become arrays. Binary values have no JSON form.
pub(super) fn from_attribute(value: &AttributeValue) -> Result<Value, TableError> {
    Ok(match value {
        AttributeValue::S(s) => Value::String(s.clone()),
        AttributeValue::N(n) => parse_number(n)?,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::L(values) => Value::Array(
            values
                .iter()
                .map(from_attribute)
                .collect::<Result<_, _>>()?,
        ),
        AttributeValue::M(map) => Value::Object(
            map.iter()
                .map(|(name, value)| Ok((name.clone(), from_attribute(value)?)))
                .collect::<Result<_, TableError>>()?,
        ),
        AttributeValue::Ss(values) => {
            Value::Array(values.iter().cloned().map(Value::from).collect())
        }
        AttributeValue::Ns(values) => Value::Array(
            values
                .iter()
                .map(|n| parse_number(n))
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(TableError::Unavailable(invalid_answer(
                "decoding an item",
                format!("an attribute of a type JSON cannot hold: {other:?}"),
            )));
        }
    })
}

/// Parses a DynamoDB number: an integer when it is integral and fits, else a float.
fn parse_number(text: &str) -> Result<Value, TableError> {
    if let Ok(i) = text.parse::<i64>() {
        return Ok(Value::from(i));
    }
    if let Ok(u) = text.parse::<u64>() {
        return Ok(Value::from(u));
    }
    let float: f64 = text.parse().map_err(|_| {
        TableError::Unavailable(invalid_answer(
            "decoding an item",
            format!("{text:?} is not a number"),
        ))
    })?;
    // i64::MIN..=i64::MAX as floats; 2^63 itself is out of range.
    if float.fract() == 0.0
        && (-9_223_372_036_854_775_808.0..9_223_372_036_854_775_808.0).contains(&float)
    {
        #[allow(clippy::cast_possible_truncation)]
        return Ok(Value::from(float as i64));
    }
    Number::from_f64(float).map(Value::Number).ok_or_else(|| {
        TableError::Unavailable(invalid_answer(
            "decoding an item",
            format!("{text:?} is not a finite number"),
        ))
    })
}

pub(super) fn key_map(key: &Key) -> AttributeMap {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(key.pk.clone())),
        (SK.to_owned(), AttributeValue::S(key.sk.clone())),
    ])
}

pub(super) fn encode_item(item: &Item) -> AttributeMap {
    let mut map: AttributeMap = item
        .attrs
        .iter()
        .map(|(name, value)| (name.clone(), to_attribute(value)))
        .collect();
    map.extend(key_map(&item.key));
    map
}

pub(super) fn decode_item(map: &AttributeMap) -> Result<Item, TableError> {
    let key_part = |name: &str| -> Result<String, TableError> {
        match map.get(name) {
            Some(AttributeValue::S(s)) => Ok(s.clone()),
            _ => Err(TableError::Unavailable(invalid_answer(
                "decoding an item",
                format!("an item without a string {name}"),
            ))),
        }
    };
    let key = Key::new(key_part(PK)?, key_part(SK)?);
    let mut attrs = Attrs::new();
    for (name, value) in map {
        if name != PK && name != SK {
            attrs.insert(name.clone(), from_attribute(value)?);
        }
    }
    Ok(Item::new(key, attrs))
}
#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;
    #[test]
    fn values_round_trip() {
        let value =
            json!({"s": "x", "i": -3, "f": 1.5, "b": true, "n": null, "l": [1, "two", {"m": []}]});
        assert_eq!(from_attribute(&to_attribute(&value)).unwrap(), value);
    }

    #[test]
    fn numbers_parse_as_integers_when_integral() {
        assert_eq!(parse_number("5").unwrap(), json!(5));
        assert_eq!(parse_number("5.0").unwrap(), json!(5));
        assert_eq!(parse_number("1E+3").unwrap(), json!(1000));
        assert_eq!(parse_number("0.25").unwrap(), json!(0.25));
        assert_eq!(
            parse_number("18446744073709551615").unwrap(),
            json!(u64::MAX)
        );
        assert!(parse_number("nope").is_err());
    }
}
