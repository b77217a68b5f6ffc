//! Each block into its model type: `state`, `provider` (and `host`), `volume`, `fleet` (and
//! `resources`), `gateway`, `output`, with the cross-block rules (providers a fleet may use,
//! one fleet per volume, what an output may refer to).

use super::blocks::{Attrs, Cx, Grammar, Item, Top, reference, to_json};
use super::eval::span_of;
use super::{Source, suggest};
use crate::catalog::{ProviderKind, SpotPolicy};
use crate::config::{
    AwsProvider, AzureProvider, BaremetalProvider, Config, Fleet, Gateway, GcpProvider, Host,
    Origin, Output, OutputValue, Placement, Providers, Volume,
};
use crate::spec::{self, GpuSpec, GpuVendor, Memory, Resources};
use hcl::edit::expr::Expression as EditExpr;
use hcl::edit::structure::Block;
use std::collections::BTreeMap;
use std::ops::Range;

const GPU: Grammar<GpuSpec> = Grammar {
    parse: spec::parse_gpu,
    number_ok: false,
    expected: "expected a GPU spec such as `H100:8`, `A100,H100:80GB:1..8` or `nvidia:24GB..`",
};
const HOST_GPU: Grammar<GpuSpec> = Grammar {
    parse: spec::parse_gpu,
    number_ok: false,
    expected: "expected one GPU name, its memory and a count, such as `A100:80GB:8`",
};
const COUNT: Grammar<spec::Range<u32>> = Grammar {
    parse: spec::parse_count,
    number_ok: true,
    expected: "expected a count or range such as `8`, `16..` or `8..64`",
};
const SIZE_RANGE: Grammar<spec::Range<Memory>> = Grammar {
    parse: spec::parse_memory_range,
    number_ok: true,
    expected: "expected a size or range such as `64GB`, `1TB..` or `512MB..2GB`",
};
const SIZE: Grammar<Memory> = Grammar {
    parse: spec::parse_memory,
    number_ok: true,
    expected: "expected a size such as `500GB` or `2TB`",
};

/// What an output may read of each kind of block, known after apply.
const OUTPUT_ATTRIBUTES: &[(&str, &[&str])] = &[
    (
        "fleet",
        &["private_ips", "public_ips", "ids", "instance_types"],
    ),
    ("volume", &["ids"]),
    ("gateway", &["dns_name", "address"]),
];

fn origin(item: &Item<'_>) -> Origin {
    item.src.origin(span_of(&item.block.ident).start)
}

/// Fills `config` from the blocks of `top`.
pub(super) fn build(top: &Top<'_>, cx: &mut Cx, config: &mut Config) {
    if let Some(item) = &top.state {
        let attrs = cx.check_body(item.src, &item.block.body, "`state`", &["url"], &[]);
        if attrs.contains_key("url") {
            config.state_url = cx.string(item.src, &attrs, "url", "`state`");
        } else {
            cx.missing(
                item.src,
                item.header_span(),
                "url",
                "`state`",
                "\"s3://bucket/key.json\"",
            );
        }
    }
    config.providers = providers(top, cx);
    let configured = config.providers.configured();
    // Without any provider block, plans still work from the catalog for the clouds.
    let available: Vec<ProviderKind> = if configured.is_empty() {
        vec![ProviderKind::Aws, ProviderKind::Gcp, ProviderKind::Azure]
    } else {
        configured
    };
    let ctx = Rules { available, top };
    for item in &top.volumes {
        if let Some(v) = volume(item, cx, &ctx) {
            config.volumes.insert(v.name.clone(), v);
        }
    }
    let mut mounted: BTreeMap<String, (String, Origin)> = BTreeMap::new();
    for item in &top.fleets {
        if let Some(f) = fleet(item, cx, &ctx, &config.volumes, &mut mounted) {
            config.fleets.insert(f.name.clone(), f);
        }
    }
    for item in &top.gateways {
        if let Some(g) = gateway(item, cx, &ctx) {
            gateway_not_on_baremetal(item, cx, &g, &config.fleets);
            config.gateways.insert(g.name.clone(), g);
        }
    }
    for item in &top.outputs {
        if let Some(o) = output(item, cx, top) {
            config.outputs.insert(o.name.clone(), o);
        }
    }
}

