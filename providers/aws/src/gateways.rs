//! Gateways: an internet-facing network load balancer, a TCP target group of instance targets
//! and a TCP listener, all named after the gateway's address (`fl-<address>-<hash>`).
//!
//! The names make every step findable, so a create interrupted half-way is completed by the
//! next one instead of leaving a second load balancer; [`find`] only reports a gateway whose
//! three parts all exist. Targets change in place (register/deregister). The `domain` is
//! recorded, not served: pointing DNS at `dns_name` is the user's (Route 53 is out of scope).

use crate::error::{from_sdk, other};
use crate::{AwsProvider, tags};
use aws_sdk_elasticloadbalancingv2 as elbv2;
use elbv2::types::{
    Action, ActionTypeEnum, LoadBalancer, LoadBalancerSchemeEnum, LoadBalancerTypeEnum,
    ProtocolEnum, TargetDescription, TargetGroup, TargetTypeEnum,
};
use flotilla_core::catalog::ProviderKind;
use flotilla_core::provider::{FailureKind, GatewayRequest, Ownership, ProviderError};
use flotilla_core::state::{Resource, ResourceKind};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

/// The three parts of a gateway.
#[derive(Debug, Clone)]
pub(crate) struct Parts {
    pub(crate) lb: LoadBalancer,
    pub(crate) tg: Option<TargetGroup>,
    pub(crate) listener: Option<elbv2::types::Listener>,
}

pub(crate) async fn create(
    p: &AwsProvider,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    let region = request.region.as_str();
    let elb = p.clients.region(region).await.elb;
    let name = tags::elb_name(&request.owner);
    let own_tags = elb_tags(&request.owner);

    // The load balancer: an earlier, interrupted create may have made it already.
    let lb = match load_balancer_named(&elb, &name).await? {
        Some(lb) => {
            let arn = lb.load_balancer_arn().unwrap_or_default();
            if !owned(&elb, arn, &request.owner).await? {
                return Err(other(
                    "DuplicateLoadBalancerName",
                    format!(
                        "a load balancer named {name} exists and is not {}'s",
                        request.owner.address
                    ),
                ));
            }
            lb
        }
        None => {
            let (subnets, _) = subnets(p, region).await?;
            let out = elb
                .create_load_balancer()
                .name(&name)
                .r#type(LoadBalancerTypeEnum::Network)
                .scheme(LoadBalancerSchemeEnum::InternetFacing)
                .set_subnets(Some(subnets))
                .set_tags(Some(own_tags.clone()))
                .send()
                .await
                .map_err(from_sdk)?;
            out.load_balancers().first().cloned().ok_or_else(|| {
                other(
                    "InvalidResponse",
                    "CreateLoadBalancer answered without a load balancer",
                )
            })?
        }
    };
    let lb_arn = lb.load_balancer_arn().unwrap_or_default().to_string();

    let tg = match target_group_named(&elb, &name).await? {
        Some(tg) => tg,
        None => {
            let vpc = match lb.vpc_id() {
                Some(v) => v.to_string(),
                None => subnets(p, region).await?.1,
            };
            let out = elb
                .create_target_group()
                .name(&name)
                .protocol(ProtocolEnum::Tcp)
                .port(i32::from(request.port))
                .vpc_id(vpc)
                .target_type(TargetTypeEnum::Instance)
                .set_tags(Some(own_tags))
                .send()
                .await
                .map_err(from_sdk)?;
            out.target_groups().first().cloned().ok_or_else(|| {
                other(
                    "InvalidResponse",
                    "CreateTargetGroup answered without a target group",
                )
            })?
        }
    };
    let tg_arn = tg.target_group_arn().unwrap_or_default().to_string();

    let listener = ensure_listener(&elb, &lb_arn, &tg_arn, request.port).await?;
    let ids = sync_targets(&elb, &tg_arn, request).await?;
    let parts = Parts {
        lb,
        tg: Some(tg),
        listener: Some(listener),
    };
    Ok(resource(
        &parts,
        region,
        &request.owner.address,
        request,
        &ids,
    ))
}

