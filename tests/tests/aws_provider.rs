//! The AWS provider against moto: every `Provider` operation through the real SDK clients,
//! checked by reading moto back with the SDK and the harness's call log. Each test has its
//! own lineage, so they run in parallel on one moto without a reset.

use aws_sdk_ec2::types::Filter;
use flotilla_core::catalog::{Offer, ProviderKind};
use flotilla_core::config::AwsProvider as AwsConfig;
use flotilla_core::provider::{
    FailureKind, GatewayRequest, InstanceRequest, Observed, Ownership, Provider, VolumeRequest,
};
use flotilla_core::state::{Resource, ResourceKind};
use flotilla_provider_aws::{AwsOptions, AwsProvider};
use flotilla_tests::moto::{Fault, Moto};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const REGION: &str = "us-east-1";

fn options() -> AwsOptions {
    AwsOptions {
        poll_interval: Duration::from_millis(20),
        wait_timeout: Duration::from_secs(60),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
    }
}

fn provider() -> AwsProvider {
    provider_with(AwsConfig {
        regions: vec![REGION.to_string()],
        ..AwsConfig::default()
    })
}

fn provider_with(config: AwsConfig) -> AwsProvider {
    AwsProvider::with_options(&config, options()).expect("provider")
}

fn lineage() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn owner(lineage: &str, address: &str) -> Ownership {
    Ownership {
        lineage: lineage.to_string(),
        address: address.to_string(),
        generation: 0,
    }
}

fn offer(instance_type: &str, spot: bool, price: f64) -> Offer {
    Offer {
        provider: ProviderKind::Aws,
        region: REGION.to_string(),
        zone: String::new(),
        instance_type: instance_type.to_string(),
        gpu_vendor: None,
        gpu_name: String::new(),
        gpu_count: 0,
        gpu_memory: Default::default(),
        vcpus: 4,
        memory: Default::default(),
        spot,
        price_per_hour: price,
    }
}

fn node(lineage: &str, address: &str, offer: Offer) -> InstanceRequest {
    InstanceRequest {
        owner: owner(lineage, address),
        offer,
        zone: None,
        disk_gib: 120,
        tags: BTreeMap::from([("team".to_string(), "llm".to_string())]),
        placement_group: None,
        volumes: Vec::new(),
        attempt: 0,
        network: None,
        max_price: None,
    }
}

fn disk(lineage: &str, address: &str, zone: Option<&str>) -> VolumeRequest {
    VolumeRequest {
        owner: owner(lineage, address),
        region: REGION.to_string(),
        zone: zone.map(str::to_string),
        size_gib: 50,
        volume_type: "gp3".to_string(),
    }
}

/// What moto holds for one instance id.
async fn ec2_instance(moto: &Moto, id: &str) -> aws_sdk_ec2::types::Instance {
    let out = moto
        .ec2(REGION)
        .await
        .describe_instances()
        .instance_ids(id)
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()[0].instances()[0].clone()
}

fn tag(tags: &[aws_sdk_ec2::types::Tag], key: &str) -> Option<String> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value().map(str::to_string))
}

/// Live instances moto holds with this lineage tag.
async fn live_instances(moto: &Moto, lineage: &str) -> Vec<aws_sdk_ec2::types::Instance> {
    let out = moto
        .ec2(REGION)
        .await
        .describe_instances()
        .filters(
            Filter::builder()
                .name("tag:flotilla:lineage")
                .values(lineage)
                .build(),
        )
        .filters(
            Filter::builder()
                .name("instance-state-name")
                .values("pending")
                .values("running")
                .build(),
        )
        .send()
        .await
        .expect("DescribeInstances");
    out.reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect()
}

