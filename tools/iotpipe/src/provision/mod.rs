//! `iotpipe provision`: devices registered in AWS IoT the way reference 000
//! registers them (a registry, a key per device) and reference 003 secures
//! them (a certificate per device, a least-privilege policy):
//!
//! - a thing group named after the fleet, things with attributes;
//! - one certificate per device: a new key pair (`CreateKeysAndCertificate`),
//!   or the user's own key, which never leaves the device (`--csr`:
//!   `CreateCertificateFromCsr`; `--cert`: `RegisterCertificateWithoutCA`);
//! - the device policy of `infra/template.yaml` attached to the certificate,
//!   the certificate attached to the thing;
//! - keys in an owner-only directory (`device_files.rs`) the simulator reads.
//!
//! Idempotent: it looks before it creates, so a second run creates nothing,
//! and a run cut short is finished by the next. `--list` shows the fleet,
//! `--delete` takes it down (`manage.rs`), the thing group and the policy
//! only when this key directory's runs created them.

mod error;
mod manage;
pub mod policy;

use std::path::{Path, PathBuf};

use aws_sdk_iot::types::{AttributePayload, CertificateStatus, ThingGroupProperties};
use aws_sdk_iot::Client;
use clap::Args;

use crate::device_files::{
    create_private_dir, read_device, write_config, write_private_file, CreatedResources,
    DeviceConfig, CERTIFICATE_FILE, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, ROOT_CA_FILE,
};
use error::is_not_found;
pub use error::ProvisionError;
use policy::Substitutions;

#[derive(Args, Debug)]
pub struct ProvisionArgs {
    /// The fleet: its thing group (the reference's registry), and the
    /// devices' name prefix.
    #[arg(long)]
    fleet: String,
    /// Devices <fleet>-1 .. <fleet>-N.
    #[arg(long, conflicts_with = "names")]
    devices: Option<usize>,
    /// Or the devices' names, comma-separated.
    #[arg(long, value_delimiter = ',')]
    names: Option<Vec<String>>,
    /// Where keys, certificates and each device's device.toml go
    /// (owner-only; git-ignored by default).
    #[arg(long, default_value = "keys")]
    out: PathBuf,
    /// Certificate signing requests of keys kept on the devices: a file
    /// for one device, or a directory of <device>.csr.
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Certificates of keys kept on the devices (registered without a CA):
    /// a file for one device, or a directory of <device>.pem.
    #[arg(long, conflicts_with = "csr")]
    cert: Option<PathBuf>,
    /// The IoT policy attached to every certificate (created or updated
    /// from the template's DevicePolicy).
    #[arg(long, default_value = "iotpipe-device-policy")]
    policy: String,
    /// Devices publish under <prefix>/<thing>/...; default: the template's
    /// TopicPrefix.
    #[arg(long)]
    topic_prefix: Option<String>,
    /// The SAM template to take the device policy from (default: the one
    /// iotpipe was built with).
    #[arg(long)]
    template: Option<PathBuf>,
    /// A parameter of the stack the devices join, NAME=VALUE (repeatable):
    /// IngestPath=basic-ingest and RuleNamePrefix change the topics the
    /// device policy allows.
    #[arg(long = "parameter", value_parser = iot_rules::cloudformation::parse_parameter)]
    parameters: Vec<(String, String)>,
    /// Thing attributes, key=value (repeatable); `fleet` is always set.
    #[arg(long = "attribute", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// List the fleet's devices, certificates and local keys.
    #[arg(long, conflicts_with = "delete")]
    list: bool,
    /// Take the devices down (all of the fleet without --names/--devices):
    /// revoke and delete certificates, detach, delete things, local keys,
    /// the group when empty, the policy when unused.
    #[arg(long)]
    delete: bool,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    let (key, value) = text
        .split_once('=')
        .ok_or_else(|| format!("{text:?}: write key=value"))?;
    if !valid_name(key, 128) {
        return Err(format!(
            "{key:?}: attribute names are letters, digits, _ . , @ / : # -"
        ));
    }
    Ok((key.to_owned(), value.to_owned()))
}

/// AWS IoT names: thing and group names `[a-zA-Z0-9:_-]+`.
fn valid_name(name: &str, max: usize) -> bool {
    !name.is_empty()
        && name.len() <= max
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b":_-".contains(&byte))
}

