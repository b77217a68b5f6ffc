//! Fleet files (HCL) into a typed, evaluated [`Config`].
//!
//! This is the first step of the data flow: every `*.hcl` file of a directory (or the files
//! named with `-f`) is parsed with hcl-edit (which keeps byte spans), every block and attribute
//! is checked against the fleet language (unknown ones are errors, with "did you mean"),
//! expressions are evaluated with hcl-rs (variables, locals, arithmetic, templates, functions),
//! and references between blocks (`volume.ckpt`, `fleet.train`) are resolved to names.
//!
//! Errors are [`Diagnostic`]s that point at file, line and column; [`load`] returns all it
//! finds, not just the first, so one run shows every mistake.

use crate::catalog::{Offer, ProviderKind, SpotPolicy};
use crate::spec::{GpuVendor, Memory, Resources};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

#[cfg(test)]
mod baremetal_tests;
mod diagnostic;
pub mod format;
mod load;

pub use diagnostic::{Diagnostic, Diagnostics};
/// "Did you mean" matching, shared with the planner's address suggestions.
pub(crate) use load::closest;

/// Everything the fleet files declare, evaluated. Maps are keyed by block name, so iteration
/// order (and so every plan) is deterministic.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    /// `state { url = … }`: where the state lives; `None` is `./flotilla.state.json`.
    pub state_url: Option<String>,
    /// Variables with their final values (default < `FLOTILLA_VAR_*` < `--var`/`--var-file`).
    pub variables: BTreeMap<String, serde_json::Value>,
    /// `locals` with their values.
    pub locals: BTreeMap<String, serde_json::Value>,
    /// Provider blocks.
    pub providers: Providers,
    /// `volume` blocks.
    pub volumes: BTreeMap<String, Volume>,
    /// `fleet` blocks.
    pub fleets: BTreeMap<String, Fleet>,
    /// `gateway` blocks.
    pub gateways: BTreeMap<String, Gateway>,
    /// `output` blocks.
    pub outputs: BTreeMap<String, Output>,
    /// The files read, in the order read (for messages such as `validate`'s summary).
    #[serde(skip)]
    pub files: Vec<PathBuf>,
}

/// Where a block was declared, for messages from later stages ("fleet `train` (main.hcl:12:1)").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The file, as named on the command line or found in the directory.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// The provider blocks. At most one of each kind.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Providers {
    /// `provider "aws"`.
    pub aws: Option<AwsProvider>,
    /// `provider "gcp"`.
    pub gcp: Option<GcpProvider>,
    /// `provider "azure"`.
    pub azure: Option<AzureProvider>,
    /// `provider "baremetal"`.
    pub baremetal: Option<BaremetalProvider>,
}

impl Providers {
    /// The configured providers, in [`ProviderKind::ALL`] order.
    pub fn configured(&self) -> Vec<ProviderKind> {
        let mut out = Vec::new();
        if self.aws.is_some() {
            out.push(ProviderKind::Aws);
        }
        if self.gcp.is_some() {
            out.push(ProviderKind::Gcp);
        }
        if self.azure.is_some() {
            out.push(ProviderKind::Azure);
        }
        if self.baremetal.is_some() {
            out.push(ProviderKind::Baremetal);
        }
        out
    }

    /// The regions a provider block limits its offers to; empty is any.
    pub fn regions(&self, provider: ProviderKind) -> &[String] {
        match provider {
            ProviderKind::Aws => self.aws.as_ref().map_or(&[], |p| &p.regions),
            ProviderKind::Gcp => self.gcp.as_ref().map_or(&[], |p| &p.regions),
            ProviderKind::Azure => self.azure.as_ref().map_or(&[], |p| &p.regions),
            ProviderKind::Baremetal => &[],
        }
    }
}

/// `provider "aws" { … }`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AwsProvider {
    /// Regions to consider; empty is every region of the catalog.
    pub regions: Vec<String>,
    /// Shared-config profile.
    pub profile: Option<String>,
    /// AMI id or name; default the newest Deep Learning Base GPU AMI.
    pub image: Option<String>,
    /// Subnet id; default the default VPC's.
    pub subnet: Option<String>,
    /// Security group ids; default the default VPC's.
    pub security_groups: Vec<String>,
    /// API endpoint override (an emulator).
    pub endpoint: Option<String>,
}

