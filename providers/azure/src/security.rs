//! The network security group (NSG) of a region's network, and the gateways' rules in it.
//!
//! On Azure a Standard load balancer and a Standard public IP pass no inbound traffic unless a
//! network security group on the NIC or subnet allows it. So each region's network
//! ([`crate::networks`]) gets one NSG, `{network name}-nsg`, made before the virtual network
//! and named by its subnet; each gateway ([`crate::gateways`]) adds one rule to it that
//! allows inbound TCP on its port from `Internet`, and removes it when the gateway goes. The
//! NSG is deleted after the virtual network (ARM refuses to delete an NSG a subnet still
//! names).
//!
//! A rule's priority must be unique per direction in an NSG, so a new rule takes the lowest
//! free inbound priority from [`FIRST_PRIORITY`] as the NSG shows it, and keeps it on later
//! updates (stable). Two gateways made at once may pick the same one: ARM refuses the second
//! (`SecurityRuleConflict`), which then reads the NSG again and takes the next.

use crate::{AzureProvider, api};
use azure_mgmt_network::models;
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{Ownership, ProviderError};
use flotilla_core::state::{Resource, network_address};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The priority flotilla's first gateway rule gets (room below for rules people add).
pub(crate) const FIRST_PRIORITY: i64 = 1000;
/// The highest priority ARM allows for a rule.
const LAST_PRIORITY: i64 = 4096;
/// How many times a rule PUT refused for a taken priority or a busy NSG is tried.
const TRIES: u32 = 8;
/// ARM's answers worth another try with a fresh read of the NSG.
const RETRY: [&str; 4] = [
    "SecurityRuleConflict",
    "AnotherOperationInProgress",
    "RetryableError",
    "ReferencedResourceNotProvisioned",
];
/// ARM type of network security groups.
const NSG_TYPE: &str = "Microsoft.Network/networkSecurityGroups";

/// The ownership of the region's network (what [`crate::networks`] names its resources
/// after): the same for every resource of a state in that region.
pub(crate) fn network_owner(lineage: &str, region: &str) -> Ownership {
    Ownership {
        lineage: lineage.to_string(),
        address: network_address(ProviderKind::Azure, region),
        generation: 0,
    }
}

/// The name of the NSG of the network `owner`.
pub(crate) fn nsg_name(owner: &Ownership) -> String {
    api::name(owner, "-nsg")
}

/// The PUT body of a new NSG: tags and no rules of its own (ARM adds its default ones).
pub(crate) fn nsg_body(owner: &Ownership, region: &str) -> Value {
    json!({
        "location": region,
        "tags": api::tags(owner, &BTreeMap::new()),
        "properties": {"securityRules": []},
    })
}

/// Makes (or adopts) the NSG of the network `owner` in `region`; returns its ARM id. One that
/// exists is left as it is (a PUT would drop the gateways' rules), unless it failed, when it is
/// put again with the rules it has.
pub(crate) async fn ensure(
    p: &AzureProvider,
    owner: &Ownership,
    region: &str,
) -> Result<String, ProviderError> {
    let c = p.ready(region).await?;
    let name = nsg_name(owner);
    let nsgs = c.network.network_security_groups_client();
    let what = format!("network security group {name}");
    let get = || nsgs.get(&c.resource_group, &name, &c.subscription).send();
    let body = match api::get(get()).await? {
        Some(nsg) => {
            api::adoptable(&nsg, owner, "network security group")?;
            if matches!(
                api::provisioning_state(&nsg),
                "Succeeded" | "Updating" | "Creating"
            ) {
                return Ok(id_of(&nsg, &c.id(NSG_TYPE, &name)));
            }
            nsg
        }
        None => nsg_body(owner, region),
    };
    let params: models::NetworkSecurityGroup = api::model(body)?;
    api::send_wait(
        p,
        nsgs.create_or_update(&c.resource_group, &name, params, &c.subscription)
            .send(),
        &what,
    )
    .await?;
    Ok(c.id(NSG_TYPE, &name))
}

/// The `id` of an ARM answer, or `fallback`.
fn id_of(item: &Value, fallback: &str) -> String {
    item["id"]
        .as_str()
        .map_or_else(|| fallback.to_string(), str::to_string)
}

/// Names the NSG `nsg_id` on every subnet of a virtual network PUT body (see
/// [`crate::networks::body`]).
pub(crate) fn attach(vnet_body: &mut Value, nsg_id: &str) {
    if let Some(subnets) = vnet_body["properties"]["subnets"].as_array_mut() {
        for s in subnets {
            s["properties"]["networkSecurityGroup"] = json!({"id": nsg_id});
        }
    }
}

