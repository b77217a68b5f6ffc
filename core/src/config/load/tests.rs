//! The fleet language: every error case with its message and position, evaluation, variables,
//! locals, references and outputs. Sources are in memory (`load_sources`) except where files
//! are the point (directories, variable files).

use crate::catalog::{ProviderKind, SpotPolicy};
use crate::config::{
    Config, Diagnostic, LoadOptions, OutputValue, Placement, VarArg, load, load_sources,
};
use crate::spec::{GpuVendor, Memory, Range, Resources};
use serde_json::json;
use std::path::PathBuf;

fn sources(files: &[(&str, &str)]) -> Vec<(String, String)> {
    files
        .iter()
        .map(|(n, t)| ((*n).to_string(), (*t).to_string()))
        .collect()
}

fn ok_with(files: &[(&str, &str)], var_args: &[VarArg], env: &[(&str, &str)]) -> Config {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    match load_sources(&sources(files), var_args, &env) {
        Ok(c) => c,
        Err(d) => panic!("unexpected diagnostics:\n{d}"),
    }
}

fn ok(text: &str) -> Config {
    ok_with(&[("main.hcl", text)], &[], &[])
}

fn errors_with(
    files: &[(&str, &str)],
    var_args: &[VarArg],
    env: &[(&str, &str)],
) -> Vec<Diagnostic> {
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
        .collect();
    match load_sources(&sources(files), var_args, &env) {
        Ok(_) => panic!("expected diagnostics, got a valid config"),
        Err(d) => d.0,
    }
}

fn errors(text: &str) -> Vec<Diagnostic> {
    errors_with(&[("main.hcl", text)], &[], &[])
}

/// The only diagnostic of `text`.
fn error(text: &str) -> Diagnostic {
    let mut all = errors(text);
    assert_eq!(
        all.len(),
        1,
        "expected one diagnostic, got:\n{}",
        all.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n")
    );
    all.remove(0)
}

fn at(d: &Diagnostic) -> String {
    format!("{}:{}:{}", d.file, d.line, d.column)
}

/// The text the diagnostic's span covers.
fn spanned(d: &Diagnostic) -> &str {
    d.source_text.get(d.span.clone()).unwrap_or("<bad span>")
}

fn var(name: &str, value: &str) -> VarArg {
    VarArg::Var(name.to_string(), value.to_string())
}

/// A fresh temporary directory, for variable files and `load`; removed when dropped.
struct TempDir(PathBuf);

impl std::ops::Deref for TempDir {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs_err::remove_dir_all(&self.0);
    }
}

fn temp_dir(tag: &str) -> TempDir {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir =
        std::env::temp_dir().join(format!("flotilla-config-{}-{tag}-{n}", std::process::id()));
    let _ = fs_err::remove_dir_all(&dir);
    fs_err::create_dir_all(&dir).expect("create temp dir");
    TempDir(dir)
}

const DESIGN: &str = r#"state { url = "s3://acme-infra/gpu/prod.json" }

variable "max_price" { default = 60 }

provider "aws" { regions = ["us-east-1", "us-west-2"] }
provider "gcp" { project = "acme-ml" }
provider "azure" {
  subscription_id = "00000000-0000-0000-0000-000000000000"
  resource_group  = "gpu"
}
provider "baremetal" {
  host "dgx-1" {
    address       = "10.0.0.11"
    user          = "ubuntu"
    identity_file = "~/.ssh/id_ed25519"
  }
  host "dgx-2" {
    address = "10.0.0.12"
    price   = 12.5
  }
}

volume "ckpt" {
  provider = "aws"
  region   = "us-east-1"
  size     = "2TB"
}

fleet "train" {
  nodes       = 4
  placement   = "cluster"
  spot_policy = "on-demand"
  max_price   = var.max_price
  providers   = ["aws", "gcp", "azure"]
  regions     = ["us-east-1", "us-central1"]
  resources {
    gpu    = "H100:8"
    memory = "1TB.."
    disk   = "500GB.."
  }
  volumes = [volume.ckpt]
  tags    = { team = "llm" }
}

fleet "onprem" {
  providers = ["baremetal", "aws"]
  nodes     = 3
  resources { gpu = "A100:8" }
}

gateway "serve" {
  domain  = "llm.acme.com"
  targets = [fleet.train]
}

output "train_ips" { value = fleet.train.private_ips }
"#;

// ---------------------------------------------------------------------------------------------
// The design's example, in full.

#[test]
fn design_example_loads() {
    let c = ok(DESIGN);
    assert_eq!(
        c.state_url.as_deref(),
        Some("s3://acme-infra/gpu/prod.json")
    );
    assert_eq!(c.variables["max_price"], json!(60));
    assert_eq!(c.providers.configured(), ProviderKind::ALL.to_vec());
    assert_eq!(
        c.providers.aws.as_ref().map(|a| a.regions.clone()),
        Some(vec!["us-east-1".to_string(), "us-west-2".to_string()])
    );
    assert_eq!(
        c.providers.gcp.as_ref().map(|g| g.project.as_str()),
        Some("acme-ml")
    );
    assert_eq!(
        c.providers
            .azure
            .as_ref()
            .map(|a| a.resource_group.as_str()),
        Some("gpu")
    );
    let hosts = &c.providers.baremetal.as_ref().expect("baremetal").hosts;
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0].name, "dgx-1");
    assert_eq!(hosts[0].port, 22);
    assert_eq!(hosts[0].user.as_deref(), Some("ubuntu"));
    assert_eq!(hosts[0].price, 0.0);
    assert_eq!(hosts[1].price, 12.5);
    assert_eq!(hosts[1].gpu_vendor, None);

    let v = &c.volumes["ckpt"];
    assert_eq!(v.provider, Some(ProviderKind::Aws));
    assert_eq!(v.region.as_deref(), Some("us-east-1"));
    assert_eq!(v.size, Memory::from_gib(2048));
    assert!(!v.prevent_destroy);
    assert_eq!(
        (v.origin.file.as_str(), v.origin.line, v.origin.column),
        ("main.hcl", 23, 1)
    );

    let f = &c.fleets["train"];
    assert_eq!(f.nodes, 4);
    assert_eq!(f.placement, Placement::Cluster);
    assert_eq!(f.spot_policy, SpotPolicy::OnDemand);
    assert_eq!(f.max_price, Some(60.0));
    assert_eq!(
        f.providers,
        vec![ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Azure]
    );
    assert_eq!(f.regions, vec!["us-east-1", "us-central1"]);
    assert_eq!(f.volumes, vec!["ckpt"]);
    assert_eq!(f.tags.get("team").map(String::as_str), Some("llm"));
    let gpu = f.resources.gpu.as_ref().expect("gpu");
    assert_eq!(gpu.names, vec!["H100"]);
    assert_eq!(gpu.count, Range::exactly(8));
    assert_eq!(f.resources.memory, Range::at_least(Memory::from_gib(1024)));
    assert_eq!(f.resources.disk, Range::at_least(Memory::from_gib(500)));
    assert_eq!(f.resources.cpu, Resources::default().cpu);
    assert_eq!((f.origin.line, f.origin.column), (29, 1));

    let onprem = &c.fleets["onprem"];
    assert_eq!(
        onprem.providers,
        vec![ProviderKind::Baremetal, ProviderKind::Aws]
    );
    assert_eq!(onprem.placement, Placement::Any);
    assert_eq!(onprem.max_price, None);

    let g = &c.gateways["serve"];
    assert_eq!(g.targets, vec!["train"]);
    assert_eq!(g.port, 80);
    assert_eq!(g.domain.as_deref(), Some("llm.acme.com"));
    assert_eq!(
        c.outputs["train_ips"].value,
        OutputValue::Ref {
            address: "fleet.train".to_string(),
            attribute: "private_ips".to_string()
        }
    );
}

