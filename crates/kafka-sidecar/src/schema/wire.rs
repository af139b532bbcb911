//! Confluent's wire format around every schema-encoded key or value: a magic byte 0, the schema id
//! as a 4-byte big-endian integer, then the format's own body (for protobuf that body starts with
//! the message-index list, which the protobuf codec owns).

/// The first byte of every Confluent-framed payload.
pub const MAGIC_BYTE: u8 = 0;
/// Magic byte plus schema id.
pub const HEADER_BYTES: usize = 5;

/// Appends the header for schema `id` to `out`.
pub fn write_header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC_BYTE);
    out.extend_from_slice(&id.to_be_bytes());
}

/// Splits a framed payload into its schema id and body, or says why it is not one.
pub fn split_header(bytes: &[u8]) -> Result<(u32, &[u8]), String> {
    match bytes {
        [MAGIC_BYTE, a, b, c, d, body @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), body)),
        [] => Err("empty, not in the schema registry's wire format".into()),
        [first, ..] if *first != MAGIC_BYTE => {
            Err(format!("not in the schema registry's wire format (first byte {first:#04x}, expected 0x00)"))
        }
        _ => Err(format!("{} bytes, too short for the schema registry's 5-byte header", bytes.len())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_foreign_bytes() {
        let mut framed = Vec::new();
        write_header(0x0102_0304, &mut framed);
        framed.extend_from_slice(b"body");
        assert_eq!(framed[..5], [0, 1, 2, 3, 4]);
        assert_eq!(split_header(&framed), Ok((0x0102_0304, &b"body"[..])));
        assert!(split_header(b"{\"a\":1}").expect_err("json").contains("first byte 0x7b"));
        assert!(split_header(&[0, 0, 1]).expect_err("short").contains("too short"));
        assert!(split_header(&[]).is_err());
    }
}
