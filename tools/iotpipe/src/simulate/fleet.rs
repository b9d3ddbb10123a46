//! What each simulated device publishes: the references' device shapes,
//! byte for byte, plus fleets described in TOML (`custom.rs`).

use std::path::Path;

use chrono::{DateTime, Datelike, Local, NaiveDateTime, Timelike, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use sha2::{Digest, Sha256};

use super::custom::CustomFleet;
use super::host::HostProbe;
use super::SimulateError;

/// One MQTT message a device publishes.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
}

/// A simulated device: the next message it publishes, and what it does with
/// a command (only the night light listens).
pub trait Device: Send {
    fn next_message(&mut self, now: DateTime<Utc>) -> Message;

    /// The topic it subscribes to for commands, if it takes any.
    fn command_topic(&self) -> Option<&str> {
        None
    }

    /// Applies a command.
    fn on_command(&mut self, _payload: &[u8]) -> CommandOutcome {
        CommandOutcome::default()
    }
}

/// What a device did with a command.
#[derive(Debug, Default, PartialEq)]
pub struct CommandOutcome {
    /// It understood the command and applied it.
    pub applied: bool,
    /// The line to show the user.
    pub line: String,
    /// Time from the reading that called for this switch to the switch.
    pub latency: Option<std::time::Duration>,
}

/// Topics as the SAM template's device policy allows them:
/// `<prefix>/<device>/<leaf>`, or `<device>/<leaf>` with an empty prefix
/// (reference 004's form).
pub fn topic(prefix: &str, device: &str, leaf: &str) -> String {
    if prefix.is_empty() {
        format!("{device}/{leaf}")
    } else {
        format!("{prefix}/{device}/{leaf}")
    }
}

/// The fleets `--fleet` knows by name, or a TOML file describing one.
pub enum FleetKind {
    /// Reference 000: simulated temperature sensors.
    GcpIotLab,
    /// Reference 003: a host's CPU, memory and disk from `/proc`.
    HostStatus,
    /// Reference 002: a CO2 meter's pipe-delimited lines.
    Co2Meter,
    /// Reference 004: a light sensor with an LED the server switches.
    Nightlight,
    Custom(Box<CustomFleet>),
}

pub const FLEET_NAMES: &[&str] = &["gcp-iot-lab", "host-status", "co2-meter", "nightlight"];

/// Reference 000's device names, then more cities.
const CITY_SENSORS: &[&str] = &[
    "temp-sensor-buenos-aires",
    "temp-sensor-istanbul",
    "temp-sensor-seoul",
    "temp-sensor-tokyo",
    "temp-sensor-nairobi",
    "temp-sensor-lima",
    "temp-sensor-oslo",
    "temp-sensor-sydney",
];