/// `provider "gcp" { … }`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GcpProvider {
    /// Project id (required).
    pub project: String,
    /// Regions to consider; empty is every region of the catalog.
    pub regions: Vec<String>,
    /// Boot image; default a Deep Learning VM image.
    pub image: Option<String>,
    /// VPC network; default `default`.
    pub network: Option<String>,
    /// API endpoint override (a fake).
    pub endpoint: Option<String>,
    /// Zones to use, in the order they are tried; empty is every zone of a region that offers
    /// the machine type.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub zones: Vec<String>,
    /// Subnetwork (name or URL); default the network's subnetwork in the region.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subnetwork: Option<String>,
    /// Service account email the instances run as; default none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_account: Option<String>,
}

/// `provider "azure" { … }`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct AzureProvider {
    /// Subscription id (required).
    pub subscription_id: String,
    /// Resource group (required).
    pub resource_group: String,
    /// Regions (locations) to consider; empty is every region of the catalog.
    pub regions: Vec<String>,
    /// Image URN or id.
    pub image: Option<String>,
    /// API endpoint override (a fake).
    pub endpoint: Option<String>,
    /// The VMs' admin user; default [`AzureProvider::DEFAULT_ADMIN_USER`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_user: Option<String>,
    /// The admin user's SSH public key: the key itself (`ssh-ed25519 AAAA…`) or the path of a
    /// `.pub` file; default the first of `~/.ssh/id_{ed25519,ecdsa,rsa}.pub` (read by the
    /// provider when it makes a VM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ssh_public_key: Option<String>,
}

impl AzureProvider {
    /// The admin user when the block names none.
    pub const DEFAULT_ADMIN_USER: &'static str = "azureuser";

    /// The VMs' admin user: `admin_user`, else [`AzureProvider::DEFAULT_ADMIN_USER`].
    pub fn admin_user(&self) -> &str {
        self.admin_user
            .as_deref()
            .unwrap_or(Self::DEFAULT_ADMIN_USER)
    }
}

/// `provider "baremetal" { host "…" { … } … }`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct BaremetalProvider {
    /// Hosts, in declaration order.
    pub hosts: Vec<Host>,
}

/// `host "NAME" { … }` inside `provider "baremetal"`: a machine the team owns.
#[derive(Debug, Clone, Serialize)]
pub struct Host {
    /// The block label; unique.
    pub name: String,
    /// Hostname or IP (required).
    pub address: String,
    /// SSH port; default 22.
    pub port: u16,
    /// SSH user; default from `~/.ssh/config` or the local user.
    pub user: Option<String>,
    /// Private key path; default ssh-agent.
    pub identity_file: Option<String>,
    /// `~/.ssh/config`-style jump host, `[user@]host[:port]`: the host is reached through an
    /// SSH tunnel from it.
    pub proxy_jump: Option<String>,
    /// Labels put on the node that runs here (merged under the fleet's tags).
    pub labels: BTreeMap<String, String>,
    /// Shell commands run once, in order, after the host is claimed.
    pub setup: Vec<String>,
    /// Amortised USD per hour; default 0.
    pub price: f64,
    /// Declared hardware: `gpu = "A100:80GB:8"` (one name, exact memory and count).
    pub gpu_vendor: Option<GpuVendor>,
    /// GPU chip name; empty without GPUs.
    pub gpu_name: String,
    /// GPUs.
    pub gpu_count: u32,
    /// Memory per GPU.
    pub gpu_memory: Memory,
    /// `cpu = 128`.
    pub vcpus: u32,
    /// `memory = "2TB"`.
    pub memory: Memory,
    /// What probing the host found, filled in by the CLI before planning (never by the
    /// fleet files, and not part of [`Config::digest`]): with facts, the host's offer uses
    /// them instead of the declared hardware; an unavailable host is no offer at all.
    #[serde(skip)]
    pub probe: HostProbe,
}