#[test]
fn defaults_apply() {
    let c = ok(r#"fleet "a" {}"#);
    let f = &c.fleets["a"];
    assert_eq!(f.nodes, 1);
    assert_eq!(f.placement, Placement::Any);
    assert_eq!(f.spot_policy, SpotPolicy::OnDemand);
    assert_eq!(f.resources, Resources::default());
    // No provider block at all: the clouds, from the catalog.
    assert_eq!(
        f.providers,
        vec![ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Azure]
    );
    assert_eq!(c.state_url, None);
}

#[test]
fn fleet_providers_default_to_the_configured_ones() {
    let c = ok("provider \"gcp\" { project = \"p\" }\nprovider \"aws\" {}\nfleet \"a\" {}\n");
    assert_eq!(
        c.fleets["a"].providers,
        vec![ProviderKind::Aws, ProviderKind::Gcp]
    );
}

#[test]
fn host_hardware_is_exact() {
    let c = ok(r#"provider "baremetal" {
  host "dgx" {
    address = "10.0.0.1"
    port    = 2222
    gpu     = "A100:80GB:8"
    cpu     = 128
    memory  = "2TB"
  }
  host "amd" {
    address = "10.0.0.2"
    gpu     = "amd:MI300X:192GB:8"
  }
}
"#);
    let hosts = &c.providers.baremetal.as_ref().expect("baremetal").hosts;
    let h = &hosts[0];
    assert_eq!((h.port, h.vcpus), (2222, 128));
    assert_eq!(h.gpu_vendor, Some(GpuVendor::Nvidia));
    assert_eq!((h.gpu_name.as_str(), h.gpu_count), ("A100", 8));
    assert_eq!(h.gpu_memory, Memory::from_gib(80));
    assert_eq!(h.memory, Memory::from_gib(2048));
    assert_eq!(hosts[1].gpu_vendor, Some(GpuVendor::Amd));
    assert_eq!(hosts[1].gpu_memory, Memory::from_gib(192));
}

#[test]
fn resources_take_numbers_for_cpu() {
    let c = ok(
        "fleet \"a\" {\n  resources {\n    cpu = 16\n    memory = \"64GB..\"\n    gpu_total_memory = \"640GB..\"\n  }\n}\n",
    );
    let r = &c.fleets["a"].resources;
    assert_eq!(r.cpu, Range::exactly(16));
    assert_eq!(r.memory, Range::at_least(Memory::from_gib(64)));
    assert_eq!(
        r.gpu_total_memory,
        Some(Range::at_least(Memory::from_gib(640)))
    );
    assert_eq!(r.gpu, None);
}

#[test]
fn volume_and_gateway_fields() {
    let c = ok(r#"provider "aws" {}
volume "data" {
  size            = 500
  type            = "gp3"
  prevent_destroy = true
}
fleet "serve" { volumes = [volume.data] }
gateway "api" {
  targets  = [fleet.serve]
  port     = 8000
  provider = "aws"
  region   = "us-east-1"
}
"#);
    let v = &c.volumes["data"];
    assert_eq!(v.size, Memory::from_gib(500));
    assert_eq!(v.volume_type.as_deref(), Some("gp3"));
    assert!(v.prevent_destroy);
    assert_eq!(v.provider, None);
    let g = &c.gateways["api"];
    assert_eq!(
        (g.port, g.provider, g.region.as_deref()),
        (8000, Some(ProviderKind::Aws), Some("us-east-1"))
    );
}

// ---------------------------------------------------------------------------------------------
// Syntax and the top level.

#[test]
fn syntax_error_points_at_the_error() {
    let d = error("fleet \"a\" {\n  nodes = \n}\n");
    assert_eq!(d.message, "syntax error");
    // Column 11 is the end of `  nodes = `, where a value was expected.
    assert_eq!(at(&d), "main.hcl:2:11");
}

#[test]
fn syntax_errors_in_every_file_are_reported() {
    let all = errors_with(
        &[
            ("a.hcl", "fleet {"),
            ("b.hcl", "fleet \"x\" { nodes = 1 }\nvolume = = 2\n"),
        ],
        &[],
        &[],
    );
    let files: Vec<&str> = all.iter().map(|d| d.file.as_str()).collect();
    assert_eq!(files, vec!["a.hcl", "b.hcl"]);
}

#[test]
fn unknown_block_suggests_the_closest() {
    let d = error("flet \"a\" {}\n");
    assert_eq!(d.message, "unknown block `flet`");
    assert_eq!(at(&d), "main.hcl:1:1");
    assert_eq!(
        d.label,
        "expected one of `state`, `variable`, `locals`, `provider`, `volume`, `fleet`, `gateway`, `output`"
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `fleet`?"));
}

#[test]
fn top_level_attribute_is_an_error() {
    let d = error("nodes = 3\n");
    assert_eq!(d.message, "unexpected attribute `nodes` at the top level");
    assert_eq!(at(&d), "main.hcl:1:1");
    let d = error("fleet = {}\n");
    assert_eq!(
        d.help.as_deref(),
        Some("`fleet` is a block: write `fleet … { … }` without `=`")
    );
}

#[test]
fn block_needs_its_name() {
    let d = error("\nfleet {\n}\n");
    assert_eq!(d.message, "`fleet` block needs a name");
    assert_eq!(d.label, "expected `fleet \"NAME\" { … }`");
    assert_eq!(at(&d), "main.hcl:2:1");
}

#[test]
fn block_with_too_many_labels() {
    let d = error("fleet \"a\" \"b\" {}\n");
    assert_eq!(d.message, "`fleet` block takes one name, got 2");
    assert_eq!(at(&d), "main.hcl:1:11");
    let d = error("state \"x\" { url = \"a\" }\n");
    assert_eq!(d.message, "`state` block takes no name");
    assert_eq!(at(&d), "main.hcl:1:7");
}

#[test]
fn invalid_block_name() {
    let d = error("fleet \"my fleet\" {}\n");
    assert_eq!(d.message, "invalid fleet name `my fleet`");
    assert_eq!(at(&d), "main.hcl:1:7");
}

#[test]
fn duplicate_fleet_names_both_places() {
    let all = errors_with(
        &[
            ("a.hcl", "fleet \"train\" {}\n"),
            ("b.hcl", "\n\nfleet \"train\" {}\n"),
        ],
        &[],
        &[],
    );
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d.message, "duplicate fleet `train`");
    assert_eq!(at(d), "b.hcl:3:7");
    assert_eq!(d.label, "fleet `train` is already declared at a.hcl:1:7");
}

#[test]
fn duplicate_provider_variable_state() {
    let d = error("provider \"aws\" {}\nprovider \"aws\" {}\n");
    assert_eq!(
        (d.message.as_str(), at(&d).as_str()),
        ("duplicate provider `aws`", "main.hcl:2:10")
    );
    assert_eq!(
        d.label,
        "provider `aws` is already declared at main.hcl:1:10"
    );
    let d = error("variable \"x\" { default = 1 }\nvariable \"x\" { default = 2 }\n");
    assert_eq!(
        (d.message.as_str(), at(&d).as_str()),
        ("duplicate variable `x`", "main.hcl:2:10")
    );
    let d = error("state { url = \"a\" }\nstate { url = \"b\" }\n");
    assert_eq!(
        (d.message.as_str(), at(&d).as_str()),
        ("duplicate `state` block", "main.hcl:2:1")
    );
    assert_eq!(
        d.label,
        "a `state` block is already declared at main.hcl:1:1"
    );
}

#[test]
fn duplicate_host() {
    let d = error(
        "provider \"baremetal\" {\n  host \"a\" { address = \"x\" }\n  host \"a\" { address = \"y\" }\n}\n",
    );
    assert_eq!(d.message, "duplicate host `a`");
    assert_eq!(at(&d), "main.hcl:3:8");
    assert_eq!(d.label, "host `a` is already declared at main.hcl:2:8");
}

#[test]
fn duplicate_attribute() {
    let d = error("fleet \"a\" {\n  nodes = 1\n  nodes = 2\n}\n");
    assert_eq!(d.message, "attribute `nodes` is set twice");
    assert_eq!(at(&d), "main.hcl:3:3");
    assert_eq!(spanned(&d), "nodes");
    assert_eq!(d.help.as_deref(), Some("remove one of them"));
}

#[test]
fn duplicate_local() {
    let d = error("locals { a = 1 }\nlocals {\n  a = 2\n}\n");
    assert_eq!(d.message, "duplicate local `a`");
    assert_eq!(at(&d), "main.hcl:3:3");
    assert_eq!(d.label, "local `a` is already defined at main.hcl:1:10");
}

// ---------------------------------------------------------------------------------------------
// Attributes and blocks inside blocks.

#[test]
fn unknown_attribute_in_resources() {
    let d = error("fleet \"a\" {\n  resources {\n    gpus = \"H100:8\"\n  }\n}\n");
    assert_eq!(d.message, "unknown attribute `gpus` in `resources`");
    assert_eq!(at(&d), "main.hcl:3:5");
    assert_eq!(spanned(&d), "gpus");
    assert_eq!(
        d.label,
        "expected one of `cpu`, `memory`, `disk`, `gpu`, `gpu_total_memory`"
    );
    assert_eq!(d.help.as_deref(), Some("did you mean `gpu`?"));
}

#[test]
fn unknown_attribute_in_fleet() {
    let d = error("fleet \"a\" {\n  node = 3\n}\n");
    assert_eq!(d.message, "unknown attribute `node` in fleet `a`");
    assert_eq!(at(&d), "main.hcl:2:3");
    assert_eq!(d.help.as_deref(), Some("did you mean `nodes`?"));
    let d = error("fleet \"a\" {\n  colour = 3\n}\n");
    assert_eq!(d.help, None);
}

#[test]
fn unknown_attribute_in_providers_hosts_volumes_gateways_outputs() {
    for (text, message, position) in [
        (
            "provider \"aws\" { region = \"x\" }",
            "unknown attribute `region` in provider `aws`",
            "1:18",
        ),
        (
            "provider \"baremetal\" {\n  host \"h\" {\n    adress = \"x\"\n  }\n}",
            "unknown attribute `adress` in host `h`",
            "3:5",
        ),
        (
            "volume \"v\" {\n  sise = 1\n}",
            "unknown attribute `sise` in volume `v`",
            "2:3",
        ),
        (
            "fleet \"f\" {}\ngateway \"g\" {\n  targets = [fleet.f]\n  domian = \"x\"\n}",
            "unknown attribute `domian` in gateway `g`",
            "4:3",
        ),
        (
            "output \"o\" {\n  valeu = 1\n}",
            "unknown attribute `valeu` in output `o`",
            "2:3",
        ),
        (
            "variable \"v\" {\n  defualt = 1\n}",
            "unknown attribute `defualt` in variable `v`",
            "2:3",
        ),
        (
            "state {\n  uri = \"x\"\n}",
            "unknown attribute `uri` in `state`",
            "2:3",
        ),
    ] {
        let all = errors(text);
        let d = all
            .iter()
            .find(|d| d.message == message)
            .unwrap_or_else(|| panic!("no `{message}` in {all:?}"));
        assert_eq!(format!("{}:{}", d.line, d.column), position, "{message}");
        assert!(
            d.help
                .as_deref()
                .is_some_and(|h| h.starts_with("did you mean")),
            "{message}: {:?}",
            d.help
        );
    }
}

#[test]
fn block_written_as_attribute_and_back() {
    let d = error("fleet \"a\" {\n  resources = { gpu = \"H100\" }\n}\n");
    assert_eq!(
        d.message,
        "`resources` in fleet `a` is a block, not an attribute"
    );
    assert_eq!(at(&d), "main.hcl:2:3");
    let d = error("fleet \"a\" {\n  tags {\n    team = \"x\"\n  }\n}\n");
    assert_eq!(
        d.message,
        "`tags` in fleet `a` is an attribute, not a block"
    );
    assert_eq!(at(&d), "main.hcl:2:3");
}

#[test]
fn unknown_nested_block() {
    let d = error("fleet \"a\" {\n  resource {}\n}\n");
    assert_eq!(d.message, "unknown block `resource` in fleet `a`");
    assert_eq!(d.label, "expected `resources`");
    assert_eq!(d.help.as_deref(), Some("did you mean `resources`?"));
    assert_eq!(at(&d), "main.hcl:2:3");
}

#[test]
fn two_resources_blocks() {
    let d = error("fleet \"a\" {\n  resources {}\n  resources {}\n}\n");
    assert_eq!(d.message, "`resources` is set twice in fleet `a`");
    assert_eq!(at(&d), "main.hcl:3:3");
}

#[test]
fn unknown_provider() {
    let d = error("provider \"awss\" {}\n");
    assert_eq!(d.message, "unknown provider `awss`");
    assert_eq!(at(&d), "main.hcl:1:10");
    assert_eq!(d.help.as_deref(), Some("did you mean `aws`?"));
}

#[test]
fn missing_required_attributes() {
    for (text, message, position) in [
        (
            "provider \"gcp\" {}",
            "missing required attribute `project` in provider `gcp`",
            "1:1",
        ),
        (
            "provider \"azure\" { subscription_id = \"s\" }",
            "missing required attribute `resource_group` in provider `azure`",
            "1:1",
        ),
        (
            "provider \"azure\" { resource_group = \"g\" }",
            "missing required attribute `subscription_id` in provider `azure`",
            "1:1",
        ),
        (
            "provider \"baremetal\" {\n  host \"h\" { user = \"u\" }\n}",
            "missing required attribute `address` in host `h`",
            "2:3",
        ),
        (
            "\nvolume \"v\" {}",
            "missing required attribute `size` in volume `v`",
            "2:1",
        ),
        (
            "gateway \"g\" {}",
            "missing required attribute `targets` in gateway `g`",
            "1:1",
        ),
        (
            "output \"o\" {}",
            "missing required attribute `value` in output `o`",
            "1:1",
        ),
        (
            "state {}",
            "missing required attribute `url` in `state`",
            "1:1",
        ),
    ] {
        let d = error(text);
        assert_eq!(d.message, message);
        assert_eq!(format!("{}:{}", d.line, d.column), position, "{message}");
        assert!(
            d.help.as_deref().is_some_and(|h| h.starts_with("add `")),
            "{message}: {:?}",
            d.help
        );
    }
    let d = error("provider \"gcp\" {}");
    assert_eq!(spanned(&d), "provider \"gcp\"");
    assert_eq!(d.help.as_deref(), Some("add `project = \"my-project\"`"));
}

#[test]
fn azure_admin_user_and_ssh_key() {
    let c = ok("provider \"azure\" {\n  subscription_id = \"s\"\n  resource_group = \"g\"\n}\n");
    let azure = c.providers.azure.expect("azure");
    assert_eq!(azure.admin_user(), "azureuser");
    assert_eq!(azure.ssh_public_key, None);
    let c = ok(concat!(
        "provider \"azure\" {\n  subscription_id = \"s\"\n  resource_group = \"g\"\n",
        "  admin_user = \"ml_ops\"\n  ssh_public_key = \"~/.ssh/k.pub\"\n}\n"
    ));
    let azure = c.providers.azure.expect("azure");
    assert_eq!(azure.admin_user(), "ml_ops");
    assert_eq!(azure.ssh_public_key.as_deref(), Some("~/.ssh/k.pub"));
    for bad in ["root", "Admin", "9lives", ""] {
        let d = error(&format!(
            "provider \"azure\" {{\n  subscription_id = \"s\"\n  resource_group = \"g\"\n  admin_user = \"{bad}\"\n}}\n"
        ));
        assert!(d.message.contains("admin_user"), "{bad}: {}", d.message);
        assert_eq!(at(&d), "main.hcl:4:16", "{bad}");
    }
}

#[test]
fn baremetal_without_hosts() {
    let d = error("provider \"baremetal\" {}\n");
    assert_eq!(d.message, "provider `baremetal` declares no hosts");
    assert_eq!(at(&d), "main.hcl:1:1");
}

// ---------------------------------------------------------------------------------------------
// Values of the wrong type or out of range.

#[test]
fn nodes_must_be_a_whole_number() {
    for value in ["\"four\"", "-1", "2.5", "true"] {
        let d = error(&format!("fleet \"a\" {{\n  nodes = {value}\n}}\n"));
        assert_eq!(
            d.message, "`nodes` in fleet `a` must be a whole number of at least 0",
            "{value}"
        );
        assert_eq!(at(&d), "main.hcl:2:11");
        assert_eq!(spanned(&d), value);
    }
    let d = error("fleet \"a\" { nodes = \"four\" }");
    assert_eq!(
        d.label,
        "expected a whole number of at least 0, got string \"four\""
    );
}

#[test]
fn placement_and_spot_policy_are_choices() {
    let d = error("fleet \"a\" {\n  placement = \"clusterr\"\n}\n");
    assert_eq!(d.message, "invalid `placement` in fleet `a`: `clusterr`");
    assert_eq!(d.label, "expected one of `any`, `cluster`");
    assert_eq!(d.help.as_deref(), Some("did you mean `cluster`?"));
    assert_eq!(at(&d), "main.hcl:2:15");
    let d = error("fleet \"a\" {\n  spot_policy = \"ondemand\"\n}\n");
    assert_eq!(d.message, "invalid `spot_policy` in fleet `a`: `ondemand`");
    assert_eq!(d.help.as_deref(), Some("did you mean `on-demand`?"));
    assert_eq!(at(&d), "main.hcl:2:17");
}

#[test]
fn max_price_must_be_positive() {
    let d = error("fleet \"a\" {\n  max_price = 0\n}\n");
    assert_eq!(
        d.message,
        "`max_price` in fleet `a` must be a price in USD per node-hour, more than 0"
    );
    assert_eq!(at(&d), "main.hcl:2:15");
    let d = error("fleet \"a\" {\n  max_price = \"cheap\"\n}\n");
    assert_eq!(d.message, "`max_price` in fleet `a` must be a number");
}

#[test]
fn wrong_types_elsewhere() {
    for (text, message, position) in [
        (
            "fleet \"a\" { tags = [\"x\"] }",
            "`tags` in fleet `a` must be a map of strings, such as `{ team = \"llm\" }`",
            "1:20",
        ),
        (
            "fleet \"a\" { regions = \"us-east-1\" }",
            "`regions` in fleet `a` must be a list of strings",
            "1:23",
        ),
        (
            "provider \"aws\" { profile = 3 }",
            "`profile` in provider `aws` must be a string",
            "1:28",
        ),
        (
            "volume \"v\" {\n  size = \"1TB\"\n  prevent_destroy = \"yes\"\n}",
            "`prevent_destroy` in volume `v` must be `true` or `false`",
            "3:21",
        ),
        (
            "fleet \"f\" {}\ngateway \"g\" {\n  targets = [fleet.f]\n  port = 70000\n}",
            "`port` in gateway `g` must be a whole number from 1 to 65535",
            "4:10",
        ),
        (
            "provider \"baremetal\" {\n  host \"h\" {\n    address = \"a\"\n    price = -1\n  }\n}",
            "`price` in host `h` must be a price of at least 0",
            "4:13",
        ),
    ] {
        let d = error(text);
        assert_eq!(d.message, message);
        assert_eq!(format!("{}:{}", d.line, d.column), position, "{message}");
    }
}

#[test]
fn volume_size_must_be_positive() {
    let d = error("volume \"v\" { size = \"0GB\" }");
    assert_eq!(d.message, "`size` in volume `v` must be more than 0");
    assert_eq!(at(&d), "main.hcl:1:21");
}

#[test]
fn fleet_providers_must_be_known_and_configured() {
    let d = error("provider \"aws\" {}\nfleet \"a\" {\n  providers = [\"aws\", \"gcpp\"]\n}\n");
    assert_eq!(d.message, "unknown provider `gcpp`");
    assert_eq!(at(&d), "main.hcl:3:23");
    assert_eq!(d.help.as_deref(), Some("did you mean `gcp`?"));

    let d = error("provider \"aws\" {}\nfleet \"a\" {\n  providers = [\"aws\", \"gcp\"]\n}\n");
    assert_eq!(d.message, "provider `gcp` is not configured");
    assert_eq!(at(&d), "main.hcl:3:23");
    assert_eq!(d.help.as_deref(), Some("add a provider \"gcp\" block"));

    // Without provider blocks the clouds are implied, but bare metal needs its hosts.
    let c = ok("fleet \"a\" { providers = [\"gcp\"] }");
    assert_eq!(c.fleets["a"].providers, vec![ProviderKind::Gcp]);
    let d = error("fleet \"a\" { providers = [\"baremetal\"] }");
    assert_eq!(d.message, "provider `baremetal` is not configured");
    assert_eq!(
        d.help.as_deref(),
        Some("add a provider \"baremetal\" block")
    );

    let d = error("fleet \"a\" { providers = [] }");
    assert_eq!(
        d.message,
        "`providers` in fleet `a` must list at least one provider"
    );
    let d = error("fleet \"a\" { providers = [\"aws\", \"aws\"] }");
    assert_eq!(d.message, "provider `aws` is listed twice in fleet `a`");
    assert_eq!(at(&d), "main.hcl:1:33");
}

#[test]
fn volume_and_gateway_providers() {
    let d = error("provider \"aws\" {}\nvolume \"v\" {\n  provider = \"gcp\"\n  size = 1\n}\n");
    assert_eq!(d.message, "provider `gcp` is not configured");
    assert_eq!(at(&d), "main.hcl:3:14");
    let d = error(
        "provider \"baremetal\" {\n  host \"h\" { address = \"a\" }\n}\nvolume \"v\" {\n  provider = \"baremetal\"\n  size = 1\n}\n",
    );
    assert_eq!(d.message, "volume `v` cannot be on `baremetal`");
    assert_eq!(at(&d), "main.hcl:5:14");
}

// ---------------------------------------------------------------------------------------------
// The resource grammar, pointed at inside the string.

#[test]
fn bad_gpu_spec_points_inside_the_string() {
    let d = error("fleet \"a\" {\n  resources {\n    gpu = \"H100:A100\"\n  }\n}\n");
    assert_eq!(
        d.message,
        "invalid `gpu` in `resources`: `A100`: GPU names given twice"
    );
    // `"H100:A100"` starts at column 11; `A100` is 5 bytes into the string.
    assert_eq!(at(&d), "main.hcl:3:17");
    assert_eq!(spanned(&d), "A100");
    assert_eq!(
        d.label,
        "expected a GPU spec such as `H100:8`, `A100,H100:80GB:1..8` or `nvidia:24GB..`"
    );
    assert_eq!(
        d.help.as_deref(),
        Some("list alternatives with a comma: `H100,A100`")
    );
}

#[test]
fn bad_memory_unit_points_at_the_unit() {
    let d = error("fleet \"a\" {\n  resources {\n    memory = \"64GiB..\"\n  }\n}\n");
    assert_eq!(
        d.message,
        "invalid `memory` in `resources`: unknown memory unit `GiB`"
    );
    assert_eq!(at(&d), "main.hcl:3:17");
    assert_eq!(spanned(&d), "GiB");
    assert_eq!(
        d.help.as_deref(),
        Some("use MB, GB or TB (flotilla's GB is already 1024 MB)")
    );
}

#[test]
fn bad_spec_from_a_variable_points_at_the_expression() {
    let d = error(
        "variable \"gpu\" { default = \"H100:A100\" }\nfleet \"a\" {\n  resources { gpu = var.gpu }\n}\n",
    );
    assert_eq!(at(&d), "main.hcl:3:21");
    assert_eq!(spanned(&d), "var.gpu");
}

#[test]
fn bad_cpu_and_disk() {
    let d = error("fleet \"a\" {\n  resources {\n    cpu = \"8..2\"\n  }\n}\n");
    assert_eq!(at(&d), "main.hcl:3:12");
    assert!(
        d.message.starts_with("invalid `cpu` in `resources`: "),
        "{}",
        d.message
    );
    let d = error("fleet \"a\" {\n  resources {\n    disk = true\n  }\n}\n");
    assert_eq!(
        d.message,
        "`disk` in `resources` must be a string or a number"
    );
}

#[test]
fn host_gpu_must_be_exact() {
    let d = error(
        "provider \"baremetal\" {\n  host \"h\" {\n    address = \"a\"\n    gpu = \"A100:8\"\n  }\n}\n",
    );
    assert_eq!(
        d.message,
        "`gpu` in host `h` must say exactly what the host has"
    );
    assert_eq!(at(&d), "main.hcl:4:11");
    let d = error(
        "provider \"baremetal\" {\n  host \"h\" {\n    address = \"a\"\n    gpu = \"A100,H100:80GB:8\"\n  }\n}\n",
    );
    assert_eq!(
        d.message,
        "`gpu` in host `h` must say exactly what the host has"
    );
    let d = error(
        "provider \"baremetal\" {\n  host \"h\" {\n    address = \"a\"\n    memory = \"1TB..\"\n  }\n}\n",
    );
    assert!(
        d.message.starts_with("invalid `memory` in host `h`: "),
        "{}",
        d.message
    );
}

// ---------------------------------------------------------------------------------------------
// Expressions.

#[test]
fn unknown_variable_suggests() {
    let d = error(
        "variable \"max_price\" { default = 1 }\nfleet \"a\" {\n  max_price = var.max_prise\n}\n",
    );
    assert_eq!(d.message, "unknown variable `var.max_prise`");
    assert_eq!(at(&d), "main.hcl:3:15");
    assert_eq!(spanned(&d), "var.max_prise");
    assert_eq!(d.help.as_deref(), Some("did you mean `var.max_price`?"));
    let d = error("fleet \"a\" { nodes = var.n }");
    assert_eq!(
        d.help.as_deref(),
        Some("declare it: variable \"n\" { default = … }")
    );
}

#[test]
fn unknown_local_and_name() {
    let d = error("locals { region = \"x\" }\nfleet \"a\" {\n  regions = [local.regoin]\n}\n");
    assert_eq!(d.message, "unknown local `local.regoin`");
    assert_eq!(at(&d), "main.hcl:3:14");
    assert_eq!(d.help.as_deref(), Some("did you mean `local.region`?"));

    let d = error("fleet \"a\" {\n  placement = cluster\n}\n");
    assert_eq!(d.message, "unknown name `cluster`");
    assert_eq!(at(&d), "main.hcl:2:15");
    assert_eq!(
        d.help.as_deref(),
        Some("to write the text `cluster`, quote it: \"cluster\"")
    );

    let d = error("variable \"n\" { default = 1 }\nfleet \"a\" { nodes = n }");
    assert_eq!(d.help.as_deref(), Some("did you mean `var.n`?"));
}

#[test]
fn unknown_function_suggests() {
    let d = error("fleet \"a\" {\n  nodes = mx(1, 2)\n}\n");
    assert_eq!(d.message, "unknown function `mx`");
    assert_eq!(at(&d), "main.hcl:2:11");
    assert_eq!(d.help.as_deref(), Some("did you mean `max`?"));
}

#[test]
fn block_references_only_where_they_belong() {
    let d = error("fleet \"a\" {}\nfleet \"b\" {\n  nodes = fleet.a\n}\n");
    assert_eq!(d.message, "`fleet.a` cannot be used here");
    assert_eq!(at(&d), "main.hcl:3:11");
}

#[test]
fn evaluation_errors_point_at_the_expression() {
    let d = error("fleet \"a\" {\n  nodes = 4 / 0\n}\n");
    assert_eq!(d.message, "division by zero");
    assert_eq!(at(&d), "main.hcl:2:11");
    let d = error("fleet \"a\" {\n  nodes = 1 + \"x\"\n}\n");
    assert_eq!(
        d.message,
        "operator `+` needs two numbers, got number 1 and string \"x\""
    );
    let d = error("fleet \"a\" {\n  nodes = 5 % 0\n}\n");
    assert_eq!(d.message, "modulo by zero");
    let d = error("fleet \"a\" {\n  nodes = length(3)\n}\n");
    assert_eq!(
        d.message,
        "in `length`: needs a list, map or string, got number 3"
    );
    assert_eq!(at(&d), "main.hcl:2:11");
    let d = error("locals { xs = [1] }\nfleet \"a\" {\n  nodes = local.xs[3]\n}\n");
    assert_eq!(d.message, "index 3 is out of range");
    assert_eq!(at(&d), "main.hcl:3:11");
    let d = error("fleet \"a\" {\n  nodes = \"x${[1]}\"\n}\n");
    assert!(
        d.message
            .contains("cannot put a list into a string template"),
        "{}",
        d.message
    );
}

#[test]
fn evaluation_error_in_a_nested_expression_is_located_within() {
    let d = error("fleet \"a\" {\n  tags = { a = \"x\", b = upper(1) }\n}\n");
    assert_eq!(
        d.message,
        "in `upper`: the argument must be a string, got number 1"
    );
    assert_eq!(at(&d), "main.hcl:2:25");
    assert_eq!(spanned(&d), "upper(1)");
    let d = error("fleet \"a\" {\n  nodes = max(1, 2) + (3 / (2 - 2))\n}\n");
    assert_eq!(spanned(&d), "3 / (2 - 2)");
}

#[test]
fn arithmetic_templates_conditionals_for() {
    let c = ok(r#"variable "base" { default = 2 }
variable "team" { default = "llm" }
locals {
  nodes   = var.base * 3 + 1
  half    = local.nodes / 2
  neg     = -local.nodes
  name    = "${var.team}-train-${local.nodes}"
  strip   = "a ${~ var.team ~} b"
  big     = local.nodes > 5 ? "big" : "small"
  squares = [for i in range(4) : i * i]
  evens   = [for i in range(6) : i if i % 2 == 0]
  upper   = { for k, v in { a = "x", b = "y" } : k => upper(v) }
  whole   = "${var.base}"
  heredoc = <<EOT
team ${var.team}
EOT
  directive = "%{ if var.base > 1 }many%{ else }one%{ endif }"
}
fleet "a" {
  nodes = local.nodes
  tags  = { name = local.name, size = local.big }
}
"#);
    assert_eq!(c.fleets["a"].nodes, 7);
    let l = &c.locals;
    assert_eq!(l["nodes"], json!(7));
    assert_eq!(l["half"], json!(3.5));
    assert_eq!(l["neg"], json!(-7));
    assert_eq!(l["name"], json!("llm-train-7"));
    assert_eq!(l["strip"], json!("allmb"));
    assert_eq!(l["big"], json!("big"));
    assert_eq!(l["squares"], json!([0, 1, 4, 9]));
    assert_eq!(l["evens"], json!([0, 2, 4]));
    assert_eq!(l["upper"], json!({"a": "X", "b": "Y"}));
    assert_eq!(l["whole"], json!(2));
    assert_eq!(l["heredoc"], json!("team llm\n"));
    assert_eq!(l["directive"], json!("many"));
    assert_eq!(c.fleets["a"].tags["name"], "llm-train-7");
}

#[test]
fn templates_with_escapes_heredocs_and_directives() {
    let c = ok(r#"variable "team" { default = "llm" }
locals {
  quoted = "say \"${var.team}\"\n"
  dollar = "$${literal} ${var.team}"
  indented = <<-EOT
    team ${var.team}
      nested
    EOT
  list = "%{ for i in [1, 2] }${i},%{ endfor }"
}
"#);
    assert_eq!(c.locals["quoted"], json!("say \"llm\"\n"));
    assert_eq!(c.locals["dollar"], json!("${literal} llm"));
    assert_eq!(c.locals["indented"], json!("team llm\n  nested\n"));
    assert_eq!(c.locals["list"], json!("1,2,"));
}

#[test]
fn arithmetic_errors_inside_directives_do_not_crash() {
    // Templates with directives are evaluated by hcl-rs itself, whose arithmetic can panic.
    let d = error("locals {\n  x = \"%{ if 1 % 0 == 0 }a%{ endif }\"\n}\n");
    assert_eq!(at(&d), "main.hcl:2:7");
}

#[test]
fn functions() {
    let c = ok(r#"locals {
  min       = min(3, 1, 2)
  max       = max(3, 1, 2)
  abs       = abs(-4)
  ceil      = ceil(1.2)
  floor     = floor(1.8)
  lower     = lower("ABC")
  upper     = upper("abc")
  format    = format("%s-%d-%v %%", "a", 7, true)
  join      = join(",", ["a", "b"])
  split     = split(",", "a,b")
  concat    = concat([1], [2, 3])
  length    = length("héllo")
  contains  = contains(["a", "b"], "b")
  merge     = merge({ a = 1 }, { b = 2, a = 3 })
  keys      = keys({ b = 1, a = 2 })
  values    = values({ b = 1, a = 2 })
  lookup    = lookup({ a = 1 }, "b", 9)
  coalesce  = coalesce("", "x")
  tostring  = tostring(5)
  tonumber  = tonumber("2.5")
  range     = range(1, 7, 2)
  element   = element(["a", "b"], 3)
  replace   = replace("a-b-c", "-", "_")
  trimspace = trimspace("  x \n")
  expand    = max([4, 9, 2]...)
}
"#);
    let l = &c.locals;
    for (name, expected) in [
        ("min", json!(1)),
        ("max", json!(3)),
        ("abs", json!(4)),
        ("ceil", json!(2)),
        ("floor", json!(1)),
        ("lower", json!("abc")),
        ("upper", json!("ABC")),
        ("format", json!("a-7-true %")),
        ("join", json!("a,b")),
        ("split", json!(["a", "b"])),
        ("concat", json!([1, 2, 3])),
        ("length", json!(5)),
        ("contains", json!(true)),
        ("merge", json!({"a": 3, "b": 2})),
        ("keys", json!(["a", "b"])),
        ("values", json!([2, 1])),
        ("lookup", json!(9)),
        ("coalesce", json!("x")),
        ("tostring", json!("5")),
        ("tonumber", json!(2.5)),
        ("range", json!([1, 3, 5])),
        ("element", json!("b")),
        ("replace", json!("a_b_c")),
        ("trimspace", json!("x")),
        ("expand", json!(9)),
    ] {
        assert_eq!(l[name], expected, "{name}");
    }
}

#[test]
fn function_errors() {
    let d = error("locals {\n  x = lookup({}, \"k\")\n}\n");
    assert_eq!(
        d.message,
        "in `lookup`: no key `k` in the map, and no default given"
    );
    assert_eq!(at(&d), "main.hcl:2:7");
    let d = error("locals {\n  x = range(0, 10000000)\n}\n");
    assert!(
        d.message.contains("more than 1000000 elements"),
        "{}",
        d.message
    );
    let d = error("locals {\n  x = format(\"%d\", \"a\")\n}\n");
    assert!(d.message.starts_with("in `format`: "), "{}", d.message);
}

// ---------------------------------------------------------------------------------------------
// Variables.

const VARS: &str = r#"variable "max_price" { default = 60 }
variable "region" { default = "us-east-1" }
variable "spot" {
  type    = bool
  default = false
}
variable "regions" {
  type    = list(string)
  default = []
}
fleet "a" {
  max_price   = var.max_price
  regions     = concat([var.region], var.regions)
  spot_policy = var.spot ? "spot" : "on-demand"
}
"#;

#[test]
fn variable_defaults() {
    let c = ok(VARS);
    assert_eq!(c.variables["max_price"], json!(60));
    assert_eq!(c.variables["region"], json!("us-east-1"));
    assert_eq!(c.fleets["a"].max_price, Some(60.0));
    assert_eq!(c.fleets["a"].spot_policy, SpotPolicy::OnDemand);
}

#[test]
fn variable_precedence_default_env_file_var() {
    let dir = temp_dir("precedence");
    let hcl_file = dir.join("prod.vars");
    fs_err::write(&hcl_file, "max_price = 30\nregion = \"eu-west-1\"\n").expect("write");
    let json_file = dir.join("more.json");
    fs_err::write(&json_file, r#"{ "max_price": 20, "regions": ["a", "b"] }"#).expect("write");
    let env = [
        ("FLOTILLA_VAR_max_price", "50"),
        ("FLOTILLA_VAR_spot", "true"),
        ("FLOTILLA_VAR_undeclared", "x"),
        ("HOME", "/root"),
    ];

    // env over default
    let c = ok_with(&[("main.hcl", VARS)], &[], &env);
    assert_eq!(c.fleets["a"].max_price, Some(50.0));
    assert_eq!(c.fleets["a"].spot_policy, SpotPolicy::Spot);
    // var-file over env
    let c = ok_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(hcl_file.clone())],
        &env,
    );
    assert_eq!(c.fleets["a"].max_price, Some(30.0));
    assert_eq!(c.fleets["a"].regions, vec!["eu-west-1"]);
    // --var over var-file when later; command-line order decides between them
    let c = ok_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(hcl_file.clone()), var("max_price", "40")],
        &env,
    );
    assert_eq!(c.fleets["a"].max_price, Some(40.0));
    let c = ok_with(
        &[("main.hcl", VARS)],
        &[var("max_price", "40"), VarArg::File(hcl_file.clone())],
        &env,
    );
    assert_eq!(c.fleets["a"].max_price, Some(30.0));
    // JSON variable files, later wins
    let c = ok_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(hcl_file), VarArg::File(json_file)],
        &env,
    );
    assert_eq!(c.fleets["a"].max_price, Some(20.0));
    assert_eq!(c.fleets["a"].regions, vec!["eu-west-1", "a", "b"]);
    assert_eq!(c.variables["max_price"], json!(20));
}

