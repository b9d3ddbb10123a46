//! This machine's status, read as reference 003's script reads it: disk
//! usage of `/` (its `df`), CPU usage since the previous reading
//! (`/proc/stat`), CPU temperature when the machine has a thermal sensor
//! (its `vcgencmd`), memory in use in megabytes (its `free --mega`).

/// One metric: name (the device is appended by the caller), CloudWatch
/// unit, value as text.
pub type HostReading = (&'static str, &'static str, String);

/// Reads the host's counters; keeps the previous CPU sample so usage is
/// measured between readings.
pub struct HostProbe {
    previous_cpu: Option<CpuTimes>,
    last_cpu_percent: f64,
}

#[derive(Clone, Copy)]
struct CpuTimes {
    busy: u64,
    total: u64,
}

impl Default for HostProbe {
    fn default() -> Self {
        Self::new()
    }
}

impl HostProbe {
    pub fn new() -> HostProbe {
        HostProbe {
            previous_cpu: None,
            last_cpu_percent: 0.0,
        }
    }

    /// Every metric this machine can give, in the script's order.
    pub fn read(&mut self) -> Vec<HostReading> {
        let mut readings = Vec::with_capacity(4);
        if let Some(percent) = disk_used_percent("/") {
            readings.push(("disk usage /", "Percent", format!("{percent:.0}")));
        }
        if let Some(percent) = self.cpu_percent() {
            readings.push(("cpu usage", "Percent", format!("{percent:.1}")));
        }
        if let Some(celsius) = cpu_temperature() {
            readings.push(("cpu temperature", "None", format!("{celsius:.1}")));
        }
        if let Some(megabytes) = memory_used_megabytes() {
            readings.push(("memory usage", "Megabytes", megabytes.to_string()));
        }
        if readings.is_empty() {
            // Not Linux: still a well-formed message, never an empty turn.
            readings.push(("cpu usage", "Percent", "0".to_owned()));
        }
        readings
    }

    fn cpu_percent(&mut self) -> Option<f64> {
        let now = cpu_times(&std::fs::read_to_string("/proc/stat").ok()?)?;
        let since = self
            .previous_cpu
            .replace(now)
            .unwrap_or(CpuTimes { busy: 0, total: 0 });
        let total = now.total.saturating_sub(since.total);
        if total > 0 {
            // Read again within one tick: keep the last measurement.
            self.last_cpu_percent =
                100.0 * now.busy.saturating_sub(since.busy) as f64 / total as f64;
        }
        Some(self.last_cpu_percent)
    }
}

/// The `cpu` line of `/proc/stat`: busy (all but idle and iowait) and total
/// jiffies.
fn cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|line| line.starts_with("cpu "))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|field| field.parse().ok())
        .collect();
    if fields.len() < 4 {
        return None;
    }
    let total: u64 = fields.iter().sum();
    let idle = fields[3] + fields.get(4).copied().unwrap_or(0);
    Some(CpuTimes {
        busy: total - idle,
        total,
    })
}

/// `free --mega`'s "used": total minus available.
fn memory_used_megabytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let kilobytes = |key: &str| -> Option<u64> {
        let line = meminfo.lines().find(|line| line.starts_with(key))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    let used_kb = kilobytes("MemTotal:")?.saturating_sub(kilobytes("MemAvailable:")?);
    Some(used_kb * 1024 / 1_000_000)
}

fn disk_used_percent(path: &str) -> Option<f64> {
    let stats = rustix::fs::statvfs(path).ok()?;
    let total = stats.f_blocks;
    if total == 0 {
        return None;
    }
    let used = total.saturating_sub(stats.f_bfree);
    // df's Use%: used / (used + available to non-root users).
    let usable = used + stats.f_bavail;
    Some(100.0 * used as f64 / usable.max(1) as f64)
}

fn cpu_temperature() -> Option<f64> {
    let millidegrees: f64 = std::fs::read_to_string("/sys/class/thermal/thermal_zone0/temp")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(millidegrees / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_usage_comes_from_the_cpu_line() {
        let stat = "cpu  100 0 100 700 100 0 0 0 0 0\ncpu0 1 2 3 4\n";
        let times = cpu_times(stat).unwrap();
        assert_eq!((times.busy, times.total), (200, 1000));
        assert!(cpu_times("intr 1 2 3").is_none());
    }

    #[test]
    fn this_machine_reports_disk_cpu_and_memory() {
        let mut probe = HostProbe::new();
        let readings = probe.read();
        let names: Vec<&str> = readings.iter().map(|reading| reading.0).collect();
        for name in ["disk usage /", "cpu usage", "memory usage"] {
            assert!(names.contains(&name), "{names:?}");
        }
        for (_, _, value) in probe.read() {
            let value: f64 = value.parse().unwrap();
            assert!(value >= 0.0);
        }
    }
}
