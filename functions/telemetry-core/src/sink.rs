//! The sink traits: one implementation per backend, chosen by configuration.

use std::io::Write;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::deadletter::{DeadLetter, LocalDeadLetters};
use crate::emf;
use crate::reading::Reading;

/// What a metrics sink managed to deliver.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delivery {
    /// Message indexes whose readings could not be delivered (transient
    /// failures, worth a retry).
    pub failed_messages: Vec<u32>,
    /// The last error seen, for the log.
    pub error: Option<String>,
    /// API calls made (EMF: zero).
    pub api_calls: u32,
}

#[async_trait]
pub trait MetricsSink: Send + Sync {
    /// Delivers valid readings; never fails as a whole, reports per message.
    async fn send(&self, readings: &[Reading]) -> Delivery;
}

/// Error of a dead-letter write; the messages concerned are retried.
#[derive(Debug, thiserror::Error)]
#[error("cannot write dead letters to {destination}: {reason}")]
pub struct DeadLetterError {
    pub destination: String,
    pub reason: String,
}

#[async_trait]
pub trait DeadLetterSink: Send + Sync {
    /// Stores the letters; returns where they went.
    async fn write(&self, letters: &[DeadLetter]) -> Result<String, DeadLetterError>;
}

/// The EMF buffer capacity kept between invocations: a full SQS batch of
/// readings that share no document (each its own device or minute: about
/// 2.5 MB of EMF).
const EMF_BUFFER_KEPT: usize = 4 << 20;

/// EMF lines to a writer (stdout in Lambda), one write per batch.
pub struct EmfSink {
    encoder: emf::EmfEncoder,
    writer: Mutex<Box<dyn Write + Send>>,
    /// Reused across invocations: after the first, encoding touches no new pages.
    buffer: Mutex<Vec<u8>>,
}

impl EmfSink {
    pub fn stdout(namespace: &str) -> Self {
        Self::new(namespace, Box::new(std::io::stdout()))
    }

    pub fn new(namespace: &str, writer: Box<dyn Write + Send>) -> Self {
        EmfSink {
            encoder: emf::EmfEncoder::new(namespace),
            writer: Mutex::new(writer),
            buffer: Mutex::new(Vec::new()),
        }
    }
}

#[async_trait]
impl MetricsSink for EmfSink {
    async fn send(&self, readings: &[Reading]) -> Delivery {
        let mut buffer = match self.buffer.lock() {
            Ok(buffer) => buffer,
            Err(poisoned) => poisoned.into_inner(),
        };
        buffer.clear();
        self.encoder.encode(readings, &mut buffer);
        let mut writer = match self.writer.lock() {
            Ok(writer) => writer,
            Err(poisoned) => poisoned.into_inner(),
        };
        let written = writer.write_all(&buffer).and_then(|()| writer.flush());
        // Keep a batch's worth of capacity, not the largest batch ever seen.
        // Shrinking rather than dropping: a batch that outgrew the limit
        // (10,000 readings with long names reach it by doubling) would
        // otherwise grow its buffer again, on fresh pages, every time.
        if buffer.capacity() > EMF_BUFFER_KEPT {
            buffer.clear();
            buffer.shrink_to(EMF_BUFFER_KEPT);
        }
        match written {
            Ok(()) => Delivery::default(),
            Err(error) => Delivery {
                failed_messages: all_messages(readings),
                error: Some(format!("cannot write EMF to stdout: {error}")),
                api_calls: 0,
            },
        }
    }
}

/// Every message index that has a reading, sorted and unique.
pub fn all_messages(readings: &[Reading]) -> Vec<u32> {
    let mut messages: Vec<u32> = readings.iter().map(|reading| reading.message).collect();
    messages.sort_unstable();
    messages.dedup();
    messages
}

/// A writer that keeps what it is given, for tests and the local replay.
#[derive(Clone, Default)]
pub struct SharedBuffer(pub Arc<Mutex<Vec<u8>>>);

impl SharedBuffer {
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("buffer lock"))
    }
}

impl Write for SharedBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("buffer lock").extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    use crate::unit::Unit;

    /// Readings that share no document (each its own device): the most
    /// EMF a batch can take.
    fn readings(count: usize) -> Vec<Reading> {
        (0..count)
            .map(|index| Reading {
                unit: Unit::Percent,
                message: index as u32,
                ..Reading::sample(
                    &format!("raspberrypi-{index:05}"),
                    &format!("cpu usage (raspberrypi-{:03})", index % 100),
                    index as f64,
                    1_645_938_062_000,
                )
            })
            .collect()
    }

    #[tokio::test]
    async fn the_emf_buffer_keeps_a_full_batch_of_capacity_between_invocations() {
        let sink = EmfSink::new("IoT/Telemetry", Box::new(std::io::sink()));
        let capacity = || sink.buffer.lock().unwrap().capacity();
        // More than the kept capacity: shrunk to it, not dropped.
        assert!(sink.send(&readings(30_000)).await.error.is_none());
        let kept = capacity();
        assert!(
            (EMF_BUFFER_KEPT..2 * EMF_BUFFER_KEPT).contains(&kept),
            "{kept}"
        );
        // A full batch then fits without growing.
        assert!(sink.send(&readings(10_000)).await.error.is_none());
        assert_eq!(capacity(), kept);
    }
}
