//! Test support shared by unit tests, integration tests and benchmarks: not part of the API.

use super::{Action, Plan};
use crate::catalog::{Catalog, ProviderKind};
use crate::config::Config;
use crate::state::{Resource, ResourceKind, State};
use std::collections::BTreeMap;

/// The state a successful apply of `plan` would leave, with made-up provider ids and zone
/// `zone-a` where the plan leaves the zone to the provider. `config` supplies the host offers.
pub fn applied(plan: &Plan, config: &Config, catalog: &Catalog) -> State {
    let hosts = config.host_offers();
    let mut resources = Vec::new();
    for c in &plan.changes {
        let Some(after) = &c.after else { continue };
        if c.action == Action::Delete {
            continue;
        }
        let s = |k: &str| {
            after
                .get(k)
                .and_then(|v| v.as_str())
                .unwrap_or("")
                .to_string()
        };
        let offer = (c.kind == ResourceKind::Instance).then(|| {
            catalog
                .offers()
                .iter()
                .chain(hosts.iter())
                .find(|o| {
                    o.instance_type == s("instance_type")
                        && o.region == s("region")
                        && o.provider.as_str() == s("provider")
                        && Some(o.spot) == after.get("spot").and_then(|v| v.as_bool())
                })
                .cloned()
                .expect("the plan's offer is in the catalog")
        });
        let zone = if s("zone").is_empty() {
            "zone-a".to_string()
        } else {
            s("zone")
        };
        let attributes: BTreeMap<String, serde_json::Value> = after
            .iter()
            .filter(|(k, _)| {
                matches!(
                    k.as_str(),
                    "size_gib" | "type" | "targets" | "domain" | "port"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        resources.push(Resource {
            address: c.address.clone(),
            kind: c.kind,
            provider: ProviderKind::parse(&s("provider")).expect("provider"),
            provider_id: format!("id-{}", c.address),
            region: s("region"),
            zone,
            offer,
            attributes,
            dependencies: c.depends_on.clone(),
        });
    }
    State {
        lineage: plan.state.lineage.clone(),
        serial: plan.state.serial + 1,
        resources,
        ..State::empty()
    }
}
