//! Gateways: a Standard static public IP (`{name}-ip`) and a Standard load balancer (`{name}`)
//! with one frontend on that IP, one backend pool, a TCP probe and a TCP rule on the gateway's
//! port. The pool's members are the target VMs' NICs: a NIC joins by naming the pool in its
//! primary IP configuration's `loadBalancerBackendAddressPools` (a PUT of the NIC), which is
//! how ARM models NIC-based pools; the load balancer only reports them back
//! (`backendIPConfigurations`).
//!
//! Every part is named after the gateway's address ([`api::name`]), so a create interrupted
//! half-way is finished by the next one: each part is read first, adopted when its
//! `flotilla-lineage` tag is this state's (an error naming it otherwise), and only PUT when
//! missing or not as wanted. Target changes update the pool in place: new NICs join, dropped
//! ones leave. Requests go out with `.send()` and are waited on with [`api::wait`], not the
//! network client's own wait, which drops ARM's error body on failure.
//!
//! A Standard load balancer passes no inbound traffic unless a network security group allows
//! it, so each gateway also keeps a rule in its region's NSG ([`crate::security`]) that lets
//! its port in from the internet; the rule is named like the load balancer and recorded as
//! `security_rule_id`.

use crate::{AzureProvider, api};
use azure_mgmt_network::models;
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{GatewayRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The load balancer's frontend IP configuration.
const FRONTEND: &str = "frontend";
/// The load balancer's backend pool.
pub(crate) const POOL: &str = "backend";
/// The load balancer's health probe.
const PROBE: &str = "probe";
/// The load balancer's rule.
const RULE: &str = "rule";
/// ARM type of load balancers.
const LB_TYPE: &str = "Microsoft.Network/loadBalancers";

/// Makes the gateway (or finishes one an interrupted apply left), with the request's targets
/// in its pool.
pub(crate) async fn create(
    p: &AzureProvider,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    let names = Names {
        lb: api::name(&request.owner, ""),
        ip: api::name(&request.owner, "-ip"),
    };
    ensure(p, request, &names).await
}

/// Brings the gateway's port and pool members to `request`, in place; a part that has gone
/// missing is made again.
pub(crate) async fn update(
    p: &AzureProvider,
    gateway: &Resource,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    // The names the gateway was made with (the same as `create` derives, unless the state
    // was edited): an update never starts a second load balancer beside the first.
    let recorded = |id: Option<&str>| {
        id.filter(|s| !s.is_empty())
            .map(|s| api::last(s).to_string())
    };
    let names = Names {
        lb: recorded(Some(gateway.provider_id.as_str()))
            .unwrap_or_else(|| api::name(&request.owner, "")),
        ip: recorded(
            gateway
                .attributes
                .get("public_ip_id")
                .and_then(Value::as_str),
        )
        .unwrap_or_else(|| api::name(&request.owner, "-ip")),
    };
    let mut r = ensure(p, request, &names).await?;
    r.address.clone_from(&gateway.address);
    Ok(r)
}

/// The names of a gateway's load balancer and public IP.
struct Names {
    lb: String,
    ip: String,
}

/// Makes or adopts the IP and the load balancer, then syncs the pool.
async fn ensure(
    p: &AzureProvider,
    request: &GatewayRequest,
    names: &Names,
) -> Result<Resource, ProviderError> {
    let region = request.region.as_str();
    let c = p.ready(region).await?;
    let owner = &request.owner;
    let name = names.lb.as_str();
    let ip = ensure_ip(p, owner, region, &names.ip).await?;
    let ip_id = ip["id"].as_str().unwrap_or_default().to_string();
    let lbs = c.network.load_balancers_client();
    let what = format!("load balancer {name}");
    let existing = api::get(lbs.get(&c.resource_group, name, &c.subscription).send()).await?;
    if let Some(lb) = &existing {
        api::adoptable(lb, owner, "load balancer")?;
    }
    let lb = match existing {
        Some(lb)
            if api::provisioning_state(&lb) == "Succeeded"
                && as_wanted(&lb, &ip_id, request.port) =>
        {
            lb
        }
        _ => {
            let lb_id = c.id(LB_TYPE, name);
            let params: models::LoadBalancer =
                api::model(lb_body(owner, region, &lb_id, &ip_id, request.port))?;
            api::send_wait(
                p,
                lbs.create_or_update(&c.resource_group, name, params, &c.subscription)
                    .send(),
                &what,
            )
            .await?;
            get_lb(p, name).await?
        }
    };
    let lb = sync_members(p, lb, name, request).await?;
    let network = crate::security::network_owner(&owner.lineage, region);
    let rule =
        crate::security::allow(p, &network, region, name, &owner.address, request.port).await?;
    let mut r = resource(&lb, &ip, request);
    r.attributes
        .insert("security_rule_id".to_string(), Value::String(rule));
    Ok(r)
}

/// Makes or adopts the gateway's static public IP; returns it as ARM shows it once ready
/// (with its address).
async fn ensure_ip(
    p: &AzureProvider,
    owner: &Ownership,
    region: &str,
    name: &str,
) -> Result<Value, ProviderError> {
    let c = p.clients().await?;
    let ips = c.network.public_ip_addresses_client();
    let what = format!("public IP address {name}");
    let get = || ips.get(&c.resource_group, name, &c.subscription).send();
    if let Some(ip) = api::get(get()).await? {
        api::adoptable(&ip, owner, "public IP address")?;
        if api::provisioning_state(&ip) == "Succeeded" && ip["properties"]["ipAddress"].is_string()
        {
            return Ok(ip);
        }
    }
    let params: models::PublicIpAddress = api::model(ip_body(owner, region))?;
    api::send_wait(
        p,
        ips.create_or_update(&c.resource_group, name, params, &c.subscription)
            .send(),
        &what,
    )
    .await?;
    api::get(get())
        .await?
        .ok_or_else(|| crate::gone(&format!("{what}, just made,")))
}

/// The PUT body of the gateway's public IP: Standard SKUs need a static address.
pub(crate) fn ip_body(owner: &Ownership, region: &str) -> Value {
    json!({
        "location": region,
        "tags": api::tags(owner, &BTreeMap::new()),
        "sku": {"name": "Standard"},
        "properties": {
            "publicIPAllocationMethod": "Static",
            "publicIPAddressVersion": "IPv4",
        },
    })
}

/// The PUT body of the load balancer `lb_id`: frontend on `ip_id`, one pool, a TCP probe and
/// a TCP rule from `port` to `port`. Child references are ids under `lb_id`, as ARM wants.
pub(crate) fn lb_body(
    owner: &Ownership,
    region: &str,
    lb_id: &str,
    ip_id: &str,
    port: u16,
) -> Value {
    json!({
        "location": region,
        "tags": api::tags(owner, &BTreeMap::new()),
        "sku": {"name": "Standard"},
        "properties": {
            "frontendIPConfigurations": [
                {"name": FRONTEND, "properties": {"publicIPAddress": {"id": ip_id}}}
            ],
            "backendAddressPools": [{"name": POOL}],
            "probes": [{"name": PROBE, "properties": {
                "protocol": "Tcp", "port": port, "intervalInSeconds": 5, "numberOfProbes": 2,
            }}],
            "loadBalancingRules": [{"name": RULE, "properties": {
                "frontendIPConfiguration": {"id": format!("{lb_id}/frontendIPConfigurations/{FRONTEND}")},
                "backendAddressPool": {"id": format!("{lb_id}/backendAddressPools/{POOL}")},
                "probe": {"id": format!("{lb_id}/probes/{PROBE}")},
                "protocol": "Tcp",
                "frontendPort": port,
                "backendPort": port,
                "idleTimeoutInMinutes": 4,
                "enableFloatingIP": false,
            }}],
        },
    })
}

/// Whether an existing load balancer already is what [`lb_body`] would make: its frontend on
/// `ip_id`, our pool, and rule and probe on `port`. Then it is left alone (a PUT would only
/// repeat it).
pub(crate) fn as_wanted(lb: &Value, ip_id: &str, port: u16) -> bool {
    let props = &lb["properties"];
    let named = |coll: &str, name: &str| -> Value {
        props[coll]
            .as_array()
            .into_iter()
            .flatten()
            .find(|x| x["name"].as_str() == Some(name))
            .cloned()
            .unwrap_or(Value::Null)
    };
    let frontend = named("frontendIPConfigurations", FRONTEND);
    let rule = named("loadBalancingRules", RULE);
    let probe = named("probes", PROBE);
    let port = Value::from(port);
    frontend["properties"]["publicIPAddress"]["id"]
        .as_str()
        .is_some_and(|id| api::same_id(id, ip_id))
        && !named("backendAddressPools", POOL).is_null()
        && rule["properties"]["frontendPort"] == port
        && rule["properties"]["backendPort"] == port
        && rule["properties"]["protocol"].as_str() == Some("Tcp")
        && probe["properties"]["port"] == port
}

/// The load balancer `name` as ARM shows it now.
async fn get_lb(p: &AzureProvider, name: &str) -> Result<Value, ProviderError> {
    let c = p.clients().await?;
    api::get(
        c.network
            .load_balancers_client()
            .get(&c.resource_group, name, &c.subscription)
            .send(),
    )
    .await?
    .ok_or_else(|| crate::gone(&format!("load balancer {name}")))
}

/// The ARM id of our backend pool of a load balancer.
fn pool_id(lb: &Value) -> String {
    lb["properties"]["backendAddressPools"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"].as_str() == Some(POOL))
        .and_then(|x| x["id"].as_str())
        .map_or_else(
            || {
                format!(
                    "{}/backendAddressPools/{POOL}",
                    lb["id"].as_str().unwrap_or_default()
                )
            },
            str::to_string,
        )
}

/// The NICs in a load balancer's pools, by lower-cased id (ARM ids compare
/// case-insensitively): from each member IP configuration
/// (`…/networkInterfaces/{nic}/ipConfigurations/{ipc}`), its NIC's id. `only_ours` keeps to
/// our pool ([`POOL`]).
pub(crate) fn members(lb: &Value, only_ours: bool) -> BTreeMap<String, String> {
    lb["properties"]["backendAddressPools"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|pool| !only_ours || pool["name"].as_str() == Some(POOL))
        .flat_map(|pool| {
            pool["properties"]["backendIPConfigurations"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .filter_map(|ipc| ipc["id"].as_str())
        .map(nic_of)
        .map(|nic| (nic.to_ascii_lowercase(), nic))
        .collect()
}

/// The NIC id of an IP configuration id (the id itself when it is not one).
fn nic_of(ip_configuration: &str) -> String {
    let lower = ip_configuration.to_ascii_lowercase();
    match lower.find("/ipconfigurations/") {
        Some(i) => ip_configuration[..i].to_string(),
        None => ip_configuration.to_string(),
    }
}

/// The NIC ids of the request's targets, by lower-cased id. A target recorded without a
/// `nic_id` cannot join: that is an error naming it, not a silently smaller pool.
fn wanted(request: &GatewayRequest) -> Result<BTreeMap<String, String>, ProviderError> {
    let mut out = BTreeMap::new();
    for t in request
        .targets
        .iter()
        .filter(|t| t.provider == ProviderKind::Azure)
    {
        let nic = t
            .attributes
            .get("nic_id")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| {
                api::other(
                    "NoNic",
                    format!(
                        "gateway {}: its target {} has no `nic_id` in the state, so it cannot \
                         join the load balancer; apply again so the node is recorded anew, or \
                         `flotilla state rm {}` and apply",
                        request.owner.address, t.address, t.address
                    ),
                )
            })?;
        out.insert(nic.to_ascii_lowercase(), nic.to_string());
    }
    Ok(out)
}

/// Adds and removes NICs until the pool holds exactly the request's targets; returns the load
/// balancer as ARM shows it afterwards. One NIC at a time: each NIC update also updates the
/// load balancer, and ARM answers concurrent ones with `AnotherOperationInProgress` or
/// `RetryableError` (Terraform's azurerm provider serialises them the same way, with a lock
/// per load balancer).
async fn sync_members(
    p: &AzureProvider,
    lb: Value,
    name: &str,
    request: &GatewayRequest,
) -> Result<Value, ProviderError> {
    let pool = pool_id(&lb);
    let want = wanted(request)?;
    let have = members(&lb, true);
    let join = want
        .iter()
        .filter(|(k, _)| !have.contains_key(*k))
        .map(|(_, nic)| (nic, true));
    let leave = have
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, nic)| (nic, false));
    let changes: Vec<(&String, bool)> = join.chain(leave).collect();
    if changes.is_empty() {
        return Ok(lb);
    }
    for (nic, member) in changes {
        set_membership(p, nic, &pool, member).await?;
    }
    get_lb(p, name).await
}

/// ARM's answers when another operation holds the NIC or its load balancer: worth another try.
const BUSY: [&str; 3] = [
    "AnotherOperationInProgress",
    "RetryableError",
    "ReferencedResourceNotProvisioned",
];
/// How many times a busy NIC update is tried.
const BUSY_TRIES: u32 = 8;

/// Puts `nic` in the pool `pool` (or takes it out) and waits. A NIC already gone needs no
/// leaving; one that must join and is gone is an error. An update ARM refuses because another
/// operation holds the NIC or the load balancer ([`BUSY`]) is read and tried again, with
/// backoff.
async fn set_membership(
    p: &AzureProvider,
    nic: &str,
    pool: &str,
    member: bool,
) -> Result<(), ProviderError> {
    let mut backoff = p.options.poll_interval;
    let mut tries = 1;
    loop {
        match try_membership(p, nic, pool, member).await {
            Err(e) if tries < BUSY_TRIES && BUSY.contains(&e.code.as_str()) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(p.options.max_poll_interval);
                tries += 1;
            }
            done => {
                return done.map_err(|e| {
                    ProviderError::new(
                        e.kind,
                        e.code,
                        format!(
                            "{} network interface {nic} {} the load balancer pool {pool}: {}",
                            if member { "adding" } else { "removing" },
                            if member { "to" } else { "from" },
                            e.message
                        ),
                    )
                });
            }
        }
    }
}

/// One try of [`set_membership`]: GET the NIC, change its pools, PUT it and wait.
async fn try_membership(
    p: &AzureProvider,
    nic: &str,
    pool: &str,
    member: bool,
) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let (group, name) = group_and_name(nic).unwrap_or((c.resource_group.as_str(), api::last(nic)));
    let nics = c.network.network_interfaces_client();
    let Some(mut body) = api::get(nics.get(group, name, &c.subscription).send()).await? else {
        return if member {
            Err(crate::gone(&format!("network interface {nic}")))
        } else {
            Ok(())
        };
    };
    if !set_pool(&mut body, pool, member) {
        return Ok(());
    }
    let params: models::NetworkInterface = api::model(body)?;
    api::send_wait(
        p,
        nics.create_or_update(group, name, params, &c.subscription)
            .send(),
        &format!("network interface {name}"),
    )
    .await
    .map(|_| ())
}