#[tokio::test]
async fn instance_is_launched_tagged_in_its_zone_and_terminated() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let mut request = node(&l, "fleet.train[0]", offer("g5.xlarge", false, 1.006));
    request.zone = Some("us-east-1b".to_string());
    let r = p.create_instance(&request).await.expect("create_instance");

    assert!(r.provider_id.starts_with("i-"), "{r:?}");
    assert_eq!(r.kind, ResourceKind::Instance);
    assert_eq!(r.address, "fleet.train[0]");
    assert_eq!(r.region, REGION);
    assert_eq!(r.zone, "us-east-1b");
    assert_eq!(
        r.offer.as_ref().map(|o| o.instance_type.as_str()),
        Some("g5.xlarge")
    );
    assert!(r.attributes["private_ip"].is_string(), "{r:?}");
    assert_eq!(r.attributes["disk_gib"], serde_json::json!(120));
    assert_eq!(r.attributes["tags"], serde_json::json!({"team": "llm"}));

    let i = ec2_instance(&moto, &r.provider_id).await;
    assert_eq!(i.instance_type().map(|t| t.as_str()), Some("g5.xlarge"));
    assert_eq!(
        i.state().and_then(|s| s.name()).map(|s| s.as_str()),
        Some("running")
    );
    assert_eq!(i.instance_lifecycle(), None, "on-demand");
    assert_eq!(
        tag(i.tags(), "flotilla:lineage").as_deref(),
        Some(l.as_str())
    );
    assert_eq!(
        tag(i.tags(), "flotilla:address").as_deref(),
        Some("fleet.train[0]")
    );
    assert_eq!(tag(i.tags(), "team").as_deref(), Some("llm"));

    // The launch asked for the root disk size, the idempotency token and volume tags.
    let calls = moto.calls("RunInstances", &l);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let params = &calls[0]["params"];
    assert_eq!(params["BlockDeviceMapping.1.Ebs.VolumeSize"], "120");
    assert_eq!(params["ClientToken"], request.owner.token(0).as_str());
    assert_eq!(params["Placement.AvailabilityZone"], "us-east-1b");
    let specs: BTreeSet<&str> = params
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("TagSpecification.") && k.ends_with(".ResourceType"))
        .filter_map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(specs, BTreeSet::from(["instance", "volume"]));

    p.delete_instance(&r).await.expect("delete_instance");
    let i = ec2_instance(&moto, &r.provider_id).await;
    assert_eq!(
        i.state().and_then(|s| s.name()).map(|s| s.as_str()),
        Some("terminated")
    );
    assert!(live_instances(&moto, &l).await.is_empty());
    // Deleting what is gone is fine.
    p.delete_instance(&r).await.expect("delete_instance again");
}

#[tokio::test]
async fn spot_instance_asks_for_the_offer_price() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let r = p
        .create_instance(&node(
            &l,
            "fleet.spot[0]",
            offer("g5.2xlarge", true, 0.4848),
        ))
        .await
        .expect("create_instance");
    let i = ec2_instance(&moto, &r.provider_id).await;
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(r.attributes["spot"], serde_json::json!(true));
    let calls = moto.calls("RunInstances", &l);
    assert_eq!(
        calls[0]["params"]["InstanceMarketOptions.MarketType"],
        "spot"
    );
    assert_eq!(
        calls[0]["params"]["InstanceMarketOptions.SpotOptions.MaxPrice"],
        "0.4848"
    );
    p.delete_instance(&r).await.expect("delete_instance");
}

#[tokio::test]
async fn cluster_nodes_share_one_placement_group() {
    let moto = Moto::get();
    let l = lineage();
    let group = format!("flotilla-{}-train", &l[..8]);
    let mut a = node(&l, "fleet.train[0]", offer("p5.48xlarge", false, 55.04));
    a.placement_group = Some(group.clone());
    let mut b = node(&l, "fleet.train[1]", offer("p5.48xlarge", false, 55.04));
    b.placement_group = Some(group.clone());
    // Two providers, as two applies would be: the second finds the group already there.
    let ra = provider().create_instance(&a).await.expect("first node");
    let rb = provider().create_instance(&b).await.expect("second node");

    let out = moto
        .ec2(REGION)
        .await
        .describe_placement_groups()
        .group_names(&group)
        .send()
        .await
        .expect("DescribePlacementGroups");
    assert_eq!(out.placement_groups().len(), 1);
    assert_eq!(
        out.placement_groups()[0].strategy().map(|s| s.as_str()),
        Some("cluster")
    );
    for address in ["fleet.train[0]", "fleet.train[1]"] {
        let calls = moto.calls("RunInstances", address);
        let mine: Vec<_> = calls
            .iter()
            .filter(|c| c["params"].to_string().contains(&l))
            .collect();
        assert_eq!(mine.len(), 1);
        assert_eq!(mine[0]["params"]["Placement.GroupName"], group.as_str());
    }
    assert_eq!(moto.calls("CreatePlacementGroup", &group).len(), 2);
    let p = provider();
    p.delete_instance(&ra).await.expect("delete");
    p.delete_instance(&rb).await.expect("delete");
}

