"""`make bench-part PART=local_pipeline`: the local pipeline (`iotpipe run`)
next to references 002/004's design on the same machine, in the same run.

Ours: `iotpipe run` with the night light fleet: embedded broker, the
template's rules, the four function binaries (release builds), the
warehouse writing to MariaDB. Baseline: mosquitto plus a Python paho-mqtt
subscriber (bench/baseline/pipeline.py) inserting every reading into the same
MariaDB, one commit per message as reference 002 does, and deciding and
publishing the LED command as reference 004's server does. The same
simulated night lights (`iotpipe simulate`, Rust) drive both.

Two figures, each side measured the same way:
- throughput: messages per second from the devices' start to the last
  reading stored (10 devices publishing as fast as they can);
- latency: from a night light's reading that calls for a switch to its LED
  switching, measured on the device, p50 and p99 (10 devices at 10
  messages/s, so the pipeline is not saturated).
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH_PYTHON = os.path.join(ROOT, ".venv-bench", "bin", "python")
DEVICES = 10
THROUGHPUT_MESSAGES = 300
LATENCY_MESSAGES = 120
LATENCY_RATE = 10
PASSWORD = "bench-password"
# Shared 2-core machines drift: alternate the sides, take medians.
ROUNDS = 3


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("nothing listens on %d" % port)


class Mariadb:
    """A throwaway MariaDB (Debian's mariadb-server) on a loopback port."""

    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="iotpipe-bench-mariadb-")
        data, tmp = os.path.join(self.directory, "data"), os.path.join(self.directory, "tmp")
        os.makedirs(tmp)
        root = os.getuid() == 0
        if root:
            subprocess.run(["chown", "-R", "mysql:mysql", self.directory], check=True)
        user = ["--user=mysql"] if root else []
        subprocess.run(["mariadb-install-db", "--no-defaults", "--datadir=" + data, "--tmpdir=" + tmp,
                        "--auth-root-authentication-method=normal", "--skip-test-db"] + user,
                       check=True, capture_output=True)
        self.port = free_port()
        self.socket = os.path.join(self.directory, "sock")
        self.process = subprocess.Popen(
            ["/usr/sbin/mariadbd", "--no-defaults", "--datadir=" + data, "--socket=" + self.socket,
             "--pid-file=" + os.path.join(self.directory, "pid"), "--tmpdir=" + tmp,
             "--bind-address=127.0.0.1", "--port=%d" % self.port, "--skip-log-bin"] + user,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 60
        while self.sql("SELECT 1").returncode != 0:
            if time.time() > deadline:
                raise RuntimeError("mariadbd did not start")
            time.sleep(0.2)
        self.sql("CREATE DATABASE iot; CREATE USER 'iot'@'127.0.0.1' IDENTIFIED BY '%s'; "
                 "GRANT ALL ON iot.* TO 'iot'@'127.0.0.1'" % PASSWORD)
        self.url = "mysql://iot:%s@127.0.0.1:%d/iot" % (PASSWORD, self.port)

    def sql(self, statement):
        return subprocess.run(["mariadb", "--no-defaults", "--socket=" + self.socket, "-uroot", "-N", "-B", "-e", statement],
                              capture_output=True, text=True)

    def reset(self):
        self.sql("DROP DATABASE iot; CREATE DATABASE iot")

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


class Mosquitto:
    def __init__(self):
        self.directory = tempfile.mkdtemp(prefix="iotpipe-bench-mosquitto-")
        self.port = free_port()
        config = os.path.join(self.directory, "mosquitto.conf")
        with open(config, "w") as f:
            f.write("listener %d 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 100\nmax_queued_messages 100000\n" % self.port)
        self.process = subprocess.Popen(["/usr/sbin/mosquitto", "-c", config], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port)

    def stop(self):
        self.process.terminate()
        self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)


def build():
    # The release profile's fat LTO is for Lambda packages; for a local run
    # thin LTO gives the same code paths in a fraction of the build time.
    env = dict(os.environ, CARGO_PROFILE_RELEASE_LTO="thin", CARGO_PROFILE_RELEASE_CODEGEN_UNITS="16")
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "iotpipe", "-p", "telemetry-metrics",
                    "-p", "telemetry-warehouse", "-p", "device-commands", "-p", "telemetry-windows"],
                   cwd=ROOT, check=True, env=env)
    return os.path.join(ROOT, "target", "release")


