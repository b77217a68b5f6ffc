//! Refresh through the real binary, against the in-process fake provider
//! (`FLOTILLA_FAKE_PROVIDER_DIR`, one JSON file per resource): what is deleted or changed in the
//! "cloud" behind flotilla's back shows under "Changed outside flotilla" and is corrected by the
//! next apply; `--refresh=false` plans from the state as recorded; a provider that cannot be
//! refreshed fails the plan with a hint; apply records and prints the outputs.

use serde_json::Value;
use std::path::PathBuf;

const FLEET: &str = r#"
provider "aws" { regions = ["us-east-1", "us-west-2"] }
volume "data" { size = "100GB" }
fleet "web" {
  nodes     = 2
  resources { gpu = "L4:1" }
  volumes   = [volume.data]
  tags      = { team = "web" }
}
gateway "api" { targets = [fleet.web] }
output "endpoint" { value = gateway.api.dns_name }
output "ips" { value = fleet.web.private_ips }
"#;

mod common;
use common::{Project, stderr, stdout};

/// The provider id state records for `address`.
fn id_of(p: &Project, address: &str) -> String {
    state(p)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == address)
        .unwrap_or_else(|| panic!("{address} in state"))["provider_id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The fake cloud's file for the resource with this provider id.
fn fake_record(p: &Project, provider_id: &str) -> PathBuf {
    std::fs::read_dir(p.cloud())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|path| {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
                .is_some_and(|v| v["resource"]["provider_id"] == provider_id)
        })
        .unwrap_or_else(|| panic!("a fake record for {provider_id}"))
}

fn applied(p: &Project) {
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

fn state(p: &Project) -> Value {
    p.state().expect("a state file")
}

#[test]
fn apply_records_and_prints_the_outputs() {
    let p = Project::new(FLEET);
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let state = state(&p);
    let dns = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "gateway.api")
        .unwrap()["attributes"]["dns_name"]
        .clone();
    assert!(dns.as_str().is_some_and(|d| d.ends_with(".fake.example")));
    assert_eq!(state["outputs"]["endpoint"], dns);
    let ips = state["outputs"]["ips"].as_array().unwrap();
    assert_eq!(ips.len(), 2);
    assert!(
        ips.iter()
            .all(|ip| ip.as_str().unwrap().starts_with("10.0."))
    );
    let out = stdout(&o);
    let tail = out.split("Apply complete!").nth(1).unwrap();
    assert!(
        tail.contains(&format!(
            "\nOutputs:\n\nendpoint = {dns}\nips = [{}, {}]\n",
            ips[0], ips[1]
        )),
        "{out}"
    );
    // Outputs are part of the converged state: the next plan has nothing to do.
    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // An apply with nothing to do still shows them.
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes."), "{}", stdout(&o));
    assert!(
        stdout(&o).contains(&format!("\nOutputs:\n\nendpoint = {dns}\n")),
        "{}",
        stdout(&o)
    );
}