#[tokio::test]
async fn volume_is_made_attached_detached_and_deleted() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let v = p
        .create_volume(&disk(&l, "volume.ckpt[0]", None))
        .await
        .expect("create_volume");
    assert!(v.provider_id.starts_with("vol-"), "{v:?}");
    assert_eq!(v.kind, ResourceKind::Volume);
    assert_eq!(v.zone, "us-east-1a", "the region's first zone");
    assert_eq!(v.attributes["size_gib"], serde_json::json!(50.0));
    assert_eq!(v.attributes["type"], "gp3");

    let ec2 = moto.ec2(REGION).await;
    let described = ec2
        .describe_volumes()
        .volume_ids(&v.provider_id)
        .send()
        .await
        .expect("DescribeVolumes");
    let vol = &described.volumes()[0];
    assert_eq!(vol.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(
        tag(vol.tags(), "flotilla:address").as_deref(),
        Some("volume.ckpt[0]")
    );
    assert_eq!(
        tag(vol.tags(), "flotilla:lineage").as_deref(),
        Some(l.as_str())
    );

    // A node takes the volume (and so its zone).
    let mut request = node(&l, "fleet.train[0]", offer("g5.xlarge", false, 1.006));
    request.volumes = vec![Resource {
        address: "volume.ckpt[0]".into(),
        ..v.clone()
    }];
    let i = p.create_instance(&request).await.expect("create_instance");
    assert_eq!(i.zone, "us-east-1a");
    assert_eq!(i.dependencies, vec!["volume.ckpt[0]".to_string()]);
    let described = ec2
        .describe_volumes()
        .volume_ids(&v.provider_id)
        .send()
        .await
        .expect("DescribeVolumes");
    let attachment = &described.volumes()[0].attachments()[0];
    assert_eq!(attachment.instance_id(), Some(i.provider_id.as_str()));
    assert_eq!(attachment.device(), Some("/dev/sdf"));
    assert_eq!(attachment.state().map(|s| s.as_str()), Some("attached"));

    // An attached volume cannot be deleted: EC2's own error, not retried, not "not found".
    let err = p
        .delete_volume(&v)
        .await
        .expect_err("delete while attached");
    assert_eq!(err.kind, FailureKind::Other);
    assert_eq!(err.code, "VolumeInUse");
    assert!(!err.message.is_empty());

    // Deleting the node detaches it (with its InstanceId) and leaves it.
    p.delete_instance(&i).await.expect("delete_instance");
    let detach = moto.calls("DetachVolume", &v.provider_id);
    assert_eq!(detach.len(), 1);
    assert_eq!(detach[0]["params"]["InstanceId"], i.provider_id.as_str());
    let described = ec2
        .describe_volumes()
        .volume_ids(&v.provider_id)
        .send()
        .await
        .expect("DescribeVolumes");
    assert_eq!(
        described.volumes()[0].state().map(|s| s.as_str()),
        Some("available")
    );

    p.delete_volume(&v).await.expect("delete_volume");
    let refreshed = p.refresh(std::slice::from_ref(&v)).await.expect("refresh");
    assert_eq!(refreshed, vec![Observed::Gone]);
    p.delete_volume(&v)
        .await
        .expect("deleting a deleted volume is fine");
}

#[tokio::test]
async fn volume_grows_in_place() {
    let p = provider();
    let l = lineage();
    let v = p
        .create_volume(&disk(&l, "volume.data[0]", Some("us-east-1c")))
        .await
        .expect("create_volume");
    assert_eq!(v.zone, "us-east-1c");
    let mut bigger = disk(&l, "volume.data[0]", Some("us-east-1c"));
    bigger.size_gib = 80;
    let v2 = p.update_volume(&v, &bigger).await.expect("update_volume");
    assert_eq!(v2.provider_id, v.provider_id);
    assert_eq!(v2.attributes["size_gib"], serde_json::json!(80.0));
    p.delete_volume(&v2).await.expect("delete_volume");
}