/// Adds `pool` to (or removes it from) the primary IP configuration of a NIC body as GET shows
/// it; whether anything changed.
pub(crate) fn set_pool(nic: &mut Value, pool: &str, member: bool) -> bool {
    let Some(configs) = nic["properties"]["ipConfigurations"].as_array_mut() else {
        return false;
    };
    let primary = configs
        .iter()
        .position(|c| c["properties"]["primary"].as_bool() == Some(true))
        .unwrap_or(0);
    let Some(config) = configs.get_mut(primary) else {
        return false;
    };
    let Some(props) = config.get_mut("properties").and_then(Value::as_object_mut) else {
        return false;
    };
    let pools = props
        .entry("loadBalancerBackendAddressPools")
        .or_insert_with(|| json!([]));
    if !pools.is_array() {
        *pools = json!([]);
    }
    let Some(list) = pools.as_array_mut() else {
        return false;
    };
    let there = list
        .iter()
        .any(|x| x["id"].as_str().is_some_and(|id| api::same_id(id, pool)));
    match (member, there) {
        (true, false) => {
            list.push(json!({"id": pool}));
            true
        }
        (false, true) => {
            list.retain(|x| !x["id"].as_str().is_some_and(|id| api::same_id(id, pool)));
            true
        }
        _ => false,
    }
}