#[test]
fn command_line_values_follow_the_variable_type() {
    let c = ok_with(
        &[("main.hcl", VARS)],
        &[
            var("max_price", "40"),
            var("region", "40"),
            var("regions", "[\"x\"]"),
            var("spot", "true"),
        ],
        &[],
    );
    // A number default makes `40` a number; a string default keeps it text.
    assert_eq!(c.variables["max_price"], json!(40));
    assert_eq!(c.variables["region"], json!("40"));
    assert_eq!(c.variables["regions"], json!(["x"]));
    assert_eq!(c.fleets["a"].spot_policy, SpotPolicy::Spot);
    let c = ok_with(
        &[("main.hcl", "variable \"s\" {\n  type = string\n}\n")],
        &[var("s", "a b = c")],
        &[],
    );
    assert_eq!(c.variables["s"], json!("a b = c"));
    let c = ok_with(
        &[("main.hcl", "variable \"s\" {}\n")],
        &[var("s", "[1]")],
        &[],
    );
    assert_eq!(c.variables["s"], json!("[1]"));
}

#[test]
fn untyped_command_line_values_convert_where_numbers_and_bools_are_expected() {
    let text = "variable \"n\" {}\nvariable \"keep\" {}\nvolume \"v\" {\n  size = 1\n  prevent_destroy = var.keep\n}\nfleet \"a\" {\n  nodes = var.n\n  max_price = var.n\n}\n";
    let c = ok_with(
        &[("main.hcl", text)],
        &[var("n", "4"), var("keep", "true")],
        &[],
    );
    assert_eq!(c.variables["n"], json!("4"));
    assert_eq!(c.fleets["a"].nodes, 4);
    assert_eq!(c.fleets["a"].max_price, Some(4.0));
    assert!(c.volumes["v"].prevent_destroy);
}

