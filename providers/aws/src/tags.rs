//! Tags and names: the ownership tags every resource carries, the filters that find them, and
//! the load-balancer names derived from an address (ELBv2 names are short and plain).

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};
use flotilla_core::provider::Ownership;
use std::collections::BTreeMap;

/// Tag keys flotilla owns; they are not the fleet's tags.
pub(crate) const PREFIX: &str = "flotilla:";

/// The fleet's tags plus the ownership tags (the ownership ones win).
pub(crate) fn all(owner: &Ownership, fleet: &BTreeMap<String, String>) -> Vec<(String, String)> {
    let mut out: BTreeMap<String, String> = fleet
        .iter()
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    out.insert(Ownership::LINEAGE_TAG.to_string(), owner.lineage.clone());
    out.insert(Ownership::ADDRESS_TAG.to_string(), owner.address.clone());
    out.into_iter().collect()
}

/// EC2 tags.
pub(crate) fn ec2(tags: &[(String, String)]) -> Vec<Tag> {
    tags.iter()
        .map(|(k, v)| Tag::builder().key(k).value(v).build())
        .collect()
}

/// A tag specification for a resource type launched or made with `tags`.
pub(crate) fn spec(kind: ResourceType, tags: &[(String, String)]) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(ec2(tags)))
        .build()
}

/// EC2 filters that select `owner`'s resources, and perhaps a few more: callers check the
/// tags exactly with [`owned_by`].
pub(crate) fn owner_filters(owner: &Ownership) -> Vec<Filter> {
    vec![
        filter(
            &format!("tag:{}", Ownership::LINEAGE_TAG),
            [wildcard_safe(&owner.lineage).as_str()],
        ),
        filter(
            &format!("tag:{}", Ownership::ADDRESS_TAG),
            [wildcard_safe(&owner.address).as_str()],
        ),
    ]
}

/// EC2 filters that select resources tagged with `lineage` and an address matching the EC2
/// wildcard `address` (`*` kept as a wildcard, other pattern characters made safe); callers
/// check the tags exactly.
pub(crate) fn owner_filters_of(lineage: &str, address: &str) -> Vec<Filter> {
    let address: String = address
        .split('*')
        .map(wildcard_safe)
        .collect::<Vec<_>>()
        .join("*");
    vec![
        filter(
            &format!("tag:{}", Ownership::LINEAGE_TAG),
            [wildcard_safe(lineage).as_str()],
        ),
        filter(
            &format!("tag:{}", Ownership::ADDRESS_TAG),
            [address.as_str()],
        ),
    ]
}

/// A filter value that matches `value` whatever the server makes of pattern characters: EC2
/// reads `*` and `?` as wildcards, and moto also reads `[0]` as a character class (so
/// `volume.ckpt[0]` would never match itself). Each such character becomes `?`, which matches
/// it everywhere.
fn wildcard_safe(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if matches!(c, '[' | ']' | '*' | '?' | '\\') {
                '?'
            } else {
                c
            }
        })
        .collect()
}

/// One EC2 filter.
pub(crate) fn filter<'a>(name: &str, values: impl IntoIterator<Item = &'a str>) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.into_iter().map(str::to_string).collect()))
        .build()
}

/// The fleet's tags among a resource's EC2 tags (the ownership tags left out).
pub(crate) fn fleet_tags(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .filter(|(k, _)| !k.starts_with(PREFIX))
        .collect()
}

/// Whether EC2 tags carry `owner`'s ownership tags.
pub(crate) fn owned_by(tags: &[Tag], owner: &Ownership) -> bool {
    let get = |key: &str| {
        tags.iter()
            .find(|t| t.key() == Some(key))
            .and_then(|t| t.value())
    };
    get(Ownership::LINEAGE_TAG) == Some(owner.lineage.as_str())
        && get(Ownership::ADDRESS_TAG) == Some(owner.address.as_str())
}

/// The tag map as a JSON attribute.
pub(crate) fn to_json(tags: &BTreeMap<String, String>) -> serde_json::Value {
    serde_json::Value::Object(
        tags.iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::from(v.clone())))
            .collect(),
    )
}

/// The load balancer and target group name for `owner`: at most 32 characters of letters,
/// digits and hyphens, not starting or ending with a hyphen: `fl-<address>-<hash>`, the hash
/// of lineage and address keeping two states' gateways apart.
pub(crate) fn elb_name(owner: &Ownership) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{}/{}", owner.lineage, owner.address));
    let hash: String = digest.iter().take(4).map(|b| format!("{b:02x}")).collect();
    let mut slug = String::new();
    for c in owner.address.chars() {
        let c = if c.is_ascii_alphanumeric() {
            c.to_ascii_lowercase()
        } else {
            '-'
        };
        if c == '-' && (slug.is_empty() || slug.ends_with('-')) {
            continue;
        }
        slug.push(c);
    }
    // "fl-" + slug + "-" + 8 hex digits <= 32.
    slug.truncate(32 - 3 - 1 - hash.len());
    let slug = slug.trim_end_matches('-');
    if slug.is_empty() {
        format!("fl-{hash}")
    } else {
        format!("fl-{slug}-{hash}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owner(address: &str) -> Ownership {
        Ownership {
            lineage: "0b7f4f8e-2d55-4f55-9d5f-0c1f3a1f0d2e".into(),
            address: address.into(),
            generation: 0,
        }
    }

    #[test]
    fn elb_names_are_valid_and_distinct() {
        for address in [
            "gateway.serve",
            "gateway.a_very_long_gateway_name_that_goes_on_and_on",
            "gateway.-x-",
            "gateway.___",
        ] {
            let name = elb_name(&owner(address));
            assert!(name.len() <= 32, "{name}");
            assert!(!name.ends_with('-') && !name.starts_with('-'), "{name}");
            assert!(
                name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'),
                "{name}"
            );
            assert!(!name.contains("--"), "{name}");
        }
        assert!(elb_name(&owner("gateway.serve")).starts_with("fl-gateway-serve-"));
        let other = Ownership {
            lineage: "another".into(),
            address: "gateway.serve".into(),
            generation: 0,
        };
        assert_ne!(elb_name(&owner("gateway.serve")), elb_name(&other));
    }

    #[test]
    fn filter_values_escape_pattern_characters() {
        assert_eq!(wildcard_safe("volume.ckpt[10]"), "volume.ckpt?10?");
        assert_eq!(wildcard_safe("fleet.a*b?"), "fleet.a?b?");
        assert_eq!(wildcard_safe("0b7f-4f8e"), "0b7f-4f8e");
    }

    #[test]
    fn ownership_tags_win_over_fleet_tags() {
        let fleet = BTreeMap::from([
            ("team".to_string(), "llm".to_string()),
            ("flotilla:address".to_string(), "spoofed".to_string()),
        ]);
        let tags = all(&owner("fleet.a[0]"), &fleet);
        assert!(tags.contains(&("flotilla:address".into(), "fleet.a[0]".into())));
        assert!(tags.contains(&("team".into(), "llm".into())));
        assert_eq!(tags.len(), 3);
    }
}
