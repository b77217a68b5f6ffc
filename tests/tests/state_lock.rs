//! The state lock between real `flotilla` processes on one state, on each object store — S3 on
//! moto, GCS on fake-gcs-server, Azure Blob on Azurite, all started by `scripts/test`: a second
//! apply is refused naming the holder, or waits with `--lock-timeout` and then runs; a killed
//! holder's lock goes stale after its TTL and is removed by `force-unlock ID` alone.
//!
//! Each scenario is written once over a [`Bucket`] and run on every store by the
//! `on_every_store!` wrappers at the end. The resources are made by the in-process fake
//! provider (`FLOTILLA_FAKE_PROVIDER_DIR`), slowed down with its `sleep_ms` fault so that an
//! apply holds the lock long enough to be seen; only the state lives in the bucket.

use flotilla_tests::state_suite::Bucket;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const FLEET: &str = r#"
provider "aws" { regions = ["us-east-1"] }
fleet "web" {
  nodes     = 2
  resources { gpu = "L4:1" }
}
"#;

/// The state object in the bucket, and its lock beside it.
const STATE_KEY: &str = "fleet/state.json";
const LOCK_KEY: &str = "fleet/state.json.lock";

/// A fleet directory, a fake cloud inside it, and a state URL in a fresh bucket.
struct Setup<B> {
    dir: tempfile::TempDir,
    bucket: B,
    url: String,
}

