//! Pub/Sub push over HTTP (a Lambda function URL or API Gateway): the
//! request body is the push envelope; the `token` query parameter is kept
//! for the verification the invocation skeleton does.

use std::borrow::Cow;

use base64::Engine;
use serde::Deserialize;

use super::pubsub::{pubsub_message, PubSubPushEnvelope};
use super::{
    raw_string, Envelope, EnvelopeError, EventKind, HttpRequestInfo, MessageSource, RawMessage,
    TopLevel,
};
use crate::json::text::TextPairs;

pub(super) fn parse_http<'a>(top: &TopLevel<'a>) -> Result<Envelope<'a>, EnvelopeError> {
    let invalid = |field: &'static str, why: String| EnvelopeError::InvalidField { field, why };
    let body = top.body.map(raw_string).unwrap_or_default();
    let is_base64 = top
        .is_base64_encoded
        .is_some_and(|raw| raw.get().trim() == "true");
    let body: Vec<u8> = if is_base64 {
        base64::engine::general_purpose::STANDARD
            .decode(body.as_bytes())
            .map_err(|error| invalid("body", format!("not valid base64: {error}")))?
    } else {
        body.into_owned().into_bytes()
    };
    let mut http = HttpRequestInfo::default();
    if let Some(params) = top.query_string_parameters {
        let params: TextPairs<'_> = serde_json::from_str(params.get())
            .map_err(|error| invalid("queryStringParameters", error.to_string()))?;
        http.token = params
            .0
            .into_iter()
            .find(|(name, _)| name == "token")
            .map(|(_, value)| value.into_owned());
    }
    if http.token.is_none() {
        if let Some(raw_query) = top.raw_query_string.map(raw_string) {
            http.token = raw_query
                .split('&')
                .filter_map(|pair| pair.split_once('='))
                .find(|(name, _)| *name == "token")
                .map(|(_, value)| query_value(value));
        }
    }
    if let Some(context) = top.request_context {
        #[derive(Deserialize)]
        struct Context {
            #[serde(default)]
            http: Option<HttpContext>,
        }
        #[derive(Deserialize)]
        struct HttpContext {
            #[serde(default)]
            method: Option<String>,
        }
        if let Ok(context) = serde_json::from_str::<Context>(context.get()) {
            http.method = context.http.and_then(|h| h.method);
        }
    }
    // The token is known now; a body we cannot read becomes a dead letter
    // (after the caller has checked the token), not an error for the sender.
    let message = match serde_json::from_slice::<PubSubPushEnvelope<'_>>(&body) {
        Ok(envelope) => pubsub_message(envelope.message).into_owned(),
        Err(error) => {
            let mut message = RawMessage::new(
                MessageSource::PubSub,
                Cow::Borrowed(""),
                Cow::Owned(body.clone()),
            );
            message.problem = Some(format!(
                "HTTP body is not a Pub/Sub push envelope ({{\"message\": {{\"data\": ...}}, \"subscription\": ...}}): {error}"
            ));
            message.into_owned()
        }
    };
    Ok(Envelope {
        kind: EventKind::PubSubHttp,
        messages: vec![message],
        http: Some(http),
        window: None,
    })
}

/// A query-string value: `+` is a space, `%XX` a byte (the
/// `percent-encoding` crate; `%2B` stays a plus).
fn query_value(text: &str) -> String {
    let spaced = text.replace('+', " ");
    percent_encoding::percent_decode_str(&spaced)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::query_value;

    #[test]
    fn query_values_are_decoded_to_the_last_byte() {
        assert_eq!(query_value("a+b%20c"), "a b c");
        assert_eq!(query_value("s3cr%2Bt"), "s3cr+t");
        // A sequence at the very end is decoded too.
        assert_eq!(query_value("abc%21"), "abc!");
        assert_eq!(query_value("%zz%"), "%zz%");
    }
}