/// The resource group and name of an ARM id
/// (`/subscriptions/{s}/resourceGroups/{rg}/providers/{ns}/{type}/{name}`).
pub(crate) fn group_and_name(id: &str) -> Option<(&str, &str)> {
    let parts: Vec<&str> = id.trim_matches('/').split('/').collect();
    let group = parts
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| parts.get(i + 1))?;
    let name = parts.last()?;
    (parts.len() >= 8).then_some((*group, *name))
}

/// Takes every NIC out of the load balancer's pools, then deletes the load balancer and its
/// public IP; parts already gone are fine.
pub(crate) async fn delete(p: &AzureProvider, gateway: &Resource) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&gateway.provider_id).to_string();
    let group = group_and_name(&gateway.provider_id)
        .map_or(c.resource_group.as_str(), |(g, _)| g)
        .to_string();
    let lbs = c.network.load_balancers_client();
    let mut ip_id = gateway
        .attributes
        .get("public_ip_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let mut rule_id = gateway
        .attributes
        .get("security_rule_id")
        .and_then(Value::as_str)
        .map(str::to_string);
    if let Some(lb) = api::get(lbs.get(&group, &name, &c.subscription).send()).await? {
        // A state written before gateways had rules: the rule `create` would have made.
        if rule_id.is_none()
            && let Some(lineage) = lb["tags"][api::LINEAGE_TAG].as_str()
        {
            let network = crate::security::network_owner(lineage, &gateway.region);
            let nsg = crate::security::nsg_name(&network);
            rule_id = Some(format!(
                "/subscriptions/{}/resourceGroups/{group}/providers/Microsoft.Network/\
                 networkSecurityGroups/{nsg}/securityRules/{name}",
                c.subscription
            ));
        }
        if let Some(id) =
            lb["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAddress"]["id"]
                .as_str()
        {
            ip_id = Some(id.to_string());
        }
        let pools: Vec<String> = lb["properties"]["backendAddressPools"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|x| x["id"].as_str().map(str::to_string))
            .collect();
        let nics = members(&lb, false);
        // One NIC at a time, as in `sync_members`.
        for nic in nics.values() {
            for pool in &pools {
                set_membership(p, nic, pool, false).await?;
            }
        }
        api::delete(
            p,
            lbs.delete(&group, &name, &c.subscription).send(),
            &format!("load balancer {name}"),
        )
        .await?;
    }
    if let Some(rule_id) = rule_id {
        crate::security::revoke(p, &rule_id).await?;
    }
    if let Some(ip_id) = ip_id {
        let (ip_group, ip_name) = group_and_name(&ip_id).unwrap_or((&group, api::last(&ip_id)));
        api::delete(
            p,
            c.network
                .public_ip_addresses_client()
                .delete(ip_group, ip_name, &c.subscription)
                .send(),
            &format!("public IP address {ip_name}"),
        )
        .await?;
    }
    Ok(())
}