impl FleetKind {
    /// A fleet by name, or from a `.toml` file.
    pub fn parse(fleet: &str) -> Result<FleetKind, SimulateError> {
        Ok(match fleet {
            "gcp-iot-lab" => FleetKind::GcpIotLab,
            "host-status" => FleetKind::HostStatus,
            "co2-meter" => FleetKind::Co2Meter,
            "nightlight" => FleetKind::Nightlight,
            path if path.ends_with(".toml") => {
                FleetKind::Custom(Box::new(CustomFleet::load(Path::new(path))?))
            }
            other => {
                return Err(SimulateError::UnknownFleet {
                    fleet: other.to_owned(),
                })
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            FleetKind::GcpIotLab => "gcp-iot-lab",
            FleetKind::HostStatus => "host-status",
            FleetKind::Co2Meter => "co2-meter",
            FleetKind::Nightlight => "nightlight",
            FleetKind::Custom(custom) => &custom.name,
        }
    }

    /// Device names when the user gives none: reference 000's sensors, else
    /// `<fleet>-1` .. `<fleet>-N`.
    pub fn default_names(&self, devices: usize) -> Vec<String> {
        (0..devices)
            .map(|index| match self {
                FleetKind::GcpIotLab if index < CITY_SENSORS.len() => {
                    CITY_SENSORS[index].to_owned()
                }
                FleetKind::GcpIotLab => format!("temp-sensor-{}", index + 1),
                other => format!("{}-{}", other.name(), index + 1),
            })
            .collect()
    }

    /// The simulated device called `device`, publishing under `prefix`.
    pub fn device(&self, device: &str, prefix: &str) -> Box<dyn Device> {
        match self {
            FleetKind::GcpIotLab => Box::new(TemperatureSensor::new(device, prefix)),
            FleetKind::HostStatus => Box::new(HostStatus::new(device, prefix)),
            FleetKind::Co2Meter => Box::new(Co2Meter::new(device, prefix)),
            FleetKind::Nightlight => Box::new(Nightlight::new(device, prefix)),
            FleetKind::Custom(custom) => Box::new(custom.device(device, prefix)),
        }
    }
}

/// A generator seeded by the device id, so a device always produces the
/// same series (as reference 000's `random.seed(device_id)`).
pub fn seeded_rng(device: &str) -> StdRng {
    let digest = Sha256::digest(device.as_bytes());
    let mut seed = [0u8; 8];
    seed.copy_from_slice(&digest[..8]);
    StdRng::seed_from_u64(u64::from_le_bytes(seed))
}

/// Reference 000's sensor: starts between 10 and 30 degrees and drifts
/// slowly up or down; `{"timestamp", "device", "temperature"}` as JSON
/// indented by four spaces (Python's `json.dumps(payload, indent=4)`).
pub struct TemperatureSensor {
    device: String,
    topic: String,
    temperature: f64,
    trend: f64,
    step: Normal<f64>,
    rng: StdRng,
}

impl TemperatureSensor {
    pub fn new(device: &str, prefix: &str) -> TemperatureSensor {
        let mut rng = seeded_rng(device);
        let temperature = 10.0 + rng.random::<f64>() * 20.0;
        let trend = if rng.random::<f64>() > 0.5 { 1.0 } else { -1.0 };
        TemperatureSensor {
            device: device.to_owned(),
            topic: topic(prefix, device, "telemetry"),
            temperature,
            trend,
            step: Normal::new(0.01, 0.005).expect("a valid normal distribution"),
            rng,
        }
    }
}

impl Device for TemperatureSensor {
    fn next_message(&mut self, now: DateTime<Utc>) -> Message {
        self.temperature += self.trend * self.step.sample(&mut self.rng);
        let payload = SensorReading {
            timestamp: now.timestamp(),
            device: &self.device,
            temperature: self.temperature,
        };
        Message {
            topic: self.topic.clone(),
            payload: indented_json(&payload),
        }
    }
}

/// Reference 000's payload, fields in its order.
#[derive(serde::Serialize)]
struct SensorReading<'a> {
    timestamp: i64,
    device: &'a str,
    temperature: f64,
}

/// JSON indented by four spaces.
pub fn indented_json(value: &impl serde::Serialize) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut serializer = serde_json::Serializer::with_formatter(&mut out, formatter);
    serde::Serialize::serialize(value, &mut serializer).expect("JSON values serialise");
    out
}

/// Reference 003's shell script: one metric per message, in turn (disk,
/// CPU, CPU temperature when the machine has a sensor, memory), each
/// `{"name", "unit", "value"}` with the value a string ending in a space.
pub struct HostStatus {
    device: String,
    topic: String,
    probe: HostProbe,
    /// One round of readings, sent one per message, then read again.
    round: Vec<(&'static str, &'static str, String)>,
    turn: usize,
}

impl HostStatus {
    pub fn new(device: &str, prefix: &str) -> HostStatus {
        HostStatus {
            device: device.to_owned(),
            topic: topic(prefix, device, "status"),
            probe: HostProbe::new(),
            round: Vec::new(),
            turn: 0,
        }
    }
}

impl Device for HostStatus {
    fn next_message(&mut self, _now: DateTime<Utc>) -> Message {
        if self.turn >= self.round.len() {
            self.round = self.probe.read();
            self.turn = 0;
        }
        let (name, unit, value) = &self.round[self.turn];
        self.turn += 1;
        Message {
            topic: self.topic.clone(),
            payload: host_status_payload(&format!("{name} ({})", self.device), unit, value),
        }
    }
}

