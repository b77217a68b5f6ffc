//! The bare-metal provider end to end: the real binary against real sshd hosts on 127.0.0.1
//! (`flotilla_tests::sshd`), and moto for the cloud half of hybrid fleets.
//!
//! Each test starts its own hosts (so it can stop one or change its key, and its claims are
//! its own) and works in its own directory with a state of known lineage
//! (`flotilla_tests::workdir`). Claims are read straight from each host's claim file.

use flotilla_tests::moto::Moto;
use flotilla_tests::sshd::{ClientKey, Gpus, SshHost};
use flotilla_tests::workdir::{Workdir, instances, text};
use std::time::{Duration, Instant};

/// A100 and H100 offers moto accepts, dearer than any host.
const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
aws,p4d.24xlarge,us-east-1,,nvidia,A100,8,40,96,1152,false,32.77
aws,p5.48xlarge,us-east-1,,nvidia,H100,8,80,192,2048,false,55.04
";

/// `provider "baremetal"` over `hosts`, logging in as root with `key`; `extra` goes into
/// every host block.
fn provider(hosts: &[&SshHost], key: &ClientKey, extra: &str) -> String {
    let mut s = format!(
        "provider \"baremetal\" {{\n  user          = \"root\"\n  identity_file = \"{}\"\n",
        key.private.display()
    );
    for h in hosts {
        s.push_str(&h.hcl(extra));
    }
    s.push_str("}\n");
    s
}

fn fleet(name: &str, nodes: u32, providers: &str, gpu: &str) -> String {
    format!(
        "fleet \"{name}\" {{\n  nodes     = {nodes}\n  providers = [{providers}]\n  resources {{\n    gpu = \"{gpu}\"\n  }}\n}}\n"
    )
}

fn workdir(hcl: &str) -> Workdir {
    let w = Workdir::new(hcl);
    std::fs::write(w.path().join("catalog.csv"), CATALOG).expect("catalog");
    w
}

fn claim_of(host: &SshHost) -> Option<(String, String)> {
    host.claim().map(|c| {
        (
            c["lineage"].as_str().unwrap_or_default().to_string(),
            c["address"].as_str().unwrap_or_default().to_string(),
        )
    })
}

#[test]
fn plan_and_apply_claim_the_matching_hosts_and_record_their_facts() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let a100 = SshHost::start("a100", Gpus::A100x8, &key);
    let h100 = SshHost::start("h100", Gpus::H100x8, &key);
    let cpu = SshHost::start("cpu", Gpus::None, &key);
    let hcl = format!(
        "{}{}",
        provider(&[&a100, &h100, &cpu], &key, ""),
        fleet("train", 1, "\"baremetal\"", "H100:80GB:8")
    );
    let w = workdir(&hcl);

    let plan = w.flotilla(&["plan"]);
    let said = text(&plan);
    assert!(plan.status.success(), "{said}");
    assert!(said.contains("8x A100 80GB"), "{said}");
    assert!(said.contains("8x H100 80GB"), "{said}");
    assert!(
        said.contains(&h100.fingerprint()),
        "the plan shows the new host key: {said}"
    );
    assert!(said.contains("trusted on first use"), "{said}");

    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        claim_of(&h100),
        Some((w.lineage.clone(), "fleet.train[0]".to_string()))
    );
    assert_eq!(claim_of(&a100), None);
    assert_eq!(claim_of(&cpu), None);

    let node = w.resource("fleet.train[0]").expect("node in state");
    assert_eq!(node["provider"], "baremetal");
    assert_eq!(node["provider_id"], "h100");
    assert_eq!(node["attributes"]["facts"]["gpu_name"], "H100");
    assert_eq!(node["attributes"]["facts"]["gpu_count"], 8);
    assert_eq!(node["attributes"]["facts"]["gpu_memory"], "80GB");
    assert_eq!(node["attributes"]["host_key"], h100.fingerprint());

    let again = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
}

