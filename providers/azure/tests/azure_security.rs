//! The network security group of a region's network and the gateways' rules in it, through
//! the crate's API against the ARM fake (tests/arm/server.py): on Azure a Standard load
//! balancer passes no inbound traffic unless an NSG allows it, so the network's subnet must
//! name an NSG and each gateway must open its port there.
//!
//! The fake must run and `FLOTILLA_AZURE_ENDPOINT` point at it; `scripts/test` does both
//! (`scripts/test -E 'binary(azure_security)'`). Without it the tests fail loudly. Each test
//! works in its own resource group and lineage, so they run in parallel with the others.

use flotilla_core::provider::{GatewayRequest, NetworkRequest, Ownership, Provider};
use flotilla_core::state::{Resource, State};
use flotilla_provider_azure::{AzureOptions, AzureProvider};
use serde_json::{Value, json};
use std::time::Duration;

const SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000f5";
const REGION: &str = "eastus";
const NETWORK_API: &str = "2024-03-01";

/// One test's world: the fake, its own resource group and lineage, and the provider.
struct World {
    base: String,
    http: reqwest::Client,
    group: String,
    state: State,
    provider: AzureProvider,
}

impl World {
    fn new(tag: &str) -> World {
        let base = std::env::var("FLOTILLA_AZURE_ENDPOINT").unwrap_or_default();
        assert!(
            !base.is_empty(),
            "FLOTILLA_AZURE_ENDPOINT is not set: these tests need the ARM fake \
             (tests/arm/server.py); run them through scripts/test"
        );
        let base = base.trim_end_matches('/').to_string();
        let state = State::empty();
        let group = format!("fsg-{tag}-{}", &state.lineage[..8]);
        let config = flotilla_core::config::AzureProvider {
            subscription_id: SUBSCRIPTION.into(),
            resource_group: group.clone(),
            endpoint: Some(base.clone()),
            ssh_public_key: Some("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE test@host".into()),
            ..Default::default()
        };
        let provider = AzureProvider::with_options(
            &config,
            AzureOptions {
                poll_interval: Duration::from_millis(5),
                max_poll_interval: Duration::from_millis(50),
                wait_timeout: Duration::from_secs(60),
            },
        )
        .expect("a provider for the fake");
        World {
            base,
            http: reqwest::Client::new(),
            group,
            state,
            provider,
        }
    }

    fn owner(&self, address: &str) -> Ownership {
        Ownership {
            lineage: self.state.lineage.clone(),
            address: address.into(),
            generation: 0,
        }
    }

    /// The first 8 hex digits of the lineage, as names carry them.
    fn lin8(&self) -> String {
        self.state
            .lineage
            .chars()
            .filter(char::is_ascii_hexdigit)
            .take(8)
            .collect()
    }

    fn path(&self, rtype: &str, name: &str) -> String {
        format!(
            "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}/providers/{rtype}/{name}",
            self.group
        )
    }

    /// The NSG flotilla names for this state's network in [`REGION`].
    fn nsg_path(&self) -> String {
        self.path(
            "Microsoft.Network/networkSecurityGroups",
            &format!("fl-{}-network-azure-{REGION}-nsg", self.lin8()),
        )
    }

