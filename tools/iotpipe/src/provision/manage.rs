//! `iotpipe provision --list` and `--delete`.

use std::time::Duration;

use aws_sdk_iot::types::CertificateStatus;
use aws_sdk_iot::Client;

use super::error::{is_not_found, ProvisionError};
use super::{chosen_names, ProvisionArgs};
use crate::device_files::{read_device, CreatedResources};

/// The things of the fleet's group; `None` when there is no such group.
async fn things_in_group(iot: &Client, group: &str) -> Result<Option<Vec<String>>, ProvisionError> {
    let mut things = Vec::new();
    let mut next_token: Option<String> = None;
    loop {
        let page = iot
            .list_things_in_thing_group()
            .thing_group_name(group)
            .set_next_token(next_token.take())
            .send()
            .await;
        let page = match page {
            Ok(page) => page,
            Err(error) if is_not_found(&error) => return Ok(None),
            Err(error) => return Err(ProvisionError::call(group, "ListThingsInThingGroup", error)),
        };
        things.extend(page.things().iter().cloned());
        match page.next_token {
            Some(token) if !token.is_empty() => next_token = Some(token),
            _ => break,
        }
    }
    things.sort();
    Ok(Some(things))
}

async fn principals(iot: &Client, thing: &str) -> Result<Vec<String>, ProvisionError> {
    match iot.list_thing_principals().thing_name(thing).send().await {
        Ok(answer) => Ok(answer.principals.unwrap_or_default()),
        Err(error) if is_not_found(&error) => Ok(Vec::new()),
        Err(error) => Err(ProvisionError::call(thing, "ListThingPrincipals", error)),
    }
}

fn certificate_id(arn: &str) -> &str {
    arn.rsplit_once("cert/").map_or(arn, |(_, id)| id)
}

pub async fn list(iot: &Client, args: &ProvisionArgs) -> Result<(), ProvisionError> {
    let Some(things) = things_in_group(iot, &args.fleet).await? else {
        println!("fleet {}: no such thing group", args.fleet);
        return Ok(());
    };
    println!("fleet {}: {} device(s)", args.fleet, things.len());
    println!("{:<32} {:<18} {:<9} keys", "thing", "certificate", "status");
    for thing in &things {
        let certificates = principals(iot, thing).await?;
        let local = read_device(&args.out.join(thing))?;
        let keys = match &local {
            Some(device) if device.private_key_path().is_some_and(|path| path.is_file()) => {
                device.directory.display().to_string()
            }
            Some(device) => format!("{} (certificate only)", device.directory.display()),
            None => "-".to_owned(),
        };
        if certificates.is_empty() {
            println!("{thing:<32} {:<18} {:<9} {keys}", "-", "-");
        }
        for arn in &certificates {
            let id = certificate_id(arn);
            let status = iot
                .describe_certificate()
                .certificate_id(id)
                .send()
                .await
                .map_err(|error| ProvisionError::call(thing, "DescribeCertificate", error))?
                .certificate_description
                .and_then(|description| description.status)
                .map_or("?".to_owned(), |status| status.as_str().to_owned());
            let short: String = id.chars().take(16).collect();
            println!("{thing:<32} {short:<18} {status:<9} {keys}");
        }
    }
    Ok(())
}

pub async fn delete(iot: &Client, args: &ProvisionArgs) -> Result<(), ProvisionError> {
    let in_group = things_in_group(iot, &args.fleet).await?;
    let things = match chosen_names(args)? {
        Some(names) => names,
        None => in_group.clone().unwrap_or_default(),
    };
    for thing in &things {
        let certificates = principals(iot, thing).await?;
        for arn in &certificates {
            delete_certificate(iot, thing, arn).await?;
        }
        // AWS drops a deleted thing from its groups; moto does not.
        match iot
            .remove_thing_from_thing_group()
            .thing_group_name(&args.fleet)
            .thing_name(thing)
            .send()
            .await
        {
            Ok(_) => {}
            Err(error) if is_not_found(&error) => {}
            Err(error) => {
                return Err(ProvisionError::call(
                    thing,
                    "RemoveThingFromThingGroup",
                    error,
                ))
            }
        }
        let deleted = delete_thing(iot, thing).await?;
        let directory = args.out.join(thing);
        let removed_keys = directory.is_dir();
        if removed_keys {
            std::fs::remove_dir_all(&directory).map_err(|source| {
                ProvisionError::Files(crate::device_files::DeviceFilesError::Io {
                    path: directory.clone(),
                    source,
                })
            })?;
        }
        println!(
            "{thing}: {}{} certificate(s) revoked and deleted{}",
            if deleted {
                "thing deleted, "
            } else {
                "no thing, "
            },
            certificates.len(),
            if removed_keys {
                ", local keys removed"
            } else {
                ""
            }
        );
    }
    let mut created_here = CreatedResources::read(&args.out)?;
    let ours = created_here.thing_groups.contains(&args.fleet);
    if let Some(remaining) = things_in_group(iot, &args.fleet).await? {
        if remaining.is_empty() && !ours {
            println!(
                "fleet {}: thing group kept (empty, but not created by iotpipe with --out {})",
                args.fleet,
                args.out.display()
            );
        } else if remaining.is_empty() {
            iot.delete_thing_group()
                .thing_group_name(&args.fleet)
                .send()
                .await
                .map_err(|error| ProvisionError::call(&args.fleet, "DeleteThingGroup", error))?;
            println!("fleet {}: thing group deleted", args.fleet);
            created_here
                .thing_groups
                .retain(|group| *group != args.fleet);
            created_here.write(&args.out)?;
        } else {
            println!(
                "fleet {}: {} device(s) left in the group",
                args.fleet,
                remaining.len()
            );
        }
    }
    if !created_here.policies.contains(&args.policy) {
        println!(
            "policy {}: kept (not created by iotpipe with --out {})",
            args.policy,
            args.out.display()
        );
        return Ok(());
    }
    if delete_policy_if_unused(iot, &args.policy).await? {
        created_here
            .policies
            .retain(|policy| *policy != args.policy);
        created_here.write(&args.out)?;
    }
    Ok(())
}

