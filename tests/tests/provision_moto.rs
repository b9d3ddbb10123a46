//! `iotpipe provision` against a real moto server: the thing group, things,
//! certificates, the template's device policy and the attachments exist
//! afterwards; keys are owner-only; a second run creates nothing; `--delete`
//! takes everything down; a user's own key (CSR) never leaves the device.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use aws_sdk_iot::types::CertificateStatus;
use e2e_tests::{function_binary, repo_root, scratch_dir, sdk_config, signing_request, MotoServer};

fn iotpipe(moto: &MotoServer, args: &[&str]) -> Output {
    let output = Command::new(function_binary("iotpipe"))
        .args(args)
        .envs(moto.env())
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
        .output()
        .expect("iotpipe runs");
    output
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// The template's DevicePolicy as CloudFormation would resolve it in moto's
/// account for the default parameters: its `!If`s taken, and its `!Sub`s
/// written out independently of iotpipe's resolver.
fn expected_policy() -> serde_json::Value {
    let template: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(repo_root().join("infra/template.yaml")).unwrap(),
    )
    .unwrap();
    let defaults = iot_rules::cloudformation::parameters(&template, &[]).unwrap();
    let template = iot_rules::cloudformation::resolve(&template, &defaults).unwrap();
    let document = &template["Resources"]["DevicePolicy"]["Properties"]["PolicyDocument"];
    let mut yaml = serde_yaml::to_string(document).unwrap();
    for (from, to) in [
        ("${AWS::Partition}", "aws"),
        ("${AWS::Region}", "us-east-1"),
        ("${AWS::AccountId}", "123456789012"),
        ("${TopicPrefix}", "devices"),
        ("${!", "${"),
        ("!Sub ", ""),
    ] {
        yaml = yaml.replace(from, to);
    }
    serde_yaml::from_str(&yaml).unwrap()
}

