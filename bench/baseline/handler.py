"""The baseline: what users would write instead of telemetry-metrics, a
Python Lambda with Powertools for AWS Lambda (the most used toolkit):
`BatchProcessor` for SQS partial failures, `single_metric` for EMF metrics
with a per-device dimension and the device's own timestamp."""
import datetime
import json

from aws_lambda_powertools.metrics import single_metric
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

NAMESPACE = "IoT/Telemetry"
METADATA = {"timestamp", "device", "topic", "client_id", "received_at"}
processor = BatchProcessor(event_type=EventType.SQS)


def emit(name, unit, value, device, timestamp):
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="device", value=device)
        if timestamp is not None:
            metric.set_timestamp(datetime.datetime.fromtimestamp(timestamp, tz=datetime.timezone.utc))


def record_handler(record: SQSRecord):
    payload = json.loads(record.body)
    device = payload.get("device") or payload.get("client_id") or "unknown"
    if "name" in payload and "value" in payload:
        # Reference 003: {"name": ..., "unit": ..., "value": "42 "}
        emit(payload["name"], payload.get("unit", "None"), float(str(payload["value"]).strip()), device, None)
        return
    timestamp = payload.get("timestamp")
    for key, value in payload.items():
        if key not in METADATA and isinstance(value, (int, float)) and not isinstance(value, bool):
            emit(key, "None", float(value), device, timestamp)


def lambda_handler(event, context):
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