#[tokio::test]
async fn gateway_follows_its_targets() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let a = p
        .create_instance(&node(
            &l,
            "fleet.serve[0]",
            offer("g5.xlarge", false, 1.006),
        ))
        .await
        .expect("node a");
    let b = p
        .create_instance(&node(
            &l,
            "fleet.serve[1]",
            offer("g5.xlarge", false, 1.006),
        ))
        .await
        .expect("node b");
    let request = |targets: Vec<Resource>| GatewayRequest {
        owner: owner(&l, "gateway.serve"),
        region: REGION.to_string(),
        domain: Some("llm.example.com".to_string()),
        port: 8080,
        targets,
    };
    let g = p
        .create_gateway(&request(vec![a.clone()]))
        .await
        .expect("create_gateway");
    assert_eq!(g.kind, ResourceKind::Gateway);
    assert!(
        g.provider_id.starts_with("arn:aws:elasticloadbalancing:"),
        "{g:?}"
    );
    assert!(
        g.attributes["dns_name"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "{g:?}"
    );
    assert_eq!(g.attributes["port"], serde_json::json!(8080));
    assert_eq!(
        g.attributes["targets"],
        serde_json::json!(["fleet.serve[0]"])
    );

    let elb = moto.elb(REGION).await;
    let lbs = elb
        .describe_load_balancers()
        .load_balancer_arns(&g.provider_id)
        .send()
        .await
        .expect("DescribeLoadBalancers");
    let lb = &lbs.load_balancers()[0];
    assert_eq!(lb.r#type().map(|t| t.as_str()), Some("network"));
    let listeners = elb
        .describe_listeners()
        .load_balancer_arn(&g.provider_id)
        .send()
        .await
        .expect("DescribeListeners");
    assert_eq!(listeners.listeners()[0].port(), Some(8080));
    assert_eq!(
        listeners.listeners()[0].protocol().map(|p| p.as_str()),
        Some("TCP")
    );
    let tg = g.attributes["target_group_arn"]
        .as_str()
        .expect("target group")
        .to_string();
    let targets = |elb: aws_sdk_elasticloadbalancingv2::Client, tg: String| async move {
        let out = elb
            .describe_target_health()
            .target_group_arn(tg)
            .send()
            .await
            .expect("DescribeTargetHealth");
        out.target_health_descriptions()
            .iter()
            .filter_map(|d| d.target().and_then(|t| t.id()).map(str::to_string))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        targets(elb.clone(), tg.clone()).await,
        BTreeSet::from([a.provider_id.clone()])
    );

    let g = p
        .update_gateway(&g, &request(vec![a.clone(), b.clone()]))
        .await
        .expect("add a target");
    assert_eq!(
        targets(elb.clone(), tg.clone()).await,
        BTreeSet::from([a.provider_id.clone(), b.provider_id.clone()])
    );
    let g = p
        .update_gateway(&g, &request(vec![b.clone()]))
        .await
        .expect("remove a target");
    assert_eq!(
        targets(elb.clone(), tg.clone()).await,
        BTreeSet::from([b.provider_id.clone()])
    );
    assert_eq!(
        g.attributes["targets"],
        serde_json::json!(["fleet.serve[1]"])
    );

    // Found by its tags, as a re-run after a crash would.
    let found = p
        .find(ResourceKind::Gateway, REGION, &owner(&l, "gateway.serve"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.provider_id, g.provider_id);

    p.delete_gateway(&g).await.expect("delete_gateway");
    let err = elb
        .describe_load_balancers()
        .load_balancer_arns(&g.provider_id)
        .send()
        .await;
    assert!(err.is_err() || err.unwrap().load_balancers().is_empty());
    let tgs = elb
        .describe_target_groups()
        .target_group_arns(&tg)
        .send()
        .await;
    assert!(tgs.is_err() || tgs.unwrap().target_groups().is_empty());
    assert_eq!(
        p.find(ResourceKind::Gateway, REGION, &owner(&l, "gateway.serve"))
            .await
            .expect("find"),
        None
    );
    p.delete_gateway(&g)
        .await
        .expect("deleting a deleted gateway is fine");
    p.delete_instance(&a).await.expect("delete");
    p.delete_instance(&b).await.expect("delete");
}

#[tokio::test]
async fn find_by_tags_sees_only_its_own_and_removes_duplicates() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let made = p
        .create_instance(&node(&l, "fleet.a[0]", offer("g5.xlarge", true, 1.0)))
        .await
        .expect("create_instance");
    let found = p
        .find(ResourceKind::Instance, REGION, &owner(&l, "fleet.a[0]"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found.provider_id, made.provider_id);
    assert_eq!(found.address, "fleet.a[0]");
    let o = found.offer.expect("partial offer");
    assert_eq!((o.instance_type.as_str(), o.spot), ("g5.xlarge", true));
    // Another address, another lineage: nothing.
    for other in [owner(&l, "fleet.a[1]"), owner(&lineage(), "fleet.a[0]")] {
        assert_eq!(
            p.find(ResourceKind::Instance, REGION, &other)
                .await
                .expect("find"),
            None
        );
        assert_eq!(
            p.find(ResourceKind::Volume, REGION, &other)
                .await
                .expect("find"),
            None
        );
    }

    // moto ignores ClientToken: a retried launch makes a second instance with the same tags.
    // find keeps one (the oldest; launch times have whole seconds, so within one second
    // either) and terminates the other.
    let mut again = node(&l, "fleet.a[0]", offer("g5.xlarge", true, 1.0));
    again.attempt = 0;
    let dup = p.create_instance(&again).await.expect("duplicate launch");
    assert_ne!(dup.provider_id, made.provider_id);
    assert_eq!(live_instances(&moto, &l).await.len(), 2);
    let found = p
        .find(ResourceKind::Instance, REGION, &owner(&l, "fleet.a[0]"))
        .await
        .expect("find")
        .expect("found");
    assert!(
        [&made.provider_id, &dup.provider_id].contains(&&found.provider_id),
        "{found:?}"
    );
    let live = live_instances(&moto, &l).await;
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].instance_id(), Some(found.provider_id.as_str()));

    let v = p
        .create_volume(&disk(&l, "volume.a[0]", None))
        .await
        .expect("create_volume");
    let found_volume = p
        .find(ResourceKind::Volume, REGION, &owner(&l, "volume.a[0]"))
        .await
        .expect("find")
        .expect("found");
    assert_eq!(found_volume.provider_id, v.provider_id);
    p.delete_instance(&found).await.expect("delete");
    p.delete_volume(&v).await.expect("delete");
}

