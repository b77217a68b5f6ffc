//! `flotilla apply`, `plan` and `destroy` end to end on Azure: the real binary, the real
//! executor and the Azure provider (the real `azure_mgmt_compute` / `azure_mgmt_network`
//! clients) against the Resource Manager fake (`tests/arm/server.py`), checked by reading the
//! fake back through its `/_state` and `/_calls` control endpoints.
//!
//! Each test works in its own directory with a state file it writes first
//! (`flotilla_tests::workdir`), so it knows its lineage (the `flotilla-lineage` tag on
//! everything the apply makes), and in its own resource group; it scopes its faults to its
//! lineage and runs in parallel with the others on one fake. A tiny Azure catalog keeps plans
//! small and the cheapest offer known.

use flotilla_tests::arm::{self, Arm, SSH_KEY, SUBSCRIPTION, last, same_id, tag};
use flotilla_tests::workdir::{Workdir, text};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// Azure offers the fake knows. On-demand T4: NC4as in eastus, then NC8as there; NC4as in
/// westus2 is dearer than both (so a skipped region shows); spot NC4as; on-demand V100.
const CATALOG: &str = "\
provider,instance_type,region,zone,gpu_vendor,gpu_name,gpu_count,gpu_memory_gib,vcpus,memory_gib,spot,price_per_hour_usd
azure,Standard_NC4as_T4_v3,eastus,,nvidia,T4,1,16,4,28,false,0.526
azure,Standard_NC8as_T4_v3,eastus,,nvidia,T4,1,16,8,56,false,0.752
azure,Standard_NC4as_T4_v3,westus2,,nvidia,T4,1,16,4,28,false,0.90
azure,Standard_NC4as_T4_v3,eastus,,nvidia,T4,1,16,4,28,true,0.20425
azure,Standard_NC6s_v3,eastus,,nvidia,V100,1,16,6,112,false,3.06
azure,Standard_NC4as_T4_v3,westus3,,nvidia,T4,1,16,4,28,false,0.526
";

/// The `provider "azure"` block for a test of `lineage`, in `regions` (quoted, comma
/// separated). The endpoint comes from `FLOTILLA_AZURE_ENDPOINT`, which `scripts/test` exports.
fn provider(lineage: &str, regions: &str) -> String {
    format!(
        r#"
provider "azure" {{
  subscription_id = "{SUBSCRIPTION}"
  resource_group  = "{}"
  regions         = [{regions}]
  ssh_public_key  = "{SSH_KEY}"
}}
"#,
        arm::resource_group(lineage)
    )
}