/// What the block decoders check against.
struct Rules<'a, 'b> {
    /// Providers fleets, volumes and gateways may use.
    available: Vec<ProviderKind>,
    top: &'a Top<'b>,
}

impl Rules<'_, '_> {
    /// A provider name, which must be known and configured; reported at `span`.
    fn provider(
        &self,
        cx: &mut Cx,
        src: &Source,
        span: Range<usize>,
        name: &str,
    ) -> Option<ProviderKind> {
        let Some(kind) = ProviderKind::parse(name) else {
            let names = ProviderKind::ALL.map(ProviderKind::as_str);
            let mut d = src.error(
                span,
                format!("unknown provider `{name}`"),
                suggest::expected_one_of(names),
            );
            d.help = suggest::did_you_mean(name, names);
            cx.diags.push(d);
            return None;
        };
        if !self.available.contains(&kind) {
            cx.diags.push(
                src.error(
                    span,
                    format!("provider `{name}` is not configured"),
                    format!("no `provider \"{name}\"` block configures it"),
                )
                .with_help(format!("add a provider \"{name}\" block")),
            );
            return None;
        }
        Some(kind)
    }

    /// An optional cloud provider attribute (volumes and gateways cannot be on bare metal).
    fn cloud_provider(
        &self,
        cx: &mut Cx,
        src: &Source,
        attrs: &Attrs<'_>,
        what: &str,
    ) -> Option<ProviderKind> {
        let attr = attrs.get("provider")?;
        let name = cx.string(src, attrs, "provider", what)?;
        let kind = self.provider(cx, src, span_of(&attr.value), &name)?;
        if kind == ProviderKind::Baremetal {
            cx.diags.push(src.error(
                span_of(&attr.value),
                format!("{what} cannot be on `baremetal`"),
                "expected one of `aws`, `gcp`, `azure`",
            ));
            return None;
        }
        Some(kind)
    }
}

/// `admin_user` of `provider "azure"`, checked against Azure's rules for a Linux admin
/// user name (what ARM would refuse only when the first VM is made).
fn azure_admin_user(src: &Source, attrs: &Attrs<'_>, cx: &mut Cx, what: &str) -> Option<String> {
    const RESERVED: [&str; 12] = [
        "admin",
        "administrator",
        "root",
        "guest",
        "user",
        "user1",
        "test",
        "test1",
        "sys",
        "support",
        "server",
        "adm",
    ];
    let user = cx.string(src, attrs, "admin_user", what)?;
    let ok = (1..=64).contains(&user.len())
        && user.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && user
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !RESERVED.contains(&user.as_str());
    if !ok && let Some(attr) = attrs.get("admin_user") {
        cx.bad_value(
            src,
            attr,
            what,
            "a Linux user name Azure accepts (lowercase letters, digits, `_` and `-`, \
             at most 64, not a reserved name such as `admin` or `root`), e.g. \"azureuser\"",
            &hcl::Value::from(user.clone()),
        );
        return None;
    }
    Some(user)
}

/// The span of element `i` of a list written literally, else of the whole value.
fn element_span(expr: &EditExpr, i: usize, len: usize) -> Range<usize> {
    match expr {
        EditExpr::Array(items) if items.len() == len => {
            items.get(i).map_or_else(|| span_of(expr), span_of)
        }
        _ => span_of(expr),
    }
}

