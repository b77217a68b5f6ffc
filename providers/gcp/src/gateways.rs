//! Gateways: a regional static external address, a target pool of the target instances and a
//! TCP forwarding rule from the address to the pool, all named after the gateway's address
//! (`fl-<lineage>-<address>-<hash>`).
//!
//! The names make every step findable, so a create interrupted half-way is completed by the
//! next one (a 409 on a part that is ours is adopted); [`find`] only reports a gateway whose
//! three parts all exist. Targets change in place (`addInstance`/`removeInstance`). Target
//! pools carry no labels, so ownership is written into their description.

use crate::api::{self, Scope, from_sdk, other};
use crate::{GcpProvider, gone};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{GatewayRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use google_cloud_compute_v1::model;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// The three parts of a gateway as Compute describes them.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub(crate) address: Value,
    pub(crate) pool: Value,
    pub(crate) rule: Value,
}

/// The description that marks a target pool as `owner`'s.
pub(crate) fn pool_description(owner: &Ownership) -> String {
    format!("flotilla {} {}", owner.lineage, owner.address)
}

pub(crate) async fn create(
    p: &GcpProvider,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    let region = request.region.as_str();
    let clients = p.clients().await?;
    let owner = &request.owner;
    let name = api::resource_name(owner);
    let token = owner.token(0);
    let labels = api::labels(owner, &BTreeMap::new());

    // The static address.
    let body = json!({
        "name": name,
        "addressType": "EXTERNAL",
        "networkTier": "PREMIUM",
        "labels": labels,
        "description": format!("flotilla {}", owner.address),
    });
    let started = clients
        .addresses
        .insert()
        .set_project(p.project())
        .set_region(region)
        .set_request_id(api::request_id(&token, "address"))
        .set_body(api::model::<model::Address>(body)?)
        .send()
        .await
        .map_err(from_sdk);
    settle(p, region, started, "address", &name).await?;
    let address = get_address(p, region, &name)
        .await?
        .ok_or_else(|| gone(&format!("address {name} in {region}")))?;
    if !api::labelled_for(&address, owner) {
        return Err(not_ours("address", &name, region, owner));
    }

    // The target pool, with the targets it starts with.
    let body = json!({
        "name": name,
        "description": pool_description(owner),
        "instances": target_urls(p, request),
    });
    let started = clients
        .target_pools
        .insert()
        .set_project(p.project())
        .set_region(region)
        .set_request_id(api::request_id(&token, "target-pool"))
        .set_body(api::model::<model::TargetPool>(body)?)
        .send()
        .await
        .map_err(from_sdk);
    settle(p, region, started, "target pool", &name).await?;
    let pool = get_pool(p, region, &name)
        .await?
        .ok_or_else(|| gone(&format!("target pool {name} in {region}")))?;
    if pool["description"].as_str() != Some(pool_description(owner).as_str()) {
        return Err(not_ours("target pool", &name, region, owner));
    }

    // The forwarding rule.
    let rule = ensure_rule(p, region, &name, &address, &pool, request).await?;
    let pool = sync_targets(p, region, pool, request).await?;
    Ok(resource(
        &Parts {
            address,
            pool,
            rule,
        },
        region,
        request,
    ))
}

/// Waits for an insert's operation; a 409 (made by an earlier, interrupted create) is fine
/// here, the caller checks that the part is ours.
async fn settle(
    p: &GcpProvider,
    region: &str,
    started: Result<model::Operation, ProviderError>,
    what: &str,
    name: &str,
) -> Result<(), ProviderError> {
    match started {
        Ok(op) => api::wait(p, Scope::Region(region), op).await.map(|_| ()),
        Err(e) if api::already_exists(&e) => Ok(()),
        Err(e) => Err(ProviderError::new(
            e.kind,
            e.code,
            format!("{what} {name}: {}", e.message),
        )),
    }
}

fn not_ours(what: &str, name: &str, region: &str, owner: &Ownership) -> ProviderError {
    other(
        "alreadyExists",
        format!(
            "a {what} named {name} exists in {region} and is not {}'s in this state; rename or delete it",
            owner.address
        ),
    )
}

