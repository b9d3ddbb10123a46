//! The run's chart: a self-contained HTML page with three SVG plots
//! (plotters): temperature per device with the windows function's maxima,
//! CO2, and light with the LED state.

use std::collections::BTreeMap;

use plotters::prelude::*;
use serde_json::Value;

/// What the devices sent, as the rules engine saw it (times in ms).
#[derive(Debug, Default)]
pub struct Series {
    pub temperature: BTreeMap<String, Vec<(i64, f64)>>,
    pub co2: BTreeMap<String, Vec<(i64, f64)>>,
    pub light: BTreeMap<String, Vec<(i64, f64, bool)>>,
}

impl Series {
    /// Records one message's plotted values (`json`: the payload parsed,
    /// once, by the rules engine).
    pub fn observe(&mut self, topic: &str, payload: &[u8], json: Option<&Value>, now_ms: i64) {
        let device = topic.split('/').rev().nth(1).unwrap_or(topic).to_owned();
        if let Some(json) = json {
            // A device's batch: each reading, as if sent alone.
            let batch = json
                .as_array()
                .or_else(|| json.get("readings").and_then(Value::as_array));
            match batch {
                Some(readings) => {
                    for reading in readings {
                        self.observe_reading(&device, reading, now_ms);
                    }
                }
                None => self.observe_reading(&device, json, now_ms),
            }
        } else if let Some((_, ppm)) = std::str::from_utf8(payload)
            .ok()
            .and_then(|text| text.split_once('|'))
        {
            if let Ok(ppm) = ppm.trim().parse::<f64>() {
                self.co2.entry(device).or_default().push((now_ms, ppm));
            }
        }
    }

    /// One reading's plotted value, if it has one.
    fn observe_reading(&mut self, device: &str, json: &Value, now_ms: i64) {
        if let Some(temperature) = json.get("temperature").and_then(Value::as_f64) {
            let at = json
                .get("timestamp")
                .and_then(Value::as_i64)
                .map_or(now_ms, |s| s * 1000);
            self.temperature
                .entry(device.to_owned())
                .or_default()
                .push((at, temperature));
        } else if let Some(light) = json.get("light").and_then(Value::as_f64) {
            let led = json.get("led").and_then(Value::as_bool).unwrap_or(false);
            self.light
                .entry(device.to_owned())
                .or_default()
                .push((now_ms, light, led));
        }
    }
}

/// One window's maximum: device, start and end (ms), value.
pub type WindowMaximum = (String, i64, i64, f64);

/// The page; `title` heads it.
pub fn html(title: &str, series: &Series, maxima: &[WindowMaximum]) -> Result<String, String> {
    let temperature = plot_temperature(series, maxima)?;
    let co2 = plot_lines("CO2 (ppm)", &series.co2)?;
    let light_lines: BTreeMap<String, Vec<(i64, f64)>> = series
        .light
        .iter()
        .flat_map(|(device, points)| {
            [
                (
                    format!("{device} light"),
                    points.iter().map(|(t, v, _)| (*t, *v)).collect::<Vec<_>>(),
                ),
                (
                    format!("{device} LED (on = 1000)"),
                    points
                        .iter()
                        .map(|(t, _, on)| (*t, if *on { 1000.0 } else { 0.0 }))
                        .collect(),
                ),
            ]
        })
        .collect();
    let light = plot_lines("Light and LED", &light_lines)?;
    Ok(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title>\n<style>body{{font-family:sans-serif;margin:2em}} figure{{margin:0 0 2em 0}}</style></head>\n<body><h1>{title}</h1>\n<figure>{temperature}<figcaption>Temperature per device (lines) and the telemetry-windows maxima per window (dots)</figcaption></figure>\n<figure>{co2}<figcaption>CO2 per meter</figcaption></figure>\n<figure>{light}<figcaption>Night lights: light level and LED state (the device-commands rule switches the LED below 300)</figcaption></figure>\n</body></html>\n"
    ))
}