pub async fn provision(args: ProvisionArgs) -> Result<(), ProvisionError> {
    if !valid_name(&args.fleet, 128) {
        return Err(ProvisionError::Options(format!(
            "--fleet {:?}: a thing group name is 1-128 letters, digits, ':', '_' or '-'",
            args.fleet
        )));
    }
    let sdk = telemetry_aws::load_sdk_config().await;
    if sdk.region().is_none() {
        return Err(ProvisionError::NoRegion);
    }
    let iot = Client::new(&sdk);
    if args.list {
        return manage::list(&iot, &args).await;
    }
    if args.delete {
        return manage::delete(&iot, &args).await;
    }
    create(&iot, &args).await
}

/// The devices named by `--names` or `--devices`.
fn chosen_names(args: &ProvisionArgs) -> Result<Option<Vec<String>>, ProvisionError> {
    let names = match (&args.names, args.devices) {
        (Some(names), _) => names.clone(),
        (None, Some(count)) => (1..=count).map(|n| format!("{}-{n}", args.fleet)).collect(),
        (None, None) => return Ok(None),
    };
    if names.is_empty() {
        return Err(ProvisionError::Options(
            "no devices: give --devices N or --names a,b".into(),
        ));
    }
    for name in &names {
        if !valid_name(name, 128) {
            return Err(ProvisionError::Options(format!(
                "device name {name:?}: a thing name is 1-128 letters, digits, ':', '_' or '-'"
            )));
        }
    }
    Ok(Some(names))
}

/// What one device needed.
#[derive(Default)]
struct Created {
    thing: bool,
    certificate: bool,
    attachments: usize,
}

async fn create(iot: &Client, args: &ProvisionArgs) -> Result<(), ProvisionError> {
    let names = chosen_names(args)?.ok_or_else(|| {
        ProvisionError::Options("which devices? give --devices N or --names a,b".into())
    })?;
    let template = match &args.template {
        Some(path) => std::fs::read_to_string(path).map_err(|error| ProvisionError::Template {
            path: path.clone(),
            reason: error.to_string(),
        })?,
        None => policy::TEMPLATE.to_owned(),
    };
    let template_path = args
        .template
        .clone()
        .unwrap_or_else(|| "infra/template.yaml".into());
    let template_error = |reason: String| ProvisionError::Template {
        path: template_path.clone(),
        reason,
    };
    let mut overrides = args.parameters.clone();
    if let Some(prefix) = &args.topic_prefix {
        overrides.push(("TopicPrefix".into(), prefix.clone()));
    }
    let parameters = policy::stack_parameters(&template, &overrides).map_err(template_error)?;
    let topic_prefix = parameters.get("TopicPrefix").cloned().unwrap_or_default();

    let endpoint = iot
        .describe_endpoint()
        .endpoint_type("iot:Data-ATS")
        .send()
        .await
        .map_err(|error| ProvisionError::call(&args.fleet, "DescribeEndpoint", error))?
        .endpoint_address
        .unwrap_or_default();
    create_private_dir(&args.out)?;
    let mut created_here = CreatedResources::read(&args.out)?;
    let (group_arn, group_created) = ensure_thing_group(iot, &args.fleet).await?;
    if group_created {
        created_here.thing_groups.push(args.fleet.clone());
        created_here.write(&args.out)?;
    }
    // arn:<partition>:iot:<region>:<account>:thinggroup/<name>
    let arn: Vec<&str> = group_arn.split(':').collect();
    let (partition, region, account) = match arn.as_slice() {
        ["arn", partition, "iot", region, account, ..] => (*partition, *region, *account),
        _ => {
            return Err(ProvisionError::Options(format!(
                "AWS IoT answered a thing group ARN this tool cannot read: {group_arn:?}"
            )))
        }
    };
    let document = policy::device_policy(
        &template,
        &Substitutions {
            partition,
            region,
            account,
            parameters: &parameters,
        },
    )
    .map_err(template_error)?;
    let policy_change = ensure_policy(iot, &args.policy, &document).await?;
    if policy_change == "created" {
        created_here.policies.push(args.policy.clone());
        created_here.write(&args.out)?;
    }
    let root_ca = copy_root_ca(&args.out)?;
    let broker = format!("mqtts://{endpoint}:8883");

    println!(
        "fleet {}: thing group {}; policy {} {policy_change}; keys in {}",
        args.fleet,
        if group_created { "created" } else { "exists" },
        args.policy,
        args.out.display()
    );
    let (mut things, mut certificates, mut failed) = (0, 0, 0);
    for name in &names {
        let device = DeviceSetup {
            iot,
            args,
            name,
            broker: &broker,
            topic_prefix: &topic_prefix,
            root_ca: root_ca.as_deref(),
        };
        match device.ensure().await {
            Ok(created) => {
                things += usize::from(created.thing);
                certificates += usize::from(created.certificate);
                let mut done = Vec::new();
                if created.thing {
                    done.push("created thing".to_owned());
                }
                if created.certificate {
                    done.push("created certificate".to_owned());
                }
                if created.attachments > 0 {
                    done.push(format!("{} attachment(s)", created.attachments));
                }
                if done.is_empty() {
                    println!("{name}: already provisioned, nothing to do");
                } else {
                    println!("{name}: {}", done.join(", "));
                }
            }
            Err(error) => {
                failed += 1;
                eprintln!("{name}: {error}");
            }
        }
    }
    if failed > 0 {
        return Err(ProvisionError::Incomplete {
            failed,
            total: names.len(),
        });
    }
    if things == 0 && certificates == 0 && !group_created && policy_change == "unchanged" {
        println!(
            "nothing to create: all {} device(s) are provisioned",
            names.len()
        );
    } else {
        println!(
            "created {things} thing(s) and {certificates} certificate(s); {} device(s) ready for `iotpipe simulate --keys {}`",
            names.len(),
            args.out.display()
        );
    }
    Ok(())
}

