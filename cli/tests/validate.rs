//! `flotilla validate` as a user runs it: the real binary on the broken fleet files of
//! `fixtures/broken/` (each error must name file:line:column, say what is wrong and hint at a
//! fix), on the examples, and on a valid directory of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures")
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `flotilla ARGS` in `dir`, without colour and without `FLOTILLA_VAR_*` from the
/// environment of whoever runs the tests.
fn flotilla(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Run {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flotilla"));
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    for (k, _) in std::env::vars() {
        if k.starts_with("FLOTILLA_VAR_") {
            cmd.env_remove(k);
        }
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run flotilla");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// `flotilla validate -f FILE` in `fixtures/broken`; asserts exit code 1 and that stderr holds
/// every one of `expected`.
fn broken(file: &str, expected: &[&str]) -> String {
    let run = flotilla(&fixtures().join("broken"), &["validate", "-f", file], &[]);
    assert_eq!(
        run.code, 1,
        "stdout:\n{}\nstderr:\n{}",
        run.stdout, run.stderr
    );
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    for e in expected {
        assert!(run.stderr.contains(e), "missing {e:?} in:\n{}", run.stderr);
    }
    run.stderr
}

#[test]
fn typo_attribute() {
    let stderr = broken(
        "typo-attribute.hcl",
        &[
            "typo-attribute.hcl:5:5",
            "unknown attribute `gpus` in `resources`",
            "expected one of `cpu`, `memory`, `disk`, `gpu`, `gpu_total_memory`",
            "did you mean `gpu`?",
            "error: 1 error in the fleet files",
        ],
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn bad_gpu_spec() {
    broken(
        "bad-gpu-spec.hcl",
        &[
            "bad-gpu-spec.hcl:4:17",
            "invalid `gpu` in `resources`: `A100`: GPU names given twice",
            "list alternatives with a comma: `H100,A100`",
        ],
    );
}

#[test]
fn undefined_volume_reference() {
    broken(
        "undefined-volume.hcl",
        &[
            "undefined-volume.hcl:7:14",
            "unknown volume `volume.chkpt`",
            "did you mean `volume.ckpt`?",
        ],
    );
}

#[test]
fn duplicate_fleet_across_files() {
    let run = flotilla(
        &fixtures().join("broken"),
        &["validate", "-C", "duplicate-fleet"],
        &[],
    );
    assert_eq!(run.code, 1, "{}", run.stderr);
    for e in [
        "duplicate-fleet/b.hcl:2:7",
        "duplicate fleet `train`",
        "fleet `train` is already declared at duplicate-fleet/a.hcl:1:7",
        "rename or remove one of them",
    ] {
        assert!(run.stderr.contains(e), "missing {e:?} in:\n{}", run.stderr);
    }
}

#[test]
fn locals_cycle() {
    broken(
        "locals-cycle.hcl",
        &[
            "locals-cycle.hcl:2:3",
            "cycle between locals: local.nodes -> local.total -> local.nodes",
            "a local cannot use itself, directly or through other locals",
        ],
    );
}

#[test]
fn syntax_error() {
    broken(
        "syntax-error.hcl",
        &[
            "syntax-error.hcl:5:2",
            "syntax error",
            "expected `}`",
            "fleet files are HCL",
        ],
    );
}

#[test]
fn missing_required_attribute() {
    broken(
        "missing-required.hcl",
        &[
            "missing-required.hcl:1:1",
            "missing required attribute `project` in provider `gcp`",
            "add `project = \"my-project\"`",
        ],
    );
}

#[test]
fn every_error_is_shown() {
    let stderr = broken(
        "many-errors.hcl",
        &[
            "unknown attribute `node` in fleet `train`",
            "[many-errors.hcl:6:3]",
            "invalid `placement` in fleet `train`: `clustr`",
            "[many-errors.hcl:7:15]",
            "unknown variable `var.max_prise`",
            "[many-errors.hcl:8:15]",
            "invalid `memory` in `resources`: unknown memory unit `GiB`",
            "[many-errors.hcl:10:17]",
            "error: 4 errors in the fleet files",
        ],
    );
    insta::assert_snapshot!(stderr);
}

#[test]
fn examples_are_valid() {
    let root = fixtures().join("examples");
    let Ok(entries) = std::fs::read_dir(&root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let run = flotilla(&dir, &["validate"], &[]);
        assert_eq!(run.code, 0, "{}:\n{}", dir.display(), run.stderr);
        assert!(run.stdout.starts_with("Valid: "), "{}", run.stdout);
    }
}

fn valid_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(
        dir.path().join("fleets.hcl"),
        r#"variable "nodes" {}

volume "ckpt" { size = "1TB" }

fleet "train" {
  nodes   = var.nodes
  volumes = [volume.ckpt]
  resources { gpu = "H100:8" }
}

fleet "serve" {
  nodes = 2
}
"#,
    )
    .expect("write");
    std::fs::write(
        dir.path().join("outputs.hcl"),
        "gateway \"api\" { targets = [fleet.serve] }\noutput \"ips\" { value = fleet.train.private_ips }\n",
    )
    .expect("write");
    dir
}

#[test]
fn valid_configuration_prints_a_summary() {
    let dir = valid_dir();
    let run = flotilla(dir.path(), &["validate", "--var", "nodes=16"], &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "Valid: 2 fleets (18 nodes), 1 volume, 1 gateway, 1 output in 2 files.\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn variables_from_the_environment_and_files() {
    let dir = valid_dir();
    let run = flotilla(dir.path(), &["validate"], &[("FLOTILLA_VAR_nodes", "3")]);
    assert_eq!(
        run.stdout,
        "Valid: 2 fleets (5 nodes), 1 volume, 1 gateway, 1 output in 2 files.\n"
    );
    std::fs::write(dir.path().join("prod.vars"), "nodes = 7\n").expect("write");
    // A variable file beats the environment; a --var beats the file.
    let run = flotilla(
        dir.path(),
        &["validate", "--var-file", "prod.vars"],
        &[("FLOTILLA_VAR_nodes", "3")],
    );
    assert_eq!(
        run.stdout,
        "Valid: 2 fleets (9 nodes), 1 volume, 1 gateway, 1 output in 2 files.\n"
    );
    let run = flotilla(
        dir.path(),
        &["validate", "--var", "nodes=1", "--var-file", "prod.vars"],
        &[],
    );
    assert_eq!(
        run.stdout,
        "Valid: 2 fleets (3 nodes), 1 volume, 1 gateway, 1 output in 2 files.\n"
    );
    let run = flotilla(
        dir.path(),
        &[
            "validate",
            "-C",
            ".",
            "-f",
            "fleets.hcl",
            "--var",
            "nodes=1",
        ],
        &[],
    );
    assert_eq!(
        run.stdout,
        "Valid: 2 fleets (3 nodes), 1 volume, 0 gateways, 0 outputs in 1 file.\n"
    );
}

#[test]
fn missing_variable_value() {
    let dir = valid_dir();
    let run = flotilla(dir.path(), &["validate"], &[]);
    assert_eq!(run.code, 1);
    for e in [
        "fleets.hcl:1:10",
        "variable `nodes` has no value",
        "set it with --var nodes=VALUE, --var-file or FLOTILLA_VAR_nodes",
    ] {
        assert!(run.stderr.contains(e), "missing {e:?} in:\n{}", run.stderr);
    }
}

#[test]
fn malformed_var_is_refused() {
    let dir = valid_dir();
    let run = flotilla(dir.path(), &["validate", "--var", "nodes"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("invalid --var `nodes`: expected NAME=VALUE"),
        "{}",
        run.stderr
    );
    let run = flotilla(dir.path(), &["validate", "--var", "nodse=3"], &[]);
    assert_eq!(run.code, 1);
    for e in [
        "--var:1:1",
        "unknown variable `nodse`",
        "did you mean `nodes`?",
    ] {
        assert!(run.stderr.contains(e), "missing {e:?} in:\n{}", run.stderr);
    }
}

#[test]
fn directory_without_fleet_files() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = flotilla(dir.path(), &["validate"], &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains("no fleet files (*.hcl) in ."),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("pass -C DIR or -f FILE"),
        "{}",
        run.stderr
    );
}