/// Brings targets and port to `request` in place.
pub(crate) async fn update(
    p: &AwsProvider,
    gateway: &Resource,
    request: &GatewayRequest,
) -> Result<Resource, ProviderError> {
    let region = gateway.region.as_str();
    let elb = p.clients.region(region).await.elb;
    let Some(parts) = parts(&elb, &gateway.provider_id, &tags::elb_name(&request.owner)).await?
    else {
        return Err(ProviderError::new(
            FailureKind::NotFound,
            "LoadBalancerNotFound",
            format!("load balancer {} does not exist", gateway.provider_id),
        ));
    };
    let lb_arn = parts.lb.load_balancer_arn().unwrap_or_default().to_string();
    let Some(tg) = parts.tg.clone() else {
        // Half made: finish it the way create does.
        return create(p, request).await;
    };
    let tg_arn = tg.target_group_arn().unwrap_or_default().to_string();
    let listener = ensure_listener(&elb, &lb_arn, &tg_arn, request.port).await?;
    let ids = sync_targets(&elb, &tg_arn, request).await?;
    let parts = Parts {
        listener: Some(listener),
        ..parts
    };
    let mut r = resource(&parts, region, &gateway.address, request, &ids);
    r.dependencies = gateway.dependencies.clone();
    Ok(r)
}