/// Whether every subnet of a virtual network (as GET shows it) names the NSG `nsg_id`.
pub(crate) fn attached(vnet: &Value, nsg_id: &str) -> bool {
    let subnets = vnet["properties"]["subnets"].as_array();
    subnets.is_some_and(|list| {
        !list.is_empty()
            && list.iter().all(|s| {
                s["properties"]["networkSecurityGroup"]["id"]
                    .as_str()
                    .is_some_and(|id| api::same_id(id, nsg_id))
            })
    })
}

/// The NSG of the network `network` (as state records it), read before the virtual network
/// is deleted: the one its subnet names, else the one its name gives (`{vnet}-nsg`, for a
/// virtual network already gone). `None` when there is nothing to look for.
pub(crate) async fn of_network(
    p: &AzureProvider,
    network: &Resource,
) -> Result<Option<String>, ProviderError> {
    let c = p.clients().await?;
    let vnet_name = api::last(&network.provider_id);
    if vnet_name.is_empty() {
        return Ok(None);
    }
    let group = crate::gateways::group_and_name(&network.provider_id)
        .map_or(c.resource_group.as_str(), |(g, _)| g);
    let vnet = api::get(
        c.network
            .virtual_networks_client()
            .get(group, vnet_name, &c.subscription)
            .send(),
    )
    .await?;
    let named = vnet.as_ref().and_then(|v| {
        v["properties"]["subnets"]
            .as_array()?
            .iter()
            .find_map(|s| s["properties"]["networkSecurityGroup"]["id"].as_str())
            .map(str::to_string)
    });
    Ok(Some(named.unwrap_or_else(|| {
        format!(
            "/subscriptions/{}/resourceGroups/{group}/providers/{NSG_TYPE}/{vnet_name}-nsg",
            c.subscription
        )
    })))
}

/// Deletes the NSG `nsg_id` of the network `network`, after its virtual network is gone. An
/// NSG not tagged with the network's address is not flotilla's (someone set their own on the
/// subnet) and is left alone; one already gone is fine.
pub(crate) async fn delete(
    p: &AzureProvider,
    network: &Resource,
    nsg_id: Option<String>,
) -> Result<(), ProviderError> {
    let Some(nsg_id) = nsg_id else {
        return Ok(());
    };
    let c = p.clients().await?;
    let Some((group, name)) = crate::gateways::group_and_name(&nsg_id) else {
        return Ok(());
    };
    let nsgs = c.network.network_security_groups_client();
    let Some(nsg) = api::get(nsgs.get(group, name, &c.subscription).send()).await? else {
        return Ok(());
    };
    if nsg["tags"][api::ADDRESS_TAG].as_str() != Some(network.address.as_str()) {
        return Ok(());
    }
    api::delete(
        p,
        nsgs.delete(group, name, &c.subscription).send(),
        &format!("network security group {name}"),
    )
    .await
}

/// The PUT body of the rule that lets `port` in from the internet to the network, at
/// `priority`; `address` (the gateway's) goes in its description.
pub(crate) fn rule_body(address: &str, port: u16, priority: i64) -> Value {
    json!({
        "properties": {
            "description": format!("flotilla {address}: inbound TCP {port} from the internet"),
            "protocol": "Tcp",
            "sourceAddressPrefix": "Internet",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "VirtualNetwork",
            "destinationPortRange": port.to_string(),
            "access": "Allow",
            "priority": priority,
            "direction": "Inbound",
        },
    })
}

/// Whether the NSG's rule `rule` already is what [`rule_body`] makes for `port`.
fn rule_as_wanted(rule: &Value, port: u16) -> bool {
    let p = &rule["properties"];
    p["access"].as_str() == Some("Allow")
        && p["direction"].as_str() == Some("Inbound")
        && p["protocol"].as_str() == Some("Tcp")
        && p["sourceAddressPrefix"].as_str() == Some("Internet")
        && p["destinationPortRange"].as_str() == Some(port.to_string().as_str())
        && api::provisioning_state(rule) == "Succeeded"
}