/// The gateway made for `owner` in `region` by an earlier, interrupted apply: its load
/// balancer, when it exists with this state's lineage tag (one with another owner is left to
/// [`create`], which names it in its error). The executor then brings it up to date.
pub(crate) async fn find(
    p: &AzureProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let c = p.clients().await?;
    let name = api::name(owner, "");
    let Some(lb) = api::get(
        c.network
            .load_balancers_client()
            .get(&c.resource_group, &name, &c.subscription)
            .send(),
    )
    .await?
    else {
        return Ok(None);
    };
    if lb["tags"][api::LINEAGE_TAG].as_str() != Some(owner.lineage.as_str()) {
        return Ok(None);
    }
    let ip = match lb["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAddress"]
        ["id"]
        .as_str()
        .and_then(group_and_name)
    {
        Some((group, ip_name)) => api::get(
            c.network
                .public_ip_addresses_client()
                .get(group, ip_name, &c.subscription)
                .send(),
        )
        .await?
        .unwrap_or(Value::Null),
        None => Value::Null,
    };
    let request = GatewayRequest {
        owner: owner.clone(),
        region: region.to_string(),
        domain: None,
        port: port(&lb).unwrap_or(0),
        targets: Vec::new(),
    };
    let mut r = resource(&lb, &ip, &request);
    r.attributes.remove("targets");
    Ok(Some(r))
}

