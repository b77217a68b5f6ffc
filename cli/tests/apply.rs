//! `flotilla apply` and `flotilla destroy` through the real binary, end to end against the
//! in-process fake provider (`FLOTILLA_FAKE_PROVIDER_DIR`), which keeps each resource as a
//! JSON file in a temp directory: applies converge, confirmation is required, saved plans are
//! applied exactly or refused untouched, failures are summarised and failovers reported.

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
"#;

mod common;
use common::{Project, stderr, stdout};
use std::process::{Command, Stdio};

/// The fake cloud's AWS resources (one JSON file each).
fn resources(p: &Project) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(p.cloud())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("aws-"))
        .collect();
    names.sort();
    names
}

#[test]
fn apply_then_plan_has_no_changes() {
    let p = Project::new(FLEET);
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Apply complete! Resources: 5 added, 0 changed, 0 destroyed."));
    let err = stderr(&o);
    assert!(err.contains("fleet.web[0]: creating…"), "{err}");
    assert!(err.contains("fleet.web[0]: created in "), "{err}");
    assert_eq!(resources(&p).len(), 5);
    let state = p.state().unwrap();
    assert_eq!(state["resources"].as_array().unwrap().len(), 5);

    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Applying again changes nothing and needs no confirmation.
    let o = p.run(&["apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes."));
    assert_eq!(resources(&p).len(), 5);
}