#[test]
fn a_hybrid_fleet_fills_the_hosts_then_rents_the_rest() {
    let moto = Moto::get();
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let hosts: Vec<SshHost> = (1..=3)
        .map(|i| SshHost::start(&format!("dgx-{i}"), Gpus::A100x8, &key))
        .collect();
    let refs: Vec<&SshHost> = hosts.iter().collect();
    let hcl = format!(
        "provider \"aws\" {{\n  regions = [\"us-east-1\"]\n}}\n{}{}",
        provider(&refs, &key, ""),
        fleet("train", 5, "\"baremetal\", \"aws\"", "A100:8")
    );
    let w = workdir(&hcl);

    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let claimed: Vec<String> = hosts
        .iter()
        .filter_map(claim_of)
        .map(|(lineage, address)| {
            assert_eq!(lineage, w.lineage);
            address
        })
        .collect();
    assert_eq!(claimed.len(), 3, "every host is claimed: {claimed:?}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cloud = rt.block_on(instances(&moto, &w.lineage));
    assert_eq!(cloud.len(), 2, "two cloud nodes: {:?}", cloud.keys());
    for address in cloud.keys() {
        assert!(
            !claimed.contains(address),
            "{address} is on a host and in the cloud"
        );
    }

    // A host frees up (here: a fourth appears): running cloud nodes stay where they are...
    let spare = SshHost::start("dgx-4", Gpus::A100x8, &key);
    let mut refs = refs;
    refs.push(&spare);
    w.write_fleet(&format!(
        "provider \"aws\" {{\n  regions = [\"us-east-1\"]\n}}\n{}{}",
        provider(&refs, &key, ""),
        fleet("train", 5, "\"baremetal\", \"aws\"", "A100:8")
    ));
    let plan = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(plan.status.code(), Some(0), "{}", text(&plan));
    // ...unless one is asked to move, and then it takes the free host.
    let moved = cloud.keys().next().unwrap().clone();
    let plan = w.flotilla(&["plan", "--format", "json", "--replace", &moved]);
    let json: serde_json::Value =
        serde_json::from_slice(&plan.stdout).unwrap_or_else(|_| panic!("{}", text(&plan)));
    let change = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["address"] == moved.as_str())
        .expect("the replaced node")
        .clone();
    assert_eq!(change["action"], "replace", "{change}");
    assert_eq!(change["after"]["instance_type"], "dgx-4", "{change}");
}

#[test]
fn a_second_state_cannot_claim_a_held_host_and_destroy_releases_it() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let host = SshHost::start("dgx", Gpus::A100x8, &key);
    let hcl = format!(
        "{}{}",
        provider(&[&host], &key, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let first = workdir(&hcl);
    let second = workdir(&hcl);

    let apply = first.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        claim_of(&host),
        Some((first.lineage.clone(), "fleet.train[0]".to_string()))
    );

    let plan = second.flotilla(&["plan"]);
    let said = text(&plan);
    assert!(
        !plan.status.success(),
        "no host is left for the second state: {said}"
    );
    assert!(
        said.contains(&format!(
            "claimed by another state (lineage {}",
            first.lineage
        )),
        "{said}"
    );
    let apply = second.flotilla(&["apply", "-y"]);
    assert!(!apply.status.success(), "{}", text(&apply));
    assert_eq!(
        claim_of(&host),
        Some((first.lineage.clone(), "fleet.train[0]".to_string())),
        "the first state's claim is untouched"
    );

    let destroy = first.flotilla(&["destroy", "-y"]);
    assert!(destroy.status.success(), "{}", text(&destroy));
    assert_eq!(claim_of(&host), None, "destroy released the claim");

    let apply = second.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        claim_of(&host),
        Some((second.lineage.clone(), "fleet.train[0]".to_string()))
    );
}