#[tokio::test]
async fn provisions_a_fleet_once_lists_it_and_deletes_it() {
    let moto = MotoServer::start();
    let out = scratch_dir("provision-keys").join("keys");
    let out_arg = out.to_str().unwrap();
    let provision = [
        "provision",
        "--fleet",
        "lab",
        "--devices",
        "2",
        "--out",
        out_arg,
        "--attribute",
        "site=istanbul",
    ];

    let first = iotpipe(&moto, &provision);
    assert!(first.status.success(), "{}", text(&first));
    assert!(
        text(&first).contains("created 2 thing(s) and 2 certificate(s)"),
        "{}",
        text(&first)
    );

    let iot = aws_sdk_iot::Client::new(&sdk_config(&moto.endpoint).await);
    let members = iot
        .list_things_in_thing_group()
        .thing_group_name("lab")
        .send()
        .await
        .unwrap();
    let mut things = members.things().to_vec();
    things.sort();
    assert_eq!(things, ["lab-1", "lab-2"]);

    let policy = iot
        .get_policy()
        .policy_name("iotpipe-device-policy")
        .send()
        .await
        .unwrap();
    let document: serde_json::Value =
        serde_json::from_str(policy.policy_document().unwrap()).unwrap();
    assert_eq!(document, expected_policy());
    let text_of_policy = document.to_string();
    assert!(text_of_policy.contains(
        "arn:aws:iot:us-east-1:123456789012:topic/devices/${iot:Connection.Thing.ThingName}/telemetry"
    ));

    assert_eq!(mode(&out), 0o700);
    for thing in ["lab-1", "lab-2"] {
        let described = iot.describe_thing().thing_name(thing).send().await.unwrap();
        let attributes = described.attributes().unwrap();
        assert_eq!(attributes.get("fleet").map(String::as_str), Some("lab"));
        assert_eq!(attributes.get("site").map(String::as_str), Some("istanbul"));

        let directory = out.join(thing);
        assert_eq!(mode(&directory), 0o700);
        for file in [
            "certificate.pem.crt",
            "private.pem.key",
            "public.pem.key",
            "device.toml",
        ] {
            assert_eq!(mode(&directory.join(file)), 0o600, "{thing}/{file}");
        }
        let private_key = std::fs::read_to_string(directory.join("private.pem.key")).unwrap();
        assert!(
            private_key.contains("PRIVATE KEY"),
            "{thing}: a PEM private key"
        );
        assert!(
            !text(&first).contains(private_key.lines().nth(1).unwrap()),
            "the private key is never printed"
        );
        let config: toml::Table =
            toml::from_str(&std::fs::read_to_string(directory.join("device.toml")).unwrap())
                .unwrap();
        assert_eq!(config["client_id"].as_str(), Some(thing));
        assert!(config["broker"].as_str().unwrap().starts_with("mqtts://"));
        assert!(config["broker"].as_str().unwrap().ends_with(":8883"));

        let principals = iot
            .list_thing_principals()
            .thing_name(thing)
            .send()
            .await
            .unwrap();
        let certificate = config["certificate_arn"].as_str().unwrap();
        assert_eq!(principals.principals(), [certificate.to_owned()]);
        let described = iot
            .describe_certificate()
            .certificate_id(config["certificate_id"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        let description = described.certificate_description().unwrap();
        assert_eq!(description.status(), Some(&CertificateStatus::Active));
        assert_eq!(
            description.certificate_pem().unwrap().trim(),
            std::fs::read_to_string(directory.join("certificate.pem.crt"))
                .unwrap()
                .trim()
        );
        let attached = iot
            .list_attached_policies()
            .target(certificate)
            .send()
            .await
            .unwrap();
        let names: Vec<&str> = attached
            .policies()
            .iter()
            .filter_map(|p| p.policy_name())
            .collect();
        assert_eq!(names, ["iotpipe-device-policy"]);
    }
    let certificates = || async {
        iot.list_certificates()
            .send()
            .await
            .unwrap()
            .certificates()
            .len()
    };
    assert_eq!(certificates().await, 2);

    // Again: nothing created.
    let second = iotpipe(&moto, &provision);
    assert!(second.status.success(), "{}", text(&second));
    assert!(
        text(&second).contains("nothing to create"),
        "{}",
        text(&second)
    );
    assert_eq!(certificates().await, 2);

    let listed = iotpipe(
        &moto,
        &["provision", "--fleet", "lab", "--list", "--out", out_arg],
    );
    assert!(listed.status.success(), "{}", text(&listed));
    for thing in ["lab-1", "lab-2"] {
        let line = text(&listed)
            .lines()
            .find(|line| line.starts_with(thing))
            .map(str::to_owned);
        let line = line.unwrap_or_else(|| panic!("{thing} listed: {}", text(&listed)));
        assert!(line.contains("ACTIVE"), "{line}");
    }

    // A device whose keys are gone is refused with what to do.
    std::fs::remove_dir_all(out.join("lab-2")).unwrap();
    let refused = iotpipe(&moto, &provision);
    assert!(!refused.status.success());
    assert!(
        text(&refused).contains("lab-2") && text(&refused).contains("--delete --names lab-2"),
        "{}",
        text(&refused)
    );

    let deleted = iotpipe(
        &moto,
        &["provision", "--fleet", "lab", "--delete", "--out", out_arg],
    );
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert_eq!(certificates().await, 0);
    assert!(iot
        .describe_thing()
        .thing_name("lab-1")
        .send()
        .await
        .is_err());
    assert!(iot
        .describe_thing_group()
        .thing_group_name("lab")
        .send()
        .await
        .is_err());
    assert!(iot
        .get_policy()
        .policy_name("iotpipe-device-policy")
        .send()
        .await
        .is_err());
    assert!(!out.join("lab-1").exists());
}

#[tokio::test]
async fn a_users_own_key_stays_on_the_device() {
    let moto = MotoServer::start();
    let scratch = scratch_dir("provision-csr");
    let out = scratch.join("keys");
    let (_key, csr) = signing_request(&scratch, "own-1");
    let run = iotpipe(
        &moto,
        &[
            "provision",
            "--fleet",
            "own",
            "--names",
            "own-1",
            "--csr",
            csr.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(run.status.success(), "{}", text(&run));
    assert!(out.join("own-1/certificate.pem.crt").exists());
    assert!(
        !out.join("own-1/private.pem.key").exists(),
        "no key was made or written"
    );
    let config = std::fs::read_to_string(out.join("own-1/device.toml")).unwrap();
    assert!(!config.contains("private_key"), "{config}");

    let iot = aws_sdk_iot::Client::new(&sdk_config(&moto.endpoint).await);
    let principals = iot
        .list_thing_principals()
        .thing_name("own-1")
        .send()
        .await
        .unwrap();
    assert_eq!(principals.principals().len(), 1);
}

#[test]
fn errors_say_what_to_do() {
    let moto = MotoServer::start();
    let scratch = scratch_dir("provision-errors");
    let no_region = Command::new(function_binary("iotpipe"))
        .args(["provision", "--fleet", "lab", "--devices", "1", "--out"])
        .arg(scratch.join("keys"))
        .envs(
            moto.env()
                .into_iter()
                .filter(|(name, _)| *name != "AWS_REGION"),
        )
        .env("AWS_CONFIG_FILE", "/nonexistent")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    assert!(!no_region.status.success());
    assert!(
        text(&no_region).contains("set AWS_REGION"),
        "{}",
        text(&no_region)
    );

    let bad_name = iotpipe(&moto, &["provision", "--fleet", "lab", "--names", "a/b"]);
    assert!(!bad_name.status.success());
    assert!(text(&bad_name).contains("\"a/b\""), "{}", text(&bad_name));

    let unreachable = Command::new(function_binary("iotpipe"))
        .args(["provision", "--fleet", "lab", "--devices", "1", "--out"])
        .arg(scratch.join("keys"))
        .envs(moto.env())
        .env(
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", e2e_tests::free_port()),
        )
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .unwrap();
    assert!(!unreachable.status.success());
    let said = text(&unreachable);
    assert!(
        said.contains("lab: DescribeEndpoint failed") && said.contains("Could not reach AWS IoT"),
        "{said}"
    );
}

#[tokio::test]
async fn delete_keeps_a_group_and_policy_it_did_not_create() {
    let moto = MotoServer::start();
    let iot = aws_sdk_iot::Client::new(&sdk_config(&moto.endpoint).await);
    // The stack's thing group and policy, made by someone else.
    iot.create_thing_group()
        .thing_group_name("stack-devices")
        .send()
        .await
        .unwrap();
    let document = serde_json::to_string(&expected_policy()).unwrap();
    iot.create_policy()
        .policy_name("stack-policy")
        .policy_document(&document)
        .send()
        .await
        .unwrap();
    let out = scratch_dir("provision-stack").join("keys");
    let out = out.to_str().unwrap();
    let common = [
        "--fleet",
        "stack-devices",
        "--policy",
        "stack-policy",
        "--out",
        out,
    ];
    let created = iotpipe(
        &moto,
        &[&["provision", "--devices", "1"][..], &common].concat(),
    );
    assert!(created.status.success(), "{}", text(&created));
    assert!(
        text(&created).contains("policy stack-policy unchanged"),
        "{}",
        text(&created)
    );
    let deleted = iotpipe(&moto, &[&["provision", "--delete"][..], &common].concat());
    assert!(deleted.status.success(), "{}", text(&deleted));
    assert!(iot
        .describe_thing()
        .thing_name("stack-devices-1")
        .send()
        .await
        .is_err());
    assert!(iot
        .describe_thing_group()
        .thing_group_name("stack-devices")
        .send()
        .await
        .is_ok());
    assert!(iot
        .get_policy()
        .policy_name("stack-policy")
        .send()
        .await
        .is_ok());
    assert!(
        text(&deleted).contains("policy stack-policy: kept"),
        "{}",
        text(&deleted)
    );
}