/// Deletes listener, load balancer and target group; parts already gone are skipped.
pub(crate) async fn delete(p: &AwsProvider, gateway: &Resource) -> Result<(), ProviderError> {
    let elb = p.clients.region(&gateway.region).await.elb;
    let lb_arn = gateway.provider_id.as_str();
    let tg_arn = gateway
        .attributes
        .get("target_group_arn")
        .and_then(Value::as_str)
        .map(str::to_string);
    let tg_name = gateway
        .attributes
        .get("load_balancer_name")
        .and_then(Value::as_str)
        .map(str::to_string);

    match elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
    {
        Ok(out) => {
            for l in out.listeners() {
                if let Some(arn) = l.listener_arn() {
                    ignore_not_found(
                        elb.delete_listener()
                            .listener_arn(arn)
                            .send()
                            .await
                            .map(|_| ())
                            .map_err(from_sdk),
                    )?;
                }
            }
        }
        Err(e) => ignore_not_found(Err(from_sdk(e)))?,
    }
    ignore_not_found(
        elb.delete_load_balancer()
            .load_balancer_arn(lb_arn)
            .send()
            .await
            .map(|_| ())
            .map_err(from_sdk),
    )?;

    let tg_arn = match tg_arn {
        Some(arn) => Some(arn),
        None => match tg_name {
            Some(name) => target_group_named(&elb, &name)
                .await?
                .and_then(|tg| tg.target_group_arn().map(str::to_string)),
            None => None,
        },
    };
    if let Some(arn) = tg_arn {
        // A target group is "in use" until its load balancer is fully gone.
        crate::wait_for(p, &format!("target group {arn} to be deleted"), || async {
            match elb
                .delete_target_group()
                .target_group_arn(&arn)
                .send()
                .await
            {
                Ok(_) => Ok(Some(())),
                Err(e) => {
                    let e = from_sdk(e);
                    if e.kind == FailureKind::NotFound {
                        Ok(Some(()))
                    } else if e.code == "ResourceInUse" {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                }
            }
        })
        .await?;
    }
    Ok(())
}

/// The complete gateway made for `owner` (load balancer, target group and listener), if any.
/// A half-made one is not reported: `create` finishes it.
pub(crate) async fn find(
    p: &AwsProvider,
    region: &str,
    owner: &Ownership,
) -> Result<Option<Resource>, ProviderError> {
    let elb = p.clients.region(region).await.elb;
    let name = tags::elb_name(owner);
    let Some(lb) = load_balancer_named(&elb, &name).await? else {
        return Ok(None);
    };
    let lb_arn = lb.load_balancer_arn().unwrap_or_default().to_string();
    if !owned(&elb, &lb_arn, owner).await? {
        return Ok(None);
    }
    let Some(parts) = parts(&elb, &lb_arn, &name).await? else {
        return Ok(None);
    };
    let (Some(tg), Some(listener)) = (&parts.tg, &parts.listener) else {
        return Ok(None);
    };
    let port = listener
        .port()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(0);
    let ids = target_ids(&elb, tg.target_group_arn().unwrap_or_default()).await?;
    let request = GatewayRequest {
        owner: owner.clone(),
        region: region.to_string(),
        domain: None,
        port,
        targets: Vec::new(),
    };
    let mut r = resource(&parts, region, &owner.address, &request, &ids);
    r.attributes.remove("domain");
    r.attributes.remove("targets");
    Ok(Some(r))
}

/// The load balancer with `arn` (else the one named `name`) with its target group and
/// listener; `None` when there is no such load balancer.
pub(crate) async fn parts(
    elb: &elbv2::Client,
    arn: &str,
    name: &str,
) -> Result<Option<Parts>, ProviderError> {
    let lb = if arn.is_empty() {
        load_balancer_named(elb, name).await?
    } else {
        match elb
            .describe_load_balancers()
            .load_balancer_arns(arn)
            .send()
            .await
        {
            Ok(out) => out.load_balancers().first().cloned(),
            Err(e) => {
                let e = from_sdk(e);
                if e.kind == FailureKind::NotFound {
                    None
                } else {
                    return Err(e);
                }
            }
        }
    };
    let Some(lb) = lb else { return Ok(None) };
    let lb_name = lb.load_balancer_name().unwrap_or(name).to_string();
    let tg = target_group_named(elb, &lb_name).await?;
    let listener = match elb
        .describe_listeners()
        .load_balancer_arn(lb.load_balancer_arn().unwrap_or_default())
        .send()
        .await
    {
        Ok(out) => out.listeners().first().cloned(),
        Err(e) => {
            let e = from_sdk(e);
            if e.kind == FailureKind::NotFound {
                None
            } else {
                return Err(e);
            }
        }
    };
    Ok(Some(Parts { lb, tg, listener }))
}

/// What flotilla records of a gateway.
pub(crate) fn resource(
    parts: &Parts,
    region: &str,
    address: &str,
    request: &GatewayRequest,
    target_ids: &BTreeSet<String>,
) -> Resource {
    let mut attributes = BTreeMap::new();
    attributes.insert(
        "dns_name".to_string(),
        parts.lb.dns_name().map_or(Value::Null, Value::from),
    );
    attributes.insert(
        "load_balancer_name".to_string(),
        parts
            .lb
            .load_balancer_name()
            .map_or(Value::Null, Value::from),
    );
    if let Some(tg) = &parts.tg {
        attributes.insert(
            "target_group_arn".to_string(),
            tg.target_group_arn().map_or(Value::Null, Value::from),
        );
    }
    if let Some(l) = &parts.listener {
        attributes.insert(
            "listener_arn".to_string(),
            l.listener_arn().map_or(Value::Null, Value::from),
        );
    }
    attributes.insert("port".to_string(), Value::from(request.port));
    // Absent without a domain, as the planner writes it.
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
        Value::Array(target_ids.iter().map(|t| Value::from(t.clone())).collect()),
    );
    Resource {
        address: address.to_string(),
        kind: ResourceKind::Gateway,
        provider: ProviderKind::Aws,
        provider_id: parts.lb.load_balancer_arn().unwrap_or_default().to_string(),
        region: region.to_string(),
        zone: String::new(),
        offer: None,
        attributes,
        dependencies: request.targets.iter().map(|t| t.address.clone()).collect(),
    }
}