#[test]
fn variable_without_value() {
    let d = error("variable \"region\" {}\n");
    assert_eq!(d.message, "variable `region` has no value");
    assert_eq!(at(&d), "main.hcl:1:10");
    assert_eq!(
        d.help.as_deref(),
        Some("set it with --var region=VALUE, --var-file or FLOTILLA_VAR_region")
    );
}

#[test]
fn var_for_an_undeclared_variable() {
    let all = errors_with(&[("main.hcl", VARS)], &[var("max_prise", "1")], &[]);
    assert_eq!(all.len(), 1);
    let d = &all[0];
    assert_eq!(d.message, "unknown variable `max_prise`");
    assert_eq!(at(d), "--var:1:1");
    assert_eq!(d.help.as_deref(), Some("did you mean `max_price`?"));
}

#[test]
fn bad_command_line_value() {
    let all = errors_with(&[("main.hcl", VARS)], &[var("max_price", "abc")], &[]);
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].message, "unknown name `abc`");
    assert_eq!(at(&all[0]), "--var:1:11");
    let all = errors_with(&[("main.hcl", VARS)], &[var("max_price", "1 +")], &[]);
    assert_eq!(all[0].message, "syntax error");
    assert_eq!(all[0].file, "--var");
    let all = errors_with(&[("main.hcl", VARS)], &[var("spot", "\"maybe\"")], &[]);
    assert_eq!(all[0].message, "invalid value for variable `spot`");
    assert_eq!(
        all[0].label,
        "expected `true` or `false`, got string \"maybe\""
    );
    let all = errors_with(
        &[("main.hcl", VARS)],
        &[],
        &[("FLOTILLA_VAR_max_price", "[")],
    );
    assert_eq!(all[0].file, "FLOTILLA_VAR_max_price");
}