/// The script's message, line for line: `{`, the three fields unindented,
/// `}`; the value a string with a trailing space.
pub fn host_status_payload(name: &str, unit: &str, value: &str) -> Vec<u8> {
    let quoted = |text: &str| serde_json::to_string(text).expect("strings serialise");
    format!(
        "{{\n\"name\": {},\n\"unit\": {},\n\"value\": {}\n}}",
        quoted(name),
        quoted(unit),
        quoted(&format!("{value} "))
    )
    .into_bytes()
}

/// Reference 002's CO2 meter: `2020-7-13 22:43:23|3500` in local time, date
/// parts not zero-padded, ppm drifting between 400 and 5000.
pub struct Co2Meter {
    topic: String,
    ppm: f64,
    rng: StdRng,
}

impl Co2Meter {
    pub fn new(device: &str, prefix: &str) -> Co2Meter {
        let mut rng = seeded_rng(device);
        let ppm = rng.random_range(450.0..1500.0);
        Co2Meter {
            topic: topic(prefix, device, "text"),
            ppm,
            rng,
        }
    }
}

impl Device for Co2Meter {
    fn next_message(&mut self, now: DateTime<Utc>) -> Message {
        self.ppm = (self.ppm + self.rng.random_range(-40.0..45.0)).clamp(400.0, 5000.0);
        let local = now.with_timezone(&Local).naive_local();
        Message {
            topic: self.topic.clone(),
            payload: co2_line(local, self.ppm.round() as u32).into_bytes(),
        }
    }
}

/// `2020-7-13 22:43:23|3500`.
pub fn co2_line(time: NaiveDateTime, ppm: u32) -> String {
    format!(
        "{}-{}-{} {:02}:{:02}:{:02}|{ppm}",
        time.year(),
        time.month(),
        time.day(),
        time.hour(),
        time.minute(),
        time.second()
    )
}

/// Reference 004's night light: `{"light": N, "led": on}` on its telemetry
/// topic, light following a day/night cycle of 60 readings; subscribed to
/// `<device>/commands`, where `{"led_on": true|false}` switches its LED.
pub struct Nightlight {
    device: String,
    topic: String,
    command_topic: String,
    reading: u64,
    phase: f64,
    led_on: bool,
    /// The LED state the last readings call for under reference 004's rule,
    /// and when the first of them was published: to time the switch.
    awaited_switch: Option<(bool, std::time::Instant)>,
    rng: StdRng,
}

/// Readings in one simulated day.
const NIGHTLIGHT_DAY: f64 = 60.0;
/// Reference 004's server switches the LED on below this light level. The
/// device uses it only to time how long a switch takes to arrive.
const REFERENCE_004_THRESHOLD: u32 = 300;

impl Nightlight {
    pub fn new(device: &str, prefix: &str) -> Nightlight {
        let mut rng = seeded_rng(device);
        let phase = rng.random_range(0.0..NIGHTLIGHT_DAY);
        Nightlight {
            device: device.to_owned(),
            topic: topic(prefix, device, "telemetry"),
            command_topic: topic(prefix, device, "commands"),
            reading: 0,
            phase,
            led_on: false,
            awaited_switch: None,
            rng,
        }
    }
}

impl Device for Nightlight {
    fn next_message(&mut self, _now: DateTime<Utc>) -> Message {
        let angle = std::f64::consts::TAU * (self.reading as f64 + self.phase) / NIGHTLIGHT_DAY;
        let light = (500.0 + 450.0 * angle.sin() + self.rng.random_range(-20.0..20.0))
            .clamp(0.0, 1023.0)
            .round() as u32;
        self.reading += 1;
        let wanted = light < REFERENCE_004_THRESHOLD;
        if wanted == self.led_on {
            self.awaited_switch = None;
        } else if self.awaited_switch.is_none() {
            self.awaited_switch = Some((wanted, std::time::Instant::now()));
        }
        let payload = serde_json::json!({ "light": light, "led": self.led_on });
        Message {
            topic: self.topic.clone(),
            payload: serde_json::to_vec(&payload).expect("JSON values serialise"),
        }
    }