fn providers(top: &Top<'_>, cx: &mut Cx) -> Providers {
    let mut out = Providers::default();
    for item in &top.providers {
        let (src, body) = (item.src, &item.block.body);
        let what = format!("provider `{}`", item.name);
        let Some(kind) = ProviderKind::parse(item.name) else {
            let names = ProviderKind::ALL.map(ProviderKind::as_str);
            let mut d = src.error(
                item.name_span(),
                format!("unknown provider `{}`", item.name),
                suggest::expected_one_of(names),
            );
            d.help = suggest::did_you_mean(item.name, names);
            cx.diags.push(d);
            continue;
        };
        match kind {
            ProviderKind::Aws => {
                let attrs = cx.check_body(
                    src,
                    body,
                    &what,
                    &[
                        "regions",
                        "profile",
                        "image",
                        "subnet",
                        "security_groups",
                        "endpoint",
                    ],
                    &[],
                );
                out.aws = Some(AwsProvider {
                    regions: cx
                        .strings(src, &attrs, "regions", &what)
                        .unwrap_or_default(),
                    profile: cx.string(src, &attrs, "profile", &what),
                    image: cx.string(src, &attrs, "image", &what),
                    subnet: cx.string(src, &attrs, "subnet", &what),
                    security_groups: cx
                        .strings(src, &attrs, "security_groups", &what)
                        .unwrap_or_default(),
                    endpoint: cx.string(src, &attrs, "endpoint", &what),
                });
            }
            ProviderKind::Gcp => {
                let attrs = cx.check_body(
                    src,
                    body,
                    &what,
                    &[
                        "project",
                        "regions",
                        "zones",
                        "image",
                        "network",
                        "subnetwork",
                        "service_account",
                        "endpoint",
                    ],
                    &[],
                );
                if !attrs.contains_key("project") {
                    cx.missing(src, item.header_span(), "project", &what, "\"my-project\"");
                }
                out.gcp = Some(GcpProvider {
                    project: cx.string(src, &attrs, "project", &what).unwrap_or_default(),
                    regions: cx
                        .strings(src, &attrs, "regions", &what)
                        .unwrap_or_default(),
                    image: cx.string(src, &attrs, "image", &what),
                    network: cx.string(src, &attrs, "network", &what),
                    endpoint: cx.string(src, &attrs, "endpoint", &what),
                    zones: cx.strings(src, &attrs, "zones", &what).unwrap_or_default(),
                    subnetwork: cx.string(src, &attrs, "subnetwork", &what),
                    service_account: cx.string(src, &attrs, "service_account", &what),
                });
            }
            ProviderKind::Azure => {
                let attrs = cx.check_body(
                    src,
                    body,
                    &what,
                    &[
                        "subscription_id",
                        "resource_group",
                        "regions",
                        "image",
                        "endpoint",
                        "admin_user",
                        "ssh_public_key",
                    ],
                    &[],
                );
                for (key, example) in [
                    (
                        "subscription_id",
                        "\"00000000-0000-0000-0000-000000000000\"",
                    ),
                    ("resource_group", "\"gpu\""),
                ] {
                    if !attrs.contains_key(key) {
                        cx.missing(src, item.header_span(), key, &what, example);
                    }
                }
                out.azure = Some(AzureProvider {
                    subscription_id: cx
                        .string(src, &attrs, "subscription_id", &what)
                        .unwrap_or_default(),
                    resource_group: cx
                        .string(src, &attrs, "resource_group", &what)
                        .unwrap_or_default(),
                    regions: cx
                        .strings(src, &attrs, "regions", &what)
                        .unwrap_or_default(),
                    image: cx.string(src, &attrs, "image", &what),
                    endpoint: cx.string(src, &attrs, "endpoint", &what),
                    admin_user: azure_admin_user(src, &attrs, cx, &what),
                    ssh_public_key: cx
                        .string(src, &attrs, "ssh_public_key", &what)
                        .filter(|k| !k.trim().is_empty()),
                });
            }
            ProviderKind::Baremetal => {
                let attrs = cx.check_body(src, body, &what, HOST_DEFAULTS, &["host"]);
                let defaults = host_defaults(src, &attrs, cx, &what);
                let mut hosts: Vec<Host> = Vec::new();
                let mut seen: BTreeMap<String, Origin> = BTreeMap::new();
                for block in body.blocks().filter(|b| b.ident.as_str() == "host") {
                    if let Some(host) = host(src, block, cx, &mut seen, &defaults) {
                        hosts.push(host);
                    }
                }
                if body.blocks().all(|b| b.ident.as_str() != "host") {
                    cx.diags.push(
                        src.error(
                            item.header_span(),
                            "provider `baremetal` declares no hosts",
                            "expected at least one `host \"NAME\" { … }` block",
                        )
                        .with_help("add a host: host \"dgx-1\" { address = \"10.0.0.11\" }"),
                    );
                }
                out.baremetal = Some(BaremetalProvider { hosts });
            }
        }
    }
    out
}