#[test]
fn variable_file_errors_point_into_the_file() {
    let dir = temp_dir("varfile");
    let file = dir.join("bad.vars");
    fs_err::write(&file, "max_price = 1\nmax_prise = 2\nregion = var.x\n").expect("write");
    let all = errors_with(&[("main.hcl", VARS)], &[VarArg::File(file.clone())], &[]);
    let name = file.display().to_string();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0].message, "unknown variable `max_prise`");
    assert_eq!(at(&all[0]), format!("{name}:2:1"));
    assert_eq!(all[1].message, "`var.x` cannot be used here");
    assert_eq!(at(&all[1]), format!("{name}:3:10"));

    let json_file = dir.join("bad.json");
    fs_err::write(&json_file, "{\n  \"max_price\": 1,\n  \"nope\": 2\n}\n").expect("write");
    let all = errors_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(json_file.clone())],
        &[],
    );
    assert_eq!(all[0].message, "unknown variable `nope`");
    assert_eq!(at(&all[0]), format!("{}:3:3", json_file.display()));
    fs_err::write(&json_file, "{\n  \"max_price\": ,\n}\n").expect("write");
    let all = errors_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(json_file.clone())],
        &[],
    );
    assert_eq!(all[0].message, "invalid JSON");
    assert_eq!(at(&all[0]), format!("{}:2:16", json_file.display()));

    let all = errors_with(
        &[("main.hcl", VARS)],
        &[VarArg::File(dir.join("missing.vars"))],
        &[],
    );
    assert!(
        all[0].message.starts_with("failed to open file"),
        "{}",
        all[0].message
    );
}

