//! Output values: the configuration's `output` blocks evaluated against the state an apply
//! leaves, so that `state.outputs` holds what a user points DNS or a host list at (a gateway's
//! DNS name, the nodes' addresses) and `flotilla apply` can print it, as Terraform does.
//!
//! Evaluated from state alone, after the walk, because most outputs are only known once the
//! provider has answered (ids, addresses, DNS names).

use crate::config::OutputValue;
use crate::state::{Resource, State, address_cmp};
use serde_json::Value;
use std::collections::BTreeMap;

/// Every output's value in `state`. A reference to something the state does not hold is
/// `null` (a single value) or `[]` (a fleet's or a volume's list).
pub(super) fn evaluate(
    outputs: &BTreeMap<String, OutputValue>,
    state: &State,
) -> BTreeMap<String, Value> {
    outputs
        .iter()
        .map(|(name, value)| {
            let v = match value {
                OutputValue::Value(v) => v.clone(),
                OutputValue::Ref { address, attribute } => reference(state, address, attribute),
            };
            (name.clone(), v)
        })
        .collect()
}

/// `fleet.NAME.ATTR` (a list, one per node in index order), `volume.NAME.ids` (likewise) or
/// `gateway.NAME.ATTR`.
fn reference(state: &State, address: &str, attribute: &str) -> Value {
    if address.starts_with("gateway.") {
        let Some(r) = state.get(address) else {
            return Value::Null;
        };
        return match attribute {
            // An NLB has no fixed address: its DNS name is what clients reach.
            "address" => r
                .attributes
                .get("address")
                .or_else(|| r.attributes.get("dns_name"))
                .cloned()
                .unwrap_or(Value::Null),
            _ => r.attributes.get(attribute).cloned().unwrap_or(Value::Null),
        };
    }
    let prefix = format!("{address}[");
    let mut members: Vec<&Resource> = state
        .resources
        .iter()
        .filter(|r| r.address.starts_with(&prefix))
        .collect();
    members.sort_by(|a, b| address_cmp(&a.address, &b.address));
    Value::Array(
        members
            .into_iter()
            .map(|r| match attribute {
                "ids" => Value::from(r.provider_id.clone()),
                "instance_types" => r
                    .offer
                    .as_ref()
                    .map_or(Value::Null, |o| Value::from(o.instance_type.clone())),
                "private_ips" => r.attributes.get("private_ip").cloned().unwrap_or_default(),
                "public_ips" => r.attributes.get("public_ip").cloned().unwrap_or_default(),
                other => r.attributes.get(other).cloned().unwrap_or_default(),
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::ProviderKind;
    use crate::state::ResourceKind;
    use serde_json::json;

    fn resource(address: &str, kind: ResourceKind, id: &str, attrs: Value) -> Resource {
        Resource {
            address: address.to_string(),
            kind,
            provider: ProviderKind::Aws,
            provider_id: id.to_string(),
            region: "us-east-1".to_string(),
            zone: String::new(),
            offer: None,
            attributes: serde_json::from_value(attrs).unwrap(),
            dependencies: vec![],
        }
    }

    #[test]
    fn references_read_the_state_in_node_order() {
        let mut state = State::empty();
        state.resources = vec![
            resource(
                "fleet.web[10]",
                ResourceKind::Instance,
                "i-10",
                json!({"private_ip": "10.0.0.10"}),
            ),
            resource(
                "fleet.web[2]",
                ResourceKind::Instance,
                "i-2",
                json!({"private_ip": "10.0.0.2"}),
            ),
            resource(
                "gateway.api",
                ResourceKind::Gateway,
                "arn:lb",
                json!({"dns_name": "api.elb.example"}),
            ),
        ];
        let outputs: BTreeMap<String, OutputValue> = [
            (
                "ips",
                OutputValue::Ref {
                    address: "fleet.web".into(),
                    attribute: "private_ips".into(),
                },
            ),
            (
                "ids",
                OutputValue::Ref {
                    address: "fleet.web".into(),
                    attribute: "ids".into(),
                },
            ),
            (
                "dns",
                OutputValue::Ref {
                    address: "gateway.api".into(),
                    attribute: "dns_name".into(),
                },
            ),
            (
                "addr",
                OutputValue::Ref {
                    address: "gateway.api".into(),
                    attribute: "address".into(),
                },
            ),
            (
                "missing",
                OutputValue::Ref {
                    address: "gateway.other".into(),
                    attribute: "dns_name".into(),
                },
            ),
            ("literal", OutputValue::Value(json!("hello"))),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let got = evaluate(&outputs, &state);
        assert_eq!(got["ips"], json!(["10.0.0.2", "10.0.0.10"]));
        assert_eq!(got["ids"], json!(["i-2", "i-10"]));
        assert_eq!(got["dns"], json!("api.elb.example"));
        assert_eq!(got["addr"], json!("api.elb.example"));
        assert_eq!(got["missing"], Value::Null);
        assert_eq!(got["literal"], json!("hello"));
    }
}