/// The connection attributes a `provider "baremetal"` block may set for all its hosts.
const HOST_DEFAULTS: &[&str] = &[
    "port",
    "user",
    "identity_file",
    "proxy_jump",
    "setup",
    "labels",
];

/// Defaults from the provider block, which each host's own attributes override.
#[derive(Default)]
struct HostDefaults {
    port: Option<u16>,
    user: Option<String>,
    identity_file: Option<String>,
    proxy_jump: Option<String>,
    setup: Option<Vec<String>>,
    labels: BTreeMap<String, String>,
}

fn host_defaults(src: &Source, attrs: &Attrs<'_>, cx: &mut Cx, what: &str) -> HostDefaults {
    HostDefaults {
        port: cx
            .whole(src, attrs, "port", what, 1, 65535)
            .and_then(|p| u16::try_from(p).ok()),
        user: cx.string(src, attrs, "user", what),
        identity_file: cx.string(src, attrs, "identity_file", what),
        proxy_jump: cx.string(src, attrs, "proxy_jump", what),
        setup: cx.strings(src, attrs, "setup", what),
        labels: cx
            .string_map(src, attrs, "labels", what)
            .unwrap_or_default(),
    }
}

fn host(
    src: &Source,
    block: &Block,
    cx: &mut Cx,
    seen: &mut BTreeMap<String, Origin>,
    defaults: &HostDefaults,
) -> Option<Host> {
    let ident = span_of(&block.ident);
    let Some(label) = block.labels.first() else {
        cx.diags.push(src.error(
            ident,
            "`host` block needs a name",
            "expected `host \"NAME\" { … }`",
        ));
        return None;
    };
    if let Some(extra) = block.labels.get(1) {
        cx.diags.push(src.error(
            span_of(extra),
            format!("`host` block takes one name, got {}", block.labels.len()),
            "remove this label",
        ));
        return None;
    }
    let name = label.as_str().to_string();
    let name_span = span_of(label);
    if let Some(first) = seen.get(&name) {
        cx.diags.push(
            src.error(
                name_span,
                format!("duplicate host `{name}`"),
                format!("host `{name}` is already declared at {first}"),
            )
            .with_help("rename or remove one of them"),
        );
        return None;
    }
    seen.insert(name.clone(), src.origin(name_span.start));
    let what = format!("host `{name}`");
    let attrs = cx.check_body(
        src,
        &block.body,
        &what,
        &[
            "address",
            "port",
            "user",
            "identity_file",
            "proxy_jump",
            "labels",
            "setup",
            "price",
            "gpu",
            "cpu",
            "memory",
        ],
        &[],
    );
    if !attrs.contains_key("address") {
        cx.missing(
            src,
            ident.start..name_span.end,
            "address",
            &what,
            "\"10.0.0.11\"",
        );
    }
    let address = cx.string(src, &attrs, "address", &what).unwrap_or_default();
    let port = cx
        .whole(src, &attrs, "port", &what, 1, 65535)
        .and_then(|p| u16::try_from(p).ok())
        .or(defaults.port)
        .unwrap_or(22);
    let mut labels = defaults.labels.clone();
    labels.extend(
        cx.string_map(src, &attrs, "labels", &what)
            .unwrap_or_default(),
    );
    let price = match (attrs.get("price"), cx.number(src, &attrs, "price", &what)) {
        (Some(attr), Some(p)) if p < 0.0 => {
            cx.bad_value(
                src,
                attr,
                &what,
                "a price of at least 0",
                &hcl::Value::from(p),
            );
            0.0
        }
        (_, p) => p.unwrap_or(0.0),
    };
    let mut host = Host {
        name,
        address,
        port,
        user: cx
            .string(src, &attrs, "user", &what)
            .or_else(|| defaults.user.clone()),
        identity_file: cx
            .string(src, &attrs, "identity_file", &what)
            .or_else(|| defaults.identity_file.clone()),
        proxy_jump: cx
            .string(src, &attrs, "proxy_jump", &what)
            .or_else(|| defaults.proxy_jump.clone()),
        labels,
        setup: cx
            .strings(src, &attrs, "setup", &what)
            .or_else(|| defaults.setup.clone())
            .unwrap_or_default(),
        price,
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Memory::default(),
        vcpus: cx
            .whole(src, &attrs, "cpu", &what, 0, u64::from(u32::MAX))
            .map_or(0, |c| u32::try_from(c).unwrap_or(0)),
        memory: cx
            .spec(src, &attrs, "memory", &what, &SIZE)
            .unwrap_or_default(),
        probe: crate::config::HostProbe::default(),
    };
    if let Some(gpu) = cx.spec(src, &attrs, "gpu", &what, &HOST_GPU) {
        let memory = gpu
            .memory
            .and_then(|m| if m.min == m.max { m.min } else { None });
        let count = if gpu.count.min == gpu.count.max {
            gpu.count.min
        } else {
            None
        };
        match (gpu.names.as_slice(), memory, count) {
            ([gpu_name], Some(memory), Some(count)) => {
                host.gpu_vendor = Some(gpu.vendor.unwrap_or(GpuVendor::Nvidia));
                host.gpu_name = gpu_name.clone();
                host.gpu_memory = memory;
                host.gpu_count = count;
            }
            _ => {
                let span = attrs.get("gpu").map_or(ident, |a| span_of(&a.value));
                cx.diags.push(
                    src.error(
                        span,
                        format!("`gpu` in {what} must say exactly what the host has"),
                        HOST_GPU.expected,
                    )
                    .with_help("a host is one machine: no lists of names, no ranges"),
                );
            }
        }
    }
    Some(host)
}