impl Host {
    /// The host as an offer of quantity one: provider `baremetal`, region `onprem`, no zone,
    /// instance type the host's name, at its `price`. Probed facts, when there are any, win
    /// over the declared hardware: they are what the machine really has.
    pub fn offer(&self) -> Offer {
        let mut offer = Offer {
            provider: ProviderKind::Baremetal,
            region: "onprem".to_string(),
            zone: String::new(),
            instance_type: self.name.clone(),
            gpu_vendor: self.gpu_vendor,
            gpu_name: self.gpu_name.clone(),
            gpu_count: self.gpu_count,
            gpu_memory: self.gpu_memory,
            vcpus: self.vcpus,
            memory: self.memory,
            spot: false,
            price_per_hour: self.price,
        };
        if let Some(f) = &self.probe.facts {
            offer.gpu_vendor = f.gpu_vendor;
            offer.gpu_name.clone_from(&f.gpu_name);
            offer.gpu_count = f.gpu_count;
            offer.gpu_memory = f.gpu_memory;
            offer.vcpus = f.vcpus;
            offer.memory = f.memory;
        }
        offer
    }
}

/// What the CLI learned about a host before planning: plain data the planner reads (core
/// does no SSH); the provider crate fills it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostProbe {
    /// Whether the host may take a node.
    pub availability: HostAvailability,
    /// Hardware facts read from the host, when it was reached.
    pub facts: Option<HostFacts>,
}

/// Whether a host may take a node of this state.
#[derive(Debug, Clone, Default, PartialEq)]
pub enum HostAvailability {
    /// Not probed (`--refresh=false`, or a tool that does no SSH): offered on its declared
    /// hardware.
    #[default]
    Unknown,
    /// Reached, free or claimed by this state.
    Available,
    /// Not reached; the reason, for the plan.
    Unreachable(String),
    /// Claimed by another state.
    ClaimedBy {
        /// The other state's lineage.
        lineage: String,
        /// The address of the node it runs there.
        address: String,
    },
}

impl HostAvailability {
    /// Whether the planner may put a node on the host.
    pub fn is_offer(&self) -> bool {
        matches!(
            self,
            HostAvailability::Unknown | HostAvailability::Available
        )
    }
}

/// A host's hardware as probed (`uname -m`, `nproc`, `/proc/meminfo`, `df /`, `nvidia-smi`,
/// `amd-smi`/`rocm-smi`), with GPU names and memory mapped onto the catalog's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize)]
pub struct HostFacts {
    /// `x86_64`, `aarch64`.
    pub arch: String,
    /// Online CPUs.
    pub vcpus: u32,
    /// Total memory.
    pub memory: Memory,
    /// Free space on the root file system.
    pub disk_free: Memory,
    /// GPU vendor; `None` without GPUs.
    pub gpu_vendor: Option<GpuVendor>,
    /// Catalog GPU name (`A100`), empty without GPUs.
    pub gpu_name: String,
    /// GPUs.
    pub gpu_count: u32,
    /// Nominal memory per GPU (`80GB` for a card that reports 81559 MiB).
    pub gpu_memory: Memory,
    /// The GPU driver's version, when the tool reports one.
    pub driver: String,
}

/// How a fleet's nodes are spread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Placement {
    /// Each node on its own cheapest offer.
    #[default]
    Any,
    /// Every node on one provider+region(+zone): the cheapest group that holds them all.
    Cluster,
}

