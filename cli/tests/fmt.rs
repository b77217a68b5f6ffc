//! `flotilla fmt`, run as the real binary on temporary directories and on the examples.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const MESSY: &str = "fleet \"train\"{\nnodes=4\n    spot_policy   =  \"on-demand\"\n\n\n\nresources {\n\ngpu=\"H100:8\" # eight\n}\n}\n\n";

const CANONICAL: &str = "fleet \"train\" {\n  nodes       = 4\n  spot_policy = \"on-demand\"\n\n  resources {\n    gpu = \"H100:8\" # eight\n  }\n}\n";

fn flotilla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flotilla"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .expect("the flotilla binary runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn dir_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write fixture");
    }
    dir
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).expect("read back")
}

fn examples() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .expect("fixtures/examples")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn every_example_is_canonical() {
    let dirs = examples();
    assert!(dirs.len() >= 4, "the four examples: {dirs:?}");
    for dir in dirs {
        let out = flotilla(&["fmt", "--check", "-C", dir.to_str().expect("utf-8 path")]);
        assert!(
            out.status.success(),
            "{} is not canonical:\n{}{}",
            dir.display(),
            stdout(&out),
            stderr(&out)
        );
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn rewrites_changed_files_in_place_and_names_them() {
    let dir = dir_with(&[
        ("main.hcl", MESSY),
        ("other.hcl", CANONICAL),
        ("notes.txt", MESSY),
    ]);
    let path = dir.path().to_str().expect("utf-8 path");
    let out = flotilla(&["fmt", "-C", path]);
    assert!(out.status.success(), "{}", stderr(&out));
    let listed: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
    assert_eq!(
        listed,
        vec![dir.path().join("main.hcl").display().to_string()]
    );
    assert_eq!(read(dir.path(), "main.hcl"), CANONICAL);
    assert_eq!(read(dir.path(), "other.hcl"), CANONICAL);
    assert_eq!(
        read(dir.path(), "notes.txt"),
        MESSY,
        "only *.hcl files are formatted"
    );

    // No temporary file is left behind, and a second run has nothing to do.
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["main.hcl", "notes.txt", "other.hcl"]);
    let again = flotilla(&["fmt", "-C", path]);
    assert!(again.status.success());
    assert_eq!(stdout(&again), "");
}

#[test]
fn check_lists_files_with_a_diff_and_changes_nothing() {
    let dir = dir_with(&[("main.hcl", MESSY), ("other.hcl", CANONICAL)]);
    let out = flotilla(&[
        "fmt",
        "--check",
        "-C",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let text = stdout(&out);
    let name = dir.path().join("main.hcl").display().to_string();
    assert!(
        text.starts_with(&format!("{name}\n--- {name}\n+++ {name}\n@@ ")),
        "{text}"
    );
    assert!(text.contains("\n-nodes=4\n"), "{text}");
    assert!(text.contains("\n+  nodes       = 4\n"), "{text}");
    assert!(!text.contains("other.hcl"), "{text}");
    assert!(
        stderr(&out).contains("1 file is not in canonical format"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        read(dir.path(), "main.hcl"),
        MESSY,
        "--check changes nothing"
    );
}

#[test]
fn check_passes_on_canonical_files() {
    let dir = dir_with(&[("main.hcl", CANONICAL)]);
    let out = flotilla(&[
        "fmt",
        "--check",
        "-C",
        dir.path().to_str().expect("utf-8 path"),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
}

#[test]
fn only_the_files_named_with_f() {
    let dir = dir_with(&[("a.hcl", MESSY), ("b.hcl", MESSY)]);
    let out = flotilla(&[
        "fmt",
        "-C",
        dir.path().to_str().expect("utf-8 path"),
        "-f",
        "b.hcl",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read(dir.path(), "a.hcl"), MESSY);
    assert_eq!(read(dir.path(), "b.hcl"), CANONICAL);
}

#[test]
fn a_file_that_does_not_parse_is_named_with_its_position() {
    let broken = "fleet \"a\" {\n  nodes = 1\n  gpu = \n}\n";
    let dir = dir_with(&[("broken.hcl", broken), ("main.hcl", MESSY)]);
    let out = flotilla(&["fmt", "-C", dir.path().to_str().expect("utf-8 path")]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    let name = dir.path().join("broken.hcl").display().to_string();
    assert!(err.contains(&format!("error: {name}:3:")), "{err}");
    assert!(err.contains("invalid HCL"), "{err}");
    assert_eq!(
        read(dir.path(), "broken.hcl"),
        broken,
        "a broken file is left alone"
    );
    assert_eq!(
        read(dir.path(), "main.hcl"),
        CANONICAL,
        "the other files are still formatted"
    );
}

#[test]
fn a_missing_file_is_an_error() {
    let dir = dir_with(&[]);
    let out = flotilla(&[
        "fmt",
        "-C",
        dir.path().to_str().expect("utf-8 path"),
        "-f",
        "nope.hcl",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("nope.hcl"), "{}", stderr(&out));
}
