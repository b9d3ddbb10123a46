//! Where commands go: a device's command topic or its shadow, and the
//! memory `on_change` needs between invocations (Lambda keeps none).

use std::collections::HashMap;

use async_trait::async_trait;
use serde_json::Value;

use crate::outcome::FailureKind;

/// A command could not be sent or remembered.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{action} for device {device}: {reason}")]
pub struct CommandError {
    /// The call that failed (`Publish to n-1/commands`, `UpdateThingShadow`, ...).
    pub action: String,
    pub device: String,
    pub reason: String,
    pub kind: FailureKind,
}

/// The backend of the `device-commands` function (AWS IoT's data plane).
#[async_trait]
pub trait CommandSink: Send + Sync {
    /// The last command each rule sent `device` (rule name -> command), as
    /// `remember` left it; empty when nothing was sent yet.
    async fn last_commands(&self, device: &str) -> Result<HashMap<String, Value>, CommandError>;
    /// Publishes `payload` to `topic` (QoS 1).
    async fn publish(&self, device: &str, topic: &str, payload: &Value)
        -> Result<(), CommandError>;
    /// Sets `desired` as the desired state of `device`'s shadow.
    async fn set_desired(&self, device: &str, desired: &Value) -> Result<(), CommandError>;
    /// Keeps the last command each rule sent `device`.
    async fn remember(
        &self,
        device: &str,
        sent: &HashMap<String, Value>,
    ) -> Result<(), CommandError>;
}
