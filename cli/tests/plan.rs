//! `flotilla plan`, `show` and `graph` through the real binary: every example plans, the
//! formats and exit codes hold, saved plans round-trip, and bad state is refused untouched.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn flotilla() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    c.env_remove("NO_COLOR");
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_VAR_") {
            c.env_remove(k);
        }
    }
    c
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples")
}

fn run(args: &[&str]) -> Output {
    flotilla().args(args).output().expect("flotilla runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A temp dir holding a copy of one example's fleet files, so state files land there.
fn example_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(examples().join(name)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.path().join(p.file_name().unwrap())).unwrap();
    }
    dir
}

#[test]
fn every_example_plans_offline_against_the_embedded_catalog() {
    for name in ["llm-pretraining", "spot-finetune", "inference", "hybrid"] {
        let dir = example_dir(name);
        let o = run(&[
            "plan",
            "-C",
            dir.path().to_str().unwrap(),
            "--state",
            "none.json",
        ]);
        assert!(o.status.success(), "{name}: {}", stderr(&o));
        let out = stdout(&o);
        assert!(
            out.contains("to add, 0 to change, 0 to destroy."),
            "{name}: {out}"
        );
        assert!(
            !out.contains('\u{1b}'),
            "{name}: no colour without a terminal"
        );
    }
}

