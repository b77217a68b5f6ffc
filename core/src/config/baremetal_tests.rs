//! The bare-metal parts of the fleet language: connection attributes, defaults on the provider
//! block, labels and setup, probed facts in a host's offer, and the rule that gateways cannot
//! target fleets that may run on hosts.

use crate::config::{Config, Diagnostic, HostAvailability, HostFacts, HostProbe, load_sources};
use crate::spec::{GpuVendor, Memory};

fn load(text: &str) -> Result<Config, Vec<Diagnostic>> {
    load_sources(&[("main.hcl".to_string(), text.to_string())], &[], &[]).map_err(|d| d.0)
}

const HOSTS: &str = r#"
provider "baremetal" {
  user          = "ubuntu"
  identity_file = "~/.ssh/fleet"
  proxy_jump    = "bastion.example.com:2222"
  setup         = ["nvidia-smi -pm 1"]
  labels        = { rack = "a" }
  host "dgx-1" {
    address = "10.0.0.11"
  }
  host "dgx-2" {
    address    = "10.0.0.12"
    port       = 2200
    user       = "root"
    proxy_jump = "ops@jump"
    setup      = ["apt-get install -y nccl", "systemctl restart dcgm"]
    labels     = { rack = "b", row = "3" }
  }
}
"#;

#[test]
fn hosts_take_the_provider_blocks_defaults_and_override_them() {
    let c = load(HOSTS).expect("valid");
    let hosts = &c.providers.baremetal.as_ref().expect("baremetal").hosts;
    let (a, b) = (&hosts[0], &hosts[1]);
    assert_eq!(a.port, 22);
    assert_eq!(a.user.as_deref(), Some("ubuntu"));
    assert_eq!(a.identity_file.as_deref(), Some("~/.ssh/fleet"));
    assert_eq!(a.proxy_jump.as_deref(), Some("bastion.example.com:2222"));
    assert_eq!(a.setup, vec!["nvidia-smi -pm 1".to_string()]);
    assert_eq!(a.labels.get("rack").map(String::as_str), Some("a"));
    assert_eq!(b.port, 2200);
    assert_eq!(b.user.as_deref(), Some("root"));
    assert_eq!(b.identity_file.as_deref(), Some("~/.ssh/fleet"));
    assert_eq!(b.proxy_jump.as_deref(), Some("ops@jump"));
    assert_eq!(b.setup.len(), 2);
    assert_eq!(b.labels.get("rack").map(String::as_str), Some("b"));
    assert_eq!(b.labels.get("row").map(String::as_str), Some("3"));
}

#[test]
fn a_bad_setup_is_an_error_at_its_value() {
    let d = load("provider \"baremetal\" {\n  host \"a\" {\n    address = \"x\"\n    setup = \"echo\"\n  }\n}\n")
        .expect_err("setup must be a list");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "`setup` in host `a` must be a list of strings"
    );
    assert_eq!((d[0].line, d[0].column), (4, 13));
}

#[test]
fn probed_facts_and_availability_shape_the_host_offers() {
    let mut c = load(HOSTS).expect("valid");
    let hosts = &mut c.providers.baremetal.as_mut().expect("baremetal").hosts;
    hosts[0].probe = HostProbe {
        availability: HostAvailability::Available,
        facts: Some(HostFacts {
            vcpus: 128,
            memory: Memory::from_gib(2048),
            gpu_vendor: Some(GpuVendor::Nvidia),
            gpu_name: "H100".to_string(),
            gpu_count: 8,
            gpu_memory: Memory::from_gib(80),
            ..HostFacts::default()
        }),
    };
    hosts[1].probe = HostProbe {
        availability: HostAvailability::ClaimedBy {
            lineage: "other".to_string(),
            address: "fleet.x[0]".to_string(),
        },
        facts: None,
    };
    let digest_before = load(HOSTS).expect("valid").digest();
    assert_eq!(c.digest(), digest_before, "probes are not configuration");
    let offers = c.host_offers();
    assert_eq!(
        offers.len(),
        1,
        "a host claimed by another state is no offer"
    );
    assert_eq!(offers[0].instance_type, "dgx-1");
    assert_eq!(offers[0].gpu_label(), "8x H100 80GB");
    assert_eq!(offers[0].vcpus, 128);
}

#[test]
fn a_gateway_cannot_target_a_fleet_that_may_run_on_hosts() {
    let text = r#"provider "aws" {}
provider "baremetal" {
  host "dgx" { address = "10.0.0.1" }
}
fleet "serve" {
  providers = ["baremetal", "aws"]
  resources { gpu = "A100:8" }
}
fleet "cloud" {
  providers = ["aws"]
  resources { gpu = "A100:8" }
}
gateway "api" {
  targets = [fleet.cloud, fleet.serve]
}
"#;
    let d = load(text).expect_err("gateway on bare metal");
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].message,
        "gateway `api` targets fleet `serve`, which may run on `baremetal` hosts"
    );
    assert_eq!((d[0].line, d[0].column), (14, 13));
    assert!(
        d[0].help
            .as_deref()
            .unwrap_or_default()
            .contains("providers = [\"aws\"]")
    );
    let cloud_only = text.replace(
        "targets = [fleet.cloud, fleet.serve]",
        "targets = [fleet.cloud]",
    );
    assert!(load(&cloud_only).is_ok());
}
