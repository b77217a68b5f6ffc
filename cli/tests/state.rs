//! `flotilla state list | show | rm | mv | pull | push` on a local state file, through the
//! real binary: every edit raises the serial, keeps the lineage and a backup, and a refused
//! edit changes nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A state at serial 4 with two instances (the second depending on a volume) and a volume.
fn sample(lineage: &str, serial: u64) -> serde_json::Value {
    let resource = |address: &str, kind: &str, id: &str, deps: &[&str]| {
        serde_json::json!({
            "address": address, "kind": kind, "provider": "aws", "provider_id": id,
            "region": "us-east-1", "zone": "us-east-1a", "attributes": {},
            "dependencies": deps,
        })
    };
    serde_json::json!({
        "format_version": 1,
        "flotilla_version": "0.1.0",
        "lineage": lineage,
        "serial": serial,
        "resources": [
            resource("fleet.web[0]", "instance", "i-0", &[]),
            resource("fleet.web[1]", "instance", "i-1", &["volume.data[1]"]),
            resource("volume.data[1]", "volume", "vol-1", &[]),
        ],
        "outputs": {}
    })
}

const LINEAGE: &str = "3f6c1c1e-0000-4000-8000-000000000001";

struct Dir {
    dir: tempfile::TempDir,
}

impl Dir {
    fn new() -> Dir {
        let dir = tempfile::tempdir().unwrap();
        let d = Dir { dir };
        d.write_state(&sample(LINEAGE, 4));
        d
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn state_path(&self) -> PathBuf {
        self.path().join("flotilla.state.json")
    }

    fn write_state(&self, v: &serde_json::Value) {
        std::fs::write(self.state_path(), serde_json::to_string_pretty(v).unwrap()).unwrap();
    }

    fn state(&self) -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(self.state_path()).unwrap()).unwrap()
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_flotilla"))
            .args(args)
            .arg("-C")
            .arg(self.path())
            .env_remove("FLOTILLA_STATE")
            .stdin(Stdio::null())
            .output()
            .expect("flotilla runs")
    }
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn addresses(state: &serde_json::Value) -> Vec<String> {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["address"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn list_and_show_read_without_changing() {
    let d = Dir::new();
    let o = d.run(&["state", "list"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(out(&o), "fleet.web[0]\nfleet.web[1]\nvolume.data[1]\n");

    let o = d.run(&["state", "show", "fleet.web[1]"]);
    assert!(o.status.success(), "{}", err(&o));
    let shown: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(shown["provider_id"], "i-1");

    let o = d.run(&["state", "show", "fleet.nope[0]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        err(&o).contains("`fleet.nope[0]` is not in state"),
        "{}",
        err(&o)
    );
    assert!(
        err(&o).contains("fleet.web[0], fleet.web[1]"),
        "{}",
        err(&o)
    );
    assert_eq!(d.state()["serial"], 4);
}

#[test]
fn rm_forgets_raises_the_serial_and_keeps_a_backup() {
    let d = Dir::new();
    let before = std::fs::read_to_string(d.state_path()).unwrap();
    let o = d.run(&["state", "rm", "fleet.web[0]"]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("Removed fleet.web[0] from state"),
        "{}",
        err(&o)
    );
    assert!(err(&o).contains("(aws i-0) still exists"), "{}", err(&o));
    let s = d.state();
    assert_eq!(addresses(&s), ["fleet.web[1]", "volume.data[1]"]);
    assert_eq!(s["serial"], 5);
    assert_eq!(s["lineage"], LINEAGE);
    let backup = std::fs::read_to_string(d.path().join("flotilla.state.json.backup")).unwrap();
    assert_eq!(backup, before);

    // An unknown address removes nothing, even with a known one beside it.
    let o = d.run(&["state", "rm", "fleet.web[1]", "fleet.nope[0]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("nothing was removed"), "{}", err(&o));
    assert_eq!(d.state()["serial"], 5);
    assert_eq!(addresses(&d.state()).len(), 2);
}

#[test]
fn mv_renames_and_follows_dependencies() {
    let d = Dir::new();
    let o = d.run(&["state", "mv", "volume.data[1]", "volume.ckpt[1]"]);
    assert!(o.status.success(), "{}", err(&o));
    let s = d.state();
    assert_eq!(
        addresses(&s),
        ["fleet.web[0]", "fleet.web[1]", "volume.ckpt[1]"]
    );
    assert_eq!(s["resources"][1]["dependencies"][0], "volume.ckpt[1]");
    assert_eq!(s["serial"], 5);

    // Onto an address in use, or from one not there: refused, nothing changes.
    for (from, to) in [
        ("fleet.web[0]", "fleet.web[1]"),
        ("fleet.x[0]", "fleet.y[0]"),
    ] {
        let o = d.run(&["state", "mv", from, to]);
        assert_eq!(o.status.code(), Some(1), "{from} -> {to}");
        assert!(err(&o).contains("Nothing was moved") || err(&o).contains("nothing was moved"));
    }
    assert_eq!(d.state()["serial"], 5);
}

#[test]
fn pull_prints_the_document_and_push_guards_lineage_and_serial() {
    let d = Dir::new();
    let o = d.run(&["state", "pull"]);
    assert!(o.status.success(), "{}", err(&o));
    let pulled: serde_json::Value = serde_json::from_str(&out(&o)).unwrap();
    assert_eq!(pulled["serial"], 4);

    // Pushing what was pulled (after an edit) works and raises the serial.
    let file = d.path().join("edited.json");
    let mut edited = pulled.clone();
    edited["outputs"] = serde_json::json!({ "note": "edited" });
    std::fs::write(&file, edited.to_string()).unwrap();
    let file = file.display().to_string();
    let o = d.run(&["state", "push", &file]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.state()["serial"], 5);
    assert_eq!(d.state()["outputs"]["note"], "edited");

    // An older serial: refused, then forced.
    let old = d.path().join("old.json");
    std::fs::write(&old, sample(LINEAGE, 2).to_string()).unwrap();
    let old = old.display().to_string();
    let o = d.run(&["state", "push", &old]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("has serial 2, older than"), "{}", err(&o));
    assert_eq!(d.state()["serial"], 5);
    let o = d.run(&["state", "push", &old, "--force"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(
        d.state()["serial"],
        6,
        "a forced push still raises the serial"
    );

    // Another lineage: refused, then forced.
    let foreign = d.path().join("foreign.json");
    let other = "3f6c1c1e-0000-4000-8000-000000000002";
    std::fs::write(&foreign, sample(other, 1).to_string()).unwrap();
    let foreign = foreign.display().to_string();
    let o = d.run(&["state", "push", &foreign]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("another lineage"), "{}", err(&o));
    assert_eq!(d.state()["lineage"], LINEAGE);
    let o = d.run(&["state", "push", &foreign, "--force"]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(d.state()["lineage"], other);
    assert_eq!(d.state()["serial"], 7);

    // Not a state at all: refused before anything is locked or written.
    let junk = d.path().join("junk.json");
    std::fs::write(&junk, "{}").unwrap();
    let o = d.run(&["state", "push", &junk.display().to_string()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("not a flotilla state"), "{}", err(&o));
    assert_eq!(d.state()["serial"], 7);
}

#[test]
fn edits_of_a_missing_state_say_so() {
    let d = Dir::new();
    std::fs::remove_file(d.state_path()).unwrap();
    let o = d.run(&["state", "rm", "fleet.web[0]"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(err(&o).contains("there is no state at"), "{}", err(&o));
    let o = d.run(&["state", "list"]);
    assert!(o.status.success());
    assert_eq!(out(&o), "");
}

#[test]
fn force_unlock_of_a_local_state_without_a_lock_succeeds() {
    let d = Dir::new();
    let o = d.run(&["force-unlock", "some-id"]);
    assert!(o.status.success(), "{}", err(&o));
}

#[test]
fn lock_timeout_must_be_a_duration() {
    let d = Dir::new();
    let o = d.run(&["state", "rm", "fleet.web[0]", "--lock-timeout", "soon"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("is not a duration"), "{}", err(&o));
}
