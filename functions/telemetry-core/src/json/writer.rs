//! Minimal JSON writing straight into a byte buffer, for the EMF encoder's
//! hot loop (no intermediate `Value`, no per-field allocation).

/// Appends `text` as a JSON string literal. Plain runs are found sixteen
/// bytes at a time and copied whole.
pub fn write_str(out: &mut Vec<u8>, text: &str) {
    use crate::json::byte_classes::next_special;
    let bytes = text.as_bytes();
    // Names and devices rarely need escaping: one reservation covers them.
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut plain_from = 0;
    while let Some(index) = next_special(bytes, plain_from) {
        out.extend_from_slice(&bytes[plain_from..index]);
        let byte = bytes[index];
        match byte {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            b'\t' => out.extend_from_slice(b"\\t"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[(byte >> 4) as usize]);
                out.push(HEX[(byte & 0xf) as usize]);
            }
        }
        plain_from = index + 1;
    }
    out.extend_from_slice(&bytes[plain_from..]);
    out.push(b'"');
}

/// Appends a finite float in the shortest form that reads back exactly.
pub fn write_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_finite() {
        let mut buffer = zmij::Buffer::new();
        out.extend_from_slice(buffer.format_finite(value).as_bytes());
    } else {
        out.extend_from_slice(b"null");
    }
}

pub fn write_i64(out: &mut Vec<u8>, value: i64) {
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(value).as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_round_trip_through_serde() {
        for text in [
            "plain",
            "quote \" and \\ back",
            "line\nbreak\u{1}",
            "유니코드 ✓",
        ] {
            let mut out = Vec::new();
            write_str(&mut out, text);
            let back: String = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, text);
        }
    }

    #[test]
    fn floats_read_back_exactly() {
        for value in [
            17.95215062408679,
            0.1,
            -3.0,
            1e300,
            42.0,
            5e-324,
            f64::MAX,
            1e16,
            -1e-7,
            0.0,
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, value);
            let back: f64 = serde_json::from_slice(&out).unwrap();
            assert_eq!(back, value);
        }
    }
}
