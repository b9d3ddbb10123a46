"""References 002 and 004's server side, together, as users run it today:
a paho-mqtt subscriber on mosquitto that inserts every night light reading
into MySQL/MariaDB, one row and one commit per message (reference 002's
subscriber), and decides and publishes the LED command (reference 004's
server; sent on change, as the template's device-commands rule does).

    python pipeline.py <broker port> <db port> <db password> <messages>

Prints one JSON line when it has stored <messages> readings: how many, and
the wall-clock time of the last insert."""
import json
import sys
import time

import paho.mqtt.client as mqtt
import pymysql

THRESHOLD = 300


def main():
    broker_port, db_port, password, expected = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    db = pymysql.connect(host="127.0.0.1", port=db_port, user="iot", password=password, database="iot", autocommit=False)
    cursor = db.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS nightlight (date_time DATETIME(3), device VARCHAR(128), light DOUBLE, led BOOLEAN)")
    db.commit()
    last_command = {}
    state = {"stored": 0, "commands": 0, "last_insert": None}

    def on_message(client, userdata, message):
        payload = json.loads(message.payload.decode())
        device = message.topic.split("/")[1]
        cursor.execute("INSERT INTO nightlight VALUES (NOW(3), %s, %s, %s)", (device, payload["light"], payload["led"]))
        db.commit()
        state["stored"] += 1
        state["last_insert"] = time.time()
        command = {"led_on": payload["light"] < THRESHOLD}
        if last_command.get(device) != command:
            last_command[device] = command
            state["commands"] += 1
            client.publish("devices/%s/commands" % device, json.dumps(command), qos=1)
        if state["stored"] >= expected:
            print(json.dumps(state), flush=True)
            client.disconnect()

    def on_connect(client, userdata, flags, reason_code, properties):
        client.subscribe("devices/+/telemetry", qos=1)

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="reference-server")
    client.on_connect = on_connect
    client.on_message = on_message
    client.connect("127.0.0.1", broker_port)
    client.loop_forever()


if __name__ == "__main__":
    main()
