//! The content of a request, as reuse compares it: the request line as built for the
//! provider, parsed, without its id field (`custom_id`; Bedrock's `recordId`), written with
//! every object's keys sorted, after its endpoint and model (a Bedrock request names no model:
//! the route's is its group's). Two lines that differ only in their ids, key order or
//! whitespace have the same content.

use xxhash_rust::xxh3::xxh3_128;

/// The id fields a request line carries at its top level.
const ID_FIELDS: [&str; 2] = ["custom_id", "recordId"];

/// The 128-bit content hash of `request` (a request line as sent) in group (`endpoint`,
/// `model`); `None` when it is not a JSON object (such a line is never reused).
pub fn content_hash(endpoint: &str, model: &str, request: &[u8]) -> Option<u128> {
    let value: serde_json::Value = serde_json::from_slice(request.trim_ascii()).ok()?;
    let serde_json::Value::Object(mut map) = value else {
        return None;
    };
    for id in ID_FIELDS {
        map.remove(id);
    }
    let mut out = Vec::with_capacity(request.len() + endpoint.len() + model.len() + 2);
    out.extend_from_slice(endpoint.as_bytes());
    out.push(0);
    out.extend_from_slice(model.as_bytes());
    out.push(0);
    canonical(&serde_json::Value::Object(map), &mut out);
    Some(xxh3_128(&out))
}

/// `value` as JSON with the keys of every object sorted.
fn canonical(value: &serde_json::Value, out: &mut Vec<u8>) {
    match value {
        serde_json::Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push(b'{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_json(&serde_json::Value::String(key.clone()), out);
                out.push(b':');
                canonical(&map[key.as_str()], out);
            }
            out.push(b'}');
        }
        serde_json::Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        scalar => write_json(scalar, out),
    }
}

fn write_json(value: &serde_json::Value, out: &mut Vec<u8>) {
    // Writing a scalar into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHAT: &str = "/v1/chat/completions";

    #[test]
    fn ids_key_order_and_whitespace_do_not_change_the_content() {
        let a = br#"{"custom_id":"a","method":"POST","url":"/v1/chat/completions","body":{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}}"#;
        let b = br#"{ "body": {"max_tokens": 5, "messages": [{"content": "hi", "role": "user"}], "model": "m"}, "url": "/v1/chat/completions", "method": "POST", "custom_id": "other" }"#;
        assert_eq!(content_hash(CHAT, "m", a), content_hash(CHAT, "m", b));
        assert!(content_hash(CHAT, "m", a).is_some());
    }

    #[test]
    fn messages_parameters_model_and_endpoint_change_it() {
        let base = br#"{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":5}}"#;
        let other_message = br#"{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"ho"}],"max_tokens":5}}"#;
        let other_parameter = br#"{"custom_id":"a","body":{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":6}}"#;
        let h = content_hash(CHAT, "m", base);
        assert_ne!(h, content_hash(CHAT, "m", other_message));
        assert_ne!(h, content_hash(CHAT, "m", other_parameter));
        assert_ne!(h, content_hash(CHAT, "m2", base));
        assert_ne!(h, content_hash("/v1/embeddings", "m", base));
    }

    #[test]
    fn a_bedrock_record_id_is_an_id_too() {
        let a = br#"{"recordId":"r1","modelInput":{"prompt":"x"}}"#;
        let b = br#"{"recordId":"r2","modelInput":{"prompt":"x"}}"#;
        assert_eq!(content_hash("", "m", a), content_hash("", "m", b));
    }

    #[test]
    fn a_line_that_is_not_an_object_has_no_content() {
        assert_eq!(content_hash(CHAT, "m", b"[1,2]"), None);
        assert_eq!(content_hash(CHAT, "m", b"not json"), None);
    }
}