#[test]
fn variable_type_and_default_checks() {
    let d = error("variable \"n\" {\n  type    = number\n  default = \"many\"\n}\n");
    assert_eq!(d.message, "invalid value for variable `n`");
    assert_eq!(at(&d), "main.hcl:3:13");
    assert_eq!(d.label, "expected a number, got string \"many\"");
    let d = error("variable \"n\" {\n  type = \"number\"\n  default = 1\n}\n");
    assert_eq!(d.message, "invalid `type` in variable `n`");
    assert_eq!(
        d.help.as_deref(),
        Some("write the type without quotes: type = number")
    );
    let d = error("variable \"a\" { default = 1 }\nvariable \"b\" {\n  default = var.a\n}\n");
    assert_eq!(d.message, "`var.a` cannot be used here");
    assert_eq!(at(&d), "main.hcl:3:13");
    // A typed string converts a number default, as Terraform does.
    let c = ok("variable \"s\" {\n  type = string\n  default = 5\n}\n");
    assert_eq!(c.variables["s"], json!("5"));
}

#[test]
fn a_variable_without_value_is_reported_once() {
    // The fleet that uses it is not reported again.
    let all = errors("variable \"n\" {}\nfleet \"a\" { nodes = var.n }\n");
    assert_eq!(all.len(), 1, "{all:?}");
}