fn volume(item: &Item<'_>, cx: &mut Cx, rules: &Rules<'_, '_>) -> Option<Volume> {
    let src = item.src;
    let what = format!("volume `{}`", item.name);
    let attrs = cx.check_body(
        src,
        &item.block.body,
        &what,
        &["provider", "region", "size", "type", "prevent_destroy"],
        &[],
    );
    let provider = rules.cloud_provider(cx, src, &attrs, &what);
    let region = cx.string(src, &attrs, "region", &what);
    let volume_type = cx.string(src, &attrs, "type", &what);
    let prevent_destroy = cx
        .bool(src, &attrs, "prevent_destroy", &what)
        .unwrap_or(false);
    let Some(size_attr) = attrs.get("size") else {
        cx.missing(src, item.header_span(), "size", &what, "\"500GB\"");
        return None;
    };
    let size = cx.spec(src, &attrs, "size", &what, &SIZE)?;
    if size.mib() == 0 {
        cx.diags.push(src.error(
            span_of(&size_attr.value),
            format!("`size` in {what} must be more than 0"),
            SIZE.expected,
        ));
        return None;
    }
    Some(Volume {
        name: item.name.to_string(),
        provider,
        region,
        size,
        volume_type,
        prevent_destroy,
        origin: origin(item),
    })
}