/// The registered target instance ids of a target group.
pub(crate) async fn target_ids(
    elb: &elbv2::Client,
    tg_arn: &str,
) -> Result<BTreeSet<String>, ProviderError> {
    Ok(registered(elb, tg_arn)
        .await?
        .into_iter()
        .map(|(id, _)| id)
        .collect())
}

/// (instance id, port) of every registered target.
async fn registered(
    elb: &elbv2::Client,
    tg_arn: &str,
) -> Result<BTreeSet<(String, Option<i32>)>, ProviderError> {
    let out = elb
        .describe_target_health()
        .target_group_arn(tg_arn)
        .send()
        .await
        .map_err(from_sdk)?;
    Ok(out
        .target_health_descriptions()
        .iter()
        .filter(|d| {
            d.target_health()
                .and_then(|h| h.state())
                .is_none_or(|s| s.as_str() != "draining")
        })
        .filter_map(|d| d.target())
        .filter_map(|t| Some((t.id()?.to_string(), t.port())))
        .collect())
}

/// Registers the request's targets on its port and deregisters everything else.
async fn sync_targets(
    elb: &elbv2::Client,
    tg_arn: &str,
    request: &GatewayRequest,
) -> Result<BTreeSet<String>, ProviderError> {
    let port = i32::from(request.port);
    let want: BTreeSet<String> = request
        .targets
        .iter()
        .filter(|t| !t.provider_id.is_empty())
        .map(|t| t.provider_id.clone())
        .collect();
    let have = registered(elb, tg_arn).await?;
    let add: Vec<TargetDescription> = want
        .iter()
        .filter(|id| !have.contains(&((*id).clone(), Some(port))))
        .map(|id| TargetDescription::builder().id(id).port(port).build())
        .collect();
    let remove: Vec<TargetDescription> = have
        .iter()
        .filter(|(id, p)| !want.contains(id) || *p != Some(port))
        .map(|(id, p)| TargetDescription::builder().id(id).set_port(*p).build())
        .collect();
    if !add.is_empty() {
        elb.register_targets()
            .target_group_arn(tg_arn)
            .set_targets(Some(add))
            .send()
            .await
            .map_err(from_sdk)?;
    }
    if !remove.is_empty() {
        match deregister(elb, tg_arn, remove.clone()).await {
            // A node terminated meanwhile (its destroy runs beside the gateway's update) is
            // dropped from the group by ELB itself, and naming it fails the whole call: take
            // the others out one by one; one already gone is what was wanted.
            Err(e) if e.code == "InvalidTarget" => {
                for target in remove {
                    match deregister(elb, tg_arn, vec![target]).await {
                        Err(e) if e.code != "InvalidTarget" => return Err(e),
                        _ => {}
                    }
                }
            }
            r => r?,
        }
    }
    Ok(want)
}

async fn deregister(
    elb: &elbv2::Client,
    tg_arn: &str,
    targets: Vec<TargetDescription>,
) -> Result<(), ProviderError> {
    elb.deregister_targets()
        .target_group_arn(tg_arn)
        .set_targets(Some(targets))
        .send()
        .await
        .map_err(from_sdk)?;
    Ok(())
}

/// The TCP listener forwarding to the target group on `port`: made if missing, moved if on
/// another port.
async fn ensure_listener(
    elb: &elbv2::Client,
    lb_arn: &str,
    tg_arn: &str,
    port: u16,
) -> Result<elbv2::types::Listener, ProviderError> {
    let existing = elb
        .describe_listeners()
        .load_balancer_arn(lb_arn)
        .send()
        .await
        .map_err(from_sdk)?
        .listeners()
        .first()
        .cloned();
    let forward = Action::builder()
        .r#type(ActionTypeEnum::Forward)
        .target_group_arn(tg_arn)
        .build();
    match existing {
        Some(l) if l.port() == Some(i32::from(port)) => Ok(l),
        Some(l) => {
            let out = elb
                .modify_listener()
                .listener_arn(l.listener_arn().unwrap_or_default())
                .port(i32::from(port))
                .protocol(ProtocolEnum::Tcp)
                .default_actions(forward)
                .send()
                .await
                .map_err(from_sdk)?;
            Ok(out.listeners().first().cloned().unwrap_or(l))
        }
        None => {
            let out = elb
                .create_listener()
                .load_balancer_arn(lb_arn)
                .protocol(ProtocolEnum::Tcp)
                .port(i32::from(port))
                .default_actions(forward)
                .send()
                .await
                .map_err(from_sdk)?;
            out.listeners().first().cloned().ok_or_else(|| {
                other(
                    "InvalidResponse",
                    "CreateListener answered without a listener",
                )
            })
        }
    }
}