/// `fleet "NAME" { … }`: `nodes` identical nodes.
#[derive(Debug, Clone, Serialize)]
pub struct Fleet {
    /// The block label.
    pub name: String,
    /// Number of nodes; default 1.
    pub nodes: u32,
    /// Spread; default `any`.
    pub placement: Placement,
    /// Markets; default `on-demand`.
    pub spot_policy: SpotPolicy,
    /// USD per node-hour.
    pub max_price: Option<f64>,
    /// Allowed providers, in preference order as written; default every configured provider.
    pub providers: Vec<ProviderKind>,
    /// Allowed regions; empty is any.
    pub regions: Vec<String>,
    /// Allowed instance types; empty is any.
    pub instance_types: Vec<String>,
    /// What each node needs.
    pub resources: Resources,
    /// Names of the volumes each node mounts (`volumes = [volume.ckpt]`).
    pub volumes: Vec<String>,
    /// Tags (labels) put on every node.
    pub tags: BTreeMap<String, String>,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// `volume "NAME" { … }`: one network disk per node of the fleet that mounts it.
#[derive(Debug, Clone, Serialize)]
pub struct Volume {
    /// The block label.
    pub name: String,
    /// Provider; default the mounting fleet's node's.
    pub provider: Option<ProviderKind>,
    /// Region; default the mounting fleet's node's.
    pub region: Option<String>,
    /// Size (required).
    pub size: Memory,
    /// Provider disk type (`gp3`, `pd-ssd`, `Premium_LRS`); default the provider's.
    pub volume_type: Option<String>,
    /// Refuse any plan that would delete it.
    pub prevent_destroy: bool,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// `gateway "NAME" { … }`: a load balancer in front of fleets.
#[derive(Debug, Clone, Serialize)]
pub struct Gateway {
    /// The block label.
    pub name: String,
    /// DNS name it serves.
    pub domain: Option<String>,
    /// Names of the target fleets (`targets = [fleet.serve]`), at least one.
    pub targets: Vec<String>,
    /// Listener and target port; default 80.
    pub port: u16,
    /// Provider; default the targets'.
    pub provider: Option<ProviderKind>,
    /// Region; default the targets'.
    pub region: Option<String>,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// `output "NAME" { value = … }`.
#[derive(Debug, Clone, Serialize)]
pub struct Output {
    /// The block label.
    pub name: String,
    /// The value, known now or after apply.
    pub value: OutputValue,
    /// Where it was declared.
    #[serde(skip)]
    pub origin: Origin,
}

/// An output's value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputValue {
    /// Known from the configuration alone.
    Value(serde_json::Value),
    /// An attribute of a resource, known after apply: `fleet.train.private_ips`.
    Ref {
        /// `fleet.train`, `volume.ckpt`, `gateway.serve`.
        address: String,
        /// `private_ips`, `public_ips`, `ids`, `dns_name`, …
        attribute: String,
    },
}

/// One `--var NAME=VALUE` or `--var-file FILE`, in command-line order (later wins).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarArg {
    /// `--var NAME=VALUE`.
    Var(String, String),
    /// `--var-file FILE` (HCL, or JSON when it ends in `.json`).
    File(PathBuf),
}

/// What to read and with which variables.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// `-C DIR`: the working directory; every `*.hcl` in it is read when `files` is empty.
    pub dir: PathBuf,
    /// `-f FILE`: read exactly these (relative to `dir`).
    pub files: Vec<PathBuf>,
    /// `--var` and `--var-file`, in command-line order.
    pub var_args: Vec<VarArg>,
    /// `FLOTILLA_VAR_NAME=VALUE` pairs (the caller passes the process environment so that
    /// tests can pass their own).
    pub env: Vec<(String, String)>,
}

/// Read, parse, evaluate and check the fleet files. Returns every diagnostic found.
pub fn load(options: &LoadOptions) -> Result<Config, Diagnostics> {
    load::load(options)
}

/// Like [`load`], from in-memory sources (`(file name, text)`), for tests and tools.
pub fn load_sources(
    sources: &[(String, String)],
    var_args: &[VarArg],
    env: &[(String, String)],
) -> Result<Config, Diagnostics> {
    load::load_sources(sources, var_args, env)
}

impl Config {
    /// Every declared bare-metal host that may take a node (not found unreachable or claimed
    /// by another state) as an offer of quantity one, in declaration order.
    pub fn host_offers(&self) -> Vec<Offer> {
        self.providers
            .baremetal
            .as_ref()
            .map(|b| {
                b.hosts
                    .iter()
                    .filter(|h| h.probe.availability.is_offer())
                    .map(Host::offer)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// A digest of everything that affects a plan (not the file layout or comments), so a
    /// saved plan can tell when the configuration changed since.
    pub fn digest(&self) -> String {
        use sha2::{Digest, Sha256};
        let json = serde_json::to_vec(self).expect("Config serialises");
        let hash = Sha256::digest(&json);
        hash.iter().map(|b| format!("{b:02x}")).collect()
    }
}
