//! A fleet described in TOML, so a user simulates their own device shape
//! without code:
//!
//! ```toml
//! name = "greenhouse"                      # devices greenhouse-1 .. N
//! topic = "{prefix}/{device}/telemetry"    # the default
//! format = "json"                          # or "json-pretty"
//!
//! [[field]]
//! name = "device"
//! constant = "{device}"
//! [[field]]
//! name = "temperature"
//! random_walk = { start = 21.0, step = 0.2, min = 5.0, max = 40.0, decimals = 2 }
//! [[field]]
//! name = "light"
//! sine = { mean = 500.0, amplitude = 400.0, period = 60 }   # period in messages
//! [[field]]
//! name = "status"
//! pick_one = ["ok", "ok", "ok", "door open"]
//! [[field]]
//! name = "sequence"
//! counter = { start = 1 }
//! [[field]]
//! name = "timestamp"
//! timestamp = "epoch_s"                    # epoch_ms, rfc3339
//! ```

use std::path::Path;

use chrono::{DateTime, SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::Rng;
use rand_distr::{Distribution, Normal};
use serde::Deserialize;
use serde_json::Value;

use super::fleet::{indented_json, seeded_rng, Device, Message};
use super::SimulateError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct FleetFile {
    name: String,
    #[serde(default = "default_topic")]
    topic: String,
    #[serde(default)]
    format: PayloadFormat,
    /// Read as tables so a mistake names the field and the key.
    #[serde(rename = "field")]
    fields: Vec<toml::Table>,
}

fn default_topic() -> String {
    "{prefix}/{device}/telemetry".to_owned()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "kebab-case")]
enum PayloadFormat {
    #[default]
    Json,
    JsonPretty,
}

#[derive(Debug, Clone)]
struct FieldSpec {
    name: String,
    generator: Generator,
}

const GENERATORS: &str = "constant, random_walk, sine, pick_one, counter, timestamp";

impl FieldSpec {
    fn from_table(position: usize, mut table: toml::Table) -> Result<FieldSpec, String> {
        let name = match table.remove("name") {
            Some(toml::Value::String(name)) if !name.is_empty() => name,
            _ => {
                return Err(format!(
                    "[[field]] number {}: give it a name = \"...\"",
                    position + 1
                ))
            }
        };
        if table.len() != 1 {
            let keys: Vec<&String> = table.keys().collect();
            return Err(format!(
                "field {name:?}: give exactly one generator ({GENERATORS}), found {keys:?}"
            ));
        }
        let (key, value) = table.into_iter().next().expect("one entry");
        if !GENERATORS.split(", ").any(|known| known == key) {
            return Err(format!(
                "field {name:?}: {key:?} is not a generator; use one of {GENERATORS}"
            ));
        }
        let mut single = toml::Table::new();
        single.insert(key.clone(), value);
        let generator = Generator::deserialize(toml::Value::Table(single))
            .map_err(|error| format!("field {name:?}: {key}: {}", error.message()))?;
        Ok(FieldSpec { name, generator })
    }
}

