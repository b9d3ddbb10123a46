//! The per-device directory `iotpipe provision` writes and `iotpipe
//! simulate --keys` reads:
//!
//! ```text
//! <out>/                      0700
//!   AmazonRootCA1.pem         copied from the system's store when it has one
//!   <thing>/                  0700
//!     device.toml             endpoint, broker URL, client id, file names
//!     certificate.pem.crt     0600
//!     private.pem.key         0600 (absent when the key stayed on the device)
//!     public.pem.key          0600
//! ```
//!
//! Keys are written owner-only, through a temporary file renamed into
//! place, so a crash never leaves half a key.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub const CONFIG_FILE: &str = "device.toml";
pub const CERTIFICATE_FILE: &str = "certificate.pem.crt";
pub const PRIVATE_KEY_FILE: &str = "private.pem.key";
pub const PUBLIC_KEY_FILE: &str = "public.pem.key";
pub const ROOT_CA_FILE: &str = "AmazonRootCA1.pem";
pub const CREATED_FILE: &str = "iotpipe-created.toml";

/// `iotpipe-created.toml`: the shared resources this directory's runs
/// created, so `--delete` removes those and never a thing group or policy
/// someone else made (the stack's, say).
#[derive(Debug, Default, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CreatedResources {
    #[serde(default)]
    pub thing_groups: Vec<String>,
    #[serde(default)]
    pub policies: Vec<String>,
}

impl CreatedResources {
    pub fn read(root: &Path) -> Result<CreatedResources, DeviceFilesError> {
        let path = root.join(CREATED_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|error| DeviceFilesError::Config {
                path,
                reason: error.to_string(),
            }),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(DeviceFilesError::Io { path, source }),
        }
    }

    pub fn write(&self, root: &Path) -> Result<(), DeviceFilesError> {
        let path = root.join(CREATED_FILE);
        let text = toml::to_string(self).map_err(|error| DeviceFilesError::Config {
            path: path.clone(),
            reason: error.to_string(),
        })?;
        write_private_file(&path, text.as_bytes())
    }
}

/// `device.toml`: what the simulator needs to connect as this device.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DeviceConfig {
    pub thing_name: String,
    /// Always the thing name: the device policy lets a certificate connect
    /// only with its own thing's name as client id.
    pub client_id: String,
    pub fleet: String,
    /// `mqtts://<endpoint>:8883`.
    pub broker: String,
    pub topic_prefix: String,
    pub certificate_id: String,
    pub certificate_arn: String,
    pub certificate: String,
    /// Absent when the user's own key (`--csr`, `--cert`) stays on the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub private_key: Option<String>,
    /// Absent: the system's trusted roots, which include Amazon Root CA 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_ca: Option<String>,
}

/// A device's directory and its parsed config.
#[derive(Debug, Clone)]
pub struct DeviceFiles {
    pub directory: PathBuf,
    pub config: DeviceConfig,
}

impl DeviceFiles {
    pub fn certificate_path(&self) -> PathBuf {
        self.directory.join(&self.config.certificate)
    }

    pub fn private_key_path(&self) -> Option<PathBuf> {
        self.config
            .private_key
            .as_ref()
            .map(|key| self.directory.join(key))
    }

    pub fn root_ca_path(&self) -> Option<PathBuf> {
        self.config
            .root_ca
            .as_ref()
            .map(|ca| self.directory.join(ca))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceFilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a device config ({reason}); provision the device again with `iotpipe provision`")]
    Config { path: PathBuf, reason: String },
    #[error("{directory}: no device directories with a {CONFIG_FILE}; run `iotpipe provision --out {directory}` first")]
    NoDevices { directory: PathBuf },
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> DeviceFilesError + '_ {
    move |source| DeviceFilesError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Creates `directory` (and its parents) owner-only, and tightens it if it
/// already existed.
pub fn create_private_dir(directory: &Path) -> Result<(), DeviceFilesError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(directory)
        .map_err(io_error(directory))?;
    std::fs::set_permissions(directory, std::fs::Permissions::from_mode(0o700))
        .map_err(io_error(directory))
}

/// Writes `bytes` to `path` with mode 0600, atomically.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> Result<(), DeviceFilesError> {
    let temporary = path.with_extension("partial");
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&temporary)?;
        // The mode above only applies to a new file.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    })();
    result.map_err(|source| {
        let _ = std::fs::remove_file(&temporary);
        DeviceFilesError::Io {
            path: path.to_owned(),
            source,
        }
    })
}