async fn ensure_thing_group(iot: &Client, group: &str) -> Result<(String, bool), ProvisionError> {
    match iot
        .describe_thing_group()
        .thing_group_name(group)
        .send()
        .await
    {
        Ok(found) => return Ok((found.thing_group_arn.unwrap_or_default(), false)),
        Err(error) if is_not_found(&error) => {}
        Err(error) => return Err(ProvisionError::call(group, "DescribeThingGroup", error)),
    }
    let created = iot
        .create_thing_group()
        .thing_group_name(group)
        .thing_group_properties(
            ThingGroupProperties::builder()
                .thing_group_description("Devices provisioned by iotpipe")
                .build(),
        )
        .send()
        .await
        .map_err(|error| ProvisionError::call(group, "CreateThingGroup", error))?;
    Ok((created.thing_group_arn.unwrap_or_default(), true))
}

/// Creates the policy, or makes `document` its default version when the
/// template changed; "created", "updated" or "unchanged".
async fn ensure_policy(
    iot: &Client,
    name: &str,
    document: &str,
) -> Result<&'static str, ProvisionError> {
    match iot.get_policy().policy_name(name).send().await {
        Ok(found) => {
            let current: Option<serde_json::Value> = found
                .policy_document()
                .and_then(|text| serde_json::from_str(text).ok());
            let wanted: serde_json::Value =
                serde_json::from_str(document).expect("the policy is JSON we wrote");
            if current.as_ref() == Some(&wanted) {
                return Ok("unchanged");
            }
            iot.create_policy_version()
                .policy_name(name)
                .policy_document(document)
                .set_as_default(true)
                .send()
                .await
                .map_err(|error| ProvisionError::call(name, "CreatePolicyVersion", error))?;
            Ok("updated")
        }
        Err(error) if is_not_found(&error) => {
            iot.create_policy()
                .policy_name(name)
                .policy_document(document)
                .send()
                .await
                .map_err(|error| ProvisionError::call(name, "CreatePolicy", error))?;
            Ok("created")
        }
        Err(error) => Err(ProvisionError::call(name, "GetPolicy", error)),
    }
}