/// Detach its policies and its thing, revoke (a key that may still exist
/// on a device must never connect again), delete.
async fn delete_certificate(iot: &Client, thing: &str, arn: &str) -> Result<(), ProvisionError> {
    let attached = iot
        .list_attached_policies()
        .target(arn)
        .send()
        .await
        .map_err(|error| ProvisionError::call(thing, "ListAttachedPolicies", error))?;
    for policy in attached.policies() {
        iot.detach_policy()
            .policy_name(policy.policy_name().unwrap_or_default())
            .target(arn)
            .send()
            .await
            .map_err(|error| ProvisionError::call(thing, "DetachPolicy", error))?;
    }
    iot.detach_thing_principal()
        .thing_name(thing)
        .principal(arn)
        .send()
        .await
        .map_err(|error| ProvisionError::call(thing, "DetachThingPrincipal", error))?;
    let id = certificate_id(arn);
    iot.update_certificate()
        .certificate_id(id)
        .new_status(CertificateStatus::Revoked)
        .send()
        .await
        .map_err(|error| ProvisionError::call(thing, "UpdateCertificate", error))?;
    iot.delete_certificate()
        .certificate_id(id)
        .send()
        .await
        .map_err(|error| ProvisionError::call(thing, "DeleteCertificate", error))?;
    Ok(())
}

/// Deletes the thing; `false` when there was none. AWS detaches principals
/// asynchronously, so a refusal right after detaching is retried briefly.
async fn delete_thing(iot: &Client, thing: &str) -> Result<bool, ProvisionError> {
    let mut attempt = 0;
    loop {
        match iot.delete_thing().thing_name(thing).send().await {
            Ok(_) => return Ok(true),
            Err(error) if is_not_found(&error) => return Ok(false),
            Err(error)
                if attempt < 5
                    && aws_sdk_iot::error::ProvideErrorMetadata::code(&error)
                        == Some("InvalidRequestException") =>
            {
                attempt += 1;
                tokio::time::sleep(Duration::from_secs(attempt)).await;
            }
            Err(error) => return Err(ProvisionError::call(thing, "DeleteThing", error)),
        }
    }
}

/// Whether the policy is gone afterwards.
async fn delete_policy_if_unused(iot: &Client, policy: &str) -> Result<bool, ProvisionError> {
    let targets = match iot
        .list_targets_for_policy()
        .policy_name(policy)
        .send()
        .await
    {
        Ok(answer) => answer.targets.unwrap_or_default(),
        Err(error) if is_not_found(&error) => return Ok(true),
        Err(error) => return Err(ProvisionError::call(policy, "ListTargetsForPolicy", error)),
    };
    if !targets.is_empty() {
        println!(
            "policy {policy}: kept, still attached to {} certificate(s)",
            targets.len()
        );
        return Ok(false);
    }
    let versions = iot
        .list_policy_versions()
        .policy_name(policy)
        .send()
        .await
        .map_err(|error| ProvisionError::call(policy, "ListPolicyVersions", error))?;
    for version in versions.policy_versions() {
        if !version.is_default_version {
            iot.delete_policy_version()
                .policy_name(policy)
                .policy_version_id(version.version_id().unwrap_or_default())
                .send()
                .await
                .map_err(|error| ProvisionError::call(policy, "DeletePolicyVersion", error))?;
        }
    }
    iot.delete_policy()
        .policy_name(policy)
        .send()
        .await
        .map_err(|error| ProvisionError::call(policy, "DeletePolicy", error))?;
    println!("policy {policy}: deleted");
    Ok(true)
}