/// Writes a device's `device.toml` (0600: it names the key files).
pub fn write_config(directory: &Path, config: &DeviceConfig) -> Result<(), DeviceFilesError> {
    let text = toml::to_string(config).map_err(|error| DeviceFilesError::Config {
        path: directory.join(CONFIG_FILE),
        reason: error.to_string(),
    })?;
    write_private_file(&directory.join(CONFIG_FILE), text.as_bytes())
}

/// The device in `directory`, if it has a `device.toml`.
pub fn read_device(directory: &Path) -> Result<Option<DeviceFiles>, DeviceFilesError> {
    let path = directory.join(CONFIG_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(DeviceFilesError::Io { path, source }),
    };
    let config: DeviceConfig = toml::from_str(&text).map_err(|error| DeviceFilesError::Config {
        path: path.clone(),
        reason: error.to_string(),
    })?;
    Ok(Some(DeviceFiles {
        directory: directory.to_owned(),
        config,
    }))
}

/// Every provisioned device under `root`, sorted by thing name.
pub fn read_devices(root: &Path) -> Result<Vec<DeviceFiles>, DeviceFilesError> {
    let mut devices = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io_error(root))? {
        let entry = entry.map_err(io_error(root))?;
        if entry.path().is_dir() {
            if let Some(device) = read_device(&entry.path())? {
                devices.push(device);
            }
        }
    }
    if devices.is_empty() {
        return Err(DeviceFilesError::NoDevices {
            directory: root.to_owned(),
        });
    }
    devices.sort_by(|a, b| a.config.thing_name.cmp(&b.config.thing_name));
    Ok(devices)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let directory = std::env::temp_dir().join(format!("iotpipe-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&directory);
        directory
    }

    #[test]
    fn keys_are_owner_only_and_configs_round_trip() {
        let root = scratch("device-files");
        let device = root.join("lab-1");
        create_private_dir(&device).unwrap();
        write_private_file(&device.join(PRIVATE_KEY_FILE), b"-----BEGIN").unwrap();
        // A file that existed with a wider mode is tightened.
        std::fs::set_permissions(
            device.join(PRIVATE_KEY_FILE),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        write_private_file(&device.join(PRIVATE_KEY_FILE), b"-----BEGIN KEY").unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&device.join(PRIVATE_KEY_FILE)), 0o600);
        assert_eq!(mode(&device), 0o700);
        assert_eq!(
            std::fs::read(device.join(PRIVATE_KEY_FILE)).unwrap(),
            b"-----BEGIN KEY"
        );

        let config = DeviceConfig {
            thing_name: "lab-1".into(),
            client_id: "lab-1".into(),
            fleet: "lab".into(),
            broker: "mqtts://example-ats.iot.us-east-1.amazonaws.com:8883".into(),
            topic_prefix: "devices".into(),
            certificate_id: "abc".into(),
            certificate_arn: "arn:aws:iot:us-east-1:123456789012:cert/abc".into(),
            certificate: CERTIFICATE_FILE.into(),
            private_key: Some(PRIVATE_KEY_FILE.into()),
            root_ca: None,
        };
        write_config(&device, &config).unwrap();
        let devices = read_devices(&root).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].config, config);
        assert_eq!(
            devices[0].private_key_path(),
            Some(device.join(PRIVATE_KEY_FILE))
        );

        let empty = scratch("device-files-empty");
        create_private_dir(&empty).unwrap();
        let error = read_devices(&empty).unwrap_err().to_string();
        assert!(error.contains("iotpipe provision"), "{error}");
        std::fs::remove_dir_all(root).unwrap();
        std::fs::remove_dir_all(empty).unwrap();
    }
}
