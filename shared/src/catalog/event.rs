//! The S3 notification that triggers ingest, read leniently: only the bucket
//! keys matter (ingest reads each object's current state itself), and the
//! emulator's events carry fewer fields than AWS's.

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
pub struct S3Notification {
    #[serde(rename = "Records", default)]
    records: Vec<Record>,
}

#[derive(Debug, Deserialize)]
struct Record {
    s3: Entity,
}

#[derive(Debug, Deserialize)]
struct Entity {
    object: Object,
}

#[derive(Debug, Deserialize)]
struct Object {
    key: String,
}

impl S3Notification {
    /// The keys named, decoded (S3 sends them URL-encoded, spaces as `+`),
    /// each once, in order.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = Vec::new();
        for record in &self.records {
            let key = decode(&record.s3.object.key);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
        keys
    }
}

fn decode(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() && raw.is_char_boundary(index + 3) => {
                match u8::from_str_radix(&raw[index + 1..index + 3], 16) {
                    Ok(byte) => {
                        out.push(byte);
                        index += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        index += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_decoded_keys_once() {
        let event: S3Notification = serde_json::from_value(serde_json::json!({
            "Records": [
                {"eventName": "ObjectCreated:Put", "s3": {"bucket": {"name": "b"}, "object": {"key": "team+a/db%C3%A9.yaml"}}},
                {"eventName": "ObjectRemoved:Delete", "s3": {"object": {"key": "team+a/db%C3%A9.yaml"}}},
                {"s3": {"object": {"key": "x%2"}}}
            ]
        }))
        .unwrap();
        assert_eq!(event.keys(), ["team a/dbé.yaml", "x%2"]);
    }

    #[test]
    fn an_event_without_records_names_no_keys() {
        let event: S3Notification = serde_json::from_str("{}").unwrap();
        assert!(event.keys().is_empty());
    }
}