/// The priority for rule `rule` in an NSG (as GET shows it): the one it has, or the lowest
/// inbound one from [`FIRST_PRIORITY`] no other rule holds. `None` when all are taken.
pub(crate) fn priority(nsg: &Value, rule: &str) -> Option<i64> {
    let rules = nsg["properties"]["securityRules"].as_array();
    let rules = rules.map(Vec::as_slice).unwrap_or_default();
    let inbound = |r: &&Value| r["properties"]["direction"].as_str() == Some("Inbound");
    if let Some(own) = rules
        .iter()
        .filter(inbound)
        .find(|r| {
            r["name"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(rule))
        })
        .and_then(|r| r["properties"]["priority"].as_i64())
    {
        return Some(own);
    }
    let taken: std::collections::BTreeSet<i64> = rules
        .iter()
        .filter(inbound)
        .filter_map(|r| r["properties"]["priority"].as_i64())
        .collect();
    (FIRST_PRIORITY..=LAST_PRIORITY).find(|p| !taken.contains(p))
}

/// Makes (or updates) rule `rule` in the NSG of the network `owner` in `region`, letting
/// inbound TCP `port` in from the internet; returns the rule's ARM id. `address` is the
/// gateway's. A missing NSG (a network made before flotilla made NSGs) is made first.
pub(crate) async fn allow(
    p: &AzureProvider,
    owner: &Ownership,
    region: &str,
    rule: &str,
    address: &str,
    port: u16,
) -> Result<String, ProviderError> {
    let nsg_id = ensure(p, owner, region).await?;
    let c = p.clients().await?;
    let name = nsg_name(owner);
    let rule_id = format!("{nsg_id}/securityRules/{rule}");
    let what = format!("security rule {rule} of network security group {name}");
    let mut backoff = p.options.poll_interval;
    let mut tries = 1;
    loop {
        let nsg = api::get(
            c.network
                .network_security_groups_client()
                .get(&c.resource_group, &name, &c.subscription)
                .send(),
        )
        .await?
        .ok_or_else(|| crate::gone(&format!("network security group {name}, just made,")))?;
        let existing = nsg["properties"]["securityRules"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.eq_ignore_ascii_case(rule))
            });
        if existing.is_some_and(|r| rule_as_wanted(r, port)) {
            return Ok(rule_id);
        }
        let prio = priority(&nsg, rule).ok_or_else(|| {
            api::other(
                "NoFreePriority",
                format!(
                    "network security group {name} has no free inbound priority between \
                     {FIRST_PRIORITY} and {LAST_PRIORITY} for the rule of {address}; remove \
                     rules you added there"
                ),
            )
        })?;
        let params: models::SecurityRule = api::model(rule_body(address, port, prio))?;
        let sent = api::send_wait(
            p,
            c.network
                .security_rules_client()
                .create_or_update(&c.resource_group, &name, rule, params, &c.subscription)
                .send(),
            &what,
        )
        .await;
        match sent {
            Ok(_) => return Ok(rule_id),
            Err(e) if tries < TRIES && RETRY.contains(&e.code.as_str()) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(p.options.max_poll_interval);
                tries += 1;
            }
            Err(e) => {
                return Err(ProviderError::new(
                    e.kind,
                    e.code,
                    format!("{what} (gateway {address}): {}", e.message),
                ));
            }
        }
    }
}

/// Removes the rule `rule_id` (`…/networkSecurityGroups/{nsg}/securityRules/{rule}`); a rule
/// or NSG already gone is fine.
pub(crate) async fn revoke(p: &AzureProvider, rule_id: &str) -> Result<(), ProviderError> {
    let Some((group, nsg, rule)) = rule_parts(rule_id) else {
        return Ok(());
    };
    let c = p.clients().await?;
    api::delete(
        p,
        c.network
            .security_rules_client()
            .delete(group, nsg, rule, &c.subscription)
            .send(),
        &format!("security rule {rule} of network security group {nsg}"),
    )
    .await
}