#[tokio::test]
async fn refresh_is_one_call_per_kind_and_region() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let mut nodes = Vec::new();
    for i in 0..3 {
        let mut r = p
            .create_instance(&node(
                &l,
                &format!("fleet.r[{i}]"),
                offer("g5.xlarge", false, 1.0),
            ))
            .await
            .expect("create_instance");
        r.address = format!("fleet.r[{i}]");
        nodes.push(r);
    }
    let mut vols = Vec::new();
    for i in 0..2 {
        vols.push(
            p.create_volume(&disk(&l, &format!("volume.r[{i}]"), None))
                .await
                .expect("create_volume"),
        );
    }
    let g = p
        .create_gateway(&GatewayRequest {
            owner: owner(&l, "gateway.r"),
            region: REGION.to_string(),
            domain: None,
            port: 80,
            targets: nodes.clone(),
        })
        .await
        .expect("create_gateway");
    let all: Vec<Resource> = nodes
        .iter()
        .chain(vols.iter())
        .chain([&g])
        .cloned()
        .collect();

    let before = moto.calls("DescribeInstances", &nodes[0].provider_id).len();
    let before_vol = moto.calls("DescribeVolumes", &vols[0].provider_id).len();
    let seen = p.refresh(&all).await.expect("refresh");
    assert_eq!(seen.len(), all.len());
    for (o, r) in seen.iter().zip(&all) {
        let Observed::Exists(now) = o else {
            panic!("{} is gone", r.address)
        };
        assert_eq!(now.provider_id, r.provider_id);
        assert_eq!(now.address, r.address);
    }
    let Observed::Exists(gw) = &seen[5] else {
        unreachable!()
    };
    assert_eq!(
        gw.attributes["targets"],
        serde_json::json!(["fleet.r[0]", "fleet.r[1]", "fleet.r[2]"])
    );
    // One DescribeInstances naming all three ids, one DescribeVolumes naming both.
    let calls = moto.calls("DescribeInstances", &nodes[0].provider_id);
    assert_eq!(calls.len() - before, 1, "{calls:?}");
    let last = calls.last().unwrap()["params"].to_string();
    assert!(
        nodes.iter().all(|n| last.contains(&n.provider_id)),
        "{last}"
    );
    assert_eq!(
        moto.calls("DescribeVolumes", &vols[0].provider_id).len() - before_vol,
        1
    );

    // Terminated and deleted outside flotilla: gone.
    let ec2 = moto.ec2(REGION).await;
    ec2.terminate_instances()
        .instance_ids(&nodes[1].provider_id)
        .send()
        .await
        .expect("TerminateInstances");
    ec2.delete_volume()
        .volume_id(&vols[1].provider_id)
        .send()
        .await
        .expect("DeleteVolume");
    let seen = p.refresh(&all).await.expect("refresh");
    assert!(matches!(seen[0], Observed::Exists(_)));
    assert_eq!(seen[1], Observed::Gone);
    assert!(matches!(seen[3], Observed::Exists(_)));
    assert_eq!(seen[4], Observed::Gone);

    p.delete_gateway(&g).await.expect("delete_gateway");
    let seen = p.refresh(std::slice::from_ref(&g)).await.expect("refresh");
    assert_eq!(seen, vec![Observed::Gone]);
    for n in &nodes {
        p.delete_instance(n).await.expect("delete");
    }
    p.delete_volume(&vols[0]).await.expect("delete");
}

