//! A project directory for tests that run the real binary against the in-process fake
//! provider (`FLOTILLA_FAKE_PROVIDER_DIR`, one JSON file per resource under `cloud/`), shared
//! by the apply and drift tests.

// Each test binary uses its own subset.
#![allow(dead_code)]

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A temp dir with the fleet file `main.hcl`; the fake cloud lives in `cloud/` inside it.
pub(crate) struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    /// A project whose `main.hcl` is `hcl`.
    pub(crate) fn new(hcl: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.hcl"), hcl).unwrap();
        std::fs::create_dir(dir.path().join("cloud")).unwrap();
        Project { dir }
    }

    /// The project directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The fake cloud's directory.
    pub(crate) fn cloud(&self) -> PathBuf {
        self.path().join("cloud")
    }

    /// Sets the fake's faults (JSON, see `FakeFaults`).
    pub(crate) fn faults(&self, json: &str) {
        std::fs::write(self.cloud().join("faults.json"), json).unwrap();
    }

    /// `flotilla ARGS[0] -C DIR ARGS[1..]` against the fake, with no variables, AWS settings or
    /// state URL leaking in from the environment.
    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_flotilla"));
        c.env_remove("NO_COLOR");
        for (k, _) in std::env::vars() {
            if k.starts_with("FLOTILLA_VAR_") || k.starts_with("AWS_") {
                c.env_remove(k);
            }
        }
        c.env_remove("FLOTILLA_STATE");
        c.env("FLOTILLA_FAKE_PROVIDER_DIR", self.cloud());
        c.arg(args[0]).arg("-C").arg(self.path()).args(&args[1..]);
        c.stdin(Stdio::null());
        c
    }

    /// Runs [`Project::command`] to completion.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("flotilla runs")
    }

    /// The local state file, if there is one.
    pub(crate) fn state(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.path().join("flotilla.state.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}

/// A command's stdout.
pub(crate) fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A command's stderr.
pub(crate) fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