/// The port of the load balancer's rule.
pub(crate) fn port(lb: &Value) -> Option<u16> {
    lb["properties"]["loadBalancingRules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|x| x["name"].as_str() == Some(RULE))
        .and_then(|x| x["properties"]["frontendPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
}

/// What DNS should point at: the IP's FQDN when it has one, else its address.
pub(crate) fn dns_name(ip: &Value) -> Option<&str> {
    ip["properties"]["dnsSettings"]["fqdn"]
        .as_str()
        .filter(|s| !s.is_empty())
        .or_else(|| ip["properties"]["ipAddress"].as_str())
}

/// What flotilla records of a gateway: the load balancer's id, its IP, DNS name and pool.
pub(crate) fn resource(lb: &Value, ip: &Value, request: &GatewayRequest) -> Resource {
    let mut attributes = BTreeMap::new();
    let mut put = |k: &str, v: Value| {
        attributes.insert(k.to_string(), v);
    };
    if let Some(id) = ip["id"].as_str() {
        put("public_ip_id", Value::from(id));
    }
    if let Some(addr) = ip["properties"]["ipAddress"].as_str() {
        put("ip_address", Value::from(addr));
    }
    if let Some(dns) = dns_name(ip) {
        put("dns_name", Value::from(dns));
    }
    put("backend_pool_id", Value::from(pool_id(lb)));
    put("port", Value::from(request.port));
    if let Some(domain) = &request.domain {
        put("domain", Value::from(domain.clone()));
    }
    put(
        "targets",
        Value::Array(
            request
                .targets
                .iter()
                .map(|t| Value::from(t.address.clone()))
                .collect(),
        ),
    );
    Resource {
        address: request.owner.address.clone(),
        kind: ResourceKind::Gateway,
        provider: crate::KIND,
        provider_id: lb["id"].as_str().unwrap_or_default().to_string(),
        region: request.region.clone(),
        zone: String::new(),
        offer: None,
        attributes,
        dependencies: request.targets.iter().map(|t| t.address.clone()).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/loadBalancers/fl-1-gateway-api";
    const IP: &str = "/subscriptions/s/resourceGroups/rg/providers/Microsoft.Network/publicIPAddresses/fl-1-gateway-api-ip";

    fn owner() -> Ownership {
        Ownership {
            lineage: "0f3a9c2e-1111-2222-3333-444455556666".into(),
            address: "gateway.api".into(),
            generation: 0,
        }
    }

    /// The body as ARM echoes it: children get ids, the pool lists its members.
    fn echoed(port: u16, members: &[&str]) -> Value {
        let mut lb = lb_body(&owner(), "eastus", LB, IP, port);
        lb["id"] = json!(LB);
        let pool = &mut lb["properties"]["backendAddressPools"][0];
        pool["id"] = json!(format!("{LB}/backendAddressPools/{POOL}"));
        pool["properties"] = json!({"backendIPConfigurations": members
            .iter()
            .map(|m| json!({"id": format!("{m}/ipConfigurations/ipconfig1")}))
            .collect::<Vec<_>>()});
        lb
    }

    #[test]
    fn the_bodies_are_what_the_clients_take() {
        let lb: models::LoadBalancer =
            api::model(lb_body(&owner(), "eastus", LB, IP, 8080)).unwrap();
        let back = serde_json::to_value(&lb).unwrap();
        let rule = &back["properties"]["loadBalancingRules"][0]["properties"];
        assert_eq!(rule["frontendPort"], 8080);
        assert_eq!(rule["backendPort"], 8080);
        assert_eq!(
            rule["backendAddressPool"]["id"],
            format!("{LB}/backendAddressPools/{POOL}")
        );
        assert_eq!(back["sku"]["name"], "Standard");
        assert_eq!(back["tags"][api::LINEAGE_TAG], owner().lineage.as_str());
        let ip: models::PublicIpAddress = api::model(ip_body(&owner(), "eastus")).unwrap();
        let back = serde_json::to_value(&ip).unwrap();
        assert_eq!(back["properties"]["publicIPAllocationMethod"], "Static");
        assert_eq!(back["sku"]["name"], "Standard");
    }

    #[test]
    fn a_load_balancer_as_wanted_is_left_alone() {
        let lb = echoed(8080, &[]);
        assert!(as_wanted(&lb, IP, 8080));
        // ARM ids compare case-insensitively.
        assert!(as_wanted(
            &lb,
            &IP.replace("resourceGroups/rg", "resourceGroups/RG"),
            8080
        ));
        assert!(!as_wanted(&lb, IP, 9090));
        assert!(!as_wanted(&lb, "/other/ip", 8080));
        assert!(!as_wanted(&json!({}), IP, 8080));
        assert_eq!(port(&lb), Some(8080));
    }

    #[test]
    fn members_are_nics_by_lower_cased_id() {
        let nic =
            "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Network/networkInterfaces/N0";
        let m = members(&echoed(80, &[nic]), true);
        assert_eq!(m.len(), 1);
        assert_eq!(m[&nic.to_ascii_lowercase()], nic);
        assert_eq!(
            pool_id(&echoed(80, &[])),
            format!("{LB}/backendAddressPools/{POOL}")
        );
    }

    #[test]
    fn a_nic_joins_and_leaves_the_pool_once() {
        let pool = format!("{LB}/backendAddressPools/{POOL}");
        let other = "/x/loadBalancers/other/backendAddressPools/b";
        let mut nic = json!({"properties": {"ipConfigurations": [
            {"name": "secondary", "properties": {"primary": false}},
            {"name": "ipconfig1", "properties": {"primary": true,
                "loadBalancerBackendAddressPools": [{"id": other}]}},
        ]}});
        assert!(set_pool(&mut nic, &pool, true));
        assert!(
            !set_pool(&mut nic, &pool.to_ascii_uppercase(), true),
            "already in"
        );
        let pools = &nic["properties"]["ipConfigurations"][1]["properties"]["loadBalancerBackendAddressPools"];
        assert_eq!(pools, &json!([{"id": other}, {"id": pool}]));
        assert!(
            nic["properties"]["ipConfigurations"][0]["properties"]
                .get("loadBalancerBackendAddressPools")
                .is_none()
        );
        assert!(set_pool(&mut nic, &pool, false));
        assert!(!set_pool(&mut nic, &pool, false), "already out");
        let pools = &nic["properties"]["ipConfigurations"][1]["properties"]["loadBalancerBackendAddressPools"];
        assert_eq!(pools, &json!([{"id": other}]), "other pools stay");
        assert!(
            !set_pool(&mut json!({}), &pool, true),
            "no IP configuration, no change"
        );
    }

    #[test]
    fn ids_give_their_group_and_name() {
        assert_eq!(group_and_name(LB), Some(("rg", "fl-1-gateway-api")));
        assert_eq!(group_and_name("fl-1-gateway-api"), None);
        assert_eq!(group_and_name("/subscriptions/s/resourceGroups/rg"), None);
    }

    #[test]
    fn the_record_names_the_parts() {
        let ip = json!({"id": IP, "properties": {"ipAddress": "20.1.2.3"}});
        let target = Resource {
            address: "fleet.web[0]".into(),
            kind: ResourceKind::Instance,
            provider: ProviderKind::Azure,
            provider_id: "/vm".into(),
            region: "eastus".into(),
            zone: String::new(),
            offer: None,
            attributes: BTreeMap::from([("nic_id".to_string(), json!("/nic"))]),
            dependencies: Vec::new(),
        };
        let request = GatewayRequest {
            owner: owner(),
            region: "eastus".into(),
            domain: Some("api.example.com".into()),
            port: 443,
            targets: vec![target],
        };
        let r = resource(&echoed(443, &[]), &ip, &request);
        assert_eq!(r.provider_id, LB);
        assert_eq!(r.attributes["dns_name"], "20.1.2.3");
        assert_eq!(r.attributes["public_ip_id"], IP);
        assert_eq!(r.attributes["targets"], json!(["fleet.web[0]"]));
        assert_eq!(r.dependencies, vec!["fleet.web[0]".to_string()]);
        let named = json!({"properties": {"ipAddress": "20.1.2.3",
            "dnsSettings": {"fqdn": "api.eastus.cloudapp.azure.com"}}});
        assert_eq!(dns_name(&named), Some("api.eastus.cloudapp.azure.com"));
        assert_eq!(wanted(&request).unwrap()["/nic"], "/nic");
    }
}
