"""The windows job as a Python + Powertools user would write it: Powertools'
`KinesisStreamEvent` data class reads the tumbling-window event, each
record's JSON is folded into `state` keyed "device|metric|bucket" ->
[count, min, max, sum] (the shape of AWS's own example, a flat JSON
object), complete buckets are emitted (here: counted) and the state handed
back. Same 10,000-record event and same 10,000 x 4 state as
`examples/time_windows.rs`; prints one JSON line like it."""
import base64
import json
import sys
import time

from aws_lambda_powertools.utilities.data_classes import KinesisStreamEvent

RECORDS = 10_000
DEVICES = 100
T0_S = 1_645_938_000
BUCKET_S = 60
LATENESS_S = 10


def window_event():
    records = []
    for i in range(RECORDS):
        device = "temp-sensor-%03d" % (i % DEVICES)
        at_s = T0_S + i // DEVICES
        text = '{\n    "timestamp": %d,\n    "device": "%s",\n    "temperature": %r\n}' % (at_s, device, 17.0 + (i % 97) * 0.0731)
        records.append({"eventSource": "aws:kinesis", "kinesis": {
            "sequenceNumber": str(49_590_000 + i), "partitionKey": device,
            "data": base64.b64encode(text.encode()).decode(), "approximateArrivalTimestamp": at_s + 1.0}})
    return {"Records": records, "window": {"start": "2022-02-27T05:00:00Z", "end": "2022-02-27T05:05:00Z"},
            "state": {}, "shardId": "shardId-000000000000", "isFinalInvokeForWindow": False,
            "isWindowTerminatedEarly": False}


def fold(state, key, value):
    entry = state.get(key)
    if entry is None:
        state[key] = [1, value, value, value]
    else:
        entry[0] += 1
        entry[1] = min(entry[1], value)
        entry[2] = max(entry[2], value)
        entry[3] += value


def handler(event, context=None):
    state = dict(event.get("state") or {})
    stream = KinesisStreamEvent(event)
    newest = 0
    for record in stream.records:
        reading = record.kinesis.data_as_json()
        at = int(reading["timestamp"])
        newest = max(newest, at)
        for metric, value in reading.items():
            if metric in ("timestamp", "device") or not isinstance(value, (int, float)):
                continue
            fold(state, "%s|%s|%d" % (reading["device"], metric, at // BUCKET_S * BUCKET_S), value)
    emitted = 0
    final = event.get("isFinalInvokeForWindow", False)
    for key in list(state):
        bucket = int(key.rsplit("|", 1)[1])
        if final or bucket + BUCKET_S <= newest - LATENESS_S:
            del state[key]
            emitted += 1
    return {"state": state, "batchItemFailures": [], "emitted": emitted}


def big_state():
    state = {}
    seed = 1
    bases = [("temperature", 20.0), ("humidity", 50.0), ("pressure", 1000.0), ("co2", 400.0)]
    for second in range(60):
        for d in range(10_000):
            for metric, base in bases:
                seed = (seed * 6364136223846793005 + 1442695040888963407) % (1 << 64)
                value = round((base + ((seed >> 33) % 1000) / 100.0) * 100.0) / 100.0
                fold(state, "sensor-%d|%s|%d" % (d, metric, T0_S), value)
    return state


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    event = window_event()
    handler(json.loads(json.dumps(event)))
    times = []
    for _ in range(runs):
        # Lambda hands the handler a freshly parsed event each time.
        fresh = json.loads(json.dumps(event))
        start = time.perf_counter()
        answer = handler(fresh)
        json.dumps(answer)
        times.append(time.perf_counter() - start)
    state = big_state()
    print(json.dumps({"records": RECORDS, "invocation_best_s": min(times), "emitted": answer["emitted"],
                      "series_10000x4": len(state), "state_bytes_10000x4": len(json.dumps(state))}))


if __name__ == "__main__":
    main()
