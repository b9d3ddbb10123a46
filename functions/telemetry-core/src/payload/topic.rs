//! MQTT topic filters (`+` and `#` wildcards) and topic segments.

/// A compiled MQTT topic filter such as `devices/+/telemetry` or `sensors/#`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicFilter {
    text: String,
}

/// Why a topic filter is not valid MQTT.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("topic filter {filter:?} is not valid MQTT: {why}")]
pub struct TopicFilterError {
    pub filter: String,
    pub why: &'static str,
}

impl TopicFilter {
    pub fn new(filter: &str) -> Result<Self, TopicFilterError> {
        let fail = |why| TopicFilterError {
            filter: filter.to_owned(),
            why,
        };
        if filter.is_empty() {
            return Err(fail("it is empty"));
        }
        let segment_count = filter.split('/').count();
        for (index, segment) in filter.split('/').enumerate() {
            if segment.contains('#') && (segment != "#" || index + 1 != segment_count) {
                return Err(fail("'#' must be a whole segment and the last one"));
            }
            if segment.contains('+') && segment != "+" {
                return Err(fail("'+' must be a whole segment"));
            }
        }
        Ok(TopicFilter {
            text: filter.to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// True when `topic` matches this filter under MQTT 3.1.1 rules.
    pub fn matches(&self, topic: &str) -> bool {
        let mut topic_segments = topic.split('/');
        for filter_segment in self.text.split('/') {
            match filter_segment {
                // `#` also matches the parent level: `a/#` matches `a`.
                "#" => return true,
                "+" => {
                    if topic_segments.next().is_none() {
                        return false;
                    }
                }
                literal => {
                    if topic_segments.next() != Some(literal) {
                        return false;
                    }
                }
            }
        }
        topic_segments.next().is_none()
    }
}

/// The `index`-th `/`-separated segment of `topic` (0-based); negative
/// indexes count from the end (-1 is the last segment).
pub fn topic_segment(topic: &str, index: i32) -> Option<&str> {
    if index >= 0 {
        topic.split('/').nth(index as usize)
    } else {
        topic.rsplit('/').nth((-index - 1) as usize)
    }
    .filter(|segment| !segment.is_empty())
}

/// The device id that common topic conventions carry: `devices/<id>/...`,
/// `things/<id>/...`, `$aws/things/<id>/...`, or `<id>/telemetry` (the MQTT
/// lesson's layout, reference 004).
pub fn device_from_topic(topic: &str) -> Option<&str> {
    let mut segments = topic.split('/').peekable();
    let mut previous: Option<&str> = None;
    while let Some(segment) = segments.next() {
        if matches!(segment, "devices" | "things" | "device" | "thing") {
            if let Some(next) = segments.peek().filter(|next| !next.is_empty()) {
                return Some(next);
            }
        }
        if matches!(segment, "telemetry" | "events" | "state" | "data") && segments.peek().is_none()
        {
            return previous.filter(|p| !p.is_empty());
        }
        previous = Some(segment);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_mqtt() {
        let plus = TopicFilter::new("devices/+/telemetry").unwrap();
        assert!(plus.matches("devices/pi-1/telemetry"));
        assert!(!plus.matches("devices/pi-1/commands"));
        assert!(!plus.matches("devices/telemetry"));
        assert!(!plus.matches("devices/a/b/telemetry"));
        let hash = TopicFilter::new("sensors/#").unwrap();
        assert!(hash.matches("sensors"));
        assert!(hash.matches("sensors/a/b/c"));
        assert!(!hash.matches("other/a"));
        assert!(TopicFilter::new("#").unwrap().matches("anything/at/all"));
        let exact = TopicFilter::new("a/b").unwrap();
        assert!(exact.matches("a/b"));
        assert!(!exact.matches("a/b/c"));
    }

    #[test]
    fn rejects_malformed_filters_with_the_reason() {
        assert!(TopicFilter::new("a/#/b").is_err());
        assert!(TopicFilter::new("a/b#").is_err());
        let error = TopicFilter::new("a/x+").unwrap_err();
        assert!(error.to_string().contains("a/x+"), "{error}");
        assert!(TopicFilter::new("").is_err());
    }

    #[test]
    fn segments_count_from_either_end() {
        assert_eq!(topic_segment("devices/pi/telemetry", 1), Some("pi"));
        assert_eq!(topic_segment("devices/pi/telemetry", -1), Some("telemetry"));
        assert_eq!(topic_segment("devices/pi/telemetry", 3), None);
    }

    #[test]
    fn device_ids_come_from_common_topic_layouts() {
        assert_eq!(device_from_topic("devices/pi-7/telemetry"), Some("pi-7"));
        assert_eq!(
            device_from_topic("$aws/things/lamp/shadow/update"),
            Some("lamp")
        );
        assert_eq!(
            device_from_topic("nightlight-42/telemetry"),
            Some("nightlight-42")
        );
        assert_eq!(device_from_topic("random/topic"), None);
    }
}