/// Amazon Root CA 1 from the system's store, next to the devices, so a
/// device directory is complete when copied to a real device. `None` when
/// the system has no copy: the simulator then trusts the system's roots.
fn copy_root_ca(out: &Path) -> Result<Option<String>, ProvisionError> {
    const CANDIDATES: &[&str] = &[
        "/etc/ssl/certs/Amazon_Root_CA_1.pem",
        "/usr/share/ca-certificates/mozilla/Amazon_Root_CA_1.crt",
    ];
    let Some(source) = CANDIDATES.iter().map(Path::new).find(|path| path.is_file()) else {
        return Ok(None);
    };
    let target = out.join(ROOT_CA_FILE);
    if !target.exists() {
        let pem = std::fs::read(source).map_err(|source_error| {
            ProvisionError::Files(crate::device_files::DeviceFilesError::Io {
                path: source.to_owned(),
                source: source_error,
            })
        })?;
        write_private_file(&target, &pem)?;
    }
    Ok(Some(format!("../{ROOT_CA_FILE}")))
}

/// One device's provisioning, step by step, each step skipped when done.
struct DeviceSetup<'a> {
    iot: &'a Client,
    args: &'a ProvisionArgs,
    name: &'a str,
    broker: &'a str,
    topic_prefix: &'a str,
    root_ca: Option<&'a str>,
}