    fn command_topic(&self) -> Option<&str> {
        Some(&self.command_topic)
    }

    fn on_command(&mut self, payload: &[u8]) -> CommandOutcome {
        let command: Result<serde_json::Value, _> = serde_json::from_slice(payload);
        match command
            .as_ref()
            .ok()
            .and_then(|command| command.get("led_on"))
            .and_then(|led| led.as_bool())
        {
            Some(on) => {
                let was = std::mem::replace(&mut self.led_on, on);
                let state = if on { "on" } else { "off" };
                let latency = match self.awaited_switch {
                    Some((wanted, since)) if wanted == on => {
                        self.awaited_switch = None;
                        Some(since.elapsed())
                    }
                    _ => None,
                };
                let line = if was == on {
                    format!("{}: LED stays {state}", self.device)
                } else {
                    format!("{}: LED {state}", self.device)
                };
                CommandOutcome {
                    applied: true,
                    line,
                    latency,
                }
            }
            None => CommandOutcome {
                applied: false,
                line: format!(
                    "{}: ignored a command without a boolean \"led_on\": {}",
                    self.device,
                    String::from_utf8_lossy(payload)
                ),
                latency: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveDate;

    fn at(seconds: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(seconds, 0).unwrap()
    }

    #[test]
    fn temperature_sensor_sends_reference_000s_indented_json() {
        let mut sensor = TemperatureSensor::new("temp-sensor-istanbul", "devices");
        let message = sensor.next_message(at(1645938060));
        assert_eq!(message.topic, "devices/temp-sensor-istanbul/telemetry");
        let text = String::from_utf8(message.payload.clone()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], "{");
        assert_eq!(lines[1], "    \"timestamp\": 1645938060,");
        assert_eq!(lines[2], "    \"device\": \"temp-sensor-istanbul\",");
        assert!(lines[3].starts_with("    \"temperature\": "), "{text}");
        assert_eq!(lines[4], "}");
        let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
        let first = value["temperature"].as_f64().unwrap();
        assert!((10.0..30.0).contains(&first), "{first}");
    }

    #[test]
    fn temperature_walks_slowly_one_way_and_is_seeded_by_the_device() {
        let series = |device: &str| -> Vec<f64> {
            let mut sensor = TemperatureSensor::new(device, "devices");
            (0..100)
                .map(|i| {
                    let message = sensor.next_message(at(i));
                    let value: serde_json::Value =
                        serde_json::from_slice(&message.payload).unwrap();
                    value["temperature"].as_f64().unwrap()
                })
                .collect()
        };
        let istanbul = series("temp-sensor-istanbul");
        assert_eq!(istanbul, series("temp-sensor-istanbul"));
        assert_ne!(istanbul, series("temp-sensor-buenos-aires"));
        let drift = istanbul[99] - istanbul[0];
        assert!((0.5..1.5).contains(&drift.abs()), "drift {drift}");
        for pair in istanbul.windows(2) {
            assert!((pair[1] - pair[0]).abs() < 0.05, "{pair:?}");
        }
    }

    #[test]
    fn host_status_is_the_scripts_message_with_a_trailing_space() {
        assert_eq!(
            String::from_utf8(host_status_payload("cpu usage (pi)", "Percent", "42")).unwrap(),
            "{\n\"name\": \"cpu usage (pi)\",\n\"unit\": \"Percent\",\n\"value\": \"42 \"\n}"
        );
        let mut host = HostStatus::new("host-status-1", "devices");
        let names: Vec<String> = (0..8)
            .map(|_| {
                let message = host.next_message(at(0));
                assert_eq!(message.topic, "devices/host-status-1/status");
                let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                let text = value["value"].as_str().unwrap();
                assert!(text.ends_with(' '), "{text:?}");
                text.trim_end().parse::<f64>().unwrap();
                value["name"].as_str().unwrap().to_owned()
            })
            .collect();
        for metric in ["disk usage / ", "cpu usage ", "memory usage "] {
            assert!(
                names.contains(&format!("{metric}(host-status-1)")),
                "{metric} in {names:?}"
            );
        }
    }

    #[test]
    fn co2_lines_have_unpadded_date_parts() {
        let time = NaiveDate::from_ymd_opt(2020, 7, 3)
            .unwrap()
            .and_hms_opt(2, 4, 5)
            .unwrap();
        assert_eq!(co2_line(time, 3500), "2020-7-3 02:04:05|3500");
        let mut meter = Co2Meter::new("co2-meter-1", "devices");
        for i in 0..200 {
            let message = meter.next_message(at(1594644203 + i));
            assert_eq!(message.topic, "devices/co2-meter-1/text");
            let line = String::from_utf8(message.payload).unwrap();
            let (_, ppm) = line.split_once('|').unwrap();
            let ppm: u32 = ppm.parse().unwrap();
            assert!((400..=5000).contains(&ppm), "{line}");
        }
    }

    #[test]
    fn nightlight_reports_light_and_its_led_which_commands_switch() {
        let mut light = Nightlight::new("nightlight-1", "");
        assert_eq!(light.command_topic(), Some("nightlight-1/commands"));
        let levels: Vec<u64> = (0..60)
            .map(|_| {
                let message = light.next_message(at(0));
                assert_eq!(message.topic, "nightlight-1/telemetry");
                let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
                assert_eq!(value["led"], false);
                value["light"].as_u64().unwrap()
            })
            .collect();
        // A simulated day crosses reference 004's threshold both ways.
        assert!(levels.iter().any(|&level| level < 300), "{levels:?}");
        assert!(levels.iter().any(|&level| level > 600), "{levels:?}");

        assert_eq!(
            light.on_command(br#"{"led_on": true}"#).line,
            "nightlight-1: LED on"
        );
        let value: serde_json::Value =
            serde_json::from_slice(&light.next_message(at(0)).payload).unwrap();
        assert_eq!(value["led"], true);
        assert_eq!(
            light.on_command(br#"{"led_on": true}"#).line,
            "nightlight-1: LED stays on"
        );
        let ignored = light.on_command(b"switch!");
        assert!(
            !ignored.applied && ignored.line.contains("ignored"),
            "{}",
            ignored.line
        );
        let value: serde_json::Value =
            serde_json::from_slice(&light.next_message(at(0)).payload).unwrap();
        assert_eq!(value["led"], true, "a bad command changes nothing");
        let off = light.on_command(br#"{"led_on": false}"#);
        assert!(off.applied);
        assert_eq!(off.line, "nightlight-1: LED off");
    }

    #[test]
    fn a_switch_is_timed_from_the_reading_that_calls_for_it() {
        let mut light = Nightlight::new("nightlight-1", "devices");
        // Readings until one is dark enough for reference 004's rule.
        let mut dark = false;
        for _ in 0..60 {
            let message = light.next_message(DateTime::from_timestamp(0, 0).unwrap());
            let value: serde_json::Value = serde_json::from_slice(&message.payload).unwrap();
            if value["light"].as_u64().unwrap() < 300 {
                dark = true;
                break;
            }
        }
        assert!(dark);
        std::thread::sleep(std::time::Duration::from_millis(5));
        let switched = light.on_command(br#"{"led_on": true}"#);
        assert!(switched.latency.unwrap() >= std::time::Duration::from_millis(5));
        assert_eq!(
            light.on_command(br#"{"led_on": true}"#).latency,
            None,
            "timed once"
        );
    }

    #[test]
    fn fleets_by_name_and_their_device_names() {
        let lab = FleetKind::parse("gcp-iot-lab").unwrap();
        assert_eq!(
            lab.default_names(2),
            ["temp-sensor-buenos-aires", "temp-sensor-istanbul"]
        );
        assert_eq!(lab.default_names(10)[9], "temp-sensor-10");
        let co2 = FleetKind::parse("co2-meter").unwrap();
        assert_eq!(co2.default_names(2), ["co2-meter-1", "co2-meter-2"]);
        let error = FleetKind::parse("toaster").err().unwrap().to_string();
        assert!(
            error.contains("toaster") && error.contains("gcp-iot-lab"),
            "{error}"
        );
    }
}