async fn load_balancer_named(
    elb: &elbv2::Client,
    name: &str,
) -> Result<Option<LoadBalancer>, ProviderError> {
    match elb.describe_load_balancers().names(name).send().await {
        Ok(out) => Ok(out.load_balancers().first().cloned()),
        Err(e) => {
            let e = from_sdk(e);
            if e.kind == FailureKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

async fn target_group_named(
    elb: &elbv2::Client,
    name: &str,
) -> Result<Option<TargetGroup>, ProviderError> {
    match elb.describe_target_groups().names(name).send().await {
        Ok(out) => Ok(out.target_groups().first().cloned()),
        Err(e) => {
            let e = from_sdk(e);
            if e.kind == FailureKind::NotFound {
                Ok(None)
            } else {
                Err(e)
            }
        }
    }
}

/// Whether the load balancer carries `owner`'s ownership tags.
async fn owned(elb: &elbv2::Client, arn: &str, owner: &Ownership) -> Result<bool, ProviderError> {
    let out = elb
        .describe_tags()
        .resource_arns(arn)
        .send()
        .await
        .map_err(from_sdk)?;
    let tags: Vec<(String, String)> = out
        .tag_descriptions()
        .iter()
        .filter(|d| d.resource_arn() == Some(arn))
        .flat_map(|d| d.tags())
        .filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or("").to_string())))
        .collect();
    let get = |k: &str| {
        tags.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    Ok(get(Ownership::LINEAGE_TAG) == Some(owner.lineage.as_str())
        && get(Ownership::ADDRESS_TAG) == Some(owner.address.as_str()))
}

fn elb_tags(owner: &Ownership) -> Vec<elbv2::types::Tag> {
    tags::all(owner, &BTreeMap::new())
        .into_iter()
        .map(|(k, v)| elbv2::types::Tag::builder().key(k).value(v).build())
        .collect()
}

/// The subnets a load balancer spans and their VPC: the provider's subnet, else the default
/// VPC's default subnet in every zone.
async fn subnets(p: &AwsProvider, region: &str) -> Result<(Vec<String>, String), ProviderError> {
    let ec2 = p.clients.region(region).await.ec2;
    let request = match &p.config.subnet {
        Some(s) => ec2.describe_subnets().subnet_ids(s),
        None => ec2
            .describe_subnets()
            .filters(tags::filter("default-for-az", ["true"])),
    };
    let out = request.send().await.map_err(from_sdk)?;
    let mut subnets: Vec<(String, String, String)> = out
        .subnets()
        .iter()
        .filter_map(|s| {
            Some((
                s.availability_zone().unwrap_or_default().to_string(),
                s.subnet_id()?.to_string(),
                s.vpc_id()?.to_string(),
            ))
        })
        .collect();
    subnets.sort();
    let Some(vpc) = subnets.first().map(|(_, _, v)| v.clone()) else {
        return Err(other(
            "NoSubnet",
            format!("{region} has no default VPC subnets; set `subnet` in provider \"aws\""),
        ));
    };
    Ok((subnets.into_iter().map(|(_, s, _)| s).collect(), vpc))
}

fn ignore_not_found(r: Result<(), ProviderError>) -> Result<(), ProviderError> {
    match r {
        Err(e) if e.kind == FailureKind::NotFound => Ok(()),
        Err(e) => Err(e),
        Ok(_) => Ok(()),
    }
}
