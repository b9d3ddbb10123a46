"""Reference 004's server, doing its decisions in process on the same
messages as `examples/time_commands.rs`: paho-mqtt hands `handle_telemetry`
each message; it parses the JSON, decides `led_on = light < 300` and
publishes `json.dumps(command)`. The publish goes to a recording client (no
broker: the bench times the decisions, not the network), and the reference's
two `print` calls are left out. Prints one JSON line like time_commands."""
import json
import sys
import time

import paho.mqtt.client as mqtt

MESSAGES = 10_000
DEVICES = 100


class RecordingClient:
    def __init__(self):
        self.published = 0

    def publish(self, topic, payload):
        self.published += 1


def handle_telemetry(client, userdata, message):
    # Reference 004, server code: topic <id>/telemetry -> <id>/commands.
    payload = json.loads(message.payload.decode())
    command = {'led_on': payload['light'] < 300}
    server_command_topic = message.topic.split('/')[0] + '/commands'
    client.publish(server_command_topic, json.dumps(command))


def mqtt_message(index):
    message = mqtt.MQTTMessage(topic=("nightlight-%02d/telemetry" % (index % DEVICES)).encode())
    message.payload = json.dumps({"light": (index * 37) % 1000}).encode()
    return message


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    messages = [mqtt_message(i) for i in range(MESSAGES)]
    client = RecordingClient()

    def batch():
        start = time.perf_counter()
        for message in messages:
            handle_telemetry(client, None, message)
        return time.perf_counter() - start

    batch()
    client.published = 0
    times = sorted(batch() for _ in range(runs))
    decisions = client.published // runs
    assert decisions == MESSAGES
    single = []
    for _ in range(2000):
        start = time.perf_counter()
        handle_telemetry(client, None, messages[7])
        single.append(time.perf_counter() - start)
    single.sort()
    print(json.dumps({"batch_best_s": times[0], "batch_median_s": times[len(times) // 2],
                      "decisions": decisions, "single_median_us": single[len(single) // 2] * 1e6}))


if __name__ == "__main__":
    main()
