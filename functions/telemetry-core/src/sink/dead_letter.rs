//! Dead letters: permanently invalid messages, kept with their reason and
//! raw bytes so nothing is silently dropped and nothing is retried forever.

use std::io::Write;
use std::path::PathBuf;

use async_trait::async_trait;
use base64::Engine;
use serde::Serialize;

use crate::envelope::RawMessage;
use crate::payload::timestamp::millis_to_rfc3339;
use crate::sink::{DeadLetterError, DeadLetterSink};

/// One rejected message, as written to the dead-letter destination (one
/// JSON object per line).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct DeadLetter {
    /// When the function rejected it (RFC 3339).
    pub rejected_at: String,
    pub request_id: String,
    pub source: String,
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub topic: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub received_at: Option<String>,
    pub reason: String,
    /// The payload as received: UTF-8 text, or base64 when it is not text.
    pub payload: String,
    /// `utf-8` or `base64`.
    pub payload_encoding: String,
}

impl DeadLetter {
    pub fn new(message: &RawMessage<'_>, request_id: &str, reason: String, now_ms: i64) -> Self {
        let (payload, payload_encoding) = encode_payload(&message.payload.bytes());
        DeadLetter {
            rejected_at: millis_to_rfc3339(now_ms),
            request_id: request_id.to_owned(),
            source: message.source.as_str().to_owned(),
            message_id: message.id.to_string(),
            topic: message.topic.as_deref().map(str::to_owned),
            received_at: message.received_at_ms.map(millis_to_rfc3339),
            reason,
            payload,
            payload_encoding,
        }
    }

    /// For an event that could not be unwrapped at all.
    pub fn whole_event(event: &[u8], request_id: &str, reason: String, now_ms: i64) -> Self {
        let (payload, payload_encoding) = encode_payload(event);
        DeadLetter {
            rejected_at: millis_to_rfc3339(now_ms),
            request_id: request_id.to_owned(),
            source: "unknown".into(),
            // Unique per event, so a table keyed by message id keeps each one.
            message_id: format!("event-{request_id}"),
            topic: None,
            received_at: None,
            reason,
            payload,
            payload_encoding,
        }
    }

    /// The raw payload bytes back.
    pub fn payload_bytes(&self) -> Vec<u8> {
        if self.payload_encoding == "base64" {
            base64::engine::general_purpose::STANDARD
                .decode(&self.payload)
                .unwrap_or_default()
        } else {
            self.payload.clone().into_bytes()
        }
    }
}

/// Text as it is; anything else (not UTF-8, or holding a NUL byte, which
/// databases such as PostgreSQL refuse in text) as base64.
fn encode_payload(bytes: &[u8]) -> (String, String) {
    match std::str::from_utf8(bytes) {
        Ok(text) if !text.contains('\0') => (text.to_owned(), "utf-8".into()),
        _ => (
            base64::engine::general_purpose::STANDARD.encode(bytes),
            "base64".into(),
        ),
    }
}

/// Dead letters as JSON Lines.
pub fn to_json_lines(letters: &[DeadLetter]) -> Vec<u8> {
    let mut out = Vec::with_capacity(letters.len() * 256);
    for letter in letters {
        // Serialising plain strings into a Vec cannot fail.
        serde_json::to_writer(&mut out, letter).expect("dead letter serialises");
        out.push(b'\n');
    }
    out
}

/// Writes dead letters to a local directory, one JSON Lines file per day
/// (`<dir>/dead-letters-YYYY-MM-DD.jsonl`), appended in one write per batch.
#[derive(Debug, Clone)]
pub struct LocalDeadLetters {
    pub directory: PathBuf,
}

impl LocalDeadLetters {
    pub fn write_blocking(&self, letters: &[DeadLetter]) -> std::io::Result<String> {
        std::fs::create_dir_all(&self.directory)?;
        let day = letters
            .first()
            .map(|letter| letter.rejected_at.get(..10).unwrap_or("undated").to_owned())
            .unwrap_or_else(|| "undated".into());
        let path = self.directory.join(format!("dead-letters-{day}.jsonl"));
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        file.write_all(&to_json_lines(letters))?;
        Ok(path.display().to_string())
    }
}

#[async_trait]
impl DeadLetterSink for LocalDeadLetters {
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError> {
        self.write_blocking(letters)
            .map_err(|error| DeadLetterError {
                destination: self.directory.display().to_string(),
                reason: error.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::MessageSource;
    use std::borrow::Cow;

    #[test]
    fn keeps_text_as_text_and_binary_as_base64() {
        let text = RawMessage {
            source: MessageSource::Sqs,
            id: Cow::Borrowed("m-1"),
            payload: Cow::Borrowed(&b"2020-7-13 22:43:23|abc"[..]).into(),
            topic: Some(Cow::Borrowed("co2/pi")),
            received_at_ms: Some(0),
            attributes: vec![],
            problem: None,
        };
        let letter = DeadLetter::new(&text, "req", "bad".into(), 0);
        assert_eq!(letter.payload_encoding, "utf-8");
        assert_eq!(letter.payload_bytes(), b"2020-7-13 22:43:23|abc");
        let mut binary = text.clone();
        binary.payload = Cow::Borrowed(&[0xff, 0x00, 0x10][..]).into();
        let letter = DeadLetter::new(&binary, "req", "bad".into(), 0);
        assert_eq!(letter.payload_encoding, "base64");
        assert_eq!(letter.payload_bytes(), vec![0xff, 0x00, 0x10]);
        let lines = to_json_lines(std::slice::from_ref(&letter));
        let back: DeadLetter = serde_json::from_slice(lines.strip_suffix(b"\n").unwrap()).unwrap();
        assert_eq!(back, letter);
        // UTF-8 with a NUL byte: base64 too, so a database can store it.
        let mut nul = text.clone();
        nul.payload = Cow::Borrowed(&b"{\"device\": \"a\x00b\"}"[..]).into();
        let letter = DeadLetter::new(&nul, "req", "bad".into(), 0);
        assert_eq!(letter.payload_encoding, "base64");
        assert_eq!(letter.payload_bytes(), b"{\"device\": \"a\x00b\"}");
    }
}
