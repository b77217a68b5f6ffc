//! `flotilla apply` and `flotilla destroy` through the real binary, end to end against the
//! in-process fake provider (`FLOTILLA_FAKE_PROVIDER_DIR`), which keeps each resource as a
//! JSON file in a temp directory: applies converge, confirmation is required, saved plans are
//! applied exactly or refused untouched, failures are summarised and failovers reported.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

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

/// A temp dir with the fleet file; the fake cloud lives in `cloud/` inside it.
struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(hcl: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.hcl"), hcl).unwrap();
        std::fs::create_dir(dir.path().join("cloud")).unwrap();
        Project { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn cloud(&self) -> PathBuf {
        self.path().join("cloud")
    }

    fn faults(&self, json: &str) {
        std::fs::write(self.cloud().join("faults.json"), json).unwrap();
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        c.env_remove("NO_COLOR");
        for (k, _) in std::env::vars() {
            if k.starts_with("FLOTILLA_VAR_") {
                c.env_remove(k);
            }
        }
        c.env("FLOTILLA_FAKE_PROVIDER_DIR", self.cloud());
        c.arg(args[0]).arg("-C").arg(self.path()).args(&args[1..]);
        c.stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("flotilla runs")
    }

    /// The fake cloud's resources (one JSON file each).
    fn resources(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.cloud())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("aws-"))
            .collect();
        names.sort();
        names
    }

    fn state(&self) -> Option<serde_json::Value> {
        let text = std::fs::read_to_string(self.path().join("flotilla.state.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
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
    assert_eq!(p.resources().len(), 5);
    let state = p.state().unwrap();
    assert_eq!(state["resources"].as_array().unwrap().len(), 5);

    let o = p.run(&["plan", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}{}", stdout(&o), stderr(&o));
    // Applying again changes nothing and needs no confirmation.
    let o = p.run(&["apply"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes."));
    assert_eq!(p.resources().len(), 5);
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
    assert!(p.resources().is_empty());
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
    let before_cloud = p.resources();

    let o = p.run(&["apply", plan.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("is stale"), "{err}");
    assert!(
        err.contains("nothing was changed. Run flotilla plan again"),
        "{err}"
    );
    assert_eq!(p.state().unwrap(), before_state);
    assert_eq!(p.resources(), before_cloud);
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
    assert!(p.resources().is_empty());
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
    assert!(p.resources().is_empty(), "{:?}", p.resources());
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
fn a_provider_without_an_implementation_is_refused_before_anything_changes() {
    let p = Project::new(
        r#"
provider "azure" {
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "gpu"
}
fleet "web" {
  resources { gpu = "T4:1" }
}
"#,
    );
    let o = p
        .command(&["apply", "-y"])
        .env_remove("FLOTILLA_FAKE_PROVIDER_DIR")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("error: provider `azure` cannot apply yet in this build"),
        "{}",
        stderr(&o)
    );
    assert!(p.state().is_none());
    // Plans still work.
    let o = p
        .command(&["plan"])
        .env_remove("FLOTILLA_FAKE_PROVIDER_DIR")
        .output()
        .unwrap();
    assert!(o.status.success());
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
    assert_eq!(p.resources().len(), recorded);
}