#[test]
fn detailed_exitcode_is_2_with_changes_and_0_without() {
    let dir = example_dir("inference");
    let d = dir.path().to_str().unwrap();
    let o = run(&["plan", "-C", d, "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // Destroying an empty state changes nothing.
    let o = run(&["plan", "-C", d, "--destroy", "--detailed-exitcode"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("No changes. Your fleets match the configuration."));
}

#[test]
fn json_format_has_the_documented_keys() {
    let dir = example_dir("inference");
    let o = run(&[
        "plan",
        "-C",
        dir.path().to_str().unwrap(),
        "--format",
        "json",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("plan JSON parses");
    for key in [
        "format_version",
        "flotilla_version",
        "state",
        "changes",
        "summary",
        "cost",
    ] {
        assert!(v.get(key).is_some(), "missing {key}");
    }
    assert_eq!(v["summary"]["add"], 7);
    let node = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == "fleet.serve[0]")
        .unwrap();
    assert_eq!(node["action"], "create");
    assert_eq!(node["after"]["instance_type"], "g6.2xlarge");
}

#[test]
fn markdown_format_is_a_pull_request_comment() {
    let dir = example_dir("inference");
    let o = run(&[
        "plan",
        "-C",
        dir.path().to_str().unwrap(),
        "--format",
        "markdown",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let md = stdout(&o);
    assert!(md.contains("<details>"), "{md}");
    assert!(md.contains("```diff"), "{md}");
}

#[test]
fn identical_inputs_give_byte_identical_output() {
    let dir = example_dir("llm-pretraining");
    let d = dir.path().to_str().unwrap();
    for format in ["text", "json", "markdown"] {
        let a = run(&["plan", "-C", d, "--format", format, "--state", "s.json"]);
        let b = run(&["plan", "-C", d, "--format", format, "--state", "s.json"]);
        assert!(a.status.success(), "{}", stderr(&a));
        // A missing state gets a fresh lineage on each run, which the output names.
        let strip = |o: &Output| {
            stdout(o)
                .lines()
                .filter(|l| !l.contains("lineage"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(strip(&a), strip(&b), "{format}");
    }
}

#[test]
fn saved_plan_round_trips_through_show() {
    let dir = example_dir("spot-finetune");
    let d = dir.path().to_str().unwrap();
    let planfile = dir.path().join("tfplan.json");
    let o = run(&["plan", "-C", d, "--out", planfile.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("flotilla apply"), "{}", stderr(&o));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&planfile).unwrap()).unwrap();
    assert!(
        saved["config_digest"]
            .as_str()
            .is_some_and(|d| d.len() == 64)
    );
    assert_eq!(saved["state"]["serial"], 0);

    let shown = run(&["show", planfile.to_str().unwrap()]);
    assert!(shown.status.success(), "{}", stderr(&shown));
    assert_eq!(
        stdout(&shown),
        stdout(&o),
        "show renders the plan as plan printed it"
    );
    let shown = run(&["show", planfile.to_str().unwrap(), "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(v["summary"]["add"], 4);

    std::fs::write(&planfile, "{\"hello\": 1}").unwrap();
    let o = run(&["show", planfile.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("is not a flotilla plan file"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn corrupt_or_newer_state_is_refused_and_left_untouched() {
    let dir = example_dir("inference");
    let d = dir.path().to_str().unwrap();
    let state = dir.path().join("flotilla.state.json");
    for (text, expect) in [
        ("{ not json", "is corrupt"),
        (
            "{\"format_version\": 99, \"flotilla_version\": \"9.0.0\"}",
            "Upgrade flotilla",
        ),
        ("{\"resources\": []}", "not a flotilla state file"),
    ] {
        std::fs::write(&state, text).unwrap();
        let o = run(&["plan", "-C", d]);
        assert_eq!(o.status.code(), Some(1), "{text}");
        assert!(stderr(&o).contains(expect), "{text}: {}", stderr(&o));
        assert_eq!(std::fs::read_to_string(&state).unwrap(), text);
    }
}

#[test]
fn no_offer_error_names_the_constraint() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("main.hcl"),
        "provider \"gcp\" { project = \"p\" }\nfleet \"train\" {\n  max_price = 30\n  resources { gpu = \"H100:8\" }\n}\n",
    )
    .unwrap();
    let o = run(&["plan", "-C", dir.path().to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("main.hcl:2:1): no offer satisfies it"),
        "{err}"
    );
    assert!(err.contains("max_price 30"), "{err}");
}

#[test]
fn unknown_target_is_an_error_with_a_suggestion() {
    let dir = example_dir("inference");
    let o = run(&[
        "plan",
        "-C",
        dir.path().to_str().unwrap(),
        "--target",
        "fleet.serv",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean `fleet.serve`?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn graph_prints_dot_and_mermaid() {
    let dir = example_dir("inference");
    let d = dir.path().to_str().unwrap();
    let o = run(&["graph", "-C", d]);
    assert!(o.status.success(), "{}", stderr(&o));
    let dot = stdout(&o);
    assert!(dot.starts_with("digraph flotilla {"), "{dot}");
    assert!(dot.contains("create gateway.api"), "{dot}");
    let o = run(&["graph", "-C", d, "--format", "mermaid"]);
    let m = stdout(&o);
    assert!(m.starts_with("flowchart LR"), "{m}");
    // Every node of the fleet points at the gateway.
    assert_eq!(m.matches("-->").count(), 6, "{m}");
}

#[test]
fn the_readme_plan_command_runs_offline_and_leaves_the_repository_clean() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let line = readme
        .lines()
        .find(|l| l.starts_with("cargo run -p flotilla -- plan "))
        .expect("README.md shows a `cargo run -p flotilla -- plan` command");
    let args: Vec<&str> = line
        .trim_start_matches("cargo run -p flotilla -- ")
        .split_whitespace()
        .collect();
    // Where the README's state path points, relative to the repository, but in a temp dir so
    // that parallel test runs stay apart.
    let tmp = tempfile::tempdir().unwrap();
    let state_at = args.iter().position(|a| *a == "--state").expect("--state");
    let mut args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let state = tmp.path().join("example.state.json");
    args[state_at + 1] = state.to_str().unwrap().to_string();
    let o = flotilla()
        .current_dir(&root)
        .args(&args)
        .env_remove("FLOTILLA_STATE")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .output()
        .unwrap();
    assert!(o.status.success(), "{line}: {}", stderr(&o));
    assert!(stdout(&o).contains("Plan: 32 to add"), "{}", stdout(&o));
    // The plan wrote no state and nothing in the example's directory.
    assert!(!state.exists());
    let example: Vec<String> = std::fs::read_dir(root.join("fixtures/examples/llm-pretraining"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(example.iter().all(|f| f.ends_with(".hcl")), "{example:?}");
}
