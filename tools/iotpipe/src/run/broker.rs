//! The MQTT broker embedded in `iotpipe run` (rumqttd): loopback only,
//! AWS IoT Core's limits (128 KB payloads, 100 in-flight messages).

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, RouterConfig, ServerSettings};

/// Starts the broker on 127.0.0.1:`port` (0: a free port) on its own
/// thread; returns its address once it accepts connections.
pub fn start(port: u16) -> Result<SocketAddr, String> {
    // rumqttd reports a taken port only in its log: try the port first.
    let probe = TcpListener::bind(("127.0.0.1", port)).map_err(|error| {
        format!("cannot listen on 127.0.0.1:{port} ({error}): another broker is there? pick another --listen port, or use it with --broker mqtt://127.0.0.1:{port}")
    })?;
    let address = probe.local_addr().map_err(|error| error.to_string())?;
    drop(probe);
    let server = ServerSettings {
        name: "iotpipe".into(),
        listen: address,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 60_000,
            max_payload_size: 128 * 1024,
            max_inflight_count: 100,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = Config {
        id: 0,
        router: RouterConfig {
            max_connections: 10_000,
            max_outgoing_packet_count: 200,
            max_segment_size: 10 * 1024 * 1024,
            max_segment_count: 10,
            custom_segment: None,
            initialized_filters: None,
            shared_subscriptions_strategy: Default::default(),
        },
        v4: Some(HashMap::from([("1".to_owned(), server)])),
        v5: None,
        ws: None,
        cluster: None,
        console: None,
        bridge: None,
        prometheus: None,
        metrics: None,
    };
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = Broker::new(config);
            if let Err(error) = broker.start() {
                eprintln!("iotpipe: the embedded MQTT broker stopped: {error}");
            }
        })
        .map_err(|error| error.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(address).is_err() {
        if Instant::now() > deadline {
            return Err(format!(
                "the embedded MQTT broker did not start on {address}"
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(address)
}
