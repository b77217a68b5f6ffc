//! The network a region's VMs share: one virtual network (`10.0.0.0/16`) with one subnet
//! `default` (`10.0.0.0/24`), made by flotilla because an Azure NIC needs a subnet and the
//! user should not have to write one. It is a node of the plan (`network.azure.REGION`),
//! created before the region's first VM and deleted when nothing uses it; ARM refuses to
//! delete a subnet a NIC still uses, and that refusal is reported as it is.

use crate::AzureProvider;
use crate::api;
use flotilla_core::provider::{NetworkRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The VNet's address space.
const ADDRESS_SPACE: &str = "10.0.0.0/16";
/// The subnet's prefix.
const SUBNET_PREFIX: &str = "10.0.0.0/24";
/// The subnet's name.
pub(crate) const SUBNET: &str = "default";

/// The PUT body of `owner`'s virtual network in `region`.
pub(crate) fn body(owner: &Ownership, region: &str) -> Value {
    json!({
        "location": region,
        "tags": api::tags(owner, &BTreeMap::new()),
        "properties": {
            "addressSpace": {"addressPrefixes": [ADDRESS_SPACE]},
            "subnets": [{"name": SUBNET, "properties": {"addressPrefix": SUBNET_PREFIX}}],
        },
    })
}

/// Makes (or adopts) the region's virtual network and waits until it is ready.
pub(crate) async fn create(
    p: &AzureProvider,
    request: &NetworkRequest,
) -> Result<Resource, ProviderError> {
    p.ssh_key()?;
    ensure(p, &request.owner, &request.region).await
}

/// The network of `owner` in `region`: adopted when it exists and is this state's (as it is
/// left: a PUT of an existing VNet would replace its subnet list), made otherwise.
pub(crate) async fn ensure(
    p: &AzureProvider,
    owner: &Ownership,
    region: &str,
) -> Result<Resource, ProviderError> {
    let c = p.ready(region).await?;
    let name = api::name(owner, "");
    let vnets = c.network.virtual_networks_client();
    let what = format!("virtual network {name}");
    // The NSG first: the subnet names it (issue 8 follow-up, security.rs).
    let nsg = crate::security::ensure(p, owner, region).await?;
    if let Some(existing) =
        api::get(vnets.get(&c.resource_group, &name, &c.subscription).send()).await?
    {
        api::adoptable(&existing, owner, "virtual network")?;
        if api::provisioning_state(&existing) == "Succeeded"
            && subnet_id(&existing).is_some()
            && crate::security::attached(&existing, &nsg)
        {
            return resource(&existing, &owner.address, region);
        }
    }
    let mut vnet_body = body(owner, region);
    crate::security::attach(&mut vnet_body, &nsg);
    let params: azure_mgmt_network::models::VirtualNetwork = api::model(vnet_body)?;
    api::send_wait(
        p,
        vnets
            .create_or_update(&c.resource_group, &name, params, &c.subscription)
            .send(),
        &what,
    )
    .await?;
    let got = api::get(vnets.get(&c.resource_group, &name, &c.subscription).send())
        .await?
        .ok_or_else(|| api::other("NotFound", format!("{what} vanished after it was made")))?;
    resource(&got, &owner.address, region)
}

/// Deletes the virtual network. A subnet still in use is ARM's error
/// (`InUseSubnetCannotBeDeleted`), passed on: something outside this state uses it.
pub(crate) async fn delete(p: &AzureProvider, network: &Resource) -> Result<(), ProviderError> {
    let c = p.clients().await?;
    let name = api::last(&network.provider_id).to_string();
    let nsg = crate::security::of_network(p, network).await?;
    api::delete(
        p,
        c.network
            .virtual_networks_client()
            .delete(&c.resource_group, &name, &c.subscription)
            .send(),
        &format!("virtual network {name}"),
    )
    .await?;
    crate::security::delete(p, network, nsg).await
}

/// Finds `owner`'s network in `region` by its name; adopted only with this state's lineage
/// tag.
pub(crate) async fn find(
    p: &AzureProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let c = p.clients().await?;
    let name = api::name(owner, "");
    let got = api::get(
        c.network
            .virtual_networks_client()
            .get(&c.resource_group, &name, &c.subscription)
            .send(),
    )
    .await;
    let got = match got {
        Ok(g) => g,
        // No resource group yet: nothing to find.
        Err(e) if e.code == "ResourceGroupNotFound" => None,
        Err(e) => return Err(e),
    };
    match got {
        Some(v) if api::provisioning_state(&v) == "Succeeded" => {
            api::adoptable(&v, owner, "virtual network")?;
            resource(&v, &owner.address, region).map(Some)
        }
        _ => Ok(None),
    }
}

/// The id of the VNet's subnet `default`.
pub(crate) fn subnet_id(vnet: &Value) -> Option<String> {
    vnet["properties"]["subnets"]
        .as_array()?
        .iter()
        .find(|s| s["name"].as_str() == Some(SUBNET))
        .and_then(|s| s["id"].as_str())
        .map(str::to_string)
}

/// A virtual network as state records it: its id, region and `subnet_id`.
pub(crate) fn resource(
    vnet: &Value,
    address: &str,
    region: &str,
) -> Result<Resource, ProviderError> {
    let id = vnet["id"].as_str().unwrap_or_default().to_string();
    let subnet = subnet_id(vnet).ok_or_else(|| {
        api::other(
            "NoSubnet",
            format!("virtual network {id} has no subnet `{SUBNET}`"),
        )
    })?;
    Ok(Resource {
        address: address.to_string(),
        kind: ResourceKind::Network,
        provider: crate::KIND,
        provider_id: id,
        region: vnet["location"].as_str().unwrap_or(region).to_string(),
        zone: String::new(),
        offer: None,
        attributes: BTreeMap::from([("subnet_id".to_string(), Value::String(subnet))]),
        dependencies: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_network_body_has_one_subnet_and_tags() {
        let owner = Ownership {
            lineage: "l-1".into(),
            address: "network.azure.eastus".into(),
            generation: 0,
        };
        let b = body(&owner, "eastus");
        assert_eq!(b["properties"]["subnets"][0]["name"], "default");
        assert_eq!(b["tags"][api::LINEAGE_TAG], "l-1");
        // The generated model takes it as it is.
        let m: azure_mgmt_network::models::VirtualNetwork = api::model(b).unwrap();
        let back = serde_json::to_value(&m).unwrap();
        assert_eq!(
            back["properties"]["subnets"][0]["properties"]["addressPrefix"],
            SUBNET_PREFIX
        );
        let vnet = json!({"id": "/s/vnet", "location": "eastus", "properties": {"subnets": [
            {"name": "default", "id": "/s/vnet/subnets/default"}]}});
        let r = resource(&vnet, "network.azure.eastus", "eastus").unwrap();
        assert_eq!(r.attributes["subnet_id"], "/s/vnet/subnets/default");
        assert_eq!(r.kind, ResourceKind::Network);
    }
}
