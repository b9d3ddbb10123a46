#!/usr/bin/env python3
"""Writes events/windows/: one Lambda tumbling window (Kinesis, 5 minutes of
arrival time) of reference 000's temperature sensors, as the sequence of
invocations Lambda would make, and events/windows/expected/sequence.json: what
telemetry-windows must emit per device and one-minute event-time bucket,
worked out here from the readings, independently of the Rust code.

The readings arrive out of order within a few seconds, two arrive long
after their minute was emitted, and one was taken before Lambda's window
began: all must be in the totals, the late ones as `late` partials.

Run from the repository root: python3 tools/make_window_events.py
"""
import base64
import json
import os
import random

WINDOW_START_S = 1645938000          # 2022-02-27T05:00:00Z
WINDOW_END_S = WINDOW_START_S + 300
BUCKET_S = 60                         # WINDOW_SECONDS
LATENESS_S = 10                       # ALLOWED_LATENESS_SECONDS
DEVICES = ["temp-sensor-buenos-aires", "temp-sensor-istanbul"]
BATCH = 60                            # records per invocation
OUT = "events/windows"


def iso(seconds):
    import datetime
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def readings():
    """(device, event time s, temperature, arrival s), in arrival order."""
    rng = random.Random(20220227)
    out = []
    for device in DEVICES:
        temperature = 17.5 if device.endswith("istanbul") else 24.0
        for second in range(0, 230):
            temperature += rng.gauss(0, 0.2)
            event = WINDOW_START_S + second
            arrival = event + rng.uniform(0.5, 4.0)   # out of order within seconds
            out.append([device, event, temperature, arrival])
    # Taken before Lambda's window began, delivered in it.
    out.append(["temp-sensor-istanbul", WINDOW_START_S - 2, 16.25, WINDOW_START_S + 1.0])
    # Two readings from a device that lost its connection: minute 0,
    # delivered in minute 4, long after minute 0 went out.
    out.append(["temp-sensor-buenos-aires", WINDOW_START_S + 30, 31.5, WINDOW_START_S + 235.0])
    out.append(["temp-sensor-buenos-aires", WINDOW_START_S + 31, 12.0, WINDOW_START_S + 236.0])
    out.sort(key=lambda r: r[3])
    return out


def record(device, event_s, temperature, arrival_s, sequence):
    # Reference 000's payload: indented JSON, epoch seconds.
    text = json.dumps({"timestamp": event_s, "device": device, "temperature": temperature}, indent=4)
    seq = f"4959033827149025660855969253836157109592157598913{sequence:07d}"
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": device, "sequenceNumber": seq,
                    "data": base64.b64encode(text.encode()).decode(), "approximateArrivalTimestamp": arrival_s},
        "eventSource": "aws:kinesis", "eventVersion": "1.0",
        "eventID": "shardId-000000000000:" + seq, "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/iotpipe-windows",
        "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/iot-telemetry",
    }


def main():
    arrived = readings()
    batches = [arrived[i:i + BATCH] for i in range(0, len(arrived), BATCH)]
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        if name.endswith(".json"):
            os.remove(os.path.join(OUT, name))
    sequence = 0
    watermark = None
    late = set()
    for index, batch in enumerate(batches):
        records = []
        closed_end = None if watermark is None else watermark - LATENESS_S
        for device, event, temperature, arrival in batch:
            sequence += 1
            records.append(record(device, event, temperature, arrival, sequence))
            bucket = event // BUCKET_S * BUCKET_S
            if bucket < WINDOW_START_S or (closed_end is not None and bucket + BUCKET_S <= closed_end):
                late.add((device, bucket))
        for _, event, _, _ in batch:
            watermark = event if watermark is None else max(watermark, event)
        final = index == len(batches) - 1
        event = {
            "Records": records,
            "window": {"start": iso(WINDOW_START_S), "end": iso(WINDOW_END_S)},
            # Lambda's first invocation of a window has an empty state; the
            # replay (iotpipe windows) hands each answer's state on.
            "state": {},
            "shardId": "shardId-000000000000",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/iot-telemetry",
            "isFinalInvokeForWindow": final,
            "isWindowTerminatedEarly": False,
        }
        with open(os.path.join(OUT, f"{index:02d}-{'final' if final else 'batch'}.json"), "w") as out:
            json.dump(event, out, indent=1)
            out.write("\n")
    totals = {}
    for device, event, temperature, _ in arrived:
        bucket = event // BUCKET_S * BUCKET_S
        entry = totals.setdefault((device, bucket), {"count": 0, "min": temperature, "max": temperature, "sum": 0.0})
        entry["count"] += 1
        entry["min"] = min(entry["min"], temperature)
        entry["max"] = max(entry["max"], temperature)
        entry["sum"] += temperature
    expected = {
        "now": iso(WINDOW_END_S),
        "window_seconds": BUCKET_S,
        "allowed_lateness_seconds": LATENESS_S,
        "readings": len(arrived),
        "aggregates": [
            {"device": device, "window_start": bucket * 1000, "count": e["count"], "min": e["min"],
             "max": e["max"], "sum": e["sum"], "mean": e["sum"] / e["count"],
             "has_late_partial": (device, bucket) in late}
            for (device, bucket), e in sorted(totals.items())
        ],
    }
    os.makedirs(os.path.join(OUT, "expected"), exist_ok=True)
    with open(os.path.join(OUT, "expected", "sequence.json"), "w") as out:
        json.dump(expected, out, indent=1)
        out.write("\n")
    print(f"wrote {len(batches)} window events ({len(arrived)} readings, {len(late)} late partials expected)")


if __name__ == "__main__":
    main()