    /// A call; the status and the JSON body (`Null` when empty).
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth("test-token");
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        let rsp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("the ARM fake at {} is not reachable: {e}", self.base));
        let status = rsp.status().as_u16();
        let text = rsp.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// A GET of an ARM id (api-version added); `None` on 404.
    async fn get(&self, id: &str) -> Option<Value> {
        let (status, v) = self
            .call(
                reqwest::Method::GET,
                &format!("{id}?api-version={NETWORK_API}"),
                None,
            )
            .await;
        assert!(status == 200 || status == 404, "GET {id}: {status} {v}");
        (status == 200).then_some(v)
    }

    async fn network(&self) -> Resource {
        self.provider
            .create_network(&NetworkRequest {
                owner: self.owner(&format!("network.azure.{REGION}")),
                region: REGION.into(),
            })
            .await
            .expect("the region's network")
    }

    fn gateway(&self, name: &str, port: u16) -> GatewayRequest {
        GatewayRequest {
            owner: self.owner(&format!("gateway.{name}")),
            region: REGION.into(),
            domain: None,
            port,
            targets: Vec::new(),
        }
    }

    /// The NSG's own rules by name: (priority, destination port).
    async fn rules(&self) -> Vec<(String, i64, String)> {
        let nsg = self.get(&self.nsg_path()).await.expect("the NSG");
        let mut out: Vec<(String, i64, String)> = nsg["properties"]["securityRules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                (
                    r["name"].as_str().unwrap_or_default().to_string(),
                    r["properties"]["priority"].as_i64().unwrap_or_default(),
                    r["properties"]["destinationPortRange"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
            })
            .collect();
        out.sort();
        out
    }

    /// Resources in this test's group still tagged with its lineage.
    async fn tagged_left(&self) -> Vec<String> {
        let (_, state) = self.call(reqwest::Method::GET, "/_state", None).await;
        state["resources"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["tags"]["flotilla-lineage"].as_str() == Some(self.state.lineage.as_str()))
            .filter_map(|r| r["id"].as_str().map(str::to_string))
            .collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_network_subnet_names_a_tagged_nsg_and_delete_removes_both() {
    let w = World::new("net");
    let network = w.network().await;
    let nsg = w.get(&w.nsg_path()).await.expect("the NSG is made");
    assert_eq!(nsg["tags"]["flotilla-lineage"], w.state.lineage.as_str());
    assert_eq!(nsg["tags"]["flotilla-address"], "network.azure.eastus");
    assert_eq!(nsg["location"], REGION);
    let subnet = w
        .get(network.attributes["subnet_id"].as_str().unwrap())
        .await
        .expect("the subnet");
    let named = subnet["properties"]["networkSecurityGroup"]["id"]
        .as_str()
        .expect("the subnet names an NSG");
    assert!(named.eq_ignore_ascii_case(&w.nsg_path()), "{named}");
    // The NSG is made before the virtual network that names it.
    let (_, calls) = w
        .call(
            reqwest::Method::GET,
            &format!("/_calls?method=PUT&contains={}", w.group),
            None,
        )
        .await;
    let order: Vec<String> = calls
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["type"].as_str().map(str::to_string))
        .filter(|t| t == "networkSecurityGroups" || t == "virtualNetworks")
        .collect();
    assert_eq!(
        order.first().map(String::as_str),
        Some("networkSecurityGroups"),
        "{order:?}"
    );

    // Made again (a retried create): adopted, nothing new.
    let again = w.network().await;
    assert_eq!(again.provider_id, network.provider_id);

    // Delete: the VNet, then the NSG; nothing tagged is left; a second delete is fine.
    w.provider
        .delete_network(&network)
        .await
        .expect("delete_network");
    assert!(w.get(&network.provider_id).await.is_none());
    assert!(w.get(&w.nsg_path()).await.is_none(), "the NSG is deleted");
    assert_eq!(w.tagged_left().await, Vec::<String>::new());
    w.provider
        .delete_network(&network)
        .await
        .expect("deleting a deleted network");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_made_without_an_nsg_gets_one_on_its_subnet() {
    let w = World::new("old");
    // A virtual network as flotilla made it before NSGs: tagged, subnet without an NSG.
    let vnet = w.path(
        "Microsoft.Network/virtualNetworks",
        &format!("fl-{}-network-azure-{REGION}", w.lin8()),
    );
    let body = json!({"location": REGION,
        "tags": {"flotilla-lineage": w.state.lineage, "flotilla-address": "network.azure.eastus"},
        "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
            "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}]}});
    // The group first.
    let (status, _) = w
        .call(
            reqwest::Method::PUT,
            &format!(
                "/subscriptions/{SUBSCRIPTION}/resourceGroups/{}?api-version=2021-04-01",
                w.group
            ),
            Some(&json!({"location": REGION})),
        )
        .await;
    assert!(status == 200 || status == 201);
    let (status, v) = w
        .call(
            reqwest::Method::PUT,
            &format!("{vnet}?api-version={NETWORK_API}"),
            Some(&body),
        )
        .await;
    assert!(status == 201, "{status} {v}");
    let network = w.network().await;
    let got = w.get(&vnet).await.expect("the VNet");
    let named = got["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"]
        .as_str()
        .expect("the adopted network's subnet names the NSG now");
    assert!(named.eq_ignore_ascii_case(&w.nsg_path()));
    w.provider
        .delete_network(&network)
        .await
        .expect("delete_network");
    assert_eq!(w.tagged_left().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_open_their_ports_with_free_stable_priorities() {
    let w = World::new("gw");
    let network = w.network().await;
    let lb = |name: &str| format!("fl-{}-gateway-{name}", w.lin8());

    // The first gateway: an inbound allow rule from the internet on its port, at 1000.
    let a = w
        .provider
        .create_gateway(&w.gateway("a", 8080))
        .await
        .expect("create_gateway a");
    let rule_id = a.attributes["security_rule_id"].as_str().expect("recorded");
    let rule = w.get(rule_id).await.expect("the rule");
    let p = &rule["properties"];
    assert_eq!(
        (
            p["direction"].as_str(),
            p["access"].as_str(),
            p["protocol"].as_str(),
            p["sourceAddressPrefix"].as_str(),
            p["destinationPortRange"].as_str(),
            p["priority"].as_i64(),
        ),
        (
            Some("Inbound"),
            Some("Allow"),
            Some("Tcp"),
            Some("Internet"),
            Some("8080"),
            Some(1000)
        )
    );
    assert_eq!(rule["name"], lb("a").as_str());

    // A second gateway takes the next free priority.
    let b = w
        .provider
        .create_gateway(&w.gateway("b", 443))
        .await
        .expect("create_gateway b");
    assert_eq!(
        w.rules().await,
        vec![
            (lb("a"), 1000, "8080".into()),
            (lb("b"), 1001, "443".into())
        ]
    );

    // A repeated create changes nothing; a port change keeps the priority.
    w.provider
        .create_gateway(&w.gateway("a", 8080))
        .await
        .expect("a repeated create");
    let a = w
        .provider
        .update_gateway(&a, &w.gateway("a", 9090))
        .await
        .expect("update_gateway a");
    assert_eq!(
        w.rules().await,
        vec![
            (lb("a"), 1000, "9090".into()),
            (lb("b"), 1001, "443".into())
        ]
    );

    // Deleting a gateway removes its rule only; someone's own rule at the freed priority is
    // skipped by the next gateway.
    w.provider
        .delete_gateway(&a)
        .await
        .expect("delete_gateway a");
    assert_eq!(w.rules().await, vec![(lb("b"), 1001, "443".into())]);
    let mine = json!({"properties": {"protocol": "Tcp", "sourceAddressPrefix": "10.1.0.0/16",
        "sourcePortRange": "*", "destinationAddressPrefix": "*", "destinationPortRange": "22",
        "access": "Allow", "priority": 1000, "direction": "Inbound"}});
    let (status, v) = w
        .call(
            reqwest::Method::PUT,
            &format!(
                "{}/securityRules/ssh?api-version={NETWORK_API}",
                w.nsg_path()
            ),
            Some(&mine),
        )
        .await;
    assert_eq!(status, 201, "{v}");
    let c = w
        .provider
        .create_gateway(&w.gateway("c", 80))
        .await
        .expect("create_gateway c");
    assert_eq!(
        w.rules().await,
        vec![
            (lb("b"), 1001, "443".into()),
            (lb("c"), 1002, "80".into()),
            ("ssh".into(), 1000, "22".into()),
        ]
    );

    // A gateway recorded before gateways had rules still loses its rule on delete (found by
    // the load balancer's lineage).
    let mut old = b.clone();
    old.attributes.remove("security_rule_id");
    w.provider
        .delete_gateway(&old)
        .await
        .expect("delete_gateway b");
    w.provider
        .delete_gateway(&c)
        .await
        .expect("delete_gateway c");
    assert_eq!(w.rules().await, vec![("ssh".into(), 1000, "22".into())]);

    // Destroy: nothing tagged is left (the NSG goes with the network, user rule and all).
    w.provider
        .delete_network(&network)
        .await
        .expect("delete_network");
    assert_eq!(w.tagged_left().await, Vec::<String>::new());
    assert!(w.get(&w.nsg_path()).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_made_at_once_get_different_priorities() {
    let w = World::new("par");
    let network = w.network().await;
    let requests = [w.gateway("x", 81), w.gateway("y", 82), w.gateway("z", 83)];
    let (x, y, z) = tokio::join!(
        w.provider.create_gateway(&requests[0]),
        w.provider.create_gateway(&requests[1]),
        w.provider.create_gateway(&requests[2]),
    );
    let made = [x.expect("x"), y.expect("y"), z.expect("z")];
    let mut priorities: Vec<i64> = w.rules().await.iter().map(|r| r.1).collect();
    priorities.sort_unstable();
    assert_eq!(priorities, vec![1000, 1001, 1002]);
    for g in &made {
        w.provider.delete_gateway(g).await.expect("delete_gateway");
    }
    assert!(w.rules().await.is_empty());
    w.provider
        .delete_network(&network)
        .await
        .expect("delete_network");
    assert_eq!(w.tagged_left().await, Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_refused_for_its_priority_is_tried_again_then_reported() {
    let w = World::new("busy");
    let network = w.network().await;
    // Two refusals (another apply took the priority meanwhile): the third try is made.
    let fault = json!({"code": "SecurityRuleConflict", "status": 400, "method": "PUT",
        "type": "securityRules", "contains": w.group, "times": 2});
    let (status, v) = w.call(reqwest::Method::POST, "/_fault", Some(&fault)).await;
    assert_eq!(status, 200, "{v}");
    let g = w
        .provider
        .create_gateway(&w.gateway("a", 80))
        .await
        .expect("made on the third try");
    assert_eq!(w.rules().await.len(), 1);
    let (_, calls) = w
        .call(
            reqwest::Method::GET,
            &format!("/_calls?method=PUT&type=securityRules&contains={}", w.group),
            None,
        )
        .await;
    let codes: Vec<Value> = calls
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| c["code"].clone())
        .collect();
    assert_eq!(codes.len(), 3, "{calls}");
    assert_eq!(codes[0], "SecurityRuleConflict");

    // Refused every time: an error naming the rule and the gateway, not a hang.
    let fault = json!({"code": "SecurityRuleConflict", "status": 400, "method": "PUT",
        "type": "securityRules", "contains": w.group, "times": 50});
    w.call(reqwest::Method::POST, "/_fault", Some(&fault)).await;
    let err = w
        .provider
        .create_gateway(&w.gateway("b", 81))
        .await
        .expect_err("never accepted");
    assert_eq!(err.code, "SecurityRuleConflict");
    assert!(
        err.message.contains("gateway.b") && err.message.contains("security rule"),
        "{}",
        err.message
    );
    let (_, faults) = w.call(reqwest::Method::GET, "/_fault", None).await;
    for f in faults.as_array().into_iter().flatten() {
        if f["contains"].as_str() == Some(w.group.as_str()) {
            let id = f["id"].as_str().unwrap();
            w.call(reqwest::Method::DELETE, &format!("/_fault/{id}"), None)
                .await;
        }
    }
    w.provider.delete_gateway(&g).await.expect("delete_gateway");
    // The half-made gateway b: its load balancer and IP, as an apply's destroy would find them.
    if let Some(b) = w
        .provider
        .find(
            flotilla_core::state::ResourceKind::Gateway,
            REGION,
            &w.owner("gateway.b"),
        )
        .await
        .expect("find")
    {
        w.provider
            .delete_gateway(&b)
            .await
            .expect("delete_gateway b");
    }
    w.provider
        .delete_network(&network)
        .await
        .expect("delete_network");
    assert_eq!(w.tagged_left().await, Vec::<String>::new());
}