// ---------------------------------------------------------------------------------------------
// Locals.

#[test]
fn locals_in_any_order() {
    let c = ok(
        "locals {\n  c = local.b + 1\n}\nlocals {\n  b = local.a * 2\n  a = var.x\n}\nvariable \"x\" { default = 3 }\n",
    );
    assert_eq!(c.locals["a"], json!(3));
    assert_eq!(c.locals["b"], json!(6));
    assert_eq!(c.locals["c"], json!(7));
}

#[test]
fn locals_cycle_names_the_whole_cycle() {
    let d = error("locals {\n  a = local.b + 1\n  b = local.c\n  c = local.a\n  d = local.a\n}\n");
    assert_eq!(
        d.message,
        "cycle between locals: local.a -> local.b -> local.c -> local.a"
    );
    assert_eq!(at(&d), "main.hcl:2:3");
    let d = error("locals {\n  x = 1\n  me = local.me\n}\n");
    assert_eq!(d.message, "cycle between locals: local.me -> local.me");
    assert_eq!(at(&d), "main.hcl:3:3");
}

#[test]
fn a_broken_local_is_reported_once() {
    let all =
        errors("locals {\n  a = 1 / 0\n  b = local.a + 1\n}\nfleet \"f\" { nodes = local.b }\n");
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0].message, "division by zero");
}

// ---------------------------------------------------------------------------------------------
// References between blocks.

#[test]
fn undefined_volume_reference() {
    let d =
        error("volume \"ckpt\" { size = \"1TB\" }\nfleet \"a\" {\n  volumes = [volume.chkpt]\n}\n");
    assert_eq!(d.message, "unknown volume `volume.chkpt`");
    assert_eq!(at(&d), "main.hcl:3:14");
    assert_eq!(spanned(&d), "volume.chkpt");
    assert_eq!(d.help.as_deref(), Some("did you mean `volume.ckpt`?"));
}

#[test]
fn undefined_fleet_target() {
    let d = error("fleet \"serve\" {}\ngateway \"g\" {\n  targets = [fleet.serv]\n}\n");
    assert_eq!(d.message, "unknown fleet `fleet.serv`");
    assert_eq!(at(&d), "main.hcl:3:14");
    assert_eq!(d.help.as_deref(), Some("did you mean `fleet.serve`?"));
}

#[test]
fn reference_of_the_wrong_kind() {
    let d = error("volume \"v\" { size = 1 }\ngateway \"g\" {\n  targets = [volume.v]\n}\n");
    assert_eq!(
        d.message,
        "`volume.v` is a volume, but `targets` in gateway `g` takes fleets"
    );
    assert_eq!(at(&d), "main.hcl:3:14");
    let d = error("fleet \"a\" {\n  volumes = [\"ckpt\"]\n}\n");
    assert_eq!(
        d.message,
        "`volumes` in fleet `a` must list volume references"
    );
    assert_eq!(at(&d), "main.hcl:2:14");
    let d = error("fleet \"a\" {\n  volumes = volume.v\n}\nvolume \"v\" { size = 1 }\n");
    assert_eq!(
        d.message,
        "`volumes` in fleet `a` must be a list of volume references"
    );
    assert_eq!(at(&d), "main.hcl:2:13");
}

#[test]
fn volume_mounted_by_two_fleets() {
    let d = error(
        "volume \"v\" { size = 1 }\nfleet \"a\" { volumes = [volume.v] }\nfleet \"b\" {\n  volumes = [volume.v]\n}\n",
    );
    assert_eq!(d.message, "volume `v` is already mounted by fleet `a`");
    assert_eq!(at(&d), "main.hcl:4:14");
    assert_eq!(
        d.label,
        "a volume is mounted by one fleet at most; fleet `a` mounts it at main.hcl:2:24"
    );
}

#[test]
fn volume_listed_twice_and_empty_targets() {
    let d =
        error("volume \"v\" { size = 1 }\nfleet \"a\" {\n  volumes = [volume.v, volume.v]\n}\n");
    assert_eq!(
        d.message,
        "volume `v` is listed twice in `volumes` of fleet `a`"
    );
    assert_eq!(at(&d), "main.hcl:3:24");
    let d = error("gateway \"g\" {\n  targets = []\n}\n");
    assert_eq!(
        d.message,
        "`targets` in gateway `g` must list at least one fleet"
    );
    assert_eq!(at(&d), "main.hcl:2:13");
}

#[test]
fn volume_on_a_provider_the_fleet_does_not_use() {
    let d = error(
        "provider \"aws\" {}\nprovider \"gcp\" { project = \"p\" }\nvolume \"v\" {\n  provider = \"gcp\"\n  size = 1\n}\nfleet \"a\" {\n  providers = [\"aws\"]\n  volumes = [volume.v]\n}\n",
    );
    assert_eq!(
        d.message,
        "volume `v` is on `gcp`, which fleet `a` does not use"
    );
    assert_eq!(at(&d), "main.hcl:9:14");
}