#[test]
fn an_instance_deleted_outside_is_reported_and_recreated() {
    let p = Project::new(FLEET);
    applied(&p);
    let old = id_of(&p, "fleet.web[1]");
    let record = fake_record(&p, &old);
    let old_token = serde_json::from_str::<Value>(&std::fs::read_to_string(&record).unwrap())
        .unwrap()["token"]
        .clone();
    std::fs::remove_file(record).unwrap();

    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "Changed outside flotilla:\n\n  # fleet.web[1] was deleted outside flotilla\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("# fleet.web[1] will be created (deleted outside flotilla)"),
        "{out}"
    );
    assert!(
        out.contains("Plan: 1 to add, 1 to change, 0 to destroy."),
        "{out}"
    );

    // Without refresh the plan believes the state.
    let o = p.run(&["plan", "--refresh=false", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));

    let o = p.run(&["plan", "--format", "json"]);
    let doc: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        doc["drift"],
        serde_json::json!([{ "address": "fleet.web[1]", "kind": "instance", "change": "deleted", "attributes": [] }])
    );

    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Apply complete! Resources: 1 added, 1 changed, 0 destroyed."),
        "{}",
        stdout(&o)
    );
    let new = id_of(&p, "fleet.web[1]");
    assert_ne!(new, old);
    // The new node was made with another idempotency token than the lost one.
    let new_token =
        serde_json::from_str::<Value>(&std::fs::read_to_string(fake_record(&p, &new)).unwrap())
            .unwrap()["token"]
            .clone();
    assert_ne!(new_token, old_token);
    assert_eq!(state(&p)["generations"]["fleet.web[1]"], 1);

    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn tags_changed_outside_are_put_back() {
    let p = Project::new(FLEET);
    applied(&p);
    let record = fake_record(&p, &id_of(&p, "fleet.web[0]"));
    let mut doc: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    doc["resource"]["attributes"]["tags"] = serde_json::json!({ "team": "ops" });
    std::fs::write(&record, serde_json::to_string_pretty(&doc).unwrap()).unwrap();

    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains(
            "  # fleet.web[0] was changed outside flotilla\n      ~ tags = { team = \"web\" } -> { team = \"ops\" }\n"
        ),
        "{out}"
    );
    assert!(
        out.contains("# fleet.web[0] will be updated in-place (tags changed outside flotilla)"),
        "{out}"
    );

    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Apply complete! Resources: 0 added, 1 changed, 0 destroyed."),
        "{}",
        stdout(&o)
    );
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    assert_eq!(
        doc["resource"]["attributes"]["tags"],
        serde_json::json!({ "team": "web" })
    );
    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_saved_plan_recreates_what_its_refresh_found_deleted() {
    let p = Project::new(FLEET);
    applied(&p);
    std::fs::remove_file(fake_record(&p, &id_of(&p, "fleet.web[0]"))).unwrap();
    // In the project, not in the test's working directory.
    let saved = p.path().join("drift.plan");
    let saved = saved.to_str().unwrap();
    let o = p.run(&["plan", "--out", saved]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.run(&["apply", saved]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(
        stdout(&o).contains("Apply complete! Resources: 1 added, 1 changed, 0 destroyed."),
        "{}",
        stdout(&o)
    );
    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_provider_that_cannot_be_refreshed_fails_the_plan_with_a_hint() {
    let p = Project::new(
        r#"
provider "aws" {
  regions  = ["us-east-1"]
  endpoint = "http://127.0.0.1:9"
}
fleet "web" {
  nodes     = 1
  resources { gpu = "L4:1" }
}
"#,
    );
    std::fs::write(
        p.path().join("flotilla.state.json"),
        r#"{
  "format_version": 1,
  "flotilla_version": "0.1.0",
  "lineage": "6f1c0d3e-8a2b-4c47-9e0f-3b5d2a7c9e14",
  "serial": 3,
  "resources": [
    {
      "address": "fleet.web[0]",
      "kind": "instance",
      "provider": "aws",
      "provider_id": "i-0123456789abcdef0",
      "region": "us-east-1",
      "zone": "us-east-1a",
      "attributes": {},
      "dependencies": []
    }
  ],
  "outputs": {}
}
"#,
    )
    .unwrap();
    let mut c = p.command(&["plan"]);
    // The real AWS provider, with credentials, against a port where nothing listens.
    c.env_remove("FLOTILLA_FAKE_PROVIDER_DIR")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", p.path().join("no-aws-config"))
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            p.path().join("no-aws-credentials"),
        );
    let o = c.output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("refreshing `aws` failed"), "{err}");
    assert!(err.contains("--refresh=false"), "{err}");

    let mut c = p.command(&["plan", "--refresh=false"]);
    c.env_remove("FLOTILLA_FAKE_PROVIDER_DIR");
    let o = c.output().unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
}

#[test]
fn a_replaced_node_is_made_with_a_new_idempotency_token() {
    let p = Project::new(FLEET);
    applied(&p);
    let token_of = |id: &str| {
        serde_json::from_str::<Value>(&std::fs::read_to_string(fake_record(&p, id)).unwrap())
            .unwrap()["token"]
            .clone()
    };
    let old = id_of(&p, "fleet.web[0]");
    let old_token = token_of(&old);
    let o = p.run(&["apply", "-y", "--replace", "fleet.web[0]"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let new = id_of(&p, "fleet.web[0]");
    assert_ne!(new, old);
    // The destroy was counted with the state write that recorded it, so a re-run after a
    // crash would compute this same token again.
    assert_eq!(state(&p)["generations"]["fleet.web[0]"], 1);
    assert_ne!(token_of(&new), old_token);
    assert!(state(&p)["generations"].get("fleet.web[1]").is_none());
}
