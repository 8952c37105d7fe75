//! S3 object-created notifications, as they reach the refresh function through the uploads
//! queue: parsed here, at the edge that receives them, into the (bucket, key) pairs the
//! refresh use case takes.

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
    let value: serde_json::Value = serde_json::from_str(body).ok()?;
    let records = value.get("Records")?.as_array()?;
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
    fn other_notifications_add_nothing() {
        let body = r#"{"Records":[{"eventName":"ObjectRemoved:Delete","s3":{"bucket":{"name":"photos"},"object":{"key":"a.jpg"}}}]}"#;
        assert_eq!(parse_object_created(body), Some(Vec::new()));
    }
}