#[tokio::test]
async fn instance_tags_change_in_place() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let request = node(&l, "fleet.t[0]", offer("g5.xlarge", false, 1.0));
    let r = p.create_instance(&request).await.expect("create_instance");
    let mut retag = request.clone();
    retag.tags = BTreeMap::from([("owner".to_string(), "ml-infra".to_string())]);
    let r2 = p
        .update_instance(&r, &retag)
        .await
        .expect("update_instance");
    assert_eq!(r2.provider_id, r.provider_id);
    assert_eq!(
        r2.attributes["tags"],
        serde_json::json!({"owner": "ml-infra"})
    );
    let i = ec2_instance(&moto, &r.provider_id).await;
    assert_eq!(tag(i.tags(), "owner").as_deref(), Some("ml-infra"));
    assert_eq!(tag(i.tags(), "team"), None);
    assert_eq!(
        tag(i.tags(), "flotilla:lineage").as_deref(),
        Some(l.as_str())
    );
    // Refresh sees tags changed outside flotilla.
    moto.ec2(REGION)
        .await
        .create_tags()
        .resources(&r.provider_id)
        .tags(
            aws_sdk_ec2::types::Tag::builder()
                .key("owner")
                .value("someone")
                .build(),
        )
        .send()
        .await
        .expect("CreateTags");
    let seen = p.refresh(std::slice::from_ref(&r2)).await.expect("refresh");
    let Observed::Exists(now) = &seen[0] else {
        panic!("gone")
    };
    assert_eq!(
        now.attributes["tags"],
        serde_json::json!({"owner": "someone"})
    );
    p.delete_instance(&r).await.expect("delete");
}

#[tokio::test]
async fn capacity_error_is_reported_at_once_for_failover() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    let fault = moto.fault(
        &Fault::new("RunInstances", &l, "InsufficientInstanceCapacity", 500)
            .matching("InstanceType", "p5.48xlarge")
            .times(1),
    );
    let err = p
        .create_instance(&node(
            &l,
            "fleet.big[0]",
            offer("p5.48xlarge", false, 55.04),
        ))
        .await
        .expect_err("no capacity");
    assert_eq!(err.kind, FailureKind::Capacity);
    assert_eq!(err.code, "InsufficientInstanceCapacity");
    assert!(
        err.message.contains("InsufficientInstanceCapacity"),
        "{err:?}"
    );
    // Not retried by the SDK despite HTTP 500: the executor fails over instead.
    assert_eq!(moto.fault_hits(&fault), 1);
    assert_eq!(moto.calls("RunInstances", &l).len(), 1);
    assert!(live_instances(&moto, &l).await.is_empty());

    // The fault is spent: the next offer (or the same one later) launches.
    let mut next = node(&l, "fleet.big[0]", offer("p5.48xlarge", false, 55.04));
    next.attempt = 1;
    let r = p
        .create_instance(&next)
        .await
        .expect("launch after the fault");
    assert_eq!(live_instances(&moto, &l).await.len(), 1);
    p.delete_instance(&r).await.expect("delete");
}

