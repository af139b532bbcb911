//! The records of the value-format scenario: orders of a realistic shape (a long id, a string
//! name, an int quantity, a double price, a nullable string note; about 100 B in Avro's wire
//! format), each as the JSON an app sends for avro and as binary bytes of exactly the same length,
//! and the schema's registration with the registry (once, before anything is measured).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use serde_json::{Value, json};

/// The value schema every avro record is written with.
pub const ORDER_SCHEMA: &str = r#"{"type": "record", "name": "Order", "namespace": "bench.formats", "fields": [
  {"name": "id", "type": "long"},
  {"name": "name", "type": "string"},
  {"name": "quantity", "type": "int"},
  {"name": "price", "type": "double"},
  {"name": "note", "type": ["null", "string"], "default": null}]}"#;

/// Confluent's wire-format header: magic byte and a 4-byte schema id.
const WIRE_HEADER_BYTES: usize = 5;
/// How long the registry may take to accept writes after it starts (it answers 503 until it has
/// elected itself primary).
const REGISTRY_READY_LIMIT: Duration = Duration::from_secs(60);
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789 ";

/// One order in both shapes.
pub struct Order {
    /// The record key (a string, the same in both formats).
    pub key: String,
    /// The value in Avro's JSON encoding (the union's branch named: `{"string": ...}`).
    pub json: Value,
    /// Binary bytes as long as the avro value will be in Kafka (header included).
    pub binary: Bytes,
}

/// `count` distinct orders (deterministic pseudo-random: a quarter of the notes are null).
pub fn orders(count: usize) -> Vec<Order> {
    let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
    (0..count)
        .map(|index| {
            let id = 1_000_000_000_000 + index as i64 * 7919 + (random.next() % 7919) as i64;
            let name = random.text(20, 40);
            let quantity = 1 + (random.next() % 999) as i32;
            let price = (100 + random.next() % 99_900) as f64 / 100.0;
            let note = (!random.next().is_multiple_of(4)).then(|| random.text(40, 80));
            let wire_bytes = WIRE_HEADER_BYTES
                + long_bytes(id)
                + string_bytes(&name)
                + long_bytes(quantity.into())
                + 8
                + 1
                + note.as_deref().map_or(0, string_bytes);
            let json = json!({
                "id": id,
                "name": name,
                "quantity": quantity,
                "price": price,
                "note": note.map(|note| json!({"string": note})),
            });
            let binary: Bytes =
                (0..wire_bytes).map(|_| ALPHABET[(random.next() % ALPHABET.len() as u64) as usize]).collect();
            Order { key: format!("order-{id}"), json, binary }
        })
        .collect()
}

/// Registers [`ORDER_SCHEMA`] under `subject` with the registry at `url` and returns its id;
/// retries while the registry is starting (503 or not yet listening).
pub async fn register(http: &reqwest::Client, url: &str, subject: &str) -> Result<u32> {
    let deadline = Instant::now() + REGISTRY_READY_LIMIT;
    let body = json!({ "schema": ORDER_SCHEMA }).to_string();
    loop {
        let sent = http
            .post(format!("{}/subjects/{subject}/versions", url.trim_end_matches('/')))
            .header(reqwest::header::CONTENT_TYPE, "application/vnd.schemaregistry.v1+json")
            .body(body.clone())
            .send()
            .await;
        let why = match sent {
            Ok(response) if response.status().is_success() => {
                let answer: Value =
                    serde_json::from_slice(&response.bytes().await?).context("the registry's answer")?;
                let id = answer.get("id").and_then(Value::as_u64).and_then(|id| u32::try_from(id).ok());
                return id.with_context(|| format!("the registry's answer has no id: {answer}"));
            }
            Ok(response) if response.status() == reqwest::StatusCode::SERVICE_UNAVAILABLE => "503".to_string(),
            Ok(response) => bail!("registering {subject}: HTTP {}: {}", response.status(), response.text().await?),
            Err(error) => error.to_string(),
        };
        if Instant::now() > deadline {
            bail!("the registry at {url} accepted no write within {REGISTRY_READY_LIMIT:?} (last: {why})");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Bytes of an Avro `int` or `long`: a zigzag varint.
fn long_bytes(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    (64 - zigzag.leading_zeros() as usize).max(1).div_ceil(7)
}

/// Bytes of an Avro `string`: its length as a long, then its UTF-8.
fn string_bytes(text: &str) -> usize {
    long_bytes(text.len() as i64) + text.len()
}

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// Alphanumeric text (with spaces) of `shortest..=longest` characters.
    fn text(&mut self, shortest: u64, longest: u64) -> String {
        let length = shortest + self.next() % (longest - shortest + 1);
        (0..length).map(|_| ALPHABET[(self.next() % ALPHABET.len() as u64) as usize] as char).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zigzag_varint_lengths_match_avro() {
        // Avro's spec: 0 -> 00, -1 -> 01, 1 -> 02, -64 -> 7f, 64 -> 80 01.
        assert_eq!([0, -1, 1, -64, 63].map(long_bytes), [1; 5]);
        assert_eq!([64, -65, 8191].map(long_bytes), [2; 3]);
        assert_eq!(long_bytes(1_000_000_000_000), 6);
        assert_eq!(long_bytes(i64::MIN), 10);
        assert_eq!(string_bytes(&"x".repeat(64)), 66);
    }

    #[test]
    fn orders_are_about_100_bytes_and_binary_twins_match_in_length() {
        let orders = orders(256);
        let mean = orders.iter().map(|order| order.binary.len()).sum::<usize>() as f64 / orders.len() as f64;
        assert!((90.0..=110.0).contains(&mean), "mean {mean}");
        assert!(orders.iter().any(|order| order.json["note"].is_null()));
        let order = &orders[0];
        let expected = WIRE_HEADER_BYTES
            + long_bytes(order.json["id"].as_i64().unwrap_or_default())
            + string_bytes(order.json["name"].as_str().unwrap_or_default())
            + long_bytes(order.json["quantity"].as_i64().unwrap_or_default())
            + 8
            + 1
            + order.json["note"]["string"].as_str().map_or(0, string_bytes);
        assert_eq!(order.binary.len(), expected);
    }
}