/// How a field's value is made, one per message.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Generator {
    /// The same value every time; `{device}` in a string is the device name.
    Constant(toml::Value),
    RandomWalk(RandomWalk),
    Sine(Sine),
    PickOne(Vec<toml::Value>),
    Counter(Counter),
    Timestamp(TimestampFormat),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RandomWalk {
    start: f64,
    /// Standard deviation of one step.
    step: f64,
    min: Option<f64>,
    max: Option<f64>,
    decimals: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Sine {
    mean: f64,
    amplitude: f64,
    /// Messages per full cycle.
    period: u32,
    decimals: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Counter {
    #[serde(default)]
    start: i64,
    #[serde(default = "one")]
    step: i64,
}

fn one() -> i64 {
    1
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
enum TimestampFormat {
    EpochS,
    EpochMs,
    Rfc3339,
}

/// A validated fleet file.
#[derive(Debug, Clone)]
pub struct CustomFleet {
    pub name: String,
    topic: String,
    format: PayloadFormat,
    fields: Vec<FieldSpec>,
}

impl CustomFleet {
    pub fn load(path: &Path) -> Result<CustomFleet, SimulateError> {
        let text = std::fs::read_to_string(path).map_err(|source| SimulateError::FleetFile {
            path: path.to_owned(),
            reason: source.to_string(),
        })?;
        Self::parse(&text).map_err(|reason| SimulateError::FleetFile {
            path: path.to_owned(),
            reason,
        })
    }

    pub fn parse(text: &str) -> Result<CustomFleet, String> {
        let file: FleetFile = toml::from_str(text).map_err(|error| error.to_string())?;
        if file.name.is_empty() || file.name.contains(['/', '+', '#']) {
            return Err(format!(
                "name = {:?}: give a name without '/', '+' or '#' (devices are called <name>-1 .. <name>-N)",
                file.name
            ));
        }
        if file.fields.is_empty() {
            return Err("no [[field]]: describe at least one field of the payload".into());
        }
        if !file.topic.contains("{device}") {
            return Err(format!(
                "topic = {:?}: put {{device}} in it, so each device publishes on its own topic",
                file.topic
            ));
        }
        let mut fields = Vec::with_capacity(file.fields.len());
        for (position, table) in file.fields.into_iter().enumerate() {
            let field = FieldSpec::from_table(position, table)?;
            validate(&field).map_err(|reason| format!("field {:?}: {reason}", field.name))?;
            fields.push(field);
        }
        Ok(CustomFleet {
            name: file.name,
            topic: file.topic,
            format: file.format,
            fields,
        })
    }

    pub fn device(&self, device: &str, prefix: &str) -> CustomDevice {
        let topic = self.topic.replace("{device}", device);
        let topic = match topic.strip_prefix("{prefix}/") {
            Some(rest) if prefix.is_empty() => rest.to_owned(),
            _ => topic.replace("{prefix}", prefix),
        };
        let rng = seeded_rng(device);
        let walks = self
            .fields
            .iter()
            .map(|field| match &field.generator {
                Generator::RandomWalk(walk) => walk.start,
                _ => 0.0,
            })
            .collect();
        CustomDevice {
            device: device.to_owned(),
            topic,
            fields: self.fields.clone(),
            format: self.format,
            walks,
            sent: 0,
            rng,
        }
    }
}

fn validate(field: &FieldSpec) -> Result<(), String> {
    match &field.generator {
        Generator::RandomWalk(walk) => {
            if !(walk.step.is_finite() && walk.step >= 0.0 && walk.start.is_finite()) {
                return Err(format!(
                    "random_walk start = {}, step = {}: use finite numbers, step >= 0",
                    walk.start, walk.step
                ));
            }
            if let (Some(min), Some(max)) = (walk.min, walk.max) {
                if min > max {
                    return Err(format!("random_walk min = {min} is above max = {max}"));
                }
            }
        }
        Generator::Sine(sine) if sine.period == 0 => {
            return Err("sine period = 0: give the number of messages in one cycle".into())
        }
        Generator::PickOne(values) if values.is_empty() => {
            return Err("pick_one = []: list at least one value".into())
        }
        _ => {}
    }
    Ok(())
}

/// One device of a TOML fleet.
pub struct CustomDevice {
    device: String,
    topic: String,
    fields: Vec<FieldSpec>,
    format: PayloadFormat,
    /// Each random walk's current value (by field position).
    walks: Vec<f64>,
    sent: u64,
    rng: StdRng,
}

impl Device for CustomDevice {
    fn next_message(&mut self, now: DateTime<Utc>) -> Message {
        let mut object = Vec::with_capacity(self.fields.len());
        for (index, field) in self.fields.iter().enumerate() {
            let value = match &field.generator {
                Generator::Constant(value) => json_of(value, &self.device),
                Generator::RandomWalk(walk) => {
                    let step = Normal::new(0.0, walk.step)
                        .map(|normal| normal.sample(&mut self.rng))
                        .unwrap_or(0.0);
                    let mut next = self.walks[index] + step;
                    next = next.max(walk.min.unwrap_or(f64::MIN));
                    next = next.min(walk.max.unwrap_or(f64::MAX));
                    self.walks[index] = next;
                    number(round(next, walk.decimals))
                }
                Generator::Sine(sine) => {
                    let angle = std::f64::consts::TAU * (self.sent % sine.period as u64) as f64
                        / sine.period as f64;
                    number(round(
                        sine.mean + sine.amplitude * angle.sin(),
                        sine.decimals,
                    ))
                }
                Generator::PickOne(values) => {
                    let pick = self.rng.random_range(0..values.len());
                    json_of(&values[pick], &self.device)
                }
                Generator::Counter(counter) => {
                    Value::from(counter.start + counter.step * self.sent as i64)
                }
                Generator::Timestamp(TimestampFormat::EpochS) => Value::from(now.timestamp()),
                Generator::Timestamp(TimestampFormat::EpochMs) => {
                    Value::from(now.timestamp_millis())
                }
                Generator::Timestamp(TimestampFormat::Rfc3339) => {
                    Value::from(now.to_rfc3339_opts(SecondsFormat::Millis, true))
                }
            };
            object.push((field.name.as_str(), value));
        }
        self.sent += 1;
        let object = InOrder(&object);
        let payload = match self.format {
            PayloadFormat::Json => serde_json::to_vec(&object).expect("JSON values serialise"),
            PayloadFormat::JsonPretty => indented_json(&object),
        };
        Message {
            topic: self.topic.clone(),
            payload,
        }
    }
}

/// An object whose keys keep the fleet file's order (serde_json's `Map`
/// sorts them, and its order-keeping feature would reach the functions).
struct InOrder<'a>(&'a [(&'a str, Value)]);

impl serde::Serialize for InOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

fn round(value: f64, decimals: Option<u32>) -> f64 {
    match decimals {
        Some(decimals) => {
            let scale = 10f64.powi(decimals.min(15) as i32);
            (value * scale).round() / scale
        }
        None => value,
    }
}

fn number(value: f64) -> Value {
    serde_json::Number::from_f64(value).map_or(Value::Null, Value::Number)
}

/// A TOML value as JSON; `{device}` in strings is the device's name.
fn json_of(value: &toml::Value, device: &str) -> Value {
    match value {
        toml::Value::String(text) => Value::from(text.replace("{device}", device)),
        toml::Value::Integer(integer) => Value::from(*integer),
        toml::Value::Float(float) => number(*float),
        toml::Value::Boolean(boolean) => Value::from(*boolean),
        toml::Value::Datetime(datetime) => Value::from(datetime.to_string()),
        toml::Value::Array(items) => items.iter().map(|item| json_of(item, device)).collect(),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(key, value)| (key.clone(), json_of(value, device)))
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GREENHOUSE: &str = r#"
        name = "greenhouse"
        [[field]]
        name = "device"
        constant = "{device}"
        [[field]]
        name = "temperature"
        random_walk = { start = 21.0, step = 0.5, min = 20.0, max = 22.0, decimals = 2 }
        [[field]]
        name = "light"
        sine = { mean = 500.0, amplitude = 400.0, period = 4, decimals = 3 }
        [[field]]
        name = "status"
        pick_one = ["ok", "door open"]
        [[field]]
        name = "sequence"
        counter = { start = 10, step = 5 }
        [[field]]
        name = "timestamp"
        timestamp = "epoch_ms"
        [[field]]
        name = "site"
        constant = { building = 7, tags = ["north"] }
    "#;

    #[test]
    fn every_generator_in_one_fleet() {
        let fleet = CustomFleet::parse(GREENHOUSE).unwrap();
        let mut device = fleet.device("greenhouse-2", "devices");
        let now = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let messages: Vec<Value> = (0..8)
            .map(|_| {
                let message = device.next_message(now);
                assert_eq!(message.topic, "devices/greenhouse-2/telemetry");
                serde_json::from_slice(&message.payload).unwrap()
            })
            .collect();
        let first = &messages[0];
        let text = String::from_utf8(device.next_message(now).payload).unwrap();
        let positions: Vec<usize> = [
            "device",
            "temperature",
            "light",
            "status",
            "sequence",
            "timestamp",
            "site",
        ]
        .iter()
        .map(|key| text.find(&format!("\"{key}\":")).unwrap())
        .collect();
        assert!(positions.windows(2).all(|pair| pair[0] < pair[1]), "{text}");
        assert_eq!(first["device"], "greenhouse-2");
        assert_eq!(first["timestamp"], 1_700_000_000_000i64);
        assert_eq!(
            first["site"],
            serde_json::json!({"building": 7, "tags": ["north"]})
        );
        let lights: Vec<f64> = messages
            .iter()
            .map(|m| m["light"].as_f64().unwrap())
            .collect();
        assert_eq!(&lights[..4], [500.0, 900.0, 500.0, 100.0]);
        let sequence: Vec<i64> = messages
            .iter()
            .map(|m| m["sequence"].as_i64().unwrap())
            .collect();
        assert_eq!(&sequence[..3], [10, 15, 20]);
        for message in &messages {
            let temperature = message["temperature"].as_f64().unwrap();
            assert!((20.0..=22.0).contains(&temperature), "{temperature}");
            assert_eq!((temperature * 100.0).round() / 100.0, temperature);
            assert!(["ok", "door open"].contains(&message["status"].as_str().unwrap()));
        }
    }

    #[test]
    fn topic_template_and_empty_prefix() {
        let fleet = CustomFleet::parse(GREENHOUSE).unwrap();
        assert_eq!(
            fleet.device("g-1", "").next_message(Utc::now()).topic,
            "g-1/telemetry"
        );
        let own = GREENHOUSE.replace(
            "name = \"greenhouse\"",
            "name = \"greenhouse\"\ntopic = \"farm/{device}/air\"",
        );
        let fleet = CustomFleet::parse(&own).unwrap();
        assert_eq!(
            fleet
                .device("g-1", "devices")
                .next_message(Utc::now())
                .topic,
            "farm/g-1/air"
        );
    }

    #[test]
    fn mistakes_name_the_field_and_the_value() {
        let cases = [
            (
                "name = \"x\"\n[[field]]\nname = \"t\"\nrandom_walk = { start = 1.0, step = 1.0, min = 5.0, max = 1.0 }",
                "field \"t\": random_walk min = 5 is above max = 1",
            ),
            (
                "name = \"x\"\n[[field]]\nname = \"s\"\nsine = { mean = 1.0, amplitude = 1.0, period = 0 }",
                "field \"s\": sine period = 0",
            ),
            (
                "name = \"x\"\n[[field]]\nname = \"p\"\npick_one = []",
                "field \"p\": pick_one = []",
            ),
            ("name = \"x\"\n[[field]]\nname = \"w\"\nwobble = 3", "field \"w\": \"wobble\" is not a generator"),
            (
                "name = \"x\"\n[[field]]\nname = \"r\"\nrandom_walk = { start = 1.0 }",
                "field \"r\": random_walk: missing field `step`",
            ),
            ("name = \"x\"\n[[field]]\nconstant = 1", "[[field]] number 1: give it a name"),
            ("name = \"x\"\ntopic = \"all/telemetry\"\n[[field]]\nname = \"c\"\nconstant = 1", "{device}"),
            ("name = \"a/b\"\n[[field]]\nname = \"c\"\nconstant = 1", "\"a/b\""),
            ("name = \"x\"\nfield = []", "no [[field]]"),
        ];
        for (text, expected) in cases {
            let error = CustomFleet::parse(text).unwrap_err();
            assert!(error.contains(expected), "{text}\n=> {error}");
        }
    }
}