// ---------------------------------------------------------------------------------------------
// Outputs.

#[test]
fn outputs_refer_or_evaluate() {
    let c = ok(r#"variable "domain" { default = "x.com" }
volume "v" { size = 1 }
fleet "f" { volumes = [volume.v] }
gateway "g" { targets = [fleet.f] }
output "ips" { value = fleet.f.public_ips }
output "types" { value = fleet.f.instance_types }
output "disks" { value = volume.v.ids }
output "dns" { value = gateway.g.dns_name }
output "url" {
  value       = "https://${var.domain}/"
  description = "Where to go."
}
output "list" { value = [1, "a", true] }
"#);
    let r = |a: &str, b: &str| OutputValue::Ref {
        address: a.to_string(),
        attribute: b.to_string(),
    };
    assert_eq!(c.outputs["ips"].value, r("fleet.f", "public_ips"));
    assert_eq!(c.outputs["types"].value, r("fleet.f", "instance_types"));
    assert_eq!(c.outputs["disks"].value, r("volume.v", "ids"));
    assert_eq!(c.outputs["dns"].value, r("gateway.g", "dns_name"));
    assert_eq!(
        c.outputs["url"].value,
        OutputValue::Value(json!("https://x.com/"))
    );
    assert_eq!(
        c.outputs["list"].value,
        OutputValue::Value(json!([1, "a", true]))
    );
    assert_eq!(
        (c.outputs["ips"].origin.line, c.outputs["ips"].origin.column),
        (5, 1)
    );
}

#[test]
fn output_reference_errors() {
    let d = error("fleet \"f\" {}\noutput \"o\" {\n  value = fleet.f.private_ip\n}\n");
    assert_eq!(d.message, "unknown attribute `private_ip` of fleet `f`");
    assert_eq!(at(&d), "main.hcl:3:11");
    assert_eq!(d.help.as_deref(), Some("did you mean `private_ips`?"));
    let d = error("output \"o\" {\n  value = fleet.g.ids\n}\n");
    assert_eq!(d.message, "unknown fleet `fleet.g`");
    let d = error("fleet \"f\" {}\noutput \"o\" {\n  value = fleet.f\n}\n");
    assert_eq!(d.message, "`fleet.f` has no value of its own");
    assert_eq!(d.help.as_deref(), Some("for example `fleet.f.private_ips`"));
    let d = error("fleet \"f\" {}\noutput \"o\" {\n  value = [fleet.f.ids]\n}\n");
    assert_eq!(d.message, "`fleet.f` cannot be used here");
    assert_eq!(at(&d), "main.hcl:3:12");
}

// ---------------------------------------------------------------------------------------------
// Many errors at once, in order.

#[test]
fn all_errors_are_collected_and_sorted() {
    let all = errors_with(
        &[
            (
                "a.hcl",
                "fleet \"x\" {\n  nodes = \"one\"\n  gpus = 1\n}\nflet \"y\" {}\n",
            ),
            ("b.hcl", "fleet \"x\" {}\n"),
        ],
        &[var("nope", "1")],
        &[],
    );
    let got: Vec<String> = all
        .iter()
        .map(|d| format!("{} {}", at(d), d.message))
        .collect();
    assert_eq!(
        got,
        vec![
            "a.hcl:2:11 `nodes` in fleet `x` must be a whole number of at least 0",
            "a.hcl:3:3 unknown attribute `gpus` in fleet `x`",
            "a.hcl:5:1 unknown block `flet`",
            "b.hcl:1:7 duplicate fleet `x`",
            "--var:1:1 unknown variable `nope`",
        ]
    );
}

#[test]
fn display_is_one_line() {
    let d = error("fleet \"a\" {\n  resources {\n    gpus = \"H100:8\"\n  }\n}\n");
    assert_eq!(
        d.to_string(),
        "main.hcl:3:5: unknown attribute `gpus` in `resources` (expected one of `cpu`, `memory`, `disk`, `gpu`, `gpu_total_memory`); help: did you mean `gpu`?"
    );
}

#[test]
fn digest_changes_with_the_configuration() {
    let a = ok("fleet \"a\" { nodes = 1 }");
    let b = ok("# a comment\nfleet \"a\" {\n  nodes = 1\n}\n");
    let c = ok("fleet \"a\" { nodes = 2 }");
    assert_eq!(a.digest(), b.digest());
    assert_ne!(a.digest(), c.digest());
}

// ---------------------------------------------------------------------------------------------
// Files and directories.

#[test]
fn load_reads_every_hcl_file_in_order() {
    let dir = temp_dir("dir");
    fs_err::write(dir.join("b.hcl"), "fleet \"b\" {}\n").expect("write");
    fs_err::write(dir.join("a.hcl"), "fleet \"a\" {\n  nodes = \"x\"\n}\n").expect("write");
    fs_err::write(dir.join("notes.txt"), "not hcl").expect("write");
    let options = LoadOptions {
        dir: dir.clone(),
        ..LoadOptions::default()
    };
    let all = match load(&options) {
        Ok(_) => panic!("expected an error"),
        Err(d) => d.0,
    };
    assert_eq!(all[0].file, dir.join("a.hcl").display().to_string());
    fs_err::write(dir.join("a.hcl"), "fleet \"a\" {}\n").expect("write");
    let c = load(&options).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(c.files, vec![dir.join("a.hcl"), dir.join("b.hcl")]);
    assert_eq!(c.fleets.len(), 2);
    let only = LoadOptions {
        dir: dir.clone(),
        files: vec![PathBuf::from("b.hcl")],
        ..LoadOptions::default()
    };
    let c = load(&only).unwrap_or_else(|d| panic!("{d}"));
    assert_eq!(c.files, vec![dir.join("b.hcl")]);
}

#[test]
fn load_without_fleet_files() {
    let dir = temp_dir("empty");
    let options = LoadOptions {
        dir: dir.clone(),
        ..LoadOptions::default()
    };
    let all = load(&options).err().map(|d| d.0).unwrap_or_default();
    assert_eq!(all.len(), 1);
    assert_eq!(
        all[0].message,
        format!("no fleet files (*.hcl) in {}", dir.display())
    );
    assert_eq!(
        all[0].help.as_deref(),
        Some("run in the directory holding your fleet files, or pass -C DIR or -f FILE")
    );
    let missing = LoadOptions {
        dir: dir.clone(),
        files: vec![PathBuf::from("nope.hcl")],
        ..LoadOptions::default()
    };
    let all = load(&missing).err().map(|d| d.0).unwrap_or_default();
    assert!(
        all[0].message.starts_with("failed to open file"),
        "{}",
        all[0].message
    );
    assert_eq!(all[0].file, dir.join("nope.hcl").display().to_string());
}

#[test]
fn examples_are_valid() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/examples");
    let Ok(entries) = fs_err::read_dir(&root) else {
        return;
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    for dir in dirs {
        let options = LoadOptions {
            dir: dir.clone(),
            ..LoadOptions::default()
        };
        if let Err(d) = load(&options) {
            panic!("{} is not valid:\n{d}", dir.display());
        }
    }
}

// ---------------------------------------------------------------------------------------------
// No input makes loading panic.

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

    /// The design's example with a few characters changed: loading either succeeds or reports,
    /// never panics.
    #[test]
    fn mutated_files_never_panic(
        edits in proptest::collection::vec((0usize..2000, proptest::sample::select(vec![
            "", "\"", "{", "}", "[", "]", "=", "/ 0", "% 0", ".", "..", ":", "${", "%{", "var.", "local.",
            "fleet.", "-", "*", "9999999999999999999999", "\n", "#", "(", ")", "?", "for x in", "é",
        ])), 1..6)
    ) {
        let mut text = DESIGN.to_string();
        for (at, insert) in edits {
            let mut at = at % (text.len() + 1);
            while !text.is_char_boundary(at) {
                at -= 1;
            }
            text.insert_str(at, insert);
        }
        let _ = load_sources(&sources(&[("main.hcl", &text)]), &[var("max_price", "1/0")], &[]);
    }
}