impl<B: Bucket> Setup<B> {
    fn new(bucket: B, sleep_ms: u64) -> Setup<B> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("main.hcl"), FLEET).unwrap();
        std::fs::create_dir(dir.path().join("cloud")).unwrap();
        std::fs::write(
            dir.path().join("cloud/faults.json"),
            format!(r#"{{ "sleep_ms": {sleep_ms} }}"#),
        )
        .unwrap();
        let url = bucket.url(STATE_KEY);
        Setup { dir, bucket, url }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `flotilla ARGS -C DIR --state URL`, with the fake cloud.
    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(flotilla_tests::bin::flotilla());
        c.args(args)
            .arg("-C")
            .arg(self.path())
            .arg("--state")
            .arg(&self.url)
            .env("FLOTILLA_FAKE_PROVIDER_DIR", self.path().join("cloud"))
            .env_remove("FLOTILLA_LOCK_TTL")
            .env_remove("NO_COLOR")
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("flotilla runs")
    }

    fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Child {
        let mut c = self.command(args);
        for (k, v) in env {
            c.env(k, v);
        }
        c.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flotilla starts")
    }

    /// The lock object's holder, once there is one (waits up to 60 s for the holder to start).
    async fn wait_for_lock(&self, holder: &mut Child) -> serde_json::Value {
        let start = Instant::now();
        loop {
            if let Some(text) = self.lock_object().await {
                return serde_json::from_str(&text).expect("the lock object is JSON");
            }
            if let Some(status) = holder.try_wait().unwrap() {
                panic!("the holder exited ({status}) before it took the lock");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "the first apply never took the lock"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn lock_object(&self) -> Option<String> {
        self.bucket.get_raw(LOCK_KEY).await
    }

    async fn serial(&self) -> u64 {
        let text = self.bucket.get_raw(STATE_KEY).await.expect("a state");
        serde_json::from_str::<serde_json::Value>(&text).unwrap()["serial"]
            .as_u64()
            .unwrap()
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn finish(child: Child) -> Output {
    child.wait_with_output().expect("flotilla finishes")
}

/// A second apply, while the first holds the lock, names the holder and exits 1.
async fn second_apply_names_the_holder_and_exits_1(bucket: impl Bucket) {
    let s = Setup::new(bucket, 1_500);
    let mut first = s.spawn(&["apply", "-y"], &[]);
    let lock = s.wait_for_lock(&mut first).await;
    assert_eq!(lock["operation"], "apply");
    assert_eq!(lock["flotilla_version"], env!("CARGO_PKG_VERSION"));
    let id = lock["id"].as_str().unwrap().to_string();

    let second = s.run(&["apply", "-y"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!("state `{}` locked by ", s.url)),
        "{err}"
    );
    assert!(err.contains(lock["who"].as_str().unwrap()), "{err}");
    assert!(err.contains("for apply since "), "{err}");
    assert!(err.contains("s ago)"), "{err}");
    assert!(err.contains(&id), "{err}");
    assert!(!err.contains("stale"), "a live holder is not stale: {err}");

    let first = finish(first);
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(s.lock_object().await.is_none(), "the holder unlocked");
    assert!(s.serial().await > 0);
}

/// With `--lock-timeout`, a second apply waits for the first and then runs.
async fn second_apply_waits_with_lock_timeout_then_runs(bucket: impl Bucket) {
    let s = Setup::new(bucket, 1_000);
    let mut first = s.spawn(&["apply", "-y"], &[]);
    s.wait_for_lock(&mut first).await;

    let second = s.run(&["apply", "-y", "--lock-timeout", "2m"]);
    let err = stderr(&second);
    assert_eq!(second.status.code(), Some(0), "{err}");
    assert!(err.contains("locked by "), "{err}");
    assert!(err.contains("waiting up to 2m"), "{err}");
    assert!(err.contains("Acquired the state lock"), "{err}");
    let first = finish(first);
    assert!(first.status.success(), "{}", stderr(&first));
    // The second ran after the first had made everything: nothing left to do.
    assert!(
        String::from_utf8_lossy(&second.stdout).contains("No changes."),
        "{}",
        String::from_utf8_lossy(&second.stdout)
    );
    assert!(s.lock_object().await.is_none());
}

/// A SIGKILLed holder leaves a lock that is reported stale after its TTL and that only
/// `force-unlock` with its own id removes.
async fn killed_holder_goes_stale_and_only_its_id_unlocks(bucket: impl Bucket) {
    let s = Setup::new(bucket, 60_000);
    let mut first = s.spawn(&["apply", "-y"], &[("FLOTILLA_LOCK_TTL", "2s")]);
    let lock = s.wait_for_lock(&mut first).await;
    let id = lock["id"].as_str().unwrap().to_string();
    assert_eq!(lock["ttl_secs"], 2);
    // While it runs, the holder renews its heartbeat (every TTL/4).
    let start = Instant::now();
    loop {
        let now: serde_json::Value =
            serde_json::from_str(&s.lock_object().await.expect("still locked")).unwrap();
        assert_eq!(now["id"], lock["id"]);
        if now["heartbeat"] != now["created"] {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the heartbeat was never renewed: {now}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // SIGKILL: no chance to unlock.
    first.kill().unwrap();
    let _ = first.wait();
    tokio::time::sleep(Duration::from_millis(3_500)).await;

    let plan = s.run(&["plan"]);
    let err = stderr(&plan);
    assert_eq!(plan.status.code(), Some(1), "{err}");
    assert!(err.contains("stale"), "{err}");
    assert!(
        err.contains(&format!("flotilla force-unlock {id}")),
        "{err}"
    );

    let wrong = s.run(&["force-unlock", "00000000-0000-0000-0000-000000000000"]);
    let err = stderr(&wrong);
    assert_eq!(wrong.status.code(), Some(1), "{err}");
    assert!(err.contains("nothing was removed"), "{err}");
    assert!(
        s.lock_object().await.is_some(),
        "a wrong id removes nothing"
    );

    let right = s.run(&["force-unlock", &id]);
    assert_eq!(right.status.code(), Some(0), "{}", stderr(&right));
    assert!(s.lock_object().await.is_none());

    let plan = s.run(&["plan"]);
    assert_eq!(plan.status.code(), Some(0), "{}", stderr(&plan));
}

/// Runs every scenario above on one store: a module `$store` of `#[tokio::test]`s, each given
/// a fresh bucket made by `$bucket` (an async expression).
macro_rules! on_every_store {
    ($($store:ident => $bucket:expr;)+) => {$(
        mod $store {
            #[tokio::test]
            async fn second_apply_names_the_holder_and_exits_1() {
                super::second_apply_names_the_holder_and_exits_1($bucket.await).await;
            }

            #[tokio::test]
            async fn second_apply_waits_with_lock_timeout_then_runs() {
                super::second_apply_waits_with_lock_timeout_then_runs($bucket.await).await;
            }

            #[tokio::test]
            async fn killed_holder_goes_stale_and_only_its_id_unlocks() {
                super::killed_holder_goes_stale_and_only_its_id_unlocks($bucket.await).await;
            }
        }
    )+};
}

on_every_store! {
    s3 => flotilla_tests::s3::S3Bucket::new();
    gcs => flotilla_tests::gcs::GcsBucket::new();
    azure => flotilla_tests::azurite::AzureContainer::new();
}
