//! AWS IoT's data plane as the `device-commands` function's sink: `Publish`
//! (QoS 1) to a command topic, `UpdateThingShadow` for a shadow's desired
//! state, and a named shadow (`commands` by default) that keeps the last
//! command each rule sent a device, for `on_change`.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_iotdataplane::primitives::Blob;
use aws_sdk_iotdataplane::Client;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use serde_json::{json, Value};
use telemetry_core::sink::commands::{CommandError, CommandSink};

use crate::retry::{error_chain, failure_kind};

/// The data-plane client and the name of the memory shadow.
#[derive(Clone, Debug)]
pub struct IotCommands {
    client: Client,
    memory_shadow: String,
}

impl IotCommands {
    pub fn new(sdk: &SdkConfig, memory_shadow: impl Into<String>) -> Self {
        IotCommands {
            client: Client::new(sdk),
            memory_shadow: memory_shadow.into(),
        }
    }
}

/// A failed data-plane call, with the retry class its SDK error carries.
fn failed<E>(action: String, device: &str, error: &SdkError<E, HttpResponse>) -> CommandError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    CommandError {
        action,
        device: device.to_owned(),
        reason: error_chain(error),
        kind: failure_kind(error),
    }
}

fn body(value: &Value) -> Blob {
    // Serialising a JSON value cannot fail.
    Blob::new(serde_json::to_vec(value).expect("JSON serialises"))
}

#[async_trait]
impl CommandSink for IotCommands {
    async fn last_commands(&self, device: &str) -> Result<HashMap<String, Value>, CommandError> {
        let answer = self
            .client
            .get_thing_shadow()
            .thing_name(device)
            .shadow_name(&self.memory_shadow)
            .send()
            .await;
        let output = match answer {
            Ok(output) => output,
            // No shadow yet: nothing was sent.
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_resource_not_found_exception()) =>
            {
                return Ok(HashMap::new())
            }
            Err(error) => {
                return Err(failed(
                    format!("GetThingShadow {}", self.memory_shadow),
                    device,
                    &error,
                ))
            }
        };
        let document: Value = output
            .payload()
            .and_then(|payload| serde_json::from_slice(payload.as_ref()).ok())
            .unwrap_or(Value::Null);
        let commands = document["state"]["reported"]["commands"]
            .as_object()
            .map(|commands| {
                commands
                    .iter()
                    .filter(|(_, command)| !command.is_null())
                    .map(|(rule, command)| (rule.clone(), command.clone()))
                    .collect()
            })
            .unwrap_or_default();
        Ok(commands)
    }

    async fn publish(
        &self,
        device: &str,
        topic: &str,
        payload: &Value,
    ) -> Result<(), CommandError> {
        self.client
            .publish()
            .topic(topic)
            .qos(1)
            .payload(body(payload))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| failed(format!("Publish to {topic}"), device, &error))
    }

    async fn set_desired(&self, device: &str, desired: &Value) -> Result<(), CommandError> {
        self.client
            .update_thing_shadow()
            .thing_name(device)
            .payload(body(&json!({"state": {"desired": desired}})))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| failed("UpdateThingShadow (desired)".to_owned(), device, &error))
    }

    async fn remember(
        &self,
        device: &str,
        sent: &HashMap<String, Value>,
    ) -> Result<(), CommandError> {
        self.client
            .update_thing_shadow()
            .thing_name(device)
            .shadow_name(&self.memory_shadow)
            .payload(body(&json!({"state": {"reported": {"commands": sent}}})))
            .send()
            .await
            .map(|_| ())
            .map_err(|error| {
                failed(
                    format!("UpdateThingShadow {}", self.memory_shadow),
                    device,
                    &error,
                )
            })
    }
}