/// Makes the forwarding rule unless it exists with the right port; one with another port is
/// replaced (Compute cannot change a rule's ports in place).
async fn ensure_rule(
    p: &GcpProvider,
    region: &str,
    name: &str,
    address: &Value,
    pool: &Value,
    request: &GatewayRequest,
) -> Result<Value, ProviderError> {
    let clients = p.clients().await?;
    let port = request.port.to_string();
    if let Some(rule) = get_rule(p, region, name).await? {
        if !api::labelled_for(&rule, &request.owner) {
            return Err(not_ours("forwarding rule", name, region, &request.owner));
        }
        let range = rule["portRange"].as_str().unwrap_or_default();
        if range == port || range == format!("{port}-{port}") {
            return Ok(rule);
        }
        delete_part(p, region, "forwarding rule", name).await?;
    }
    let body = json!({
        "name": name,
        "IPAddress": address["address"],
        "IPProtocol": "TCP",
        "portRange": port,
        "target": pool["selfLink"],
        "loadBalancingScheme": "EXTERNAL",
        "networkTier": "PREMIUM",
        "labels": api::labels(&request.owner, &BTreeMap::new()),
        "description": format!("flotilla {}", request.owner.address),
    });
    let started = clients
        .forwarding_rules
        .insert()
        .set_project(p.project())
        .set_region(region)
        .set_request_id(api::request_id(
            &request.owner.token(0),
            &format!("forwarding-rule/{port}"),
        ))
        .set_body(api::model::<model::ForwardingRule>(body)?)
        .send()
        .await
        .map_err(from_sdk);
    settle(p, region, started, "forwarding rule", name).await?;
    get_rule(p, region, name)
        .await?
        .ok_or_else(|| gone(&format!("forwarding rule {name} in {region}")))
}

/// Brings targets and port to `request` in place.
pub(crate) async fn update(
    p: &GcpProvider,
    gateway: &Resource,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    let region = gateway.region.as_str();
    let name = api::resource_name(&request.owner);
    let (Some(address), Some(pool)) = (
        get_address(p, region, &name).await?,
        get_pool(p, region, &name).await?,
    ) else {
        // Half made (or half deleted): finish it the way create does.
        return create(p, request).await;
    };
    let rule = ensure_rule(p, region, &name, &address, &pool, request).await?;
    let pool = sync_targets(p, region, pool, request).await?;
    let mut r = resource(
        &Parts {
            address,
            pool,
            rule,
        },
        region,
        request,
    );
    r.address = gateway.address.clone();
    Ok(r)
}

/// Deletes the forwarding rule, then the target pool, then the address; parts already gone
/// are fine.
pub(crate) async fn delete(p: &GcpProvider, gateway: &Resource) -> Result<(), ProviderError> {
    let region = gateway.region.as_str();
    let name = gateway.provider_id.as_str();
    delete_part(p, region, "forwarding rule", name).await?;
    delete_part(p, region, "target pool", name).await?;
    delete_part(p, region, "address", name).await
}

async fn delete_part(
    p: &GcpProvider,
    region: &str,
    what: &str,
    name: &str,
) -> Result<(), ProviderError> {
    let clients = p.clients().await?;
    let started = match what {
        "forwarding rule" => {
            clients
                .forwarding_rules
                .delete()
                .set_project(p.project())
                .set_region(region)
                .set_forwarding_rule(name)
                .send()
                .await
        }
        "target pool" => {
            clients
                .target_pools
                .delete()
                .set_project(p.project())
                .set_region(region)
                .set_target_pool(name)
                .send()
                .await
        }
        _ => {
            clients
                .addresses
                .delete()
                .set_project(p.project())
                .set_region(region)
                .set_address(name)
                .send()
                .await
        }
    };
    api::deleted(p, Scope::Region(region), started.map_err(from_sdk)).await
}

