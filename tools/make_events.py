#!/usr/bin/env python3
"""Writes the sample events in events/ and what each must produce in
events/expected/: every trigger x every reference payload, plus malformed
events. The expectations are worked out here, independently of the Rust
decoder, from the reference documents' payloads.

Run from the repository root: python3 tools/make_events.py
"""
import base64
import hashlib
import json
import os

NOW = "2022-02-27T05:05:00Z"  # the clock the samples are replayed at
TOKEN = "sample-token"        # PUBSUB_VERIFICATION_TOKEN for the HTTP samples
RULE_RECEIVED_MS = 1645938061000          # timestamp() AS received_at
SQS_SENT_MS = 1645938062000
SNS_TIME, SNS_MS = "2022-02-27T05:01:03.000Z", 1645938063000
KINESIS_ARRIVAL_S = 1645938064.0
PUBSUB_TIME, PUBSUB_MS = "2022-02-27T05:01:05.000Z", 1645938065000
EVENTBRIDGE_TIME, EVENTBRIDGE_MS = "2022-02-27T05:01:06Z", 1645938066000
NOW_MS = 1645938300000

# ---- the reference payloads -------------------------------------------------
# 000: GCP IoT lab, indented JSON; the device names itself and sends epoch seconds.
TEMP_TEXT = '{\n    "timestamp": 1645938060,\n    "device": "temp-sensor-istanbul",\n    "temperature": 17.95215062408679\n}'
# 003: AWS IoT shell script, value is a string with a trailing space.
CPU_TEXT = '{\n"name": "cpu usage (raspberrypi)",\n"unit": "Percent",\n"value": "42 "\n}'
# 002: CO2 meter, pipe-delimited, date parts not zero-padded (UTC clock here).
CO2_TEXT = "2022-2-27 5:3:23|3500"
# 004: MQTT lesson, a flat object; the device id is in the topic.
LIGHT_TEXT = '{"light": 400}'

# 001: a tweet as the stream listener publishes it (json.dumps(..., default=str)).
TWEET_TEXT = json.dumps({"id": 1419657712345678848, "created_at": "2021-07-26 14:37:33",
                         "text": "Tesla's new battery day announcement is live"})

PAYLOADS = {
    "temp": dict(text=TEMP_TEXT, topic="devices/temp-sensor-istanbul/telemetry",
                 client_id="temp-sensor-istanbul", json=True),
    "cpu": dict(text=CPU_TEXT, topic="devices/raspberrypi/status",
                client_id="raspberrypi", json=True),
    "co2": dict(text=CO2_TEXT, topic="devices/raspberrypi-co2/telemetry",
                client_id="raspberrypi-co2", json=False),
    "light": dict(text=LIGHT_TEXT, topic="nightlight-7f3a/telemetry",
                  client_id=None, json=True),
}


def expected_metrics(name, device, received_ms):
    """The metrics a payload yields, given how its device and time are known."""
    if name == "temp":
        return [metric("temp-sensor-istanbul", "temperature", 17.95215062408679, "None", 1645938060000)]
    if name == "cpu":
        return [metric(device, "cpu usage (raspberrypi)", 42.0, "Percent", received_ms)]
    if name == "co2":
        return [metric(device, "value", 3500.0, "None", 1645938203000)]
    if name == "light":
        return [metric(device, "light", 400.0, "None", received_ms)]
    raise ValueError(name)


def metric(device, name, value, unit, timestamp_ms, **dimensions):
    """A metric as EMF carries it: under the minute CloudWatch stores a
    standard-resolution datapoint in, not the reading's own second."""
    return {"device": device, "metric": name, "value": value, "unit": unit,
            "timestamp_ms": timestamp_ms // 60_000 * 60_000, "dimensions": dimensions}


def b64(text):
    return base64.b64encode(text.encode()).decode()


def rule_output(name, with_client_id=True, with_received=True):
    """What a topic rule `SELECT *, topic() AS topic, clientid() AS client_id,
    timestamp() AS received_at` hands on; text payloads travel base64-encoded
    (`SELECT encode(*, 'base64') AS data, ...`). Returned as JSON text."""
    p = PAYLOADS[name]
    extra = {"topic": p["topic"]}
    if with_client_id and p["client_id"]:
        extra["client_id"] = p["client_id"]
    if with_received:
        extra["received_at"] = RULE_RECEIVED_MS
    if not p["json"]:
        return json.dumps({"data": b64(p["text"]), **extra}, indent=2)
    obj = json.loads(p["text"])
    obj.update(extra)
    return json.dumps(obj, indent=2)


def rule_device(name):
    p = PAYLOADS[name]
    return p["client_id"] or p["topic"].split("/")[0]


def sqs_record(body, message_id):
    return {
        "messageId": message_id,
        "receiptHandle": "AQEBwJnKyrHigUMZj6rYigCgxlaS3SLy0a" + message_id[-4:],
        "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(SQS_SENT_MS),
                       "SenderId": "AIDAIENQZJOLO23YVJ4VO", "ApproximateFirstReceiveTimestamp": str(SQS_SENT_MS + 5)},
        "messageAttributes": {},
        "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
        "eventSource": "aws:sqs",
        "eventSourceARN": "arn:aws:sqs:us-east-1:123456789012:iot-telemetry",
        "awsRegion": "us-east-1",
    }