impl DeviceSetup<'_> {
    async fn ensure(&self) -> Result<Created, ProvisionError> {
        let mut created = Created {
            thing: self.ensure_thing().await?,
            ..Created::default()
        };
        let directory = self.args.out.join(self.name);
        let principals = self
            .iot
            .list_thing_principals()
            .thing_name(self.name)
            .send()
            .await
            .map_err(|error| self.call("ListThingPrincipals", error))?
            .principals
            .unwrap_or_default();
        let local = read_device(&directory)?;
        let config = match (local, principals.first()) {
            (Some(local), _) if principals.contains(&local.config.certificate_arn) => local.config,
            (_, Some(certificate)) => {
                return Err(ProvisionError::KeysMissing {
                    device: self.name.to_owned(),
                    fleet: self.args.fleet.clone(),
                    certificate: certificate.clone(),
                    directory,
                })
            }
            // Written by a run that stopped before attaching: reuse it.
            (Some(local), None) => local.config,
            (None, None) => {
                created.certificate = true;
                self.create_certificate(&directory).await?
            }
        };
        created.attachments = self
            .ensure_attachments(&config.certificate_arn, &principals)
            .await?;
        Ok(created)
    }

    fn call<E>(&self, call: &'static str, error: aws_sdk_iot::error::SdkError<E>) -> ProvisionError
    where
        E: aws_sdk_iot::error::ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        ProvisionError::call(self.name, call, error)
    }

    async fn ensure_thing(&self) -> Result<bool, ProvisionError> {
        let created = match self.iot.describe_thing().thing_name(self.name).send().await {
            Ok(_) => false,
            Err(error) if is_not_found(&error) => {
                let mut attributes =
                    AttributePayload::builder().attributes("fleet", &self.args.fleet);
                for (key, value) in &self.args.attributes {
                    attributes = attributes.attributes(key, value);
                }
                self.iot
                    .create_thing()
                    .thing_name(self.name)
                    .attribute_payload(attributes.build())
                    .send()
                    .await
                    .map_err(|error| self.call("CreateThing", error))?;
                true
            }
            Err(error) => return Err(self.call("DescribeThing", error)),
        };
        // Idempotent on AWS's side; also mends a thing left out of its group.
        self.iot
            .add_thing_to_thing_group()
            .thing_group_name(&self.args.fleet)
            .thing_name(self.name)
            .send()
            .await
            .map_err(|error| self.call("AddThingToThingGroup", error))?;
        Ok(created)
    }

    /// A new certificate (and key pair, unless the user brought their own),
    /// written to the device's directory before anything refers to it.
    async fn create_certificate(&self, directory: &Path) -> Result<DeviceConfig, ProvisionError> {
        create_private_dir(directory)?;
        let (arn, id, private_key) = if let Some(csr) = &self.args.csr {
            let request = self.read_user_file(csr, "csr")?;
            let answer = self
                .iot
                .create_certificate_from_csr()
                .certificate_signing_request(request)
                .set_as_active(true)
                .send()
                .await
                .map_err(|error| self.call("CreateCertificateFromCsr", error))?;
            let pem = answer.certificate_pem.unwrap_or_default();
            write_private_file(&directory.join(CERTIFICATE_FILE), pem.as_bytes())?;
            (answer.certificate_arn, answer.certificate_id, None)
        } else if let Some(certificate) = &self.args.cert {
            let pem = self.read_user_file(certificate, "pem")?;
            let answer = self
                .iot
                .register_certificate_without_ca()
                .certificate_pem(&pem)
                .status(CertificateStatus::Active)
                .send()
                .await
                .map_err(|error| self.call("RegisterCertificateWithoutCA", error))?;
            write_private_file(&directory.join(CERTIFICATE_FILE), pem.as_bytes())?;
            (answer.certificate_arn, answer.certificate_id, None)
        } else {
            let answer = self
                .iot
                .create_keys_and_certificate()
                .set_as_active(true)
                .send()
                .await
                .map_err(|error| self.call("CreateKeysAndCertificate", error))?;
            let keys = answer
                .key_pair
                .unwrap_or_else(|| aws_sdk_iot::types::KeyPair::builder().build());
            // The private key exists only in this answer: written at once,
            // owner-only, never printed.
            write_private_file(
                &directory.join(PRIVATE_KEY_FILE),
                keys.private_key().unwrap_or_default().as_bytes(),
            )?;
            write_private_file(
                &directory.join(PUBLIC_KEY_FILE),
                keys.public_key().unwrap_or_default().as_bytes(),
            )?;
            write_private_file(
                &directory.join(CERTIFICATE_FILE),
                answer.certificate_pem.unwrap_or_default().as_bytes(),
            )?;
            (
                answer.certificate_arn,
                answer.certificate_id,
                Some(PRIVATE_KEY_FILE.to_owned()),
            )
        };
        let config = DeviceConfig {
            thing_name: self.name.to_owned(),
            client_id: self.name.to_owned(),
            fleet: self.args.fleet.clone(),
            broker: self.broker.to_owned(),
            topic_prefix: self.topic_prefix.to_owned(),
            certificate_id: id.unwrap_or_default(),
            certificate_arn: arn.unwrap_or_default(),
            certificate: CERTIFICATE_FILE.to_owned(),
            private_key,
            root_ca: self.root_ca.map(str::to_owned),
        };
        write_config(directory, &config)?;
        Ok(config)
    }

    /// The user's CSR or certificate for this device: the file itself for
    /// one device, else `<dir>/<device>.<extension>`.
    fn read_user_file(&self, path: &Path, extension: &str) -> Result<String, ProvisionError> {
        let file = if path.is_dir() {
            path.join(format!("{}.{extension}", self.name))
        } else {
            path.to_owned()
        };
        std::fs::read_to_string(&file).map_err(|error| {
            ProvisionError::Options(format!(
                "{}: {}: {error} (give a file for one device, or a directory of <device>.{extension})",
                self.name,
                file.display()
            ))
        })
    }

    /// Policy on the certificate, certificate on the thing; the number of
    /// attachments made.
    async fn ensure_attachments(
        &self,
        certificate: &str,
        principals: &[String],
    ) -> Result<usize, ProvisionError> {
        let mut made = 0;
        let attached = self
            .iot
            .list_attached_policies()
            .target(certificate)
            .send()
            .await
            .map_err(|error| self.call("ListAttachedPolicies", error))?;
        let has_policy = attached
            .policies()
            .iter()
            .any(|policy| policy.policy_name() == Some(self.args.policy.as_str()));
        if !has_policy {
            self.iot
                .attach_policy()
                .policy_name(&self.args.policy)
                .target(certificate)
                .send()
                .await
                .map_err(|error| self.call("AttachPolicy", error))?;
            made += 1;
        }
        if !principals.iter().any(|principal| principal == certificate) {
            self.iot
                .attach_thing_principal()
                .thing_name(self.name)
                .principal(certificate)
                .send()
                .await
                .map_err(|error| self.call("AttachThingPrincipal", error))?;
            made += 1;
        }
        Ok(made)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_attributes_are_checked() {
        assert!(valid_name("temp-sensor-istanbul", 128));
        assert!(!valid_name("a/b", 128));
        assert!(!valid_name("", 128));
        assert_eq!(
            parse_attribute("site=Istanbul 2").unwrap(),
            ("site".to_owned(), "Istanbul 2".to_owned())
        );
        assert!(parse_attribute("site").unwrap_err().contains("key=value"));
    }
}