/// The gateway made for `owner` in `region`, when all three parts exist.
pub(crate) async fn find(
    p: &GcpProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let name = api::resource_name(owner);
    let Some(rule) = get_rule(p, region, &name).await? else {
        return Ok(None);
    };
    let (Some(address), Some(pool)) = (
        get_address(p, region, &name).await?,
        get_pool(p, region, &name).await?,
    ) else {
        return Ok(None);
    };
    if !api::labelled_for(&rule, owner)
        || pool["description"].as_str() != Some(pool_description(owner).as_str())
    {
        return Ok(None);
    }
    let port = rule["portRange"]
        .as_str()
        .and_then(|r| r.split('-').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    let request = GatewayRequest {
        owner: owner.clone(),
        region: region.to_string(),
        domain: None,
        port,
        targets: Vec::new(),
    };
    let mut r = resource(
        &Parts {
            address,
            pool,
            rule,
        },
        region,
        &request,
    );
    r.attributes.remove("targets");
    Ok(Some(r))
}

/// The instance URLs of the request's targets.
fn target_urls(p: &GcpProvider, request: &GatewayRequest) -> Vec<String> {
    request
        .targets
        .iter()
        .filter(|t| t.provider == ProviderKind::Gcp && !t.provider_id.is_empty())
        .map(|t| {
            format!(
                "projects/{}/zones/{}/instances/{}",
                p.project(),
                t.zone,
                t.provider_id
            )
        })
        .collect()
}

/// (zone, name) of a target pool member URL.
fn member(url: &str) -> (String, String) {
    let mut parts = url.rsplit('/');
    let name = parts.next().unwrap_or_default().to_string();
    let _ = parts.next();
    let zone = parts.next().unwrap_or_default().to_string();
    (zone, name)
}

/// Adds and removes pool members until they are the request's targets.
async fn sync_targets(
    p: &GcpProvider,
    region: &str,
    pool: Value,
    request: &GatewayRequest,
) -> Result<Value, ProviderError> {
    let clients = p.clients().await?;
    let name = pool["name"].as_str().unwrap_or_default().to_string();
    let want: BTreeMap<(String, String), String> = target_urls(p, request)
        .into_iter()
        .map(|u| (member(&u), u))
        .collect();
    let have: BTreeMap<(String, String), String> = pool["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|u| (member(u), u.to_string()))
        .collect();
    let add: Vec<Value> = want
        .iter()
        .filter(|(k, _)| !have.contains_key(*k))
        .map(|(_, u)| json!({"instance": u}))
        .collect();
    let remove: Vec<Value> = have
        .iter()
        .filter(|(k, _)| !want.contains_key(*k))
        .map(|(_, u)| json!({"instance": u}))
        .collect();
    if !add.is_empty() {
        let op = clients
            .target_pools
            .add_instance()
            .set_project(p.project())
            .set_region(region)
            .set_target_pool(&name)
            .set_body(api::model::<model::TargetPoolsAddInstanceRequest>(
                json!({"instances": add}),
            )?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Region(region), op).await?;
    }
    if !remove.is_empty() {
        let op = clients
            .target_pools
            .remove_instance()
            .set_project(p.project())
            .set_region(region)
            .set_target_pool(&name)
            .set_body(api::model::<model::TargetPoolsRemoveInstanceRequest>(
                json!({"instances": remove}),
            )?)
            .send()
            .await
            .map_err(from_sdk)?;
        api::wait(p, Scope::Region(region), op).await?;
    }
    if add.is_empty() && remove.is_empty() {
        return Ok(pool);
    }
    get_pool(p, region, &name)
        .await?
        .ok_or_else(|| gone(&format!("target pool {name} in {region}")))
}

/// The member instance names of a target pool.
pub(crate) fn member_names(pool: &Value) -> BTreeSet<String> {
    pool["instances"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|u| api::last(u).to_string())
        .collect()
}

/// What flotilla records of a gateway.
pub(crate) fn resource(parts: &Parts, region: &str, request: &GatewayRequest) -> Resource {
    let mut attributes = BTreeMap::new();
    let ip = parts.address["address"].clone();
    attributes.insert("ip_address".to_string(), ip.clone());
    // Compute gives a forwarding rule no DNS name: its address is what DNS points at.
    attributes.insert("dns_name".to_string(), ip);
    attributes.insert("target_pool".to_string(), parts.pool["name"].clone());
    attributes.insert("forwarding_rule".to_string(), parts.rule["name"].clone());
    attributes.insert("port".to_string(), Value::from(request.port));
    if let Some(domain) = &request.domain {
        attributes.insert("domain".to_string(), Value::from(domain.clone()));
    }
    attributes.insert(
        "targets".to_string(),
        Value::Array(
            request
                .targets
                .iter()
                .map(|t| Value::from(t.address.clone()))
                .collect(),
        ),
    );
    attributes.insert(
        "target_ids".to_string(),
        Value::Array(
            member_names(&parts.pool)
                .into_iter()
                .map(Value::from)
                .collect(),
        ),
    );
    if let Some(l) = parts.rule["labels"][api::LINEAGE_LABEL].as_str() {
        attributes.insert("lineage".to_string(), Value::from(l));
    }
    Resource {
        address: request.owner.address.clone(),
        kind: ResourceKind::Gateway,
        provider: ProviderKind::Gcp,
        provider_id: parts.rule["name"].as_str().unwrap_or_default().to_string(),
        region: region.to_string(),
        zone: String::new(),
        offer: None,
        attributes,
        dependencies: request.targets.iter().map(|t| t.address.clone()).collect(),
    }
}

macro_rules! getter {
    ($fn:ident, $client:ident, $setter:ident) => {
        pub(crate) async fn $fn(
            p: &GcpProvider,
            region: &str,
            name: &str,
        ) -> Result<Option<Value>, ProviderError> {
            let clients = p.clients().await?;
            api::found(
                clients
                    .$client
                    .get()
                    .set_project(p.project())
                    .set_region(region)
                    .$setter(name)
                    .send()
                    .await,
            )
        }
    };
}

getter!(get_address, addresses, set_address);
getter!(get_pool, target_pools, set_target_pool);
getter!(get_rule, forwarding_rules, set_forwarding_rule);

/// Every forwarding rule of the project matching `filter` (one paginated aggregatedList).
pub(crate) async fn aggregated_rules(
    p: &GcpProvider,
    filter: &str,
) -> Result<Vec<Value>, ProviderError> {
    let items = api::aggregated!(p, forwarding_rules, "forwardingRules", Some(filter)).await?;
    Ok(items.into_iter().map(|(_, v)| v).collect())
}

/// Every target pool of the project matching `filter` (one paginated aggregatedList).
pub(crate) async fn aggregated_pools(
    p: &GcpProvider,
    filter: &str,
) -> Result<Vec<Value>, ProviderError> {
    let items = api::aggregated!(p, target_pools, "targetPools", Some(filter)).await?;
    Ok(items.into_iter().map(|(_, v)| v).collect())
}