def sns_notification(message, message_id):
    return {
        "Type": "Notification", "MessageId": message_id,
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:iot-telemetry",
        "Subject": None, "Message": message, "Timestamp": SNS_TIME,
        "SignatureVersion": "1", "Signature": "tcc6faL2yUC6dgZdmrwh1Y4cGa/ebXEkAi6RibDsvpi+tE/1+82j...65r==",
        "SigningCertUrl": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-0000000000000000000000.pem",
        "UnsubscribeUrl": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe",
        "MessageAttributes": {"source": {"Type": "String", "Value": "iot-rule"}},
    }


def kinesis_record(data_text, sequence, partition_key):
    return {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": partition_key, "sequenceNumber": sequence,
                    "data": b64(data_text), "approximateArrivalTimestamp": KINESIS_ARRIVAL_S},
        "eventSource": "aws:kinesis", "eventVersion": "1.0",
        "eventID": "shardId-000000000000:" + sequence, "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/telemetry-metrics",
        "awsRegion": "us-east-1", "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/iot-telemetry",
    }


def pubsub_message(name, message_id):
    p = PAYLOADS[name]
    attributes = {"deviceId": rule_device(name), "deviceRegistryId": "iotlab-registry",
                  "deviceRegistryLocation": "us-central1", "projectId": "qwiklabs-gcp-00-c1186d5d3f7c",
                  "subFolder": ""}
    return {"data": b64(p["text"]), "attributes": attributes, "messageId": message_id,
            "message_id": message_id, "publishTime": PUBSUB_TIME, "publish_time": PUBSUB_TIME}


def pubsub_push(name, message_id):
    return {"message": pubsub_message(name, message_id),
            "subscription": "projects/qwiklabs-gcp-00-c1186d5d3f7c/subscriptions/iotlab-push"}


def function_url_request(body_obj, query):
    raw_query = "&".join(f"{k}={v}" for k, v in query.items())
    return {
        "version": "2.0", "routeKey": "$default", "rawPath": "/", "rawQueryString": raw_query,
        "headers": {"content-type": "application/json", "user-agent": "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"},
        "queryStringParameters": query or None,
        "requestContext": {"accountId": "anonymous", "apiId": "abcdefghijklmnop",
                           "domainName": "abcdefghijklmnop.lambda-url.us-east-1.on.aws",
                           "http": {"method": "POST", "path": "/", "protocol": "HTTP/1.1",
                                    "sourceIp": "66.249.84.1", "userAgent": "APIs-Google"},
                           "requestId": "8f9c5b1e-0000-4000-8000-000000000001", "routeKey": "$default",
                           "stage": "$default", "time": "27/Feb/2022:05:01:05 +0000", "timeEpoch": PUBSUB_MS},
        "body": json.dumps(body_obj), "isBase64Encoded": False,
    }


def eventbridge(detail_text):
    return {"version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718", "detail-type": "IoT telemetry",
            "source": "iot.telemetry", "account": "123456789012", "time": EVENTBRIDGE_TIME,
            "region": "us-east-1", "resources": [], "detail": json.loads(detail_text)}


SAMPLES = {}


def sample(file_name, event, metrics=(), dead_letters=(), response=None, retry=False):
    SAMPLES[file_name] = (event, {"now": NOW, "metrics": list(metrics),
                                  "dead_letters": list(dead_letters), "response": response})