/// A fleet file of `body` (HCL) under the `provider "azure"` block of `lineage`, in eastus.
fn in_eastus(lineage: &str, body: &str) -> String {
    format!("{}{body}", provider(lineage, r#""eastus""#))
}

/// A working directory for `fleet` (given the test's lineage) with [`CATALOG`].
fn workdir(fleet: impl Fn(&str) -> String) -> Workdir {
    let w = Workdir::new("");
    w.write_fleet(&fleet(&w.lineage));
    std::fs::write(w.path().join("catalog.csv"), CATALOG).expect("write the catalog");
    w
}

/// A training fleet with one volume per node behind a gateway, and a spot batch node.
fn example(lineage: &str) -> String {
    in_eastus(
        lineage,
        r#"
volume "ckpt" {
  size = "50GB"
}

fleet "train" {
  nodes       = 2
  spot_policy = "on-demand"
  resources {
    gpu  = "T4:1"
    disk = "120GB.."
  }
  volumes = [volume.ckpt]
  tags    = { team = "llm", "Cost Center" = "ML/Ops" }
}

fleet "batch" {
  nodes       = 1
  spot_policy = "spot"
  resources {
    gpu = "T4:1"
  }
}

gateway "api" {
  targets = [fleet.train]
  port    = 8000
}
"#,
    )
}

/// `nodes` on-demand T4 nodes in `regions`.
fn solo(lineage: &str, nodes: u32, regions: &str) -> String {
    format!(
        r#"{}
fleet "solo" {{
  nodes       = {nodes}
  spot_policy = "on-demand"
  resources {{
    gpu = "T4:1"
  }}
}}
"#,
        provider(lineage, regions)
    )
}

fn apply(w: &Workdir) -> String {
    apply_args(w, &["apply", "-y"])
}

fn apply_args(w: &Workdir, args: &[&str]) -> String {
    let out = w.flotilla(args);
    assert!(
        out.status.success(),
        "flotilla {args:?} failed:\n{}",
        text(&out)
    );
    text(&out)
}

/// Destroys everything and checks that the fake holds nothing of the test's any more:
/// nothing tagged with its lineage and nothing named with its prefix, networks and OS disks
/// included.
fn destroy(arm: &Arm, w: &Workdir) {
    let out = w.flotilla(&["destroy", "-y"]);
    assert!(out.status.success(), "destroy failed:\n{}", text(&out));
    assert_eq!(arm.leftovers(&w.lineage), Vec::<String>::new());
    let state = w.state();
    assert_eq!(
        state["resources"].as_array().map(Vec::len),
        Some(0),
        "state still records something: {state}"
    );
}

/// The addresses the state records, sorted.
fn recorded(w: &Workdir) -> Vec<String> {
    let mut out: Vec<String> = w.state()["resources"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["address"].as_str().map(str::to_string))
        .collect();
    out.sort();
    out
}

/// The ids of a NIC's ip configurations, lower-cased.
fn ipconfigs(nic: &Value) -> Vec<String> {
    nic["properties"]["ipConfigurations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["id"].as_str().map(str::to_ascii_lowercase))
        .collect()
}

/// The NIC ids a VM's network profile names.
fn vm_nics(vm: &Value) -> Vec<Value> {
    vm["properties"]["networkProfile"]["networkInterfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|n| n["id"].clone())
        .collect()
}

/// The OS disks the fake holds for the test: named with its prefix (as the VMs are) and
/// carrying an `osType`, which the fleets' volumes do not.
fn os_disks(arm: &Arm, w: &Workdir) -> Vec<Value> {
    arm.named("disks", &w.lineage)
        .into_iter()
        .filter(|d| d["properties"]["osType"].is_string())
        .collect()
}

#[test]
fn apply_makes_exactly_the_plan_replan_is_empty_and_destroy_leaves_nothing() {
    let arm = Arm::get();
    let w = workdir(example);
    let group = arm::resource_group(&w.lineage);

    let said = apply(&w);
    // Three VMs, two disks, the gateway and the region's network.
    assert!(
        said.contains("Apply complete! Resources: 7 added, 0 changed, 0 destroyed."),
        "{said}"
    );
    assert_eq!(
        recorded(&w),
        [
            "fleet.batch[0]",
            "fleet.train[0]",
            "fleet.train[1]",
            "gateway.api",
            "network.azure.eastus",
            "volume.ckpt[0]",
            "volume.ckpt[1]",
        ]
    );

    // Exactly the planned VMs: sizes, priorities, tags, OS disk, admin and key.
    let vms = arm.vms(&w.lineage);
    assert_eq!(
        vms.keys().cloned().collect::<Vec<_>>(),
        ["fleet.batch[0]", "fleet.train[0]", "fleet.train[1]"]
    );
    for vm in vms.values() {
        assert_eq!(vm["location"], "eastus", "{vm}");
        assert_eq!(vm["properties"]["provisioningState"], "Succeeded", "{vm}");
        assert!(
            vm["name"]
                .as_str()
                .unwrap_or_default()
                .starts_with(&arm::name_prefix(&w.lineage)),
            "named from lineage and address: {}",
            vm["name"]
        );
        let linux = &vm["properties"]["osProfile"]["linuxConfiguration"];
        assert_eq!(linux["ssh"]["publicKeys"][0]["keyData"], SSH_KEY, "{vm}");
        assert_eq!(linux["disablePasswordAuthentication"], true, "{vm}");
        assert_eq!(
            vm_nics(vm).len(),
            1,
            "one NIC per VM: {}",
            vm["properties"]["networkProfile"]
        );
    }
    for i in 0..2 {
        let vm = &vms[&format!("fleet.train[{i}]")];
        let props = &vm["properties"];
        assert_eq!(props["hardwareProfile"]["vmSize"], "Standard_NC4as_T4_v3");
        assert!(
            props["priority"].is_null() || props["priority"] == "Regular",
            "{props}"
        );
        assert_eq!(tag(vm, "team").as_deref(), Some("llm"));
        assert_eq!(tag(vm, "Cost Center").as_deref(), Some("ML/Ops"));
        assert_eq!(tag(vm, "flotilla-lineage").as_deref(), Some(&*w.lineage));
        assert_eq!(
            props["storageProfile"]["osDisk"]["diskSizeGB"], 120,
            "{props}"
        );
    }
    let batch = &vms["fleet.batch[0]"]["properties"];
    assert_eq!(batch["hardwareProfile"]["vmSize"], "Standard_NC4as_T4_v3");
    assert_eq!(batch["priority"], "Spot", "{batch}");
    assert_eq!(batch["evictionPolicy"], "Delete", "{batch}");
    assert_eq!(
        batch["billingProfile"]["maxPrice"].as_f64(),
        Some(-1.0),
        "no max_price: up to the on-demand price, never evicted for price: {batch}"
    );
    assert!(
        tag(&vms["fleet.batch[0]"], "team").is_none(),
        "only the fleet's own tags"
    );

    // What the state records for a node (B's refresh and the gateways rely on it).
    for (address, vm) in &vms {
        let r = w.resource(address).expect("recorded");
        assert!(same_id(&r["provider_id"], &vm["id"]), "{r}");
        assert_eq!(r["region"], "eastus");
        assert_eq!(r["zone"], "");
        assert!(same_id(&r["attributes"]["nic_id"], &vm_nics(vm)[0]), "{r}");
        assert_eq!(r["attributes"]["vm_size"], "Standard_NC4as_T4_v3", "{r}");
        assert!(r["attributes"]["private_ip"].is_string(), "{r}");
        assert!(
            r["attributes"].get("public_ip").is_none(),
            "no public IP unless asked: {r}"
        );
    }
    assert_eq!(
        w.resource("fleet.batch[0]").unwrap()["attributes"]["priority"],
        "Spot"
    );
    assert_eq!(
        w.resource("fleet.train[0]").unwrap()["attributes"]["priority"],
        "Regular"
    );

    // One VNet for the region with its `default` subnet, every NIC in it, no public IPs on
    // NICs.
    let vnets = arm.vnets(&w.lineage);
    assert_eq!(vnets.len(), 1, "{vnets:?}");
    let vnet = &vnets[0];
    assert_eq!(vnet["location"], "eastus");
    assert_eq!(
        tag(vnet, "flotilla-address").as_deref(),
        Some("network.azure.eastus")
    );
    let subnets = vnet["properties"]["subnets"].as_array().expect("subnets");
    assert_eq!(subnets.len(), 1, "{vnet}");
    assert_eq!(subnets[0]["name"], "default");
    let network = w.resource("network.azure.eastus").expect("recorded");
    assert_eq!(network["kind"], "network");
    assert!(same_id(&network["provider_id"], &vnet["id"]), "{network}");
    assert!(
        same_id(&network["attributes"]["subnet_id"], &subnets[0]["id"]),
        "{network}"
    );
    let nics = arm.nics(&w.lineage);
    assert_eq!(
        nics.keys().cloned().collect::<Vec<_>>(),
        ["fleet.batch[0]", "fleet.train[0]", "fleet.train[1]"]
    );
    for (address, nic) in &nics {
        assert!(same_id(&vm_nics(&vms[address])[0], &nic["id"]), "{nic}");
        let ipc = &nic["properties"]["ipConfigurations"][0]["properties"];
        assert!(same_id(&ipc["subnet"]["id"], &subnets[0]["id"]), "{nic}");
        assert!(ipc["publicIPAddress"].is_null(), "no public IP: {nic}");
    }

    // One managed disk per train node, attached to it through its dataDisks.
    let disks = arm.disks(&w.lineage);
    assert_eq!(
        disks.keys().cloned().collect::<Vec<_>>(),
        ["volume.ckpt[0]", "volume.ckpt[1]"]
    );
    for i in 0..2 {
        let disk = &disks[&format!("volume.ckpt[{i}]")];
        let vm = &vms[&format!("fleet.train[{i}]")];
        assert_eq!(disk["properties"]["diskSizeGB"], 50, "{disk}");
        assert_eq!(disk["location"], "eastus");
        assert!(same_id(&disk["managedBy"], &vm["id"]), "{disk}");
        let data = vm["properties"]["storageProfile"]["dataDisks"]
            .as_array()
            .expect("dataDisks");
        assert_eq!(data.len(), 1, "{data:?}");
        assert_eq!(data[0]["createOption"], "Attach");
        assert!(same_id(&data[0]["managedDisk"]["id"], &disk["id"]));
        let r = w.resource(&format!("volume.ckpt[{i}]")).expect("recorded");
        assert!(same_id(&r["provider_id"], &disk["id"]), "{r}");
    }
    assert!(
        vms["fleet.batch[0]"]["properties"]["storageProfile"]["dataDisks"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "the batch fleet mounts nothing"
    );
    assert_eq!(os_disks(&arm, &w).len(), 3, "one OS disk per VM");

    // The gateway: a Standard load balancer on a static public IP, its pool the train NICs,
    // a TCP rule on port 8000.
    let lbs = arm.load_balancers(&w.lineage);
    assert_eq!(lbs.len(), 1, "{lbs:?}");
    let lb = &lbs[0];
    assert_eq!(lb["sku"]["name"], "Standard");
    let mut want: Vec<String> = (0..2)
        .flat_map(|i| ipconfigs(&nics[&format!("fleet.train[{i}]")]))
        .collect();
    want.sort();
    assert_eq!(Arm::pool_members(lb), want);
    let rules = lb["properties"]["loadBalancingRules"]
        .as_array()
        .expect("rules");
    assert_eq!(rules.len(), 1, "{lb}");
    assert_eq!(rules[0]["properties"]["frontendPort"], 8000);
    assert_eq!(rules[0]["properties"]["protocol"], "Tcp");
    let ips = arm.public_ips(&w.lineage);
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert_eq!(ips[0]["sku"]["name"], "Standard");
    let frontend = &lb["properties"]["frontendIPConfigurations"][0]["properties"];
    assert!(same_id(&frontend["publicIPAddress"]["id"], &ips[0]["id"]));
    let gateway = w.resource("gateway.api").expect("recorded");
    assert!(same_id(&gateway["provider_id"], &lb["id"]), "{gateway}");
    assert!(same_id(
        &gateway["attributes"]["public_ip_id"],
        &ips[0]["id"]
    ));
    assert_eq!(
        gateway["attributes"]["dns_name"], ips[0]["properties"]["ipAddress"],
        "{gateway}"
    );

    // Re-plan: nothing to do, nothing drifted, and the refresh was batched: one list of the
    // group's VMs and one of its disks, and no VM, disk or load balancer read one by one.
    let page_size = arm.config()["page_size"].as_u64().unwrap_or(5) as usize;
    let pages = |n: usize| n.div_ceil(page_size).max(1);
    let vm_lists = arm.list_calls(&group, "Microsoft.Compute/virtualMachines");
    let disk_lists = arm.list_calls(&group, "Microsoft.Compute/disks");
    let volumes_and_os_disks = arm.named("disks", &w.lineage).len();
    let lb_lists = arm.list_calls(&group, "Microsoft.Network/loadBalancers");
    let vnet_lists = arm.list_calls(&group, "Microsoft.Network/virtualNetworks");
    let one_by_one = || -> usize {
        [
            "virtualMachines",
            "disks",
            "loadBalancers",
            "networkInterfaces",
            "virtualNetworks",
            "publicIPAddresses",
        ]
        .iter()
        .map(|kind| {
            arm.calls("GET", kind, &group)
                .iter()
                .filter(|c| c["name"].is_string())
                .count()
        })
        .sum()
    };
    let reads = one_by_one();
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("No changes."), "{}", text(&out));
    assert!(
        !text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    assert_eq!(
        arm.list_calls(&group, "Microsoft.Compute/virtualMachines"),
        vm_lists + pages(3),
        "one VM list for the group"
    );
    assert_eq!(
        arm.list_calls(&group, "Microsoft.Compute/disks"),
        disk_lists + pages(volumes_and_os_disks),
        "one disk list for the group"
    );
    assert_eq!(
        arm.list_calls(&group, "Microsoft.Network/loadBalancers"),
        lb_lists + 1,
        "one load balancer list for the group"
    );
    assert_eq!(
        arm.list_calls(&group, "Microsoft.Network/virtualNetworks"),
        vnet_lists + 1,
        "one network list for the group"
    );
    assert_eq!(
        one_by_one(),
        reads,
        "refresh reads no VM, disk, NIC, network, load balancer or address one by one"
    );

    destroy(&arm, &w);
}

#[test]
fn scale_up_then_down_removes_the_highest_index_and_its_nic() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    apply(&w);
    w.write_fleet(&solo(&w.lineage, 3, r#""eastus""#));
    let said = apply(&w);
    assert!(said.contains("2 added, 0 changed, 0 destroyed"), "{said}");
    assert_eq!(
        arm.vms(&w.lineage).keys().cloned().collect::<Vec<_>>(),
        ["fleet.solo[0]", "fleet.solo[1]", "fleet.solo[2]"]
    );
    assert_eq!(arm.nics(&w.lineage).len(), 3);
    assert_eq!(
        arm.vnets(&w.lineage).len(),
        1,
        "the region's network is shared"
    );

    w.write_fleet(&solo(&w.lineage, 2, r#""eastus""#));
    let said = apply(&w);
    assert!(said.contains("0 added, 0 changed, 1 destroyed"), "{said}");
    assert_eq!(
        arm.vms(&w.lineage).keys().cloned().collect::<Vec<_>>(),
        ["fleet.solo[0]", "fleet.solo[1]"]
    );
    assert_eq!(
        arm.nics(&w.lineage).keys().cloned().collect::<Vec<_>>(),
        ["fleet.solo[0]", "fleet.solo[1]"],
        "the removed VM's NIC goes with it"
    );
    assert_eq!(os_disks(&arm, &w).len(), 2, "and its OS disk");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

/// One on-demand node with a volume; `gpu` picks the offer.
fn with_volume(lineage: &str, gpu: &str) -> String {
    format!(
        r#"{}
volume "data" {{
  size = "20GB"
}}

fleet "solo" {{
  nodes       = 1
  spot_policy = "on-demand"
  resources {{
    gpu = "{gpu}"
  }}
  volumes = [volume.data]
}}
"#,
        provider(lineage, r#""eastus""#)
    )
}

#[test]
fn a_replaced_vm_takes_its_disk_along() {
    let arm = Arm::get();
    let w = workdir(|l| with_volume(l, "T4:1"));
    apply(&w);
    let before = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    let disk_before = arm.disks(&w.lineage)["volume.data[0]"].clone();
    assert!(same_id(&disk_before["managedBy"], &before["id"]));

    // A V100 no longer fits the T4 offer: the VM is replaced, the disk kept.
    w.write_fleet(&with_volume(&w.lineage, "V100:1"));
    let out = w.flotilla(&["plan"]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("fleet.solo[0]"), "{}", text(&out));
    let said = apply(&w);
    assert!(said.contains("1 added, 0 changed, 1 destroyed"), "{said}");

    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    let after = &vms["fleet.solo[0]"];
    assert_eq!(
        after["properties"]["hardwareProfile"]["vmSize"],
        "Standard_NC6s_v3"
    );
    assert_ne!(
        after["properties"]["vmId"], before["properties"]["vmId"],
        "a new VM"
    );
    let disks = arm.disks(&w.lineage);
    assert_eq!(disks.len(), 1, "the same disk, not a new one: {disks:?}");
    let disk = &disks["volume.data[0]"];
    assert_eq!(disk["id"], disk_before["id"]);
    assert_eq!(
        disk["properties"]["uniqueId"], disk_before["properties"]["uniqueId"],
        "the same disk, not one made again under its name"
    );
    assert!(
        same_id(&disk["managedBy"], &after["id"]),
        "attached to the new VM: {disk}"
    );
    let data = after["properties"]["storageProfile"]["dataDisks"]
        .as_array()
        .expect("dataDisks");
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["createOption"], "Attach");
    assert!(same_id(&data[0]["managedDisk"]["id"], &disk["id"]));
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["offer"]["instance_type"],
        "Standard_NC6s_v3"
    );
    assert_eq!(arm.nics(&w.lineage).len(), 1, "the old NIC is gone");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn allocation_failure_fails_over_to_the_next_offer() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    let fault = arm.fault(&json!({
        "code": "AllocationFailed",
        "size": "Standard_NC4as_T4_v3",
        "contains": w.lineage,
    }));
    let said = apply(&w);
    assert_eq!(arm.fault_hits(&fault), 1, "the cheapest offer was tried");
    assert!(said.contains("AllocationFailed"), "{said}");
    assert!(said.contains("no capacity for"), "{said}");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm = &vms["fleet.solo[0]"];
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"], "Standard_NC8as_T4_v3",
        "the next offer"
    );
    assert_eq!(vm["properties"]["provisioningState"], "Succeeded");
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["offer"]["instance_type"],
        "Standard_NC8as_T4_v3"
    );
    assert_eq!(
        arm.nics(&w.lineage).len(),
        1,
        "no NIC left from the failed try"
    );
    assert_eq!(
        os_disks(&arm, &w).len(),
        1,
        "no OS disk left from the failed try"
    );
    arm.clear_fault(&fault);
    destroy(&arm, &w);
}

#[test]
fn quota_exceeded_moves_to_the_next_region_naming_the_quota() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus", "westus2""#));
    // The T4 family's quota in eastus is spent: NC8as there would need the same quota, so
    // the region is skipped for westus2, dearer than NC8as in eastus.
    let fault = arm.fault(&json!({
        "code": "OperationNotAllowed",
        "size": "Standard_NC4as_T4_v3",
        "region": "eastus",
        "family": "standardNCASv3_T4Family",
        "contains": w.lineage,
    }));
    let said = apply(&w);
    assert_eq!(
        arm.fault_hits(&fault),
        1,
        "quota is regional: one try is enough"
    );
    assert!(said.contains("OperationNotAllowed"), "{said}");
    assert!(
        said.contains("standardNCASv3_T4Family"),
        "the quota is named: {said}"
    );
    assert!(said.contains("over quota"), "{said}");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    let vm = &vms["fleet.solo[0]"];
    assert_eq!(vm["location"], "westus2", "the next region: {vm}");
    assert_eq!(
        vm["properties"]["hardwareProfile"]["vmSize"],
        "Standard_NC4as_T4_v3"
    );
    assert_eq!(
        w.resource("fleet.solo[0]").expect("recorded")["region"],
        "westus2"
    );
    assert_eq!(arm.nics(&w.lineage).len(), 1, "{:?}", arm.nics(&w.lineage));
    arm.clear_fault(&fault);
    destroy(&arm, &w);
}

#[test]
fn throttled_calls_are_retried() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    let fault = arm.fault(&json!({
        "code": "TooManyRequests",
        "method": "PUT",
        "type": "virtualMachines",
        "contains": w.lineage,
        "times": 2,
        "retry_after": 1,
    }));
    apply(&w);
    assert_eq!(arm.fault_hits(&fault), 2, "throttled twice, then through");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(
        vms["fleet.solo[0]"]["properties"]["provisioningState"],
        "Succeeded"
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn throttled_operation_polls_are_retried() {
    let arm = Arm::get();
    // Operation polls carry no lineage: this test alone uses westus3, so its region scopes
    // the fault.
    let w = workdir(|l| solo(l, 1, r#""westus3""#));
    let fault = arm.fault(&json!({
        "code": "TooManyRequests",
        "type": "operations",
        "region": "westus3",
        "times": 2,
        "retry_after": 1,
    }));
    apply(&w);
    assert_eq!(arm.fault_hits(&fault), 2, "two polls throttled");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(vms["fleet.solo[0]"]["location"], "westus3");
    arm.clear_fault(&fault);
    destroy(&arm, &w);
}

/// Starts `flotilla apply`, holds the first PUT of `kind` (`virtualMachines`) that carries
/// the test's lineage for 5 s, kills the apply with SIGKILL while it waits, and lets the
/// operation go on.
fn kill_during_put(arm: &Arm, w: &Workdir, kind: &str) {
    let hold = arm.fault(&json!({
        "code": "Delay",
        "method": "PUT",
        "type": kind,
        "contains": w.lineage,
        "times": 1,
        "polls": 5,
        "retry_after": 5,
    }));
    let running = w.spawn(&["apply", "-y"]);
    let deadline = Instant::now() + Duration::from_secs(120);
    while arm.fault_hits(&hold) == 0 {
        assert!(
            Instant::now() < deadline,
            "the apply never sent its {kind} create"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    running.kill();
    arm.clear_fault(&hold);
}

#[test]
fn killed_during_a_create_then_applied_again_makes_no_duplicate() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    kill_during_put(&arm, &w, "virtualMachines");
    assert_eq!(arm.all_vms(&w.lineage).len(), 1, "the create reached ARM");
    assert!(w.resource("fleet.solo[0]").is_none(), "not recorded yet");

    let said = apply(&w);
    assert!(
        said.contains("found what an earlier, interrupted apply made"),
        "the VM is adopted, not made again: {said}"
    );
    let all = arm.all_vms(&w.lineage);
    assert_eq!(all.len(), 1, "exactly one VM: {all:?}");
    assert_eq!(all[0]["properties"]["provisioningState"], "Succeeded");
    assert_eq!(arm.nics(&w.lineage).len(), 1, "exactly one NIC");
    assert_eq!(os_disks(&arm, &w).len(), 1, "exactly one OS disk");
    assert_eq!(arm.vnets(&w.lineage).len(), 1, "exactly one VNet");
    let recorded = w.resource("fleet.solo[0]").expect("recorded");
    assert!(
        same_id(&recorded["provider_id"], &all[0]["id"]),
        "{recorded}"
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn killed_during_a_nic_create_then_applied_again_makes_no_duplicate() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    kill_during_put(&arm, &w, "networkInterfaces");
    assert_eq!(
        arm.nics(&w.lineage).len(),
        1,
        "the NIC's create reached ARM"
    );
    assert!(arm.all_vms(&w.lineage).is_empty(), "no VM yet");

    apply(&w);
    let nics = arm.nics(&w.lineage);
    assert_eq!(nics.len(), 1, "exactly one NIC: {nics:?}");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert!(same_id(
        &vm_nics(&vms["fleet.solo[0]"])[0],
        &nics["fleet.solo[0]"]["id"]
    ));
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn killed_during_a_disk_create_then_applied_again_makes_no_duplicate() {
    let arm = Arm::get();
    let w = workdir(|l| with_volume(l, "T4:1"));
    kill_during_put(&arm, &w, "disks");
    assert_eq!(
        arm.disks(&w.lineage).len(),
        1,
        "the disk's create reached ARM"
    );
    assert!(w.resource("volume.data[0]").is_none(), "not recorded yet");

    apply(&w);
    // `disks` fails the test on two disks for one address.
    let disks = arm.disks(&w.lineage);
    assert_eq!(disks.len(), 1, "exactly one disk: {disks:?}");
    let vms = arm.vms(&w.lineage);
    assert!(same_id(
        &disks["volume.data[0]"]["managedBy"],
        &vms["fleet.solo[0]"]["id"]
    ));
    let recorded = w.resource("volume.data[0]").expect("recorded");
    assert!(same_id(
        &recorded["provider_id"],
        &disks["volume.data[0]"]["id"]
    ));
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn a_refresh_follows_every_page_of_the_lists() {
    let arm = Arm::get();
    let page_size = arm.config()["page_size"].as_u64().unwrap_or(5) as u32;
    let nodes = page_size + 1;
    let w = workdir(|l| solo(l, nodes, r#""eastus""#));
    let group = arm::resource_group(&w.lineage);
    apply(&w);
    assert_eq!(arm.vms(&w.lineage).len(), nodes as usize);
    let vm_lists = arm.list_calls(&group, "Microsoft.Compute/virtualMachines");
    // More VMs than a page holds: a refresh that stopped at the first page would see the
    // rest as deleted.
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(
        arm.list_calls(&group, "Microsoft.Compute/virtualMachines"),
        vm_lists + 2,
        "two pages of one list"
    );
    destroy(&arm, &w);
}

/// `nodes` on-demand nodes behind a gateway.
fn served(lineage: &str, nodes: u32) -> String {
    format!(
        r#"{}
fleet "web" {{
  nodes       = {nodes}
  spot_policy = "on-demand"
  resources {{
    gpu = "T4:1"
  }}
}}

gateway "front" {{
  targets = [fleet.web]
  port    = 443
}}
"#,
        provider(lineage, r#""eastus""#)
    )
}

#[test]
fn gateway_targets_change_in_place() {
    let arm = Arm::get();
    let w = workdir(|l| served(l, 1));
    apply(&w);
    let lb_before = arm.load_balancers(&w.lineage);
    assert_eq!(lb_before.len(), 1);
    let ip_before = arm.public_ips(&w.lineage);
    assert_eq!(ip_before.len(), 1);

    w.write_fleet(&served(&w.lineage, 2));
    let said = apply(&w);
    assert!(said.contains("1 added, 1 changed, 0 destroyed"), "{said}");
    let lbs = arm.load_balancers(&w.lineage);
    assert_eq!(lbs.len(), 1);
    assert_eq!(
        lbs[0]["properties"]["resourceGuid"], lb_before[0]["properties"]["resourceGuid"],
        "the same load balancer"
    );
    let ips = arm.public_ips(&w.lineage);
    assert_eq!(
        ips[0]["properties"]["ipAddress"], ip_before[0]["properties"]["ipAddress"],
        "the same address"
    );
    let nics = arm.nics(&w.lineage);
    let mut want: Vec<String> = nics.values().flat_map(ipconfigs).collect();
    want.sort();
    assert_eq!(Arm::pool_members(&lbs[0]), want);

    w.write_fleet(&served(&w.lineage, 1));
    apply(&w);
    let lbs = arm.load_balancers(&w.lineage);
    assert_eq!(
        Arm::pool_members(&lbs[0]),
        ipconfigs(&arm.nics(&w.lineage)["fleet.web[0]"])
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn a_nic_taken_out_of_the_pool_shows_as_drift_and_apply_puts_it_back() {
    let arm = Arm::get();
    let w = workdir(|l| served(l, 2));
    apply(&w);
    let nics = arm.nics(&w.lineage);
    arm.leave_pools(&nics["fleet.web[1]"]);
    let lb = &arm.load_balancers(&w.lineage)[0];
    assert_eq!(
        Arm::pool_members(lb),
        ipconfigs(&nics["fleet.web[0]"]),
        "the fake took it out"
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("gateway.front"), "{}", text(&out));
    let said = apply(&w);
    assert!(said.contains("0 added, 1 changed, 0 destroyed"), "{said}");
    let lb = &arm.load_balancers(&w.lineage)[0];
    let mut want: Vec<String> = nics.values().flat_map(ipconfigs).collect();
    want.sort();
    assert_eq!(Arm::pool_members(lb), want, "both NICs again");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn tags_changed_outside_show_as_drift_and_apply_puts_them_back() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    apply(&w);
    let vm = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    arm.retag_vm(&vm, &[("owner", "mallory")]);
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    assert!(text(&out).contains("mallory"), "{}", text(&out));
    apply(&w);
    let vm = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    assert!(tag(&vm, "owner").is_none(), "{vm}");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn a_deleted_vm_shows_as_gone_and_apply_makes_it_again() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    apply(&w);
    let vm = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    arm.delete(&vm);
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("Changed outside flotilla"),
        "{}",
        text(&out)
    );
    apply(&w);
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_ne!(
        vms["fleet.solo[0]"]["properties"]["vmId"],
        vm["properties"]["vmId"]
    );
    assert_eq!(
        arm.nics(&w.lineage).len(),
        1,
        "one NIC: the deleted VM's went with it (deleteOption Delete)"
    );
    assert_eq!(os_disks(&arm, &w).len(), 1, "one OS disk");
    assert!(
        same_id(
            &w.resource("fleet.solo[0]").expect("recorded")["provider_id"],
            &vms["fleet.solo[0]"]["id"]
        ),
        "the state records the new VM"
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn a_spot_fleets_max_price_caps_its_vms_price() {
    let arm = Arm::get();
    let w = workdir(|l| {
        in_eastus(
            l,
            r#"
fleet "cheap" {
  nodes       = 1
  spot_policy = "spot"
  max_price   = 0.25
  resources {
    gpu = "T4:1"
  }
}
"#,
        )
    });
    apply(&w);
    let vms = arm.vms(&w.lineage);
    let props = &vms["fleet.cheap[0]"]["properties"];
    assert_eq!(props["priority"], "Spot", "{props}");
    assert_eq!(
        props["billingProfile"]["maxPrice"].as_f64(),
        Some(0.25),
        "{props}"
    );
    destroy(&arm, &w);
}

#[test]
fn sku_not_available_fails_over_to_the_next_offer() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    let fault = arm.fault(&json!({
        "code": "SkuNotAvailable",
        "size": "Standard_NC4as_T4_v3",
        "contains": w.lineage,
    }));
    let said = apply(&w);
    assert_eq!(arm.fault_hits(&fault), 1);
    assert!(said.contains("SkuNotAvailable"), "{said}");
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(
        vms["fleet.solo[0]"]["properties"]["hardwareProfile"]["vmSize"],
        "Standard_NC8as_T4_v3"
    );
    assert_eq!(arm.nics(&w.lineage).len(), 1);
    arm.clear_fault(&fault);
    destroy(&arm, &w);
}

#[test]
fn a_cluster_fleet_shares_one_proximity_placement_group() {
    let arm = Arm::get();
    let w = workdir(|l| {
        in_eastus(
            l,
            r#"
fleet "ring" {
  nodes       = 2
  placement   = "cluster"
  spot_policy = "on-demand"
  resources {
    gpu = "T4:1"
  }
}
"#,
        )
    });
    apply(&w);
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 2, "{vms:?}");
    let groups: std::collections::BTreeSet<String> = vms
        .values()
        .map(|vm| {
            vm["properties"]["proximityPlacementGroup"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_ascii_lowercase()
        })
        .collect();
    assert_eq!(groups.len(), 1, "one group for the fleet: {groups:?}");
    let id = groups.into_iter().next().unwrap();
    assert!(!id.is_empty(), "in a proximity placement group: {vms:?}");
    let ppg = arm.by_id(&id).expect("the group exists");
    assert_eq!(ppg["location"], "eastus");
    let mut members: Vec<String> = ppg["properties"]["virtualMachines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["id"].as_str().map(str::to_ascii_lowercase))
        .collect();
    members.sort();
    let mut want: Vec<String> = vms
        .values()
        .filter_map(|vm| vm["id"].as_str().map(str::to_ascii_lowercase))
        .collect();
    want.sort();
    assert_eq!(members, want);
    destroy(&arm, &w);
    assert!(
        arm.by_id(&id).is_none(),
        "the group goes with the fleet's last VM"
    );
}

#[test]
fn a_name_taken_by_someone_else_is_an_error_not_an_adoption() {
    let arm = Arm::get();
    let w = workdir(|l| solo(l, 1, r#""eastus""#));
    // An apply that dies before recording makes the VM; its lineage tag is then changed to
    // another owner's, as if the name were taken by a stranger.
    kill_during_put(&arm, &w, "virtualMachines");
    let vm = arm.all_vms(&w.lineage).pop().expect("the VM");
    arm.retag_vm(&vm, &[("flotilla-lineage", "someone-else")]);

    let out = w.flotilla(&["apply", "-y"]);
    assert!(!out.status.success(), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains(&last(&vm["id"])),
        "names the resource: {said}"
    );
    assert!(said.contains("someone-else"), "names its owner: {said}");
    assert!(w.resource("fleet.solo[0]").is_none(), "nothing adopted");
    let now = arm.by_id(vm["id"].as_str().unwrap()).expect("still there");
    assert_eq!(
        tag(&now, "flotilla-lineage").as_deref(),
        Some("someone-else"),
        "the stranger's VM is left alone"
    );
    arm.delete(&now);
    destroy(&arm, &w);
}

#[test]
fn a_volume_grows_in_place() {
    let arm = Arm::get();
    let w = workdir(|l| with_volume(l, "T4:1"));
    apply(&w);
    let before = arm.disks(&w.lineage)["volume.data[0]"].clone();
    let vm_before = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    w.write_fleet(&with_volume(&w.lineage, "T4:1").replace("20GB", "30GB"));
    let said = apply(&w);
    assert!(said.contains("0 added, 1 changed, 0 destroyed"), "{said}");
    let after = arm.disks(&w.lineage)["volume.data[0]"].clone();
    assert_eq!(after["properties"]["diskSizeGB"], 30, "{after}");
    assert_eq!(
        after["properties"]["uniqueId"], before["properties"]["uniqueId"],
        "the same disk"
    );
    let vm_after = arm.vms(&w.lineage)["fleet.solo[0]"].clone();
    assert_eq!(
        vm_after["properties"]["vmId"], vm_before["properties"]["vmId"],
        "the same VM"
    );
    assert!(
        same_id(&after["managedBy"], &vm_after["id"]),
        "still attached"
    );
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}

#[test]
fn without_an_ssh_key_apply_fails_clearly_and_makes_no_vm() {
    let arm = Arm::get();
    let w = workdir(|l| {
        solo(l, 1, r#""eastus""#).replace(&format!("  ssh_public_key  = \"{SSH_KEY}\"\n"), "")
    });
    assert!(
        !std::fs::read_to_string(w.path().join("main.hcl"))
            .unwrap()
            .contains("ssh_public_key")
    );
    // A home without ~/.ssh: no default key either.
    let home = tempfile::tempdir().expect("an empty home");
    let out = w
        .command(&["apply", "-y"])
        .env("HOME", home.path())
        .output()
        .expect("run flotilla");
    let said = text(&out);
    eprintln!("{said}");
    assert!(!out.status.success(), "{said}");
    assert!(said.contains("ssh_public_key"), "says what to set: {said}");
    assert!(said.contains("provider \"azure\""), "and where: {said}");
    assert!(arm.all_vms(&w.lineage).is_empty(), "no VM made");
    assert!(w.resource("fleet.solo[0]").is_none());
    // Plan and destroy need no key.
    let out = w
        .command(&["destroy", "-y"])
        .env("HOME", home.path())
        .output()
        .expect("run flotilla");
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(arm.leftovers(&w.lineage), Vec::<String>::new());
}

#[test]
fn an_evicted_spot_vm_shows_as_gone_and_apply_makes_it_again() {
    let arm = Arm::get();
    let w = workdir(|l| {
        in_eastus(
            l,
            r#"
fleet "batch" {
  nodes       = 1
  spot_policy = "spot"
  resources {
    gpu = "T4:1"
  }
}
"#,
        )
    });
    apply(&w);
    let vm = arm.vms(&w.lineage)["fleet.batch[0]"].clone();
    arm.evict(&vm);
    assert!(arm.all_vms(&w.lineage).is_empty(), "evicted and deleted");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("fleet.batch[0] was deleted outside flotilla"),
        "{}",
        text(&out)
    );
    apply(&w);
    let vms = arm.vms(&w.lineage);
    assert_eq!(vms.len(), 1, "{vms:?}");
    assert_eq!(vms["fleet.batch[0]"]["properties"]["priority"], "Spot");
    assert_eq!(
        arm.nics(&w.lineage).len(),
        1,
        "no NIC left from the evicted VM"
    );
    assert_eq!(os_disks(&arm, &w).len(), 1, "no OS disk left from it");
    let out = w.flotilla(&["plan", "--detailed-exitcode"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    destroy(&arm, &w);
}