fn bounds<'a>(values: impl Iterator<Item = &'a (i64, f64)>) -> Option<(i64, i64, f64, f64)> {
    let mut bounds: Option<(i64, i64, f64, f64)> = None;
    for (t, v) in values {
        bounds = Some(match bounds {
            None => (*t, *t, *v, *v),
            Some((t0, t1, v0, v1)) => (t0.min(*t), t1.max(*t), v0.min(*v), v1.max(*v)),
        });
    }
    bounds.map(|(t0, t1, v0, v1)| {
        let pad = ((v1 - v0) * 0.1).max(0.5);
        (t0, t1.max(t0 + 1000), v0 - pad, v1 + pad)
    })
}

fn seconds_label(start: i64) -> impl Fn(&i64) -> String {
    move |t| format!("{}s", (t - start) / 1000)
}

fn plot_temperature(series: &Series, maxima: &[WindowMaximum]) -> Result<String, String> {
    let dots: Vec<(String, i64, f64)> = maxima
        .iter()
        .map(|(device, start, end, max)| (device.clone(), (start + end) / 2, *max))
        .collect();
    plot("Temperature", 320, &series.temperature, &dots)
}

fn plot_lines(caption: &str, lines: &BTreeMap<String, Vec<(i64, f64)>>) -> Result<String, String> {
    plot(caption, 280, lines, &[])
}

/// One SVG: a line per entry of `lines`, and `dots` in the colour of the
/// line they name.
fn plot(
    caption: &str,
    height: u32,
    lines: &BTreeMap<String, Vec<(i64, f64)>>,
    dots: &[(String, i64, f64)],
) -> Result<String, String> {
    let all = lines
        .values()
        .flatten()
        .copied()
        .chain(dots.iter().map(|(_, t, v)| (*t, *v)))
        .collect::<Vec<_>>();
    let Some((t0, t1, v0, v1)) = bounds(all.iter()) else {
        return Ok(format!("<p>No data for {caption}.</p>"));
    };
    let error = |e: &dyn std::fmt::Display| e.to_string();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| error(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption(caption, ("sans-serif", 18))
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(t0..t1, v0..v1)
            .map_err(|e| error(&e))?;
        chart
            .configure_mesh()
            .x_label_formatter(&seconds_label(t0))
            .draw()
            .map_err(|e| error(&e))?;
        for (index, (name, values)) in lines.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            chart
                .draw_series(LineSeries::new(
                    values.iter().copied(),
                    color.stroke_width(2),
                ))
                .map_err(|e| error(&e))?
                .label(name.clone())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], color));
            let own = dots.iter().filter(|(line, ..)| line == name);
            chart
                .draw_series(own.map(|(_, t, v)| Circle::new((*t, *v), 5, color.filled())))
                .map_err(|e| error(&e))?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(|e| error(&e))?;
        root.present().map_err(|e| error(&e))?;
    }
    Ok(svg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_holds_the_three_plots() {
        let mut series = Series::default();
        for i in 0..20 {
            let at = 1_700_000_000_000 + i * 1000;
            let temperature = format!(
                "{{\"timestamp\": {}, \"device\": \"temp-sensor-istanbul\", \"temperature\": {}}}",
                at / 1000,
                20.0 + i as f64 / 10.0
            );
            let light = format!("{{\"light\": {}, \"led\": {}}}", i * 50, i < 6);
            let co2 = format!("2020-7-13 22:43:{i}|{}", 400 + i);
            for (topic, payload) in [
                ("devices/temp-sensor-istanbul/telemetry", temperature),
                ("devices/co2-meter-1/text", co2),
                ("devices/nightlight-1/telemetry", light),
            ] {
                let json: Option<Value> = serde_json::from_str(&payload).ok();
                series.observe(topic, payload.as_bytes(), json.as_ref(), at);
            }
        }
        assert_eq!(series.temperature["temp-sensor-istanbul"].len(), 20);
        assert_eq!(series.co2["co2-meter-1"].len(), 20);
        assert_eq!(series.light["nightlight-1"].len(), 20);
        let maxima = vec![(
            "temp-sensor-istanbul".to_owned(),
            1_700_000_000_000,
            1_700_000_010_000,
            20.9,
        )];
        let page = html("run", &series, &maxima).unwrap();
        assert_eq!(page.matches("<svg").count(), 3, "{page}");
        assert!(page.contains("temp-sensor-istanbul") && page.contains("nightlight-1 LED"));
    }
}
