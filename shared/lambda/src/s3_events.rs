//! S3 object-created notifications, as they reach the refresh function through the uploads
//! queue: parsed here, at the edge that receives them, into the (bucket, key) pairs the
//! refresh use case takes. A batch's notifications are merged into one body, so a bulk upload
//! costs one refresh call per batch rather than one per object; the `s3:TestEvent` S3 sends
//! when notifications are set up is recognised and merged as nothing.

use serde_json::Value;

/// What an uploads-queue body is, when it comes from S3.
#[derive(Debug, Clone, PartialEq)]
pub enum Notification {
    /// Event records (object-created or other), as S3 sent them.
    Records(Vec<Value>),
    /// The test message S3 sends when a bucket's notifications are configured.
    Test,
}

/// The S3 notification in `body`, or `None` when it is no S3 notification (a job).
pub fn notification(body: &str) -> Option<Notification> {
    let value: Value = serde_json::from_str(body).ok()?;
    if value.get("Event").and_then(Value::as_str) == Some("s3:TestEvent") {
        return Some(Notification::Test);
    }
    Some(Notification::Records(
        value.get("Records")?.as_array()?.clone(),
    ))
}

/// One notification body holding every record of `notifications`: run as one job, it makes
/// one refresh call for the whole batch.
pub fn merge(notifications: impl IntoIterator<Item = Notification>) -> String {
    let records: Vec<Value> = notifications
        .into_iter()
        .flat_map(|notification| match notification {
            Notification::Records(records) => records,
            Notification::Test => Vec::new(),
        })
        .collect();
    serde_json::json!({ "Records": records }).to_string()
}

/// Decodes an S3 event key (`+` for spaces, `%XX` escapes).
fn decode_event_key(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                match u8::from_str_radix(
                    std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap_or("zz"),
                    16,
                ) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The records of an S3 object-created notification: (bucket, key).
pub fn parse_object_created(body: &str) -> Option<Vec<(String, String)>> {
    let records = match notification(body)? {
        Notification::Records(records) => records,
        Notification::Test => return Some(Vec::new()),
    };
    Some(
        records
            .iter()
            .filter(|r| {
                r["eventName"]
                    .as_str()
                    .is_none_or(|name| name.starts_with("ObjectCreated"))
            })
            .filter_map(|r| {
                let bucket = r["s3"]["bucket"]["name"].as_str()?;
                let key = r["s3"]["object"]["key"].as_str()?;
                Some((bucket.to_owned(), decode_event_key(key)))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_keys_are_decoded() {
        assert_eq!(decode_event_key("a%2Fb+c.jpg"), "a/b c.jpg");
        assert_eq!(decode_event_key("plain/key.png"), "plain/key.png");
        assert_eq!(decode_event_key("100%25.png"), "100%.png");
    }

    #[test]
    fn s3_notifications_are_parsed() {
        let body = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"photos"},"object":{"key":"cats%2Fa+b.jpg","size":3}}}]}"#;
        assert_eq!(
            parse_object_created(body),
            Some(vec![("photos".to_owned(), "cats/a b.jpg".to_owned())])
        );
        assert_eq!(parse_object_created(r#"{"type":"ingest"}"#), None);
    }

    #[test]
    fn the_s3_test_event_is_a_notification_of_nothing() {
        let body = r#"{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2026-12-01T10:00:00.000Z","Bucket":"photos","RequestId":"R","HostId":"H"}"#;
        assert_eq!(notification(body), Some(Notification::Test));
        assert_eq!(parse_object_created(body), Some(Vec::new()));
    }

    #[test]
    fn merged_notifications_hold_every_record_in_order() {
        let one = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"p"},"object":{"key":"a.jpg"}}}]}"#;
        let two = r#"{"Records":[{"eventName":"ObjectCreated:Put","s3":{"bucket":{"name":"p"},"object":{"key":"b.jpg"}}}]}"#;
        let merged = merge(
            [one, r#"{"Event":"s3:TestEvent"}"#, two]
                .into_iter()
                .filter_map(notification),
        );
        assert_eq!(
            parse_object_created(&merged),
            Some(vec![
                ("p".to_owned(), "a.jpg".to_owned()),
                ("p".to_owned(), "b.jpg".to_owned())
            ])
        );
    }

    #[test]
    fn other_notifications_add_nothing() {
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"photos"},"object":{"key":"a.jpg"}}}]}"#;
        assert_eq!(parse_object_created(body), Some(Vec::new()));
    }
}
