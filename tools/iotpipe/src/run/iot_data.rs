//! The AWS IoT data plane, locally: what `device-commands` calls through
//! `aws-sdk-iotdataplane` (`AWS_ENDPOINT_URL_IOT_DATA_PLANE` points it
//! here). `Publish` goes to the MQTT broker, so the devices get their
//! commands; `GetThingShadow` and `UpdateThingShadow` keep shadow documents
//! in memory (merged as IoT merges them: `null` removes a key).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use hyper::{Method, StatusCode};
use percent_encoding::percent_decode_str;
use serde_json::{json, Map, Value};
use tokio::sync::mpsc::UnboundedSender;

use super::http::{HttpRequest, HttpResponse};

/// A command to publish: topic and payload.
pub type Outgoing = (String, Vec<u8>);

#[derive(Clone)]
pub struct IotData {
    shadows: Arc<Mutex<HashMap<(String, String), Value>>>,
    publish: UnboundedSender<Outgoing>,
}

impl IotData {
    pub fn new(publish: UnboundedSender<Outgoing>) -> IotData {
        IotData {
            shadows: Arc::default(),
            publish,
        }
    }

    pub fn handle(&self, request: &HttpRequest) -> HttpResponse {
        let path = percent_decode_str(&request.path)
            .decode_utf8_lossy()
            .into_owned();
        if let (&Method::POST, Some(topic)) = (&request.method, path.strip_prefix("/topics/")) {
            if self
                .publish
                .send((topic.to_owned(), request.body.to_vec()))
                .is_err()
            {
                return error(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailableException",
                    "the local broker is gone",
                );
            }
            return HttpResponse::json(StatusCode::OK, "{}");
        }
        let Some(thing) = path
            .strip_prefix("/things/")
            .and_then(|rest| rest.strip_suffix("/shadow"))
        else {
            return error(
                StatusCode::NOT_FOUND,
                "ResourceNotFoundException",
                &format!("no such API: {path}"),
            );
        };
        let name = request
            .query
            .split('&')
            .find_map(|pair| pair.strip_prefix("name="))
            .map(|name| percent_decode_str(name).decode_utf8_lossy().into_owned())
            .unwrap_or_default();
        let key = (thing.to_owned(), name.clone());
        let mut shadows = self.shadows.lock().expect("no panic while held");
        match request.method {
            Method::GET => match shadows.get(&key) {
                Some(document) => HttpResponse::json(StatusCode::OK, document.to_string()),
                None => error(
                    StatusCode::NOT_FOUND,
                    "ResourceNotFoundException",
                    &format!("No shadow exists with name: '{name}'"),
                ),
            },
            Method::POST => {
                let Ok(update) = serde_json::from_slice::<Value>(&request.body) else {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "InvalidRequestException",
                        "the payload is not JSON",
                    );
                };
                let document = shadows
                    .entry(key)
                    .or_insert_with(|| json!({"state": {}, "version": 0}));
                for section in ["desired", "reported"] {
                    if let Some(changes) = update["state"].get(section) {
                        let state = document["state"]
                            .as_object_mut()
                            .expect("state is an object");
                        let target = state
                            .entry(section)
                            .or_insert_with(|| Value::Object(Map::new()));
                        merge(target, changes);
                    }
                }
                document["version"] = json!(document["version"].as_u64().unwrap_or(0) + 1);
                document["timestamp"] = json!(chrono::Utc::now().timestamp());
                HttpResponse::json(StatusCode::OK, document.to_string())
            }
            _ => error(
                StatusCode::METHOD_NOT_ALLOWED,
                "MethodNotAllowedException",
                "GET or POST",
            ),
        }
    }
}

/// IoT's shadow merge: objects merge key by key, `null` removes a key,
/// anything else replaces.
fn merge(target: &mut Value, changes: &Value) {
    match (target.as_object_mut(), changes.as_object()) {
        (Some(target), Some(changes)) => {
            for (key, change) in changes {
                if change.is_null() {
                    target.remove(key);
                } else if change.is_object() && target.get(key).is_some_and(Value::is_object) {
                    merge(target.get_mut(key).expect("checked"), change);
                } else {
                    target.insert(key.clone(), change.clone());
                }
            }
        }
        _ => *target = changes.clone(),
    }
}

fn error(status: StatusCode, kind: &str, message: &str) -> HttpResponse {
    let mut response = HttpResponse::json(status, json!({"message": message}).to_string());
    response.headers.push(("x-amzn-errortype", kind.to_owned()));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::body::Bytes;

    fn request(method: Method, path: &str, query: &str, body: &str) -> HttpRequest {
        HttpRequest {
            method,
            path: path.to_owned(),
            query: query.to_owned(),
            body: Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn publishes_and_keeps_named_shadows() {
        let (sender, mut receiver) = tokio::sync::mpsc::unbounded_channel();
        let iot = IotData::new(sender);
        let published = iot.handle(&request(
            Method::POST,
            "/topics/devices%2Fn-1%2Fcommands",
            "qos=1",
            r#"{"led_on":true}"#,
        ));
        assert_eq!(published.status, StatusCode::OK);
        assert_eq!(
            receiver.try_recv().unwrap(),
            (
                "devices/n-1/commands".to_owned(),
                br#"{"led_on":true}"#.to_vec()
            )
        );

        let missing = iot.handle(&request(
            Method::GET,
            "/things/n-1/shadow",
            "name=commands",
            "",
        ));
        assert_eq!(missing.status, StatusCode::NOT_FOUND);
        assert!(missing
            .headers
            .iter()
            .any(|(_, v)| v == "ResourceNotFoundException"));

        iot.handle(&request(
            Method::POST,
            "/things/n-1/shadow",
            "name=commands",
            r#"{"state":{"reported":{"commands":{"nightlight":{"led_on":true},"x":1}}}}"#,
        ));
        iot.handle(&request(
            Method::POST,
            "/things/n-1/shadow",
            "name=commands",
            r#"{"state":{"reported":{"commands":{"x":null}}}}"#,
        ));
        let found = iot.handle(&request(
            Method::GET,
            "/things/n-1/shadow",
            "name=commands",
            "",
        ));
        let document: Value = serde_json::from_slice(&found.body).unwrap();
        assert_eq!(
            document["state"]["reported"]["commands"],
            json!({"nightlight": {"led_on": true}})
        );
        assert_eq!(document["version"], 2);
        let classic = iot.handle(&request(Method::GET, "/things/n-1/shadow", "", ""));
        assert_eq!(
            classic.status,
            StatusCode::NOT_FOUND,
            "the classic shadow is another document"
        );
    }
}
