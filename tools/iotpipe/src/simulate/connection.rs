//! Where and how a simulated device connects: a plain broker on this
//! machine (`mqtt://127.0.0.1:1883`), or AWS IoT Core over mutually
//! authenticated TLS (`mqtts://<endpoint>:8883`, the device's certificate
//! and key from provisioning, TLS 1.2 or 1.3, the server's certificate
//! verified).

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use super::SimulateError;

/// AWS IoT Core's largest message (the broker refuses bigger ones).
const MAX_PACKET_BYTES: usize = 128 * 1024;
/// AWS IoT Core acknowledges at most 100 QoS 1 publishes in flight per
/// connection.
const MAX_IN_FLIGHT: u16 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl std::fmt::Display for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        write!(f, "{scheme}://{}:{}", self.host, self.port)
    }
}

impl Broker {
    /// `mqtt://host[:1883]` (loopback only: a plain connection carries no
    /// credentials and no encryption) or `mqtts://host[:8883]`.
    pub fn parse(text: &str) -> Result<Broker, SimulateError> {
        let bad = |reason: &str| SimulateError::Broker {
            broker: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = url::Url::parse(text).map_err(|error| {
            bad(&format!(
                "{error}; write mqtt://127.0.0.1:1883 or mqtts://<endpoint>:8883"
            ))
        })?;
        let tls = match url.scheme() {
            "mqtt" | "tcp" => false,
            "mqtts" | "ssl" => true,
            other => {
                return Err(bad(&format!(
                    "scheme {other:?}: use mqtt:// (local) or mqtts:// (TLS)"
                )))
            }
        };
        let host = match url.host() {
            Some(url::Host::Ipv6(address)) => address.to_string(),
            Some(host) => host.to_string(),
            None => return Err(bad("no host")),
        };
        if url.path().len() > 1 || url.query().is_some() || !url.username().is_empty() {
            return Err(bad("give only scheme, host and port"));
        }
        if !tls && !is_loopback(&host) {
            return Err(bad(
                "plain MQTT is for a broker on this machine only (127.0.0.1, ::1, localhost); use mqtts:// with the device's certificate for anything else",
            ));
        }
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(Broker { host, port, tls })
    }
}

fn is_loopback(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

/// The certificate, key and trust a TLS connection uses.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub certificate: PathBuf,
    pub private_key: PathBuf,
    /// `None`: the system's trusted roots.
    pub root_ca: Option<PathBuf>,
}

/// Connection options for one device: its client id, a persistent session
/// (so the broker keeps its subscription and in-flight messages when the
/// connection drops), AWS IoT's limits.
pub fn mqtt_options(
    broker: &Broker,
    client_id: &str,
    tls: Option<&TlsFiles>,
) -> Result<MqttOptions, SimulateError> {
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options
        .set_keep_alive(Duration::from_secs(10))
        .set_clean_session(false)
        .set_inflight(MAX_IN_FLIGHT)
        .set_max_packet_size(MAX_PACKET_BYTES, MAX_PACKET_BYTES);
    if broker.tls {
        let files = tls.ok_or_else(|| SimulateError::Broker {
            broker: broker.to_string(),
            reason: "TLS needs the device's certificate and key: pass --keys <dir from iotpipe provision>".into(),
        })?;
        let config = tls_config(files)?;
        options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
            Arc::new(config),
        )));
    }
    Ok(options)
}

fn tls_config(files: &TlsFiles) -> Result<rustls::ClientConfig, SimulateError> {
    let file_error = |path: &Path, reason: String| SimulateError::TlsFile {
        path: path.to_owned(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    match &files.root_ca {
        Some(path) => {
            let certificates = CertificateDer::pem_file_iter(path)
                .map_err(|error| file_error(path, error.to_string()))?;
            for certificate in certificates {
                let certificate =
                    certificate.map_err(|error| file_error(path, error.to_string()))?;
                roots
                    .add(certificate)
                    .map_err(|error| file_error(path, error.to_string()))?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            for certificate in native.certs {
                let _ = roots.add(certificate);
            }
        }
    }
    if roots.is_empty() {
        let path = files
            .root_ca
            .clone()
            .unwrap_or_else(|| "the system's certificate store".into());
        return Err(file_error(
            &path,
            "no CA certificates to verify the broker with".into(),
        ));
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&files.certificate)
        .and_then(|certificates| certificates.collect())
        .map_err(|error| file_error(&files.certificate, error.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            &files.certificate,
            "no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(&files.private_key)
        .map_err(|error| file_error(&files.private_key, error.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|error| file_error(&files.certificate, error.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|error| {
            file_error(
                &files.private_key,
                format!(
                    "cannot be used with {}: {error}",
                    files.certificate.display()
                ),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brokers_local_plain_or_remote_tls() {
        assert_eq!(
            Broker::parse("mqtt://127.0.0.1:1884").unwrap(),
            Broker {
                host: "127.0.0.1".into(),
                port: 1884,
                tls: false
            }
        );
        assert_eq!(Broker::parse("mqtt://localhost").unwrap().port, 1883);
        assert_eq!(Broker::parse("mqtt://[::1]:1999").unwrap().host, "::1");
        let aws = Broker::parse("mqtts://abc-ats.iot.us-east-1.amazonaws.com").unwrap();
        assert_eq!((aws.port, aws.tls), (8883, true));
        assert_eq!(
            aws.to_string(),
            "mqtts://abc-ats.iot.us-east-1.amazonaws.com:8883"
        );
        for (text, expected) in [
            ("mqtt://10.0.0.7:1883", "on this machine only"),
            ("mqtt://broker.example.com", "on this machine only"),
            ("http://127.0.0.1", "scheme \"http\""),
            ("127.0.0.1:1883", "mqtt://127.0.0.1:1883"),
            ("mqtt://127.0.0.1:1883/topic", "only scheme, host and port"),
        ] {
            let error = Broker::parse(text).unwrap_err().to_string();
            assert!(
                error.contains(text) && error.contains(expected),
                "{text} => {error}"
            );
        }
    }

    #[test]
    fn tls_needs_the_devices_files() {
        let broker = Broker::parse("mqtts://example.com:8883").unwrap();
        let error = mqtt_options(&broker, "d", None).unwrap_err().to_string();
        assert!(error.contains("--keys"), "{error}");
        let missing = TlsFiles {
            certificate: "/nonexistent/cert.pem".into(),
            private_key: "/nonexistent/key.pem".into(),
            root_ca: None,
        };
        let error = mqtt_options(&broker, "d", Some(&missing))
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/cert.pem"), "{error}");
    }
}