def ours(binaries, database, messages, rate):
    out = tempfile.mkdtemp(prefix="iotpipe-bench-run-")
    try:
        subprocess.run([os.path.join(binaries, "iotpipe"), "run", "--out", out, "--fleet", "nightlight",
                        "--devices", str(DEVICES), "--messages", str(messages), "--rate", str(rate),
                        "--functions", binaries, "--env", "telemetry-warehouse:WAREHOUSE_URL=" + database.url],
                       check=True, capture_output=True, text=True)
        with open(os.path.join(out, "report.json")) as f:
            report = json.load(f)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    total = report["total"]
    assert total["sent"] == DEVICES * messages == total["accepted"], total
    rows = int(database.sql("SELECT count(*) FROM iot.readings WHERE metric = 'light'").stdout.strip())
    assert rows == DEVICES * messages, rows
    throughput = report["throughput"]
    return {
        "messages": total["sent"],
        # To the last row stored, as the baseline is measured.
        "seconds": throughput["rows_written_seconds"],
        "messages_per_second": throughput["messages_per_second_to_rows_written"],
        # To the last delivery of any function (commands, metrics, windows).
        "all_functions_seconds": throughput["seconds"],
        "all_functions_messages_per_second": throughput["messages_per_second"],
        "latency_ms": report["command_latency_ms"],
    }


def baseline(binaries, database, messages, rate):
    broker = Mosquitto()
    try:
        expected = DEVICES * messages
        server = subprocess.Popen([BENCH_PYTHON, os.path.join(ROOT, "bench", "baseline", "pipeline.py"),
                                   str(broker.port), str(database.port), PASSWORD, str(expected)],
                                  stdout=subprocess.PIPE, text=True)
        time.sleep(1.0)  # subscribed before the devices publish
        started = time.time()
        devices = subprocess.run([os.path.join(binaries, "iotpipe"), "simulate", "--fleet", "nightlight",
                                  "--devices", str(DEVICES), "--messages", str(messages), "--rate", str(rate),
                                  "--broker", "mqtt://127.0.0.1:%d" % broker.port, "--patience", "120"],
                                 check=True, capture_output=True, text=True)
        stats = json.loads(server.communicate(timeout=600)[0].strip().splitlines()[-1])
        latency = None
        for line in devices.stdout.splitlines():
            if line.startswith("LED switches timed:"):
                # LED switches timed: N, from ...: p50 X ms, p99 Y ms
                switches = int(line.split(":")[1].split(",")[0])
                p50 = float(line.split("p50 ")[1].split(" ms")[0])
                p99 = float(line.split("p99 ")[1].split(" ms")[0])
                latency = {"switches": switches, "p50": p50, "p99": p99}
        seconds = stats["last_insert"] - started
        return {"messages": stats["stored"], "seconds": seconds, "messages_per_second": stats["stored"] / seconds,
                "latency_ms": latency}
    finally:
        broker.stop()