fn resources(src: &Source, block: &Block, cx: &mut Cx) -> Resources {
    let what = "`resources`";
    if let Some(label) = block.labels.first() {
        cx.diags.push(src.error(
            span_of(label),
            "`resources` block takes no name",
            "expected `resources { … }`",
        ));
    }
    let attrs = cx.check_body(
        src,
        &block.body,
        what,
        &["cpu", "memory", "disk", "gpu", "gpu_total_memory"],
        &[],
    );
    let mut r = Resources::default();
    if let Some(cpu) = cx.spec(src, &attrs, "cpu", what, &COUNT) {
        r.cpu = cpu;
    }
    if let Some(memory) = cx.spec(src, &attrs, "memory", what, &SIZE_RANGE) {
        r.memory = memory;
    }
    if let Some(disk) = cx.spec(src, &attrs, "disk", what, &SIZE_RANGE) {
        r.disk = disk;
    }
    r.gpu = cx.spec(src, &attrs, "gpu", what, &GPU);
    r.gpu_total_memory = cx.spec(src, &attrs, "gpu_total_memory", what, &SIZE_RANGE);
    r
}

fn fleet(
    item: &Item<'_>,
    cx: &mut Cx,
    rules: &Rules<'_, '_>,
    volumes: &BTreeMap<String, Volume>,
    mounted: &mut BTreeMap<String, (String, Origin)>,
) -> Option<Fleet> {
    let src = item.src;
    let what = format!("fleet `{}`", item.name);
    let attrs = cx.check_body(
        src,
        &item.block.body,
        &what,
        &[
            "nodes",
            "placement",
            "spot_policy",
            "max_price",
            "providers",
            "regions",
            "instance_types",
            "volumes",
            "tags",
        ],
        &["resources"],
    );
    let nodes = cx
        .whole(src, &attrs, "nodes", &what, 0, u64::from(u32::MAX))
        .map_or(1, |n| u32::try_from(n).unwrap_or(1));
    let placement = match cx
        .choice(src, &attrs, "placement", &what, &["any", "cluster"])
        .as_deref()
    {
        Some("cluster") => Placement::Cluster,
        _ => Placement::Any,
    };
    let spot_policy = cx
        .choice(
            src,
            &attrs,
            "spot_policy",
            &what,
            &["spot", "on-demand", "auto"],
        )
        .and_then(|s| SpotPolicy::parse(&s))
        .unwrap_or_default();
    let max_price = match (
        attrs.get("max_price"),
        cx.number(src, &attrs, "max_price", &what),
    ) {
        (Some(attr), Some(p)) if p <= 0.0 => {
            cx.bad_value(
                src,
                attr,
                &what,
                "a price in USD per node-hour, more than 0",
                &hcl::Value::from(p),
            );
            None
        }
        (_, p) => p,
    };

    let mut providers = Vec::new();
    if let Some(attr) = attrs.get("providers") {
        if let Some(names) = cx.strings(src, &attrs, "providers", &what) {
            if names.is_empty() {
                cx.diags.push(src.error(
                    span_of(&attr.value),
                    format!("`providers` in {what} must list at least one provider"),
                    "expected a list such as `[\"aws\", \"gcp\"]`",
                ));
            }
            for (i, name) in names.iter().enumerate() {
                let span = element_span(&attr.value, i, names.len());
                let Some(kind) = rules.provider(cx, src, span.clone(), name) else {
                    continue;
                };
                if providers.contains(&kind) {
                    cx.diags.push(src.error(
                        span,
                        format!("provider `{name}` is listed twice in {what}"),
                        "remove one of them",
                    ));
                    continue;
                }
                providers.push(kind);
            }
        }
    } else {
        providers.clone_from(&rules.available);
    }

    let mut resources_blocks = item
        .block
        .body
        .blocks()
        .filter(|b| b.ident.as_str() == "resources");
    let resources_value = match resources_blocks.next() {
        Some(block) => resources(src, block, cx),
        None => Resources::default(),
    };
    for extra in resources_blocks {
        cx.diags.push(
            src.error(
                span_of(&extra.ident),
                format!("`resources` is set twice in {what}"),
                "expected one `resources` block",
            )
            .with_help("merge them into one"),
        );
    }

    let mut fleet_volumes = Vec::new();
    if let Some(attr) = attrs.get("volumes") {
        let declared: Vec<&str> = rules.top.names("volume").collect();
        for (name, span) in cx.references(src, attr, &what, "volume", &declared) {
            if let Some((other, at)) = mounted.get(&name) {
                cx.diags.push(
                    src.error(span, format!("volume `{name}` is already mounted by fleet `{other}`"), format!("a volume is mounted by one fleet at most; fleet `{other}` mounts it at {at}"))
                        .with_help("declare another volume for this fleet"),
                );
                continue;
            }
            mounted.insert(
                name.clone(),
                (item.name.to_string(), src.origin(span.start)),
            );
            if let Some(v) = volumes.get(&name)
                && let Some(p) = v
                    .provider
                    .filter(|p| !providers.is_empty() && !providers.contains(p))
            {
                cx.diags.push(
                    src.error(
                        span.clone(),
                        format!("volume `{name}` is on `{p}`, which {what} does not use"),
                        format!("the fleet's providers do not include `{p}`"),
                    )
                    .with_help(format!(
                        "add \"{p}\" to `providers`, or change the volume's provider"
                    )),
                );
            }
            fleet_volumes.push(name);
        }
    }

    Some(Fleet {
        name: item.name.to_string(),
        nodes,
        placement,
        spot_policy,
        max_price,
        providers,
        regions: cx
            .strings(src, &attrs, "regions", &what)
            .unwrap_or_default(),
        instance_types: cx
            .strings(src, &attrs, "instance_types", &what)
            .unwrap_or_default(),
        resources: resources_value,
        volumes: fleet_volumes,
        tags: cx
            .string_map(src, &attrs, "tags", &what)
            .unwrap_or_default(),
        origin: origin(item),
    })
}