/// Resource group, NSG name and rule name of a security rule's ARM id.
pub(crate) fn rule_parts(rule_id: &str) -> Option<(&str, &str, &str)> {
    let parts: Vec<&str> = rule_id.trim_matches('/').split('/').collect();
    let at = |i: usize| parts.get(i).copied();
    let group = parts
        .iter()
        .position(|s| s.eq_ignore_ascii_case("resourceGroups"))
        .and_then(|i| at(i + 1))?;
    let n = parts.len();
    (n >= 10
        && parts[n - 2].eq_ignore_ascii_case("securityRules")
        && parts[n - 4].eq_ignore_ascii_case("networkSecurityGroups"))
    .then(|| (group, parts[n - 3], parts[n - 1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner() -> Ownership {
        network_owner("0f3a9c2e-1111-2222-3333-444444444444", "eastus")
    }

    #[test]
    fn the_nsg_is_named_after_the_network_and_tagged() {
        let o = owner();
        assert_eq!(o.address, "network.azure.eastus");
        assert_eq!(nsg_name(&o), "fl-0f3a9c2e-network-azure-eastus-nsg");
        // The network's own name plus "-nsg", which is what `of_network` falls back on.
        assert_eq!(nsg_name(&o), format!("{}-nsg", api::name(&o, "")));
        let b = nsg_body(&o, "eastus");
        assert_eq!(b["tags"][api::LINEAGE_TAG], o.lineage.as_str());
        assert_eq!(b["tags"][api::ADDRESS_TAG], "network.azure.eastus");
        let m: models::NetworkSecurityGroup = api::model(b).unwrap();
        assert_eq!(serde_json::to_value(&m).unwrap()["location"], "eastus");
    }

    #[test]
    fn attach_names_the_nsg_on_every_subnet() {
        let mut vnet = crate::networks::body(&owner(), "eastus");
        assert!(!attached(&vnet, "/x/nsg"));
        attach(&mut vnet, "/X/NSG");
        assert_eq!(
            vnet["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"],
            "/X/NSG"
        );
        // Ids compare case-insensitively, as ARM's do.
        assert!(attached(&vnet, "/x/nsg"));
        assert!(!attached(&vnet, "/x/other"));
        assert!(!attached(&json!({"properties": {"subnets": []}}), "/x/nsg"));
        // The generated model keeps the reference.
        let m: models::VirtualNetwork = api::model(vnet).unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(
            back["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"],
            "/X/NSG"
        );
    }

    fn rule(name: &str, priority: i64, direction: &str) -> Value {
        json!({"name": name, "properties": {"priority": priority, "direction": direction}})
    }

    #[test]
    fn priority_is_the_lowest_free_inbound_one_and_stays() {
        let nsg = |rules: Vec<Value>| json!({"properties": {"securityRules": rules}});
        assert_eq!(priority(&nsg(vec![]), "web"), Some(1000));
        assert_eq!(priority(&json!({}), "web"), Some(1000));
        // Taken inbound priorities are skipped; outbound ones do not count.
        let n = nsg(vec![
            rule("a", 1000, "Inbound"),
            rule("b", 1001, "Inbound"),
            rule("c", 1002, "Outbound"),
            rule("d", 1003, "Inbound"),
        ]);
        assert_eq!(priority(&n, "web"), Some(1002));
        // A rule keeps the priority it has (case-insensitive name).
        assert_eq!(priority(&n, "B"), Some(1001));
        // All taken: none.
        let full: Vec<Value> = (FIRST_PRIORITY..=LAST_PRIORITY)
            .map(|p| rule(&format!("r{p}"), p, "Inbound"))
            .collect();
        assert_eq!(priority(&nsg(full), "web"), None);
    }

    #[test]
    fn the_rule_allows_tcp_on_the_port_from_the_internet() {
        let b = rule_body("gateway.web", 8080, 1000);
        let p = &b["properties"];
        assert_eq!(p["destinationPortRange"], "8080");
        assert_eq!(p["sourceAddressPrefix"], "Internet");
        assert_eq!(p["priority"], 1000);
        let mut as_got = b.clone();
        as_got["properties"]["provisioningState"] = json!("Succeeded");
        assert!(rule_as_wanted(&as_got, 8080));
        assert!(!rule_as_wanted(&as_got, 80));
        as_got["properties"]["provisioningState"] = json!("Failed");
        assert!(!rule_as_wanted(&as_got, 8080));
        // The generated model takes it.
        let m: models::SecurityRule = api::model(b).unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(back["properties"]["protocol"], "Tcp");
        assert_eq!(back["properties"]["access"], "Allow");
        assert_eq!(back["properties"]["direction"], "Inbound");
    }

    #[test]
    fn rule_ids_split_into_group_nsg_and_rule() {
        let id = "/subscriptions/s/resourceGroups/RG/providers/Microsoft.Network/\
                  networkSecurityGroups/n-nsg/securityRules/fl-1-gateway-web";
        assert_eq!(rule_parts(id), Some(("RG", "n-nsg", "fl-1-gateway-web")));
        assert_eq!(
            rule_parts("/subscriptions/s/resourceGroups/RG/providers/Microsoft.Network/x/y"),
            None
        );
        assert_eq!(rule_parts(""), None);
    }
}