def median_of(runs, key):
    values = sorted(run[key] for run in runs)
    return values[len(values) // 2]


def latency_of(runs, key):
    runs = [run["latency_ms"] for run in runs if run["latency_ms"]]
    if not runs:
        return None
    return {"switches": sum(run["switches"] for run in runs), key: sorted(run[key] for run in runs)[len(runs) // 2],
            key + "_range": [min(run[key] for run in runs), max(run[key] for run in runs)]}


def measure(log):
    binaries = build()
    database = Mariadb()
    runs = {"throughput_ours": [], "throughput_baseline": [], "latency_ours": [], "latency_baseline": []}
    try:
        for round_number in range(ROUNDS):
            for label, side, messages, rate in (("throughput_ours", ours, THROUGHPUT_MESSAGES, 0),
                                                ("throughput_baseline", baseline, THROUGHPUT_MESSAGES, 0),
                                                ("latency_ours", ours, LATENCY_MESSAGES, LATENCY_RATE),
                                                ("latency_baseline", baseline, LATENCY_MESSAGES, LATENCY_RATE)):
                log("local pipeline, round %d: %s" % (round_number + 1, label))
                database.reset()
                runs[label].append(side(binaries, database, messages, rate))
    finally:
        database.stop()
    results = {"devices": DEVICES, "rounds": ROUNDS, "runs": runs,
               "throughput_messages": DEVICES * THROUGHPUT_MESSAGES,
               "latency_messages": DEVICES * LATENCY_MESSAGES, "latency_rate": LATENCY_RATE}
    for side in ("ours", "baseline"):
        throughput = runs["throughput_" + side]
        results["throughput_" + side] = {
            "messages_per_second": median_of(throughput, "messages_per_second"),
            "range": [min(r["messages_per_second"] for r in throughput), max(r["messages_per_second"] for r in throughput)],
        }
        latency = runs["latency_" + side]
        p50, p99 = latency_of(latency, "p50"), latency_of(latency, "p99")
        results["latency_" + side] = {"latency_ms": None if p50 is None else dict(p50, **p99)}
    results["throughput_ours"]["all_functions_messages_per_second"] = median_of(
        runs["throughput_ours"], "all_functions_messages_per_second")
    return results


def lines(r):
    t_ours, t_base = r["throughput_ours"], r["throughput_baseline"]
    l_ours, l_base = r["latency_ours"]["latency_ms"] or {}, r["latency_baseline"]["latency_ms"] or {}
    nan = float("nan")

    def ranged(figure, key):
        low, high = figure.get(key + "_range", [nan, nan])
        return "%.1f (%.1f-%.1f)" % (figure.get(key, nan), low, high)

    return ["## The local pipeline (`iotpipe run`) against references 002/004's design", "",
            "The same simulated night lights (%d devices, `iotpipe simulate`'s code) drive both. Ours: `iotpipe run` (embedded" % r["devices"],
            "broker, the template's rules, the four function binaries, release builds; the warehouse writes to MariaDB).",
            "Baseline: mosquitto and a Python paho-mqtt subscriber (`bench/baseline/pipeline.py`) inserting each reading into",
            "the same MariaDB with a commit per message (reference 002) and publishing the LED command (reference 004).",
            "Ours does more per message: it also makes metrics (EMF), window aggregates and keeps the commands' shadow;",
            "its per-message Lambda action (the template's CommandsRule) runs one invocation at a time locally, where AWS",
            "would scale out. %d alternating rounds; medians, with the rounds' range:" % r["rounds"], "",
            "| figure | ours | mosquitto + paho | ratio |", "| --- | --- | --- | --- |",
            "| messages/s, devices' start to the last reading stored (%s messages, devices as fast as they can) | %s (%s-%s) | %s (%s-%s) | %.1fx |" % (
                "{:,}".format(r["throughput_messages"]),
                "{:,.0f}".format(t_ours["messages_per_second"]), "{:,.0f}".format(t_ours["range"][0]), "{:,.0f}".format(t_ours["range"][1]),
                "{:,.0f}".format(t_base["messages_per_second"]), "{:,.0f}".format(t_base["range"][0]), "{:,.0f}".format(t_base["range"][1]),
                t_ours["messages_per_second"] / t_base["messages_per_second"]),
            "| ... to the last delivery of every function (commands, metrics, windows too) | %s | - | - |" % (
                "{:,.0f}".format(t_ours["all_functions_messages_per_second"])),
            "| reading to LED switch, p50 (ms; %d messages/s per device) | %s | %s | - |" % (
                r["latency_rate"], ranged(l_ours, "p50"), ranged(l_base, "p50")),
            "| reading to LED switch, p99 (ms) | %s | %s | - |" % (ranged(l_ours, "p99"), ranged(l_base, "p99")),
            "| LED switches timed (all rounds) | %s | %s | - |" % (l_ours.get("switches", 0), l_base.get("switches", 0)),
            "",
            "With about 44 switches a round, p99 is a round's slowest switch. Ours are the run's first switches (a debug",
            "run's raw samples: the first four at 68-109 ms, the rest at 7-57 ms), so most likely the function instances'",
            "cold first requests and connections; not yet profiled.", ""]