fn gateway(item: &Item<'_>, cx: &mut Cx, rules: &Rules<'_, '_>) -> Option<Gateway> {
    let src = item.src;
    let what = format!("gateway `{}`", item.name);
    let attrs = cx.check_body(
        src,
        &item.block.body,
        &what,
        &["domain", "targets", "port", "provider", "region"],
        &[],
    );
    let domain = cx.string(src, &attrs, "domain", &what);
    let port = cx
        .whole(src, &attrs, "port", &what, 1, 65535)
        .map_or(80, |p| u16::try_from(p).unwrap_or(80));
    let provider = rules.cloud_provider(cx, src, &attrs, &what);
    let region = cx.string(src, &attrs, "region", &what);
    let Some(attr) = attrs.get("targets") else {
        cx.missing(src, item.header_span(), "targets", &what, "[fleet.NAME]");
        return None;
    };
    let declared: Vec<&str> = rules.top.names("fleet").collect();
    let targets: Vec<String> = cx
        .references(src, attr, &what, "fleet", &declared)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    if matches!(&attr.value, EditExpr::Array(items) if items.is_empty()) {
        cx.diags.push(src.error(
            span_of(&attr.value),
            format!("`targets` in {what} must list at least one fleet"),
            "expected a list such as `[fleet.serve]`",
        ));
        return None;
    }
    Some(Gateway {
        name: item.name.to_string(),
        domain,
        targets,
        port,
        provider,
        region,
        origin: origin(item),
    })
}

/// Gateways are cloud load balancers: a fleet that may put nodes on bare-metal hosts cannot
/// be behind one (yet), so say so at the gateway's `targets`.
fn gateway_not_on_baremetal(
    item: &Item<'_>,
    cx: &mut Cx,
    gateway: &Gateway,
    fleets: &BTreeMap<String, Fleet>,
) {
    let span = item
        .block
        .body
        .attributes()
        .find(|a| a.key.as_str() == "targets")
        .map_or_else(|| item.header_span(), |a| span_of(&a.value));
    for target in &gateway.targets {
        let Some(fleet) = fleets.get(target) else {
            continue;
        };
        if fleet.providers.contains(&ProviderKind::Baremetal) {
            cx.diags.push(
                item.src
                    .error(
                        span.clone(),
                        format!(
                            "gateway `{}` targets fleet `{target}`, which may run on `baremetal` hosts",
                            gateway.name
                        ),
                        "gateways cannot target bare-metal fleets yet",
                    )
                    .with_help(format!(
                        "limit fleet `{target}` to clouds, e.g. providers = [\"aws\"], or remove it from the gateway's targets"
                    )),
            );
        }
    }
}