#[tokio::test]
async fn spot_and_zone_capacity_codes_are_capacity() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    for code in ["Unsupported", "SpotMaxPriceTooLow", "InsufficientCapacity"] {
        let fault = moto.fault(&Fault::new("RunInstances", &l, code, 400).times(1));
        let err = p
            .create_instance(&node(&l, "fleet.s[0]", offer("g5.xlarge", true, 0.1)))
            .await
            .expect_err(code);
        assert_eq!((err.kind, err.code.as_str()), (FailureKind::Capacity, code));
        moto.clear_fault(&fault);
    }
}

#[tokio::test]
async fn throttling_is_retried_then_reported_as_throttled() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    // Always throttled: the SDK's bounded retry gives up and the executor is told.
    let fault = moto.fault(&Fault::new("RunInstances", &l, "RequestLimitExceeded", 503));
    let err = p
        .create_instance(&node(&l, "fleet.th[0]", offer("g5.xlarge", false, 1.0)))
        .await
        .expect_err("throttled");
    assert_eq!(err.kind, FailureKind::Throttled);
    assert_eq!(err.code, "RequestLimitExceeded");
    assert_eq!(moto.fault_hits(&fault), 3, "max_attempts");
    moto.clear_fault(&fault);

    // Throttled once: retried transparently, one instance.
    let fault = moto.fault(&Fault::new("RunInstances", &l, "RequestLimitExceeded", 503).times(1));
    let r = p
        .create_instance(&node(&l, "fleet.th[0]", offer("g5.xlarge", false, 1.0)))
        .await
        .expect("retried");
    assert_eq!(moto.fault_hits(&fault), 1);
    assert_eq!(live_instances(&moto, &l).await.len(), 1);
    p.delete_instance(&r).await.expect("delete");
}

#[tokio::test]
async fn other_errors_keep_the_clouds_code_and_message() {
    let moto = Moto::get();
    let p = provider();
    let l = lineage();
    moto.fault(&Fault::new("CreateVolume", &l, "VolumeLimitExceeded", 400));
    let err = p
        .create_volume(&disk(&l, "volume.x[0]", None))
        .await
        .expect_err("limit");
    assert_eq!(err.kind, FailureKind::Other);
    assert_eq!(err.code, "VolumeLimitExceeded");
    assert!(err.message.contains("injected"), "{err:?}");
}

#[tokio::test]
async fn configured_image_and_endpoint_are_used() {
    let moto = Moto::get();
    let l = lineage();
    let p = provider_with(AwsConfig {
        regions: vec![REGION.to_string()],
        image: Some("ami-760aaa0f".to_string()),
        endpoint: Some(moto.endpoint.clone()),
        ..AwsConfig::default()
    });
    let r = p
        .create_instance(&node(&l, "fleet.img[0]", offer("g5.xlarge", false, 1.0)))
        .await
        .expect("create_instance");
    let i = ec2_instance(&moto, &r.provider_id).await;
    assert_eq!(i.image_id(), Some("ami-760aaa0f"));
    // That AMI's root device is /dev/xvda: the disk size went there.
    let calls = moto.calls("RunInstances", &l);
    assert_eq!(
        calls[0]["params"]["BlockDeviceMapping.1.DeviceName"],
        "/dev/xvda"
    );
    p.delete_instance(&r).await.expect("delete");
}

#[tokio::test]
async fn unreachable_endpoint_is_an_error_without_credentials() {
    // Needs no moto: nothing listens on port 9.
    let p = AwsProvider::with_options(
        &AwsConfig {
            regions: vec![REGION.to_string()],
            endpoint: Some("http://127.0.0.1:9".to_string()),
            ..AwsConfig::default()
        },
        AwsOptions {
            max_attempts: 1,
            ..options()
        },
    )
    .expect("provider");
    let err = p
        .create_volume(&disk(&lineage(), "volume.u[0]", Some("us-east-1a")))
        .await
        .expect_err("nothing listens");
    assert_eq!(err.kind, FailureKind::Other);
    assert_eq!(err.code, "DispatchFailure", "{err:?}");
    if let Ok(secret) = std::env::var("AWS_SECRET_ACCESS_KEY") {
        assert!(!err.message.contains(&secret), "{err:?}");
        assert!(!err.to_string().contains(&secret));
    }
}