#[test]
fn a_host_that_goes_down_fails_over_to_the_next_offer_at_apply() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let mut first = SshHost::start("dgx-a", Gpus::A100x8, &key);
    let second = SshHost::start("dgx-b", Gpus::A100x8, &key);
    let hcl = format!(
        "{}{}",
        provider(&[&first, &second], &key, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let w = workdir(&hcl);
    let plan_file = w.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap();

    let plan = w.flotilla(&["plan", "--out", plan_path]);
    assert!(plan.status.success(), "{}", text(&plan));
    let saved = std::fs::read_to_string(&plan_file).unwrap();
    assert!(
        saved.contains("\"dgx-a\""),
        "the plan takes dgx-a first: {saved}"
    );

    first.stop();
    let apply = w.flotilla(&["apply", "-y", plan_path]);
    let said = text(&apply);
    assert!(apply.status.success(), "{said}");
    assert!(said.contains("HostUnreachable"), "{said}");
    assert!(said.contains("dgx-b"), "{said}");
    assert_eq!(
        claim_of(&second),
        Some((w.lineage.clone(), "fleet.train[0]".to_string()))
    );
    assert_eq!(
        w.resource("fleet.train[0]").unwrap()["provider_id"],
        "dgx-b"
    );
}

#[test]
fn a_changed_host_key_is_refused() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let mut host = SshHost::start("dgx", Gpus::A100x8, &key);
    let hcl = format!(
        "{}{}",
        provider(&[&host], &key, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let w = workdir(&hcl);
    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let old = host.fingerprint();

    host.new_host_key();
    let new = host.fingerprint();
    assert_ne!(old, new);
    let plan = w.flotilla(&["plan"]);
    let said = text(&plan);
    assert!(said.contains("host `dgx`: the host key changed"), "{said}");
    assert!(said.contains(&old) && said.contains(&new), "{said}");

    let destroy = w.flotilla(&["destroy", "-y"]);
    let said = text(&destroy);
    assert!(!destroy.status.success(), "{said}");
    assert!(said.contains("the host key changed"), "{said}");
    assert!(
        host.claim().is_some(),
        "nothing was done on the host with the new key"
    );
}

#[test]
fn a_wrong_identity_file_says_authentication_failed() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let wrong = ClientKey::new(keys.path(), "wrong");
    let host = SshHost::start("dgx", Gpus::A100x8, &key);
    let hcl = format!(
        "{}{}",
        provider(&[&host], &wrong, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let w = workdir(&hcl);
    let plan = w.flotilla(&["plan"]);
    let said = text(&plan);
    assert!(!plan.status.success(), "{said}");
    assert!(
        said.contains("authentication failed for user `root`"),
        "{said}"
    );
    assert!(
        said.contains(&wrong.private.display().to_string()),
        "{said}"
    );
    assert!(host.claim().is_none());
}

#[test]
fn kill_during_claiming_then_apply_again_adopts_the_one_claim() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let first = SshHost::start("dgx-a", Gpus::A100x8, &key);
    let second = SshHost::start("dgx-b", Gpus::A100x8, &key);
    let marker = first.dir().join("setup-started");
    // The first setup blocks, so the apply can be killed after the claim is written; the
    // second (after adoption) finds the marker and goes straight through.
    let setup = format!(
        "    setup = [\"if [ -e {m} ]; then echo again; else touch {m}; sleep 60; fi\"]\n",
        m = marker.display()
    );
    let hcl = format!(
        "{}{}",
        provider(&[&first, &second], &key, &setup),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let w = workdir(&hcl);

    let running = w.spawn(&["apply", "-y"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !(marker.exists() && first.claim().is_some()) {
        assert!(Instant::now() < deadline, "the apply never reached setup");
        std::thread::sleep(Duration::from_millis(50));
    }
    running.kill();
    assert!(
        w.resource("fleet.train[0]").is_none(),
        "killed before recording"
    );

    let apply = w.flotilla(&["apply", "-y"]);
    let said = text(&apply);
    assert!(apply.status.success(), "{said}");
    assert!(said.contains("adopted"), "{said}");
    assert_eq!(
        claim_of(&first),
        Some((w.lineage.clone(), "fleet.train[0]".to_string()))
    );
    assert_eq!(claim_of(&second), None, "no second claim");
    assert_eq!(
        w.resource("fleet.train[0]").unwrap()["provider_id"],
        "dgx-a"
    );
    assert_eq!(first.claim().unwrap()["setup_done"], true);
}

#[test]
fn the_script_hosts_are_probed_with_their_gpus_and_nothing_is_claimed() {
    let (hosts, key) = flotilla_tests::sshd::script_hosts();
    assert_eq!(hosts.len(), 3, "{hosts:?}");
    let mut hcl = format!(
        "provider \"baremetal\" {{\n  user          = \"root\"\n  identity_file = \"{}\"\n",
        key.display()
    );
    for (name, port) in &hosts {
        hcl.push_str(&format!(
            "  host \"{name}\" {{\n    address = \"127.0.0.1\"\n    port    = {port}\n  }}\n"
        ));
    }
    hcl.push_str("}\n");
    hcl.push_str(&fleet("train", 3, "\"baremetal\"", "8"));
    let w = workdir(&hcl);
    let plan = w.flotilla(&["plan", "--format", "json"]);
    let said = text(&plan);
    assert!(
        !plan.status.success(),
        "two hosts have 8 GPUs, the third none: {said}"
    );
    assert!(said.contains("a100 (127.0.0.1:"), "{said}");
    assert!(said.contains("8x A100 80GB"), "{said}");
    assert!(said.contains("8x H100 80GB"), "{said}");
    assert!(said.contains("no GPUs"), "{said}");
    hcl = hcl.replace("nodes     = 3", "nodes     = 2");
    w.write_fleet(&hcl);
    let plan = w.flotilla(&["plan", "--format", "json"]);
    let said = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success(), "{}", text(&plan));
    let json: serde_json::Value = serde_json::from_str(&said).expect("plan JSON");
    let mut types: Vec<String> = json["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            c["after"]["instance_type"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    types.sort();
    assert_eq!(types, ["a100", "h100"]);
}

#[test]
fn setup_output_is_shown_and_a_failing_command_names_its_exit_status() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let host = SshHost::start("dgx", Gpus::A100x8, &key);
    let setup =
        "    setup = [\"echo preparing the drivers\", \"echo no space left >&2; exit 3\"]\n";
    let hcl = format!(
        "{}{}",
        provider(&[&host], &key, setup),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    );
    let w = workdir(&hcl);
    let apply = w.flotilla(&["apply", "-y"]);
    let said = text(&apply);
    assert!(!apply.status.success(), "{said}");
    assert!(
        said.contains("host `dgx` setup: preparing the drivers"),
        "{said}"
    );
    assert!(said.contains("exited with status 3"), "{said}");
    assert!(said.contains("no space left"), "{said}");
    assert!(host.claim().is_none(), "a failed setup releases the claim");
    assert!(w.resource("fleet.train[0]").is_none());
}

#[test]
fn a_host_behind_a_proxy_jump_is_reached_through_it() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let bastion = SshHost::start("bastion", Gpus::None, &key);
    let host = SshHost::start("dgx", Gpus::H100x8, &key);
    let jump = format!("    proxy_jump = \"root@127.0.0.1:{}\"\n", bastion.port);
    let hcl = format!(
        "{}{}",
        provider(&[&host], &key, &jump),
        fleet("train", 1, "\"baremetal\"", "H100:8")
    );
    let w = workdir(&hcl);
    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(
        claim_of(&host),
        Some((w.lineage.clone(), "fleet.train[0]".to_string()))
    );
    assert!(bastion.claim().is_none(), "the bastion only forwards");
    let log = std::fs::read_to_string(bastion.dir().join("sshd.log")).unwrap_or_default();
    assert!(
        log.contains("Accepted publickey"),
        "the bastion saw the logins: {log}"
    );
}

#[test]
fn offers_lists_the_declared_hosts_on_their_probed_facts() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let h100 = SshHost::start("h100", Gpus::H100x8, &key);
    let cpu = SshHost::start("cpu", Gpus::None, &key);
    let w = workdir(&provider(&[&h100, &cpu], &key, ""));
    let out = offers(&w, "H100:8");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let first = host_row(&said);
    assert!(
        first.contains("h100") && first.contains("8x H100 80GB"),
        "{said}"
    );
    assert!(
        !said.contains("cpu "),
        "a host without GPUs does not match: {said}"
    );
    assert!(said.contains("p5.48xlarge"), "{said}");
}

/// Two hosts logging in with one new client key (the key's directory must outlive them).
fn two_hosts(a: (&str, Gpus), b: (&str, Gpus)) -> (tempfile::TempDir, SshHost, SshHost, ClientKey) {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let first = SshHost::start(a.0, a.1, &key);
    let second = SshHost::start(b.0, b.1, &key);
    (keys, first, second, key)
}

/// A workdir whose one-node `train` fleet of A100s may run on `hosts`.
fn a100_workdir(hosts: &[&SshHost], key: &ClientKey) -> Workdir {
    workdir(&format!(
        "{}{}",
        provider(hosts, key, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8")
    ))
}

/// The first bare-metal row of an offers table.
fn host_row(said: &str) -> &str {
    said.lines()
        .find(|l| l.starts_with("baremetal"))
        .unwrap_or_default()
}

/// What `flotilla offers` says here, through the real binary.
fn offers(w: &Workdir, gpu: &str) -> std::process::Output {
    std::process::Command::new(flotilla_tests::bin::flotilla())
        .args(["offers", "--gpu", gpu, "--catalog", "catalog.csv"])
        .current_dir(w.path())
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

#[test]
fn a_host_without_a_node_keeps_its_recorded_key_and_a_changed_one_is_refused() {
    let (_keys, used, mut spare, key) = two_hosts(("used", Gpus::A100x8), ("spare", Gpus::H100x8));
    let w = a100_workdir(&[&used, &spare], &key);
    let old = spare.fingerprint();

    let plan = w.flotilla(&["plan"]);
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        shown.contains(&format!("new host key for spare: {old}")),
        "the plan itself names the new key: {shown}"
    );

    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    assert_eq!(claim_of(&spare), None, "the spare host holds no node");
    let state = w.state();
    assert_eq!(state["hosts"]["spare"]["host_key"], old.as_str(), "{state}");
    assert_eq!(
        state["hosts"]["spare"]["facts"]["gpu_name"], "H100",
        "{state}"
    );
    assert_eq!(
        state["hosts"]["used"]["host_key"],
        used.fingerprint().as_str()
    );

    // The next run trusts the recorded key: nothing is new, nothing changes.
    let again = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(again.status.code(), Some(0), "{}", text(&again));
    assert!(
        !text(&again).contains("new host key"),
        "the key was recorded: {}",
        text(&again)
    );

    spare.new_host_key();
    let new = spare.fingerprint();
    assert_ne!(old, new);
    let plan = w.flotilla(&["plan"]);
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        shown.contains("spare refused: host `spare`: the host key changed"),
        "{shown}"
    );
    assert!(shown.contains(&old) && shown.contains(&new), "{shown}");

    // A fleet that needs the spare host cannot have it.
    w.write_fleet(&format!(
        "{}{}{}",
        provider(&[&used, &spare], &key, ""),
        fleet("train", 1, "\"baremetal\"", "A100:8"),
        fleet("infer", 1, "\"baremetal\"", "H100:8")
    ));
    let apply = w.flotilla(&["apply", "-y"]);
    let said = text(&apply);
    assert!(!apply.status.success(), "{said}");
    assert!(said.contains("the host key changed"), "{said}");
    assert_eq!(claim_of(&spare), None, "nothing was done on the host");
    assert_eq!(
        w.state()["hosts"]["spare"]["host_key"],
        old.as_str(),
        "the recorded key is never replaced"
    );
}

#[test]
fn the_plan_names_new_keys_and_unreachable_hosts() {
    let (_keys, up, mut down, key) = two_hosts(("up", Gpus::A100x8), ("down", Gpus::A100x8));
    let w = a100_workdir(&[&up, &down], &key);
    down.stop();

    let plan = w.flotilla(&["plan"]);
    let shown = String::from_utf8_lossy(&plan.stdout).to_string();
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(shown.contains("Bare-metal hosts:"), "{shown}");
    assert!(
        shown.contains(&format!("new host key for up: {}", up.fingerprint())),
        "{shown}"
    );
    assert!(shown.contains("down unreachable: "), "{shown}");
    assert!(shown.contains(", not offered"), "{shown}");

    let plan = w.flotilla(&["plan", "--format", "json"]);
    let json: serde_json::Value =
        serde_json::from_slice(&plan.stdout).unwrap_or_else(|_| panic!("{}", text(&plan)));
    let kinds: Vec<(String, String)> = json["hosts"]
        .as_array()
        .unwrap_or_else(|| panic!("{json}"))
        .iter()
        .map(|n| {
            (
                n["host"].as_str().unwrap_or_default().to_string(),
                n["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            ("up".to_string(), "new_key".to_string()),
            ("down".to_string(), "unreachable".to_string())
        ]
    );
}

#[test]
fn offers_shows_cached_facts_for_a_host_it_cannot_reach() {
    let (_keys, a100, mut h100, key) = two_hosts(("a100", Gpus::A100x8), ("h100", Gpus::H100x8));
    let w = a100_workdir(&[&a100, &h100], &key);
    // Before any apply nothing is cached: a stopped host is simply not offered.
    h100.stop();
    let out = offers(&w, "H100:8");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("no facts of it are cached"), "{said}");
    assert!(!said.lines().any(|l| l.starts_with("baremetal")), "{said}");

    h100.start_again();
    let apply = w.flotilla(&["apply", "-y"]);
    assert!(apply.status.success(), "{}", text(&apply));
    let at = w.state()["hosts"]["h100"]["probed_at"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!at.is_empty(), "{}", w.state());

    h100.stop();
    let out = offers(&w, "H100:8");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    let row = host_row(&said);
    assert!(
        row.contains("h100") && row.contains("8x H100 80GB"),
        "the stopped host is shown on its cached facts: {said}"
    );
    assert!(said.contains(&format!("cached in state at {at}")), "{said}");
}

#[test]
fn a_saved_plan_trusts_only_the_host_key_it_showed() {
    let keys = tempfile::tempdir().unwrap();
    let key = ClientKey::new(keys.path(), "id");
    let mut host = SshHost::start("dgx", Gpus::A100x8, &key);
    let w = a100_workdir(&[&host], &key);
    let plan_file = w.path().join("plan.json");
    let plan_path = plan_file.to_str().unwrap();
    let shown = host.fingerprint();

    let plan = w.flotilla(&["plan", "--out", plan_path]);
    assert!(plan.status.success(), "{}", text(&plan));
    assert!(
        String::from_utf8_lossy(&plan.stdout).contains(&format!("new host key for dgx: {shown}")),
        "{}",
        text(&plan)
    );

    // Between the review and the apply, another machine answers at the address.
    host.new_host_key();
    let apply = w.flotilla(&["apply", "-y", plan_path]);
    let said = text(&apply);
    assert!(!apply.status.success(), "{said}");
    assert!(said.contains("the host key changed"), "{said}");
    assert!(
        said.contains(&shown) && said.contains(&host.fingerprint()),
        "{said}"
    );
    assert_eq!(host.claim(), None, "nothing was done on the host");
    assert!(w.resource("fleet.train[0]").is_none());
}