fn output(item: &Item<'_>, cx: &mut Cx, top: &Top<'_>) -> Option<Output> {
    let src = item.src;
    let what = format!("output `{}`", item.name);
    let attrs = cx.check_body(src, &item.block.body, &what, &["value", "description"], &[]);
    let _ = cx.string(src, &attrs, "description", &what);
    let Some(attr) = attrs.get("value") else {
        cx.missing(
            src,
            item.header_span(),
            "value",
            &what,
            "fleet.NAME.private_ips",
        );
        return None;
    };
    let value = match block_reference(&attr.value) {
        Some((root, name, attribute)) => {
            let span = span_of(&attr.value);
            let allowed = OUTPUT_ATTRIBUTES
                .iter()
                .find(|(k, _)| *k == root)
                .map_or(&[][..], |(_, a)| *a);
            if !top.has(&root, &name) {
                let mut d = src.error(
                    span,
                    format!("unknown {root} `{root}.{name}`"),
                    format!("no {root} `{name}` is declared"),
                );
                d.help = Some(suggest::closest(&name, top.names(&root)).map_or_else(
                    || format!("declare it: {root} \"{name}\" {{ … }}"),
                    |c| format!("did you mean `{root}.{c}`?"),
                ));
                cx.diags.push(d);
                return None;
            }
            let Some(attribute) = attribute else {
                cx.diags.push(
                    src.error(
                        span,
                        format!("`{root}.{name}` has no value of its own"),
                        format!(
                            "expected an attribute: {}",
                            allowed
                                .iter()
                                .map(|a| format!("`{root}.{name}.{a}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    )
                    .with_help(format!(
                        "for example `{root}.{name}.{}`",
                        allowed.first().unwrap_or(&"ids")
                    )),
                );
                return None;
            };
            if !allowed.contains(&attribute.as_str()) {
                let mut d = src.error(
                    span,
                    format!("unknown attribute `{attribute}` of {root} `{name}`"),
                    suggest::expected_one_of(allowed.iter().copied()),
                );
                d.help = suggest::did_you_mean(&attribute, allowed.iter().copied());
                cx.diags.push(d);
                return None;
            }
            OutputValue::Ref {
                address: format!("{root}.{name}"),
                attribute,
            }
        }
        None => OutputValue::Value(to_json(&cx.value(src, attr)?)),
    };
    Some(Output {
        name: item.name.to_string(),
        value,
        origin: origin(item),
    })
}

/// `fleet.NAME.ATTR` (or `fleet.NAME`) as `("fleet", "NAME", Some("ATTR"))`, for the roots
/// `fleet`, `volume` and `gateway`.
fn block_reference(expr: &EditExpr) -> Option<(String, String, Option<String>)> {
    if let Some((root, name)) = reference(expr) {
        return matches!(root.as_str(), "fleet" | "volume" | "gateway")
            .then_some((root, name, None));
    }
    let EditExpr::Traversal(t) = expr else {
        return None;
    };
    let EditExpr::Variable(root) = &t.expr else {
        return None;
    };
    let root = root.as_str();
    if !matches!(root, "fleet" | "volume" | "gateway") {
        return None;
    }
    let names: Option<Vec<String>> = t
        .operators
        .iter()
        .map(|op| match op.value() {
            hcl::edit::expr::TraversalOperator::GetAttr(n) => Some(n.as_str().to_string()),
            _ => None,
        })
        .collect();
    match names?.as_slice() {
        [name, attribute] => Some((root.to_string(), name.clone(), Some(attribute.clone()))),
        _ => None,
    }
}