def build():
    for name in PAYLOADS:
        device = rule_device(name)
        # IoT rule, Lambda action: the rule's output is the event.
        sample(f"iot-rule--{name}.json", json.loads(rule_output(name)),
               expected_metrics(name, device, RULE_RECEIVED_MS), response={"messages": 1})
        # IoT rule -> SQS (raw body).
        sample(f"sqs--{name}.json", {"Records": [sqs_record(rule_output(name), f"059f36b4-87a3-44ab-83d2-66197516{name[:4]:0>4}")]},
               expected_metrics(name, device, RULE_RECEIVED_MS), response={"batchItemFailures": []})
        # IoT rule -> SNS -> SQS without raw message delivery.
        body = json.dumps(sns_notification(rule_output(name, with_received=False), f"95df01b4-ee98-5cb9-9903-4c221d41{name[:4]:0>4}"))
        sample(f"sqs-sns--{name}.json", {"Records": [sqs_record(body, f"2e1424d4-f796-459a-8184-9c92662b{name[:4]:0>4}")]},
               expected_metrics(name, device, SNS_MS), response={"batchItemFailures": []})
        # IoT rule -> SNS -> Lambda.
        sample(f"sns--{name}.json", {"Records": [{
            "EventSource": "aws:sns", "EventVersion": "1.0",
            "EventSubscriptionArn": "arn:aws:sns:us-east-1:123456789012:iot-telemetry:2bcfbf39-05c3-41de-beaa-fcfcc21c8f55",
            "Sns": sns_notification(rule_output(name, with_received=False), f"95df01b4-ee98-5cb9-9903-4c221d41{name[:4]:0>4}")}]},
               expected_metrics(name, device, SNS_MS), response={"messages": 1})
        # EventBridge: the rule output is the detail.
        sample(f"eventbridge--{name}.json", eventbridge(rule_output(name, with_received=False)),
               expected_metrics(name, device, EVENTBRIDGE_MS), response={"messages": 1})
        # IoT rule -> Kinesis.
        sample(f"kinesis--{name}.json", {"Records": [kinesis_record(rule_output(name, with_received=False), "49590338271490256608559692538361571095921575989136588898", device)]},
               expected_metrics(name, device, int(KINESIS_ARRIVAL_S * 1000)), response={"batchItemFailures": []})
        # Google Pub/Sub push, given to the function as its event.
        sample(f"pubsub-push--{name}.json", pubsub_push(name, f"408646979155332{len(name)}"),
               expected_metrics(name, device, PUBSUB_MS), response={"messages": 1})
        # Google Pub/Sub push over HTTP to a function URL.
        sample(f"pubsub-http--{name}.json", function_url_request(pubsub_push(name, f"508646979155332{len(name)}"), {"token": TOKEN}),
               expected_metrics(name, device, PUBSUB_MS), response={"statusCode": 200})

    # An IoT rule batch (array) carrying every payload.
    batch = [json.loads(rule_output(n)) for n in PAYLOADS]
    sample("iot-rule--batch.json", batch,
           [m for n in PAYLOADS for m in expected_metrics(n, rule_device(n), RULE_RECEIVED_MS)], response={"messages": 4})

    # Device-side batching: one SQS message holding a JSON array of
    # readings, one holding an object with an array of readings; each
    # reading keeps its own timestamp (a minute apart here).
    minutes = [1645937940 + 60 * i for i in range(3)]
    array_body = json.dumps([{"device": "temp-sensor-ankara", "timestamp": t, "temperature": v}
                             for t, v in zip(minutes, [20.5, 21.0, 21.5])])
    object_body = json.dumps({"device": "temp-sensor-izmir",
                              "readings": [{"timestamp": t, "temperature": v}
                                           for t, v in zip(minutes, [18.25, 18.5, 18.75])]})
    sample("sqs--batched.json", {"Records": [sqs_record(array_body, "bbbbbbbb-0000-4000-8000-000000000001"),
                                             sqs_record(object_body, "bbbbbbbb-0000-4000-8000-000000000002")]},
           [metric("temp-sensor-ankara", "temperature", v, "None", t * 1000) for t, v in zip(minutes, [20.5, 21.0, 21.5])]
           + [metric("temp-sensor-izmir", "temperature", v, "None", t * 1000) for t, v in zip(minutes, [18.25, 18.5, 18.75])],
           response={"batchItemFailures": []})

    # Reference 001: a tweet (not telemetry) through Pub/Sub push. The metrics
    # function has nothing to measure in it; the warehouse writes `tweets`.
    sample("pubsub-push--tweet.json", {"message": {"data": b64(TWEET_TEXT), "attributes": {},
                                                   "messageId": "2070443601311540", "publishTime": PUBSUB_TIME},
                                       "subscription": "projects/tweet-pipeline/subscriptions/tweets-push"},
           dead_letters=[{"message_id": "2070443601311540", "reason": "no numeric field"}], response={"messages": 1})

    # ---- malformed ---------------------------------------------------------
    sample("malformed--not-json.json", None, dead_letters=[{"message_id": "event-test-request", "reason": "unreadable event"}],
           response={"dead_lettered": 1})
    mixed = [
        sqs_record(rule_output("temp"), "aaaaaaaa-0000-4000-8000-000000000001"),
        sqs_record('{"temperature": }', "aaaaaaaa-0000-4000-8000-000000000002"),
        sqs_record(json.dumps({"name": "cpu temperature (raspberrypi)", "unit": "Celsius", "value": "48.3 "}), "aaaaaaaa-0000-4000-8000-000000000003"),
        sqs_record("2020-7-13 22:43:23|3500", "aaaaaaaa-0000-4000-8000-000000000004"),
        sqs_record(json.dumps({"status": "ok", "topic": "devices/x/telemetry"}), "aaaaaaaa-0000-4000-8000-000000000005"),
        sqs_record(rule_output("light"), "aaaaaaaa-0000-4000-8000-000000000006"),
        sqs_record(json.dumps({"name": "disk usage", "unit": "Percent", "value": "n/a"}), "aaaaaaaa-0000-4000-8000-000000000007"),
    ]
    sample("malformed--sqs-mixed-batch.json", {"Records": mixed},
           expected_metrics("temp", None, None) + expected_metrics("light", "nightlight-7f3a", RULE_RECEIVED_MS),
           dead_letters=[
               {"message_id": "aaaaaaaa-0000-4000-8000-000000000002", "reason": "not valid JSON"},
               {"message_id": "aaaaaaaa-0000-4000-8000-000000000003", "reason": "field `/unit` = \"Celsius\""},
               {"message_id": "aaaaaaaa-0000-4000-8000-000000000004", "reason": "more than 14 days old"},
               {"message_id": "aaaaaaaa-0000-4000-8000-000000000005", "reason": "no numeric field"},
               {"message_id": "aaaaaaaa-0000-4000-8000-000000000007", "reason": "field `/value` = \"n/a\" is not a number"},
           ],
           response={"batchItemFailures": []})
    # A device that sends an empty batch by mistake: dead-lettered, never vanished.
    sample("malformed--sqs-empty-arrays.json", {"Records": [
        sqs_record("[]", "cccccccc-0000-4000-8000-000000000001"),
        sqs_record("\n[]", "cccccccc-0000-4000-8000-000000000002"),
    ]}, dead_letters=[
        {"message_id": "cccccccc-0000-4000-8000-000000000001", "reason": "holds no reading"},
        {"message_id": "cccccccc-0000-4000-8000-000000000002", "reason": "holds no reading"},
    ], response={"batchItemFailures": []})
    bad_kinesis = kinesis_record("x", "49590338271490256608559692538361571095921575989136588899", "k")
    bad_kinesis["kinesis"]["data"] = "not base64!!"
    sample("malformed--kinesis-bad-base64.json", {"Records": [bad_kinesis]},
           dead_letters=[{"message_id": "49590338271490256608559692538361571095921575989136588899", "reason": "not valid base64"}],
           response={"batchItemFailures": []})
    sample("malformed--pubsub-http-no-token.json", function_url_request(pubsub_push("temp", "1"), {}),
           response={"statusCode": 401})
    sample("malformed--pubsub-http-wrong-token.json", function_url_request(pubsub_push("temp", "1"), {"token": "guess"}),
           response={"statusCode": 403})
    future = json.loads(rule_output("temp"))
    future["timestamp"] = 1645938300 + 3 * 3600
    sample("malformed--iot-rule-future-timestamp.json", future,
           dead_letters=[{"message_id": CONTENT_ID, "reason": "more than 2 hours ahead"}], response={"messages": 1})


# IoT rule events carry no message id: the functions use the first 128 bits
# of the payload's SHA-256 (a whole single-object event is its payload).
CONTENT_ID = "<content id>"


def content_id(data):
    return "iot-" + hashlib.sha256(data).hexdigest()[:32]


def event_bytes(event):
    if event is None:
        return b"this is not JSON: 2022-02-27 temp-sensor-istanbul 17.95\n"
    return (json.dumps(event, indent=2) + "\n").encode()


def main():
    build()
    os.makedirs("events/expected", exist_ok=True)
    for file_name, (event, expected) in sorted(SAMPLES.items()):
        data = event_bytes(event)
        for letter in expected["dead_letters"]:
            if letter["message_id"] == CONTENT_ID:
                letter["message_id"] = content_id(data)
        with open(os.path.join("events", file_name), "wb") as out:
            out.write(data)
        with open(os.path.join("events/expected", file_name), "w") as out:
            json.dump(expected, out, indent=2)
            out.write("\n")
    print(f"wrote {len(SAMPLES)} sample events")


if __name__ == "__main__":
    main()