#[test]
fn without_a_terminal_apply_needs_yes() {
    let p = Project::new(FLEET);
    let o = p.run(&["apply"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains(
            "error: no terminal to confirm on; pass -y/--auto-approve to apply without asking"
        ),
        "{}",
        stderr(&o)
    );
    assert!(resources(&p).is_empty());
    assert!(p.state().is_none());
    let o = p.run(&["destroy"]);
    assert!(
        o.status.success(),
        "destroying nothing needs no answer: {}",
        stderr(&o)
    );
}

#[test]
fn a_saved_plan_is_applied_exactly_without_asking() {
    let p = Project::new(FLEET);
    let plan = p.path().join("plan.json");
    let o = p.run(&["plan", "--out", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = p.run(&["apply", plan.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Apply complete! Resources: 5 added, 0 changed, 0 destroyed."));
    // The plan was made before any state existed; the state takes its lineage.
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&plan).unwrap()).unwrap();
    assert_eq!(p.state().unwrap()["lineage"], saved["state"]["lineage"]);
}

#[test]
fn a_saved_plan_made_stale_by_another_apply_is_refused() {
    let p = Project::new(FLEET);
    let plan = p.path().join("plan.json");
    assert!(
        p.run(&["plan", "--out", plan.to_str().unwrap()])
            .status
            .success()
    );
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let before_state = p.state().unwrap();
    let before_cloud = resources(&p);

    let o = p.run(&["apply", plan.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("is stale"), "{err}");
    assert!(
        err.contains("nothing was changed. Run flotilla plan again"),
        "{err}"
    );
    assert_eq!(p.state().unwrap(), before_state);
    assert_eq!(resources(&p), before_cloud);
}

#[test]
fn a_saved_plan_is_refused_when_the_configuration_changed() {
    let p = Project::new(FLEET);
    let plan = p.path().join("plan.json");
    assert!(
        p.run(&["plan", "--out", plan.to_str().unwrap()])
            .status
            .success()
    );
    std::fs::write(
        p.path().join("main.hcl"),
        FLEET.replace("nodes     = 2", "nodes     = 3"),
    )
    .unwrap();
    let o = p.run(&["apply", plan.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o)
            .contains("the configuration changed since the plan was made; run flotilla plan again"),
        "{}",
        stderr(&o)
    );
    assert!(resources(&p).is_empty());
    assert!(p.state().is_none());
}

#[test]
fn destroy_leaves_nothing() {
    let p = Project::new(FLEET);
    assert!(p.run(&["apply", "-y"]).status.success());
    let o = p.run(&["destroy", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(
        stdout(&o).contains("Destroy complete! Resources: 5 destroyed."),
        "{}",
        stdout(&o)
    );
    assert!(stderr(&o).contains("gateway.api: destroying…"));
    assert!(resources(&p).is_empty(), "{:?}", resources(&p));
    assert_eq!(p.state().unwrap()["resources"], serde_json::json!([]));
    let o = p.run(&["plan", "--destroy", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0));
}

#[test]
fn a_capacity_failure_prints_the_failover_line() {
    let p = Project::new(FLEET);
    p.faults(r#"{ "capacity": ["g6.xlarge"] }"#);
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(
        err.contains("fleet.web[0]: no capacity for aws g6.xlarge us-east-1 (InsufficientInstanceCapacity: We currently do not have sufficient g6.xlarge capacity"),
        "{err}"
    );
    // The node stays with its volume in us-east-1 and takes the next offer there.
    let line = err
        .lines()
        .find(|l| l.starts_with("fleet.web[0]: no capacity"))
        .unwrap();
    assert!(line.contains("; trying aws "), "{line}");
    assert!(line.contains(" us-east-1 at $"), "{line}");
    let state = p.state().unwrap();
    let node = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "fleet.web[0]")
        .unwrap();
    assert_ne!(node["offer"]["instance_type"], "g6.xlarge");
    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn a_failure_is_summarised_and_exits_1() {
    let p = Project::new(FLEET);
    p.faults(r#"{ "fail": { "fleet.web[1]": "The image id '[ami-123]' does not exist" } }"#);
    let o = p.run(&["apply", "-y"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("Apply failed: 3 added, 0 changed, 0 destroyed; 1 failed, 1 not run."),
        "{err}"
    );
    assert!(
        err.contains("fleet.web[1]: create failed: InvalidParameterValue: The image id '[ami-123]' does not exist"),
        "{err}"
    );
    assert!(
        err.contains("gateway.api: create skipped: fleet.web[1] failed"),
        "{err}"
    );
    // What was done is recorded, so the next apply only does the rest.
    assert_eq!(p.state().unwrap()["resources"].as_array().unwrap().len(), 3);
    p.faults("{}");
    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("Apply complete! Resources: 2 added, 0 changed, 0 destroyed."));
}

#[test]
fn an_azure_fleet_gets_its_region_network_first_and_loses_it_last() {
    let p = Project::new(
        r#"
provider "azure" {
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "gpu"
  regions         = ["eastus"]
}
fleet "web" {
  nodes     = 2
  providers = ["azure"]
  resources { gpu = "T4:1" }
}
"#,
    );
    let o = p.run(&["plan"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(
        out.contains("+ network \"network.azure.eastus\" {"),
        "{out}"
    );
    assert!(
        out.contains("azure nodes in eastus need a network"),
        "{out}"
    );

    let o = p.run(&["apply", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let state = p.state().unwrap();
    let addresses: Vec<&str> = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        ["fleet.web[0]", "fleet.web[1]", "network.azure.eastus"]
    );
    let azure_files = || {
        std::fs::read_dir(p.cloud())
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                name.to_string_lossy().starts_with("azure-")
            })
            .count()
    };
    assert_eq!(azure_files(), 3);
    let node = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["address"] == "fleet.web[0]")
        .unwrap()
        .clone();
    assert_eq!(
        node["dependencies"],
        serde_json::json!(["network.azure.eastus"])
    );
    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // The fake refuses to delete a network while a node is in it.
    let o = p.run(&["destroy", "-y"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(azure_files(), 0);
    assert!(
        p.state().unwrap()["resources"]
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn gcp_without_credentials_fails_at_once_saying_how_to_log_in() {
    let p = Project::new(
        r#"
provider "gcp" { project = "p" }
fleet "web" {
  resources { gpu = "L4:1" }
}
"#,
    );
    let o = p
        .command(&["apply", "-y"])
        .env_remove("FLOTILLA_FAKE_PROVIDER_DIR")
        .env_remove("FLOTILLA_GCP_ENDPOINT")
        .env_remove("GOOGLE_APPLICATION_CREDENTIALS")
        .env_remove("GCE_METADATA_HOST")
        .env("CLOUDSDK_CONFIG", p.path().join("no-gcloud"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("no Google Application Default Credentials found"),
        "{err}"
    );
    assert!(
        err.contains("gcloud auth application-default login"),
        "{err}"
    );
    // Nothing was made, so nothing is recorded.
    let resources = p.state().map(|s| s["resources"].clone());
    assert!(
        resources
            .as_ref()
            .is_none_or(|r| r.as_array().is_some_and(Vec::is_empty)),
        "{resources:?}"
    );
}

#[test]
fn a_saved_plan_with_target_flags_is_refused() {
    let p = Project::new(FLEET);
    let plan = p.path().join("plan.json");
    assert!(
        p.run(&["plan", "--out", plan.to_str().unwrap()])
            .status
            .success()
    );
    let o = p.run(&["apply", plan.to_str().unwrap(), "--target", "fleet.web"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot be used with a saved one"),
        "{}",
        stderr(&o)
    );
}

#[cfg(unix)]
#[test]
fn ctrl_c_stops_scheduling_records_what_finished_and_exits_130() {
    use std::io::{BufRead as _, BufReader};
    let p = Project::new(
        r#"
provider "aws" { regions = ["us-east-1"] }
fleet "web" {
  nodes     = 6
  resources { gpu = "L4:1" }
}
"#,
    );
    p.faults(r#"{ "sleep_ms": 300 }"#);
    let mut child = p
        .command(&["apply", "-y", "--parallelism", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    // Interrupt once the first node is on its way.
    loop {
        let mut line = String::new();
        assert!(
            err.read_line(&mut line).unwrap() > 0,
            "apply ended early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("fleet.web[0]: creating…") {
            break;
        }
    }
    let killed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130), "{seen}");
    assert!(seen.contains("Interrupt received"), "{seen}");
    assert!(seen.contains("Apply cancelled:"), "{seen}");
    assert!(seen.contains("skipped: the apply was cancelled"), "{seen}");
    // What finished is both in the cloud and in the state; nothing was orphaned.
    let recorded = p.state().unwrap()["resources"].as_array().unwrap().len();
    assert!((1..6).contains(&recorded), "{recorded} recorded: {seen}");
    assert_eq!(resources(&p).len(), recorded);
}
