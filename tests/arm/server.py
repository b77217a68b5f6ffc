"""A protocol-level fake of Azure Resource Manager and of the Azure Retail Prices API.

Azure Resource Manager has no emulator (../../../shared/TESTING.md), so flotilla's Azure tests run
the real `azure_mgmt_compute` / `azure_mgmt_network` clients over HTTP against this server. It
follows the public REST reference as collected in ../../../shared/api/arm.md; where that is
uncertain the choice made here is marked `uncertain` in a comment. Plain Python 3.11 standard
library, in memory, one process.

What it serves (paths are matched case-insensitively, as ARM does; names are case-insensitive
and keep the case they were created with):

* `/subscriptions/{s}/resourcegroups/{rg}` PUT/GET/HEAD/PATCH/DELETE, and the group list.
* Under `/subscriptions/{s}/resourceGroups/{rg}/providers/`:
  `Microsoft.Compute/virtualMachines` (api-version 2024-07-01; POST start, powerOff, deallocate,
  restart, simulateEviction, attachDetachDataDisks; `/instanceView`; PATCH),
  `Microsoft.Compute/disks` (2024-03-02), `Microsoft.Compute/proximityPlacementGroups`
  (2024-07-01), `Microsoft.Network/{networkInterfaces, publicIPAddresses, virtualNetworks,
  virtualNetworks/{v}/subnets, loadBalancers, loadBalancers/{lb}/backendAddressPools,
  networkSecurityGroups, networkSecurityGroups/{nsg}/securityRules}` (2024-03-01). Lists per
  group and per subscription, paged with an absolute `nextLink` (`$expand=instanceView` or
  `statusOnly=true` on VM lists; no tag `$filter`: ARM has none).
* `/subscriptions/{s}[/resourceGroups/{rg}]/resources` (2021-04-01) with
  `$filter=tagName eq 'k' and tagValue eq 'v'` (or `resourceType eq '…'`).
* Long-running operations: a create answers 201 (a disk 202, as the Disk RP does), an update 200,
  a delete or action 202, each with an absolute `Azure-AsyncOperation` URL and `Retry-After`
  (deletes and actions also `Location`). The operation reads `InProgress` for `polls` reads (of
  the operation URL, the resource, a list holding it, or a repeated PUT), then ends `Succeeded`
  or `Failed` with ARM's error body; the resource's `provisioningState` follows
  (Creating/Updating/Deleting, then Succeeded/Failed). Nothing happens by wall-clock time
  (but the opt-in NIC reservation, `nic_reservation_s`).
* What ARM rejects: a VM whose NIC, disk or placement group does not exist (or is in another
  region), a disk attached to two VMs, a NIC used by two VMs, deleting an attached disk, a NIC
  in use, a subnet in use (also by replacing a VNet's subnet list), a public IP in use, a subnet
  or NIC naming a network security group that does not exist (or is in another region), deleting
  an NSG a subnet or NIC names (InUseNetworkSecurityGroupCannotBeDeleted), security rules with
  the same priority and direction (SecurityRuleConflict) or a priority outside 100..4096
  (SecurityRuleInvalidPriority; both codes `uncertain`), unknown
  sizes (400 InvalidParameter) and sizes not offered in a region (409 SkuNotAvailable), unknown
  locations, api-versions the clients do not send, changes of immutable properties, bad names,
  tags beyond ARM's limits (50 tags; names without `<>%&\\?/`).
* `If-None-Match: *` and `If-Match: <etag>` on PUT/PATCH/DELETE (412 PreconditionFailed).
* A bearer token is required on every ARM call (any non-empty token, or exactly `--token`).
* `GET /api/retail/prices?$filter=…` — the public Retail Prices API (no token): price items
  (Linux and Windows, on-demand, Spot, Low Priority, reservations) for the Azure GPU sizes of
  fixtures/catalog/offers.csv, filtered with OData `eq`/`and`/`or`/parentheses, paged with an
  absolute `NextPageLink` (`$skip`).

Control endpoints for tests (no token):

* `POST /_fault` with JSON `{"code": "AllocationFailed", "size": "Standard_ND96isr_H100_v5",
  "region": "eastus", "method": "PUT", "type": "virtualMachines", "name": "vm1",
  "contains": "lineage-123", "times": 1, "message": "…", "status": 409, "retry_after": 1,
  "async": true, "polls": 5, "family": "standardNDSH100v5Family"}`; every key but `code` is optional. A fault applies to the next `times`
  matching ARM calls (all of them when absent). `contains` matches a string anywhere in the path
  or body, so parallel tests keep faults to their own resources. `AllocationFailed`,
  `ZonalAllocationFailed`, `OverconstrainedAllocationRequest` and
  `OverconstrainedZonalAllocationRequest` fail the operation asynchronously (the PUT is
  accepted); `SkuNotAvailable` and `OperationNotAllowed` (quota) answer the PUT with 409;
  `TooManyRequests` (or status 429) answers 429 with `Retry-After`; any other code answers
  with `status` (default 409), or fails the operation when `"async": true`. Without `method`,
  the capacity and quota codes match only PUT and PATCH, so reads of the same VM still work.
  The code `Delay` is no error: the matched request's operation stays InProgress for `polls`
  reads and answers `Retry-After: retry_after` (room for a test to kill a client mid-create).
  Answers `{"id": …}`. `GET /_fault` lists faults with `hits`; `DELETE /_fault[/<id>]` removes
  them.
* `GET /_calls?method=PUT&type=virtualMachines&contains=…` — the ARM calls seen (the last
  20,000): method, path, query, status, error code, type, name, body. Faults with
  `"type": "operations"` apply to operation-status polls (throttling them, say).
* `GET /_state[?type=virtualMachines]` — every resource group and resource as GET shows it.
* `GET|POST /_config` — `polls`, `retry_after`, `page_size`, `prices_page_size`,
  `nic_reservation_s` (how long a deleted VM's NIC stays reserved, NicReservedForAnotherVm).
* `POST /_reset` — forget everything but the config; `GET /_health` — `ok`.

A VM's OS disk becomes a managed disk resource (named `osDisk.name`, or `{vm}_OsDisk_1_{hex}`);
OS disk, data disks and NICs outlive the VM unless their `deleteOption` is `Delete`, as in Azure.
Compute reports references with the resource group upper-cased (`managedBy`,
`osDisk.managedDisk.id`): compare resource ids case-insensitively.

It binds `--host` on `--port` (0: a free one) and writes the port to `--port-file` once it
listens. Start it with a real interpreter (a venv's bin/python), not a wrapper script, so that
the PID a test script records is the server's.
"""

from __future__ import annotations

import argparse
import copy
import csv
import datetime as dt
import ipaddress
import json
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

MAX_CALLS = 20_000
DEFAULT_CATALOG = Path(__file__).resolve().parents[2] / "fixtures" / "catalog" / "offers.csv"

# api-versions per resource provider: exactly what the project's Rust clients send (arm.md §0),
# plus azure_mgmt_resources' default package for groups and generic resource lists.
API_COMPUTE = {"2024-07-01"}
API_DISKS = {"2024-03-02"}
API_NETWORK = {"2024-03-01"}
API_RESOURCES = {"2021-04-01", "2022-09-01", "2024-03-01", "2024-07-01", "2024-11-01"}

# (namespace, type) as ARM spells them, keyed by the lower-case "namespace/type".
TYPES: dict[str, tuple[str, str, set[str]]] = {
    "microsoft.compute/virtualmachines": ("Microsoft.Compute", "virtualMachines", API_COMPUTE),
    "microsoft.compute/disks": ("Microsoft.Compute", "disks", API_DISKS),
    "microsoft.compute/proximityplacementgroups": (
        "Microsoft.Compute",
        "proximityPlacementGroups",
        API_COMPUTE,
    ),
    "microsoft.network/networkinterfaces": ("Microsoft.Network", "networkInterfaces", API_NETWORK),
    "microsoft.network/publicipaddresses": ("Microsoft.Network", "publicIPAddresses", API_NETWORK),
    "microsoft.network/virtualnetworks": ("Microsoft.Network", "virtualNetworks", API_NETWORK),
    "microsoft.network/loadbalancers": ("Microsoft.Network", "loadBalancers", API_NETWORK),
    "microsoft.network/networksecuritygroups": (
        "Microsoft.Network",
        "networkSecurityGroups",
        API_NETWORK,
    ),
}
VM = "microsoft.compute/virtualmachines"
DISK = "microsoft.compute/disks"
PPG = "microsoft.compute/proximityplacementgroups"
NIC = "microsoft.network/networkinterfaces"
PIP = "microsoft.network/publicipaddresses"
VNET = "microsoft.network/virtualnetworks"
LB = "microsoft.network/loadbalancers"
SUBNET = "microsoft.network/virtualnetworks/subnets"
NSG = "microsoft.network/networksecuritygroups"
# What a security rule may say (Microsoft.Network 2024-03-01, SecurityRulePropertiesFormat).
RULE_PROTOCOLS = {"Tcp", "Udp", "Icmp", "Esp", "*", "Ah"}
RULE_PRIORITIES = range(100, 4097)
# The rules every NSG has and no PUT can change (priorities 65000+), as ARM lists them.
DEFAULT_RULES = [
    ("AllowVnetInBound", "Inbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowAzureLoadBalancerInBound", "Inbound", "Allow", 65001, "AzureLoadBalancer", "*"),
    ("DenyAllInBound", "Inbound", "Deny", 65500, "*", "*"),
    ("AllowVnetOutBound", "Outbound", "Allow", 65000, "VirtualNetwork", "VirtualNetwork"),
    ("AllowInternetOutBound", "Outbound", "Allow", 65001, "*", "Internet"),
    ("DenyAllOutBound", "Outbound", "Deny", 65500, "*", "*"),
]

# Capacity errors that ARM reports through the operation, not on the PUT (arm.md §8).
ASYNC_CODES = {
    "AllocationFailed",
    "ZonalAllocationFailed",
    "OverconstrainedAllocationRequest",
    "OverconstrainedZonalAllocationRequest",
}
# Faults that, without an explicit `method`, apply only to PUT and PATCH.
WRITE_CODES = ASYNC_CODES | {"SkuNotAvailable", "OperationNotAllowed"}
DISK_SKUS = {
    "Standard_LRS",
    "Premium_LRS",
    "StandardSSD_LRS",
    "UltraSSD_LRS",
    "Premium_ZRS",
    "StandardSSD_ZRS",
    "PremiumV2_LRS",
}
# General-purpose sizes offered everywhere, besides the GPU sizes read from the catalog.
CPU_SIZES = {
    "Standard_B2s": 2,
    "Standard_D2s_v5": 2,
    "Standard_D4s_v5": 4,
    "Standard_D2as_v5": 2,
    "Standard_F2s_v2": 2,
}
# Linux admin names Compute refuses (a subset of the documented list).
RESERVED_ADMIN = {"administrator", "admin", "user", "user1", "test", "root", "guest", "sys"}
NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
LINUX_HOST_BAD = set("`~!@#$%^&*()=+_[]{}\\|;:'\",<>/?")
GUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def norm_loc(value: Any) -> str:
    """ARM stores "East US" as "eastus"."""
    return str(value).replace(" ", "").lower()


class ArmError(Exception):
    """An ARM error answer: HTTP status plus CloudError body."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        target: str | None = None,
        headers: dict[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.target = target
        self.headers = headers or {}
        self.details = details

    def body(self) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.target:
            err["target"] = self.target
        if self.details:
            err["details"] = self.details
        return {"error": err}


def not_found(type_label: str, name: str, rg: str) -> ArmError:
    return ArmError(
        404,
        "ResourceNotFound",
        f"The Resource '{type_label}/{name}' under resource group '{rg}' was not found. "
        "For more details please go to https://aka.ms/ARMResourceNotFoundFix",
    )


def bad_reference(ref: str, by: str) -> ArmError:
    return ArmError(
        400,
        "InvalidResourceReference",
        f"Resource {ref} referenced by resource {by} was not found. Please make sure that the "
        "referenced resource exists, and that both resources are in the same region.",
        details=[],
    )


def invalid(message: str, target: str) -> ArmError:
    return ArmError(400, "InvalidParameter", message, target=target)


def change_not_allowed(prop: str) -> ArmError:
    return ArmError(
        409, "PropertyChangeNotAllowed", f"Changing property '{prop}' is not allowed.", target=prop
    )


def deep_merge(base: Any, patch: Any) -> Any:
    """PATCH semantics: objects merge, everything else (lists included) replaces."""
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            out[k] = deep_merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    return copy.deepcopy(patch)


def ref_id(obj: Any) -> str | None:
    if isinstance(obj, dict) and isinstance(obj.get("id"), str):
        return obj["id"]
    return None


def parse_id(rid: str) -> tuple[str, str, str, str] | None:
    """(sub, rg, "ns/type[/child]", "name[/childname]") of a resource id, lower-case keys aside."""
    parts = [p for p in rid.split("/") if p]
    if len(parts) < 8 or parts[0].lower() != "subscriptions" or parts[2].lower() != "resourcegroups":
        return None
    if parts[4].lower() != "providers":
        return None
    sub, rg, ns = parts[1], parts[3], parts[5]
    rest = parts[6:]
    if len(rest) == 2:
        return sub, rg, f"{ns}/{rest[0]}".lower(), rest[1]
    if len(rest) == 4:
        return sub, rg, f"{ns}/{rest[0]}/{rest[2]}".lower(), f"{rest[1]}/{rest[3]}"
    return None


def key_of(sub: str, rg: str, type_key: str, name: str) -> str:
    return f"{sub}|{rg}|{type_key}|{name}".lower()


class Catalog:
    """Azure GPU sizes and their regions, from fixtures/catalog/offers.csv."""

    def __init__(self, path: Path) -> None:
        self.rows: list[dict[str, str]] = []
        with open(path, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["provider"] == "azure":
                    self.rows.append(row)
        self.regions: set[str] = {r["region"] for r in self.rows}
        self.size_regions: dict[str, set[str]] = {}
        self.size_case: dict[str, str] = {}
        self.vcpus: dict[str, int] = dict(CPU_SIZES)
        for r in self.rows:
            self.size_regions.setdefault(r["instance_type"].lower(), set()).add(r["region"])
            self.size_case[r["instance_type"].lower()] = r["instance_type"]
            self.vcpus[r["instance_type"]] = int(r["vcpus"])
        for s in CPU_SIZES:
            self.size_regions[s.lower()] = set(self.regions)
            self.size_case[s.lower()] = s


class Config:
    def __init__(self) -> None:
        self.polls = 2
        self.retry_after = 0
        self.page_size = 5
        self.prices_page_size = 100
        self.nic_reservation_s = 0.0

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    def update(self, values: dict[str, Any]) -> None:
        for k, v in values.items():
            if k not in self.__dict__:
                raise ValueError(f"unknown config key `{k}` (known: {', '.join(self.__dict__)})")
            if k == "nic_reservation_s":
                if not isinstance(v, (int, float)) or v < 0:
                    raise ValueError(f"`{k}` must be a number >= 0")
                setattr(self, k, float(v))
            else:
                if (
                    not isinstance(v, int)
                    or isinstance(v, bool)
                    or v < 0
                    or (k.endswith("page_size") and v < 1)
                ):
                    raise ValueError(f"`{k}` must be a non-negative integer (page sizes: positive)")
                setattr(self, k, v)


class Arm:
    """All state; every method runs under `self.lock`."""

    def __init__(self, catalog: Catalog, token: str | None) -> None:
        self.lock = threading.RLock()
        self.catalog = catalog
        self.token = token
        self.config = Config()
        self.faults: list[dict[str, Any]] = []
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
        self.price_items = price_items(catalog)
        self.reset()

    def retry_after(self) -> int:
        return self.config.retry_after if self.req_retry_after is None else self.req_retry_after

    def reset(self) -> None:
        with self.lock:
            # A "Delay" fault sets these for the one request it matched.
            self.req_polls: int | None = None
            self.req_retry_after: int | None = None
            self.groups: dict[str, dict[str, Any]] = {}  # "sub|rg" -> group
            self.res: dict[str, dict[str, Any]] = {}  # key_of(...) -> record
            self.ops: dict[str, dict[str, Any]] = {}
            self.faults.clear()
            self.calls.clear()
            self.ip_counter = 0
            self.mac_counter = 0
            self.nic_reservations: dict[str, tuple[str, float]] = {}  # nic id lower -> (vm id, until)

    # ---------------------------------------------------------------- faults
    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec.get("code"), str) or not spec["code"]:
            raise ValueError("a fault needs a string `code`")
        times = spec.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("`times` must be a positive integer or null")
        for key in ("polls", "retry_after", "status"):
            v = spec.get(key)
            if v is not None and (not isinstance(v, int) or isinstance(v, bool) or v < 0):
                raise ValueError(f"`{key}` must be a non-negative integer")
        known = {
            "code",
            "size",
            "region",
            "method",
            "type",
            "name",
            "contains",
            "times",
            "message",
            "status",
            "retry_after",
            "async",
            "family",
            "polls",
        }
        unknown = set(spec) - known
        if unknown:
            raise ValueError(f"unknown fault keys: {', '.join(sorted(unknown))}")
        fault = {k: spec.get(k) for k in known}
        fault["id"] = uuid.uuid4().hex
        fault["hits"] = 0
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, ctx: dict[str, Any]) -> dict[str, Any] | None:
        for f in self.faults:
            if f["times"] is not None and f["hits"] >= f["times"]:
                continue
            if f["method"]:
                if f["method"].upper() != ctx["method"]:
                    continue
            elif f["code"] in WRITE_CODES and ctx["method"] not in ("PUT", "PATCH"):
                # Capacity and quota errors answer writes; a GET of the same VM still works.
                continue
            if f["type"] and f["type"].lower() not in (ctx["type"] or "").lower().split("/"):
                continue
            if f["name"] and f["name"].lower() != (ctx["name"] or "").lower():
                continue
            if f["size"] and f["size"].lower() != (ctx["size"] or "").lower():
                continue
            if f["region"] and norm_loc(f["region"]) != (ctx["region"] or ""):
                continue
            if f["contains"] and f["contains"] not in ctx["text"]:
                continue
            f["hits"] += 1
            return dict(f)
        return None

    def fault_error(self, f: dict[str, Any], ctx: dict[str, Any]) -> ArmError:
        code = f["code"]
        size = ctx["size"] or "the requested size"
        region = ctx["region"] or "the requested location"
        status = f["status"]
        if code == "TooManyRequests" or status == 429:
            retry = f["retry_after"] if f["retry_after"] is not None else 1
            kind = "reads" if ctx["method"] in ("GET", "HEAD") else "writes"
            return ArmError(
                429,
                code,
                f["message"]
                or "The request is being throttled as the limit has been reached for operation type - "
                f"{'Read' if kind == 'reads' else 'Write'}_ObservationWindow_00:05:00. For more information, see - "
                "https://aka.ms/armthrottling",
                headers={"Retry-After": str(retry), f"x-ms-ratelimit-remaining-subscription-{kind}": "0"},
            )
        if code == "SkuNotAvailable":
            return ArmError(
                status or 409,
                code,
                f["message"]
                or f"The requested VM size for resource 'Following SKUs have failed for Capacity "
                f"Restrictions: {size}' is currently not available in location '{region}'. Please try another "
                "size or deploy to a different location or different zone. See "
                "https://aka.ms/azureskunotavailable for details.",
            )
        if code == "OperationNotAllowed":
            cores = self.catalog.vcpus.get(self.catalog.size_case.get(size.lower(), size), 0)
            # Spot and low-priority VMs draw on their own regional quota.
            family = f["family"] or (
                "LowPriorityCores" if ctx.get("priority") in ("Spot", "Low") else quota_family(size)
            )
            return ArmError(
                status or 409,
                code,
                f["message"]
                or f"Operation could not be completed as it results in exceeding approved {family} "
                f"{'' if family == 'LowPriorityCores' else 'Cores '}quota. Additional details - Deployment Model: Resource Manager, Location: {region}, "
                f"Current Limit: 0, Current Usage: 0, Additional Required: {cores}, (Minimum) New Limit "
                f"Required: {cores}. Submit a request for Quota increase at https://aka.ms/ProdportalCRP/"
                "#blade/Microsoft_Azure_Capacity/UsageAndQuota.ReactView by specifying parameters listed in the "
                "'Details' section for deployment to succeed.",
            )
        return ArmError(status or 409, code, f["message"] or async_message(code))

    # ---------------------------------------------------------------- records
    def get(self, type_key: str, sub: str, rg: str, name: str) -> dict[str, Any] | None:
        return self.res.get(key_of(sub, rg, type_key, name))

    def by_id(self, rid: str | None) -> dict[str, Any] | None:
        if not rid:
            return None
        parsed = parse_id(rid)
        if parsed is None:
            return None
        sub, rg, tk, name = parsed
        return self.res.get(key_of(sub, rg, tk, name))

    def all(self, type_key: str) -> list[dict[str, Any]]:
        return [r for r in self.res.values() if r["type_key"] == type_key]

    def new_record(self, type_key: str, sub: str, rg: str, name: str, rid: str) -> dict[str, Any]:
        rec = {
            "type_key": type_key,
            "sub": sub,
            "rg": self.groups[f"{sub}|{rg}".lower()]["name"],
            "name": name,
            "id": rid,
            "model": {},
            "state": "Succeeded",
            "op": None,
            "created": now(),
            "guid": str(uuid.uuid4()),
            "etag": f'W/"{uuid.uuid4()}"',
        }
        self.res[key_of(sub, rg, type_key, name)] = rec
        return rec

    def drop(self, rec: dict[str, Any]) -> None:
        self.res.pop(key_of(rec["sub"], rec["rg"], rec["type_key"], rec["name"]), None)

    # ---------------------------------------------------------------- relations
    def vm_using_nic(self, nic_id: str, except_vm: dict[str, Any] | None = None) -> dict[str, Any] | None:
        for vm in self.all(VM):
            if vm is except_vm:
                continue
            for ref in (
                vm["model"].get("properties", {}).get("networkProfile", {}).get("networkInterfaces", []) or []
            ):
                if (ref_id(ref) or "").lower() == nic_id.lower():
                    return vm
        return None

    def nic_ipconfigs(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        out = []
        for nic in self.all(NIC):
            for ipc in nic["model"].get("properties", {}).get("ipConfigurations", []) or []:
                out.append((nic, ipc))
        return out

    def subnet_users(self, subnet_id: str) -> list[str]:
        users = []
        for nic, ipc in self.nic_ipconfigs():
            if (ref_id(ipc.get("properties", {}).get("subnet")) or "").lower() == subnet_id.lower():
                users.append(f"{nic['id']}/ipConfigurations/{ipc.get('name')}")
        return users

    def pip_user(self, pip_id: str, except_id: str | None = None) -> str | None:
        for nic, ipc in self.nic_ipconfigs():
            if except_id and nic["id"].lower() == except_id.lower():
                continue
            if (ref_id(ipc.get("properties", {}).get("publicIPAddress")) or "").lower() == pip_id.lower():
                return f"{nic['id']}/ipConfigurations/{ipc.get('name')}"
        for lb in self.all(LB):
            if except_id and lb["id"].lower() == except_id.lower():
                continue
            for fe in lb["model"].get("properties", {}).get("frontendIPConfigurations", []) or []:
                if (ref_id(fe.get("properties", {}).get("publicIPAddress")) or "").lower() == pip_id.lower():
                    return f"{lb['id']}/frontendIPConfigurations/{fe.get('name')}"
        return None

    def pool_members(self, pool_id: str) -> list[str]:
        out = []
        for nic, ipc in self.nic_ipconfigs():
            for pool in ipc.get("properties", {}).get("loadBalancerBackendAddressPools", []) or []:
                if (ref_id(pool) or "").lower() == pool_id.lower():
                    out.append(f"{nic['id']}/ipConfigurations/{ipc.get('name')}")
        return out

    def nsg_users(self, nsg_id: str) -> tuple[list[str], list[str]]:
        """The subnets and NICs whose `networkSecurityGroup` is `nsg_id`."""
        subnets = [
            s["id"]
            for s in self.all(SUBNET)
            if (ref_id(s["model"].get("properties", {}).get("networkSecurityGroup")) or "").lower()
            == nsg_id.lower()
        ]
        nics = [
            n["id"]
            for n in self.all(NIC)
            if (ref_id(n["model"].get("properties", {}).get("networkSecurityGroup")) or "").lower()
            == nsg_id.lower()
        ]
        return subnets, nics

    # ---------------------------------------------------------------- operations
    def new_op(
        self,
        rec: dict[str, Any] | None,
        kind: str,
        ns: str,
        location: str,
        api_version: str,
        on_done: Callable[[dict[str, Any]], None],
        fail: dict[str, str] | None = None,
        result: Callable[[], tuple[int, Any]] | None = None,
    ) -> dict[str, Any]:
        op = {
            "id": str(uuid.uuid4()),
            "status": "InProgress",
            "startTime": now(),
            "endTime": None,
            "error": None,
            "kind": kind,
            "ns": ns,
            "location": location or "global",
            "api_version": api_version,
            "polls_left": self.config.polls if self.req_polls is None else self.req_polls,
            "on_done": on_done,
            "fail": fail,
            "record": rec,
            "result": result,
            "sub": rec["sub"] if rec else None,
        }
        self.ops[op["id"]] = op
        if rec is not None:
            rec["op"] = op["id"]
        return op

    def tick(self, op: dict[str, Any] | None) -> None:
        """One read of an operation: it stays InProgress for `polls` reads, then ends."""
        if op is None or op["status"] != "InProgress":
            return
        if op["polls_left"] > 0:
            op["polls_left"] -= 1
            return
        self.finish(op)

    def tick_record(self, rec: dict[str, Any]) -> None:
        if rec.get("op"):
            self.tick(self.ops.get(rec["op"]))

    def finish(self, op: dict[str, Any]) -> None:
        op["endTime"] = now()
        op["status"] = "Failed" if op["fail"] else "Succeeded"
        if op["fail"]:
            op["error"] = dict(op["fail"])
        rec = op["record"]
        if rec is not None and rec.get("op") == op["id"]:
            rec["op"] = None
        op["on_done"](op)

    def cancel(self, op_id: str | None) -> None:
        op = self.ops.get(op_id or "")
        if op and op["status"] == "InProgress":
            op["status"] = "Canceled"
            op["endTime"] = now()
            op["error"] = {
                "code": "OperationPreempted",
                "message": "Operation execution has been preempted by a more recent operation.",
            }

    def active_op(self, rec: dict[str, Any]) -> dict[str, Any] | None:
        op = self.ops.get(rec.get("op") or "")
        return op if op and op["status"] == "InProgress" else None

    def next_ip(self) -> str:
        self.ip_counter += 1
        return f"20.{(self.ip_counter >> 16) & 255}.{(self.ip_counter >> 8) & 255}.{self.ip_counter & 255}"

    def next_mac(self) -> str:
        self.mac_counter += 1
        n = self.mac_counter
        return f"00-0D-3A-{(n >> 16) & 255:02X}-{(n >> 8) & 255:02X}-{n & 255:02X}"


def quota_family(size: str) -> str:
    """standardNDSH100v5Family-like family name for quota messages (a heuristic)."""
    m = re.match(r"Standard_([A-Z]+)\d+([a-z]*)(?:_([A-Z0-9]+))?(?:_(v\d+))?", size)
    if not m:
        return "Total Regional"
    series, letters, accel, ver = m.groups()
    return f"standard{series}{letters.upper()}{accel or ''}{ver or ''}Family"


def async_message(code: str) -> str:
    if code == "AllocationFailed":
        return (
            "Allocation failed. We do not have sufficient capacity for the requested VM size in this region. "
            "Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
        )
    if code == "ZonalAllocationFailed":
        return (
            "Allocation failed. We do not have sufficient capacity for the requested VM size in this zone. "
            "Read more about improving likelihood of allocation success at http://aka.ms/allocation-guidance"
        )
    if code.startswith("Overconstrained"):
        return (
            "Allocation failed. VM(s) with the following constraints cannot be allocated, because the condition "
            "is too restrictive. Please remove some constraints and try again. Constraints applied are:\n"
            "  - Availability Zone\n  - VM Size\n"
        )
    return f"{code} (injected by the test fake)"


# ==================================================================== views
def base_view(rec: dict[str, Any], type_name: str) -> dict[str, Any]:
    m = rec["model"]
    out: dict[str, Any] = {"name": rec["name"].split("/")[-1], "id": rec["id"], "type": type_name}
    if "location" in m:
        out["location"] = m["location"]
    if m.get("tags") is not None:
        out["tags"] = copy.deepcopy(m["tags"])
    if m.get("zones"):
        out["zones"] = list(m["zones"])
    if m.get("sku") is not None:
        out["sku"] = copy.deepcopy(m["sku"])
    return out


def upper_rg_id(rid: str) -> str:
    """Compute returns references with the resource group upper-cased (managedBy, osDisk.managedDisk.id)."""
    parts = rid.split("/")
    for i, p in enumerate(parts):
        if p.lower() == "resourcegroups" and i + 1 < len(parts):
            parts[i + 1] = parts[i + 1].upper()
    return "/".join(parts)


def view(arm: Arm, rec: dict[str, Any], expand: str = "") -> dict[str, Any]:
    tk = rec["type_key"]
    if tk == VM:
        return view_vm(arm, rec, "instanceview" in expand.lower())
    if tk == DISK:
        out = base_view(rec, "Microsoft.Compute/disks")
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["timeCreated"] = rec["created"]
        props["uniqueId"] = rec["guid"]
        size = props.get("diskSizeGB")
        if isinstance(size, int):
            props["diskSizeBytes"] = size * 1024**3
        owner = rec.get("owner")
        if owner:
            out["managedBy"] = upper_rg_id(owner)
            vm = arm.by_id(owner)
            deallocated = vm is not None and vm.get("power") == "deallocated"
            props["diskState"] = "Reserved" if deallocated else "Attached"
        else:
            props["diskState"] = "Unattached"
        out["properties"] = props
        return out
    if tk == PPG:
        out = base_view(rec, "Microsoft.Compute/proximityPlacementGroups")
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props.setdefault("proximityPlacementGroupType", "Standard")
        props["virtualMachines"] = [
            {"id": upper_rg_id(vm["id"])}
            for vm in arm.all(VM)
            if (ref_id(vm["model"]["properties"].get("proximityPlacementGroup")) or "").lower()
            == rec["id"].lower()
        ]
        props["virtualMachineScaleSets"] = []
        props["availabilitySets"] = []
        out["properties"] = props
        return out
    if tk == NIC:
        out = base_view(rec, "Microsoft.Network/networkInterfaces")
        out["etag"] = rec["etag"]
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["resourceGuid"] = rec["guid"]
        ipcs = props.get("ipConfigurations", [])
        for i, ipc in enumerate(ipcs):
            ipc["id"] = f"{rec['id']}/ipConfigurations/{ipc.get('name')}"
            ipc["type"] = "Microsoft.Network/networkInterfaces/ipConfigurations"
            ipc["etag"] = rec["etag"]
            p = ipc.setdefault("properties", {})
            p["provisioningState"] = rec["state"]
            p["privateIPAddress"] = rec["ips"][i] if i < len(rec.get("ips", [])) else None
            p.setdefault("privateIPAllocationMethod", "Dynamic")
            p.setdefault("privateIPAddressVersion", "IPv4")
            p["primary"] = p.get("primary", i == 0)
        vm = arm.vm_using_nic(rec["id"])
        if vm is not None:
            props["virtualMachine"] = {"id": vm["id"]}
            if "mac" not in rec:
                rec["mac"] = arm.next_mac()
            props["macAddress"] = rec["mac"]
            props["primary"] = True
        props.setdefault("enableAcceleratedNetworking", False)
        props.setdefault("enableIPForwarding", False)
        props["nicType"] = "Standard"
        out["properties"] = props
        return out
    if tk == PIP:
        out = base_view(rec, "Microsoft.Network/publicIPAddresses")
        out["etag"] = rec["etag"]
        out.setdefault("sku", {"name": "Basic", "tier": "Regional"})
        out["sku"].setdefault("tier", "Regional")
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["resourceGuid"] = rec["guid"]
        props.setdefault("publicIPAddressVersion", "IPv4")
        props.setdefault(
            "publicIPAllocationMethod", "Static" if out["sku"]["name"] == "Standard" else "Dynamic"
        )
        props.setdefault("idleTimeoutInMinutes", 4)
        if rec.get("ip"):
            props["ipAddress"] = rec["ip"]
        user = arm.pip_user(rec["id"])
        if user:
            props["ipConfiguration"] = {"id": user}
        out["properties"] = props
        return out
    if tk == VNET:
        out = base_view(rec, "Microsoft.Network/virtualNetworks")
        out["etag"] = rec["etag"]
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["resourceGuid"] = rec["guid"]
        props["subnets"] = [view(arm, s) for s in subnets_of(arm, rec)]
        props.setdefault("virtualNetworkPeerings", [])
        props.setdefault("enableDdosProtection", False)
        out["properties"] = props
        return out
    if tk == SUBNET:
        out = {
            "name": rec["name"].split("/")[-1],
            "id": rec["id"],
            "etag": rec["etag"],
            "type": "Microsoft.Network/virtualNetworks/subnets",
        }
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        users = arm.subnet_users(rec["id"])
        if users:
            props["ipConfigurations"] = [{"id": u} for u in users]
        props.setdefault("privateEndpointNetworkPolicies", "Disabled")
        props.setdefault("privateLinkServiceNetworkPolicies", "Enabled")
        out["properties"] = props
        return out
    if tk == LB:
        out = base_view(rec, "Microsoft.Network/loadBalancers")
        out["etag"] = rec["etag"]
        out.setdefault("sku", {"name": "Basic", "tier": "Regional"})
        out["sku"].setdefault("tier", "Regional")
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["resourceGuid"] = rec["guid"]
        for coll, child_type in LB_CHILDREN.items():
            for item in props.setdefault(coll, []):
                item["id"] = f"{rec['id']}/{coll}/{item.get('name')}"
                item["type"] = f"Microsoft.Network/loadBalancers/{child_type}"
                item["etag"] = rec["etag"]
                item.setdefault("properties", {})["provisioningState"] = rec["state"]
        for pool in props["backendAddressPools"]:
            members = arm.pool_members(pool["id"])
            if members:
                pool["properties"]["backendIPConfigurations"] = [{"id": m} for m in members]
        out["properties"] = props
        return out
    if tk == NSG:
        out = base_view(rec, "Microsoft.Network/networkSecurityGroups")
        out["etag"] = rec["etag"]
        props = copy.deepcopy(rec["model"].get("properties", {}))
        props["provisioningState"] = rec["state"]
        props["resourceGuid"] = rec["guid"]
        props["securityRules"] = [rule_view(rec, r) for r in props.get("securityRules") or []]
        props["defaultSecurityRules"] = [
            rule_view(
                rec,
                {
                    "name": n,
                    "properties": {
                        "description": f"default rule {n}",
                        "protocol": "*",
                        "sourcePortRange": "*",
                        "destinationPortRange": "*",
                        "sourceAddressPrefix": src,
                        "destinationAddressPrefix": dst,
                        "access": access,
                        "priority": prio,
                        "direction": direction,
                    },
                },
                "defaultSecurityRules",
            )
            for n, direction, access, prio, src, dst in DEFAULT_RULES
        ]
        subnets, nics = arm.nsg_users(rec["id"])
        if subnets:
            props["subnets"] = [{"id": i} for i in subnets]
        if nics:
            props["networkInterfaces"] = [{"id": i} for i in nics]
        out["properties"] = props
        return out
    raise AssertionError(tk)


def rule_view(nsg: dict[str, Any], rule: dict[str, Any], coll: str = "securityRules") -> dict[str, Any]:
    """A security rule of `nsg` as ARM shows it (also as the body of the child resource)."""
    out = copy.deepcopy(rule)
    out["id"] = f"{nsg['id']}/{coll}/{rule.get('name')}"
    out["type"] = f"Microsoft.Network/networkSecurityGroups/{coll}"
    out["etag"] = nsg["etag"]
    p = out.setdefault("properties", {})
    p["provisioningState"] = nsg["state"]
    for k in ("sourceAddressPrefixes", "destinationAddressPrefixes", "sourcePortRanges", "destinationPortRanges"):
        p.setdefault(k, [])
    return out


LB_CHILDREN = {
    "frontendIPConfigurations": "frontendIPConfigurations",
    "backendAddressPools": "backendAddressPools",
    "probes": "probes",
    "loadBalancingRules": "loadBalancingRules",
    "inboundNatRules": "inboundNatRules",
    "outboundRules": "outboundRules",
}


def subnets_of(arm: Arm, vnet: dict[str, Any]) -> list[dict[str, Any]]:
    prefix = vnet["name"].lower() + "/"
    return sorted(
        (
            s
            for s in arm.all(SUBNET)
            if s["sub"].lower() == vnet["sub"].lower()
            and s["rg"].lower() == vnet["rg"].lower()
            and s["name"].lower().startswith(prefix)
        ),
        key=lambda s: s["order"],
    )


def instance_view(arm: Arm, vm: dict[str, Any]) -> dict[str, Any]:
    state = vm["state"]
    statuses: list[dict[str, Any]] = []
    if state == "Failed":
        code = f"ProvisioningState/failed/{vm.get('fail_code') or 'InternalExecutionError'}"
        statuses.append(
            {
                "code": code,
                "level": "Error",
                "displayStatus": "Provisioning failed",
                "message": vm.get("fail_message") or "",
                "time": vm.get("state_time") or now(),
            }
        )
    else:
        statuses.append(
            {
                "code": f"ProvisioningState/{state.lower()}",
                "level": "Info",
                "displayStatus": f"Provisioning {state.lower()}",
                "time": vm.get("state_time") or now(),
            }
        )
    power = vm.get("power")
    if power:
        statuses.append({"code": f"PowerState/{power}", "level": "Info", "displayStatus": f"VM {power}"})
    props = vm["model"]["properties"]
    disks = []
    os_disk = props.get("storageProfile", {}).get("osDisk", {})
    for d in [os_disk] + list(props.get("storageProfile", {}).get("dataDisks", []) or []):
        if d.get("name"):
            disks.append(
                {
                    "name": d["name"],
                    "statuses": [
                        {
                            "code": "ProvisioningState/succeeded",
                            "level": "Info",
                            "displayStatus": "Provisioning succeeded",
                            "time": vm["created"],
                        }
                    ],
                }
            )
    return {
        "computerName": props.get("osProfile", {}).get("computerName"),
        "osName": "ubuntu",
        "osVersion": "22.04",
        "hyperVGeneration": "V2",
        "disks": disks,
        "statuses": statuses,
    }


def view_vm(arm: Arm, rec: dict[str, Any], with_instance_view: bool) -> dict[str, Any]:
    out = base_view(rec, "Microsoft.Compute/virtualMachines")
    out["etag"] = f'"{rec.get("generation", 1)}"'
    props = copy.deepcopy(rec["model"].get("properties", {}))
    props["vmId"] = rec["guid"]
    props["provisioningState"] = rec["state"]
    props["timeCreated"] = rec["created"]
    sp = props.setdefault("storageProfile", {})
    osd = sp.get("osDisk", {})
    osd.setdefault("osType", "Linux")
    osd.setdefault("caching", "ReadWrite")
    osd.setdefault("deleteOption", "Detach")
    if rec.get("os_disk_id"):
        osd.setdefault("managedDisk", {})["id"] = upper_rg_id(rec["os_disk_id"])
        osd["managedDisk"].setdefault("storageAccountType", "Premium_LRS")
    image = sp.get("imageReference")
    if isinstance(image, dict) and image.get("version") == "latest":
        image["exactVersion"] = "22.04.202611010"
    for d in sp.setdefault("dataDisks", []):
        d.setdefault("caching", "None")
        d.setdefault("deleteOption", "Detach")
        d.setdefault("toBeDetached", False)
        disk = arm.by_id(ref_id(d.get("managedDisk")))
        if disk is not None:
            d.setdefault("name", disk["name"])
            d["managedDisk"]["id"] = upper_rg_id(disk["id"])
            d["managedDisk"].setdefault(
                "storageAccountType", disk["model"].get("sku", {}).get("name", "Standard_LRS")
            )
            d.setdefault("diskSizeGB", disk["model"].get("properties", {}).get("diskSizeGB"))
    osp = props.get("osProfile")
    if isinstance(osp, dict):
        osp.pop("adminPassword", None)
        osp.pop("customData", None)
        osp.setdefault("secrets", [])
        osp.setdefault("allowExtensionOperations", True)
        osp.setdefault("requireGuestProvisionSignal", True)
        lc = osp.get("linuxConfiguration")
        if isinstance(lc, dict):
            lc.setdefault("provisionVMAgent", True)
            lc.setdefault("patchSettings", {"patchMode": "ImageDefault", "assessmentMode": "ImageDefault"})
    if with_instance_view:
        props["instanceView"] = instance_view(arm, rec)
    out["properties"] = props
    return out


# ==================================================================== request context
class Ctx:
    """One ARM request, parsed."""

    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        body: bytes,
        base: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.method = method
        self.headers = {k.lower(): v for k, v in (headers or {}).items()}
        self.path = path
        self.query = query
        self.raw = body
        self.base = base
        self.api_version = query.get("api-version")
        self._json: Any = None
        self.parsed = False

    def json(self) -> dict[str, Any]:
        if not self.parsed:
            self.parsed = True
            try:
                self._json = json.loads(self.raw.decode("utf-8")) if self.raw.strip() else None
            except (ValueError, UnicodeDecodeError) as e:
                raise ArmError(
                    400,
                    "InvalidRequestContent",
                    f"The request content was invalid and could not be deserialized: '{e}'.",
                )
        if not isinstance(self._json, dict):
            raise ArmError(
                400,
                "InvalidRequestContent",
                "The request content was invalid and could not be deserialized: 'the body must be a JSON object'.",
            )
        return self._json


class Reply:
    def __init__(self, status: int, body: Any = None, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.body = body
        self.headers = headers or {}


# ==================================================================== the router
class Router:
    def __init__(self, arm: Arm) -> None:
        self.arm = arm

    # ------------------------------------------------------------ entry
    def handle(self, ctx: Ctx, auth: str | None) -> Reply:
        arm = self.arm
        segs = [unquote(s) for s in ctx.path.split("/") if s]
        low = [s.lower() for s in segs]
        if not low or low[0] != "subscriptions":
            raise ArmError(404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake.")
        self.check_auth(auth)
        if len(segs) < 2 or not GUID_RE.match(segs[1]):
            raise ArmError(
                400,
                "InvalidSubscriptionId",
                f"The provided subscription identifier '{segs[1] if len(segs) > 1 else ''}' is malformed or invalid.",
            )
        sub = segs[1]
        # operation status: /subscriptions/s/providers/NS/locations/L/operations|operationResults/ID
        if (
            len(low) == 8
            and low[2] == "providers"
            and low[4] == "locations"
            and low[6] in ("operations", "operationresults")
        ):
            return self.operation(ctx, low[6] == "operationresults", segs[7])
        if len(low) >= 4 and low[2] == "providers":
            return self.list_provider(ctx, sub, None, segs[3], segs[3:])
        if len(low) == 3 and low[2] == "resources":
            return self.list_resources(ctx, sub, None)
        if len(low) >= 3 and low[2] == "resourcegroups":
            if len(low) == 3:
                self.check_api(ctx, API_RESOURCES, "resourceGroups")
                return self.list_groups(ctx, sub)
            rg = segs[3]
            if len(low) == 4:
                self.check_api(ctx, API_RESOURCES, "resourceGroups")
                return self.group(ctx, sub, rg)
            group = arm.groups.get(f"{sub}|{rg}".lower())
            if group is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            if len(low) == 5 and low[4] == "resources":
                self.check_api(ctx, API_RESOURCES, "resources")
                return self.list_resources(ctx, sub, rg)
            if len(low) >= 7 and low[4] == "providers":
                return self.resource(ctx, sub, rg, segs[5:])
        raise ArmError(404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake.")

    def check_auth(self, auth: str | None) -> None:
        if not auth:
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing.",
                headers={
                    "WWW-Authenticate": 'Bearer authorization_uri="https://login.windows.net/", error="invalid_token", error_description="The authentication failed because of missing \'Authorization\' header."'
                },
            )
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ArmError(
                401,
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is provided in an invalid format.",
            )
        if self.arm.token is not None and token.strip() != self.arm.token:
            raise ArmError(401, "InvalidAuthenticationToken", "The access token is invalid.")

    def check_api(self, ctx: Ctx, versions: set[str], type_name: str) -> None:
        if not ctx.api_version:
            raise ArmError(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            )
        if ctx.api_version not in versions:
            raise ArmError(
                400,
                "NoRegisteredProviderFound",
                f"No registered resource provider found for location 'global' and API version "
                f"'{ctx.api_version}' for type '{type_name}'. The supported api-versions are "
                f"'{', '.join(sorted(versions))}'.",
            )

    def lro_headers(self, ctx: Ctx, op: dict[str, Any], location: bool) -> dict[str, str]:
        ns = op["ns"]
        base = f"{ctx.base}/subscriptions/{op['sub']}/providers/{ns}/locations/{op['location']}"
        q = f"api-version={op['api_version']}"
        h = {
            "Azure-AsyncOperation": f"{base}/operations/{op['id']}?{q}",
            "Retry-After": str(self.arm.retry_after()),
        }
        if location:
            h["Location"] = f"{base}/operationResults/{op['id']}?{q}"
        return h

    # ------------------------------------------------------------ operations
    def operation(self, ctx: Ctx, results: bool, op_id: str) -> Reply:
        op = self.arm.ops.get(op_id)
        if op is None:
            raise ArmError(404, "NotFound", f"The operation '{op_id}' was not found.")
        fctx = {
            "method": "GET",
            "type": "operations",
            "name": op_id,
            "size": None,
            "region": op["location"],
            "text": ctx.path,
        }
        fault = self.arm.take_fault(fctx)
        if fault is not None:
            raise self.arm.fault_error(fault, fctx)
        self.arm.tick(op)
        if not results:
            body: dict[str, Any] = {
                "id": f"/subscriptions/{op['sub']}/providers/{op['ns']}/locations/{op['location']}/operations/{op['id']}",
                "name": op["id"],
                "status": op["status"],
                "startTime": op["startTime"],
            }
            if op["endTime"]:
                body["endTime"] = op["endTime"]
                body["percentComplete"] = 100
            else:
                body["percentComplete"] = 50
            if op["error"]:
                body["error"] = op["error"]
            # Every poll carries Retry-After: a client that re-reads it would otherwise wait 30 s.
            return Reply(200, body, {"Retry-After": str(self.arm.config.retry_after)})
        if op["status"] == "InProgress":
            return Reply(
                202,
                None,
                {
                    "Location": ctx.base + ctx.path + "?" + urlencode(ctx.query),
                    "Retry-After": str(self.arm.retry_after()),
                },
            )
        if op["status"] != "Succeeded":
            # uncertain: the status a Location URL gives for a failed operation.
            return Reply(409, {"error": op["error"]})
        if op["result"] is not None:
            status, body = op["result"]()
            return Reply(status, body)
        return Reply(204)

    # ------------------------------------------------------------ resource groups
    def list_groups(self, ctx: Ctx, sub: str) -> Reply:
        items = [
            self.group_view(g) for k, g in sorted(self.arm.groups.items()) if k.startswith(sub.lower() + "|")
        ]
        return self.page(ctx, items)

    def group_view(self, g: dict[str, Any]) -> dict[str, Any]:
        out = {
            "id": f"/subscriptions/{g['sub']}/resourceGroups/{g['name']}",
            "name": g["name"],
            "type": "Microsoft.Resources/resourceGroups",
            "location": g["location"],
            "properties": {"provisioningState": g["state"]},
        }
        if g.get("tags") is not None:
            out["tags"] = g["tags"]
        return out

    def group(self, ctx: Ctx, sub: str, rg: str) -> Reply:
        arm = self.arm
        key = f"{sub}|{rg}".lower()
        g = arm.groups.get(key)
        if ctx.method in ("GET", "HEAD"):
            if g is not None and g.get("op"):
                arm.tick(arm.ops.get(g["op"]))
                g = arm.groups.get(key)
            if g is None:
                if ctx.method == "HEAD":
                    return Reply(404)
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            return Reply(204) if ctx.method == "HEAD" else Reply(200, self.group_view(g))
        if ctx.method in ("PUT", "PATCH"):
            body = ctx.json()
            if g is None and ctx.method == "PATCH":
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            if ctx.method == "PUT":
                if "location" not in body:
                    raise ArmError(
                        400, "LocationRequired", "The location property is required for this definition."
                    )
                loc = norm_loc(body["location"])
                if loc not in arm.catalog.regions:
                    raise ArmError(
                        400,
                        "LocationNotAvailableForResourceGroup",
                        f"The provided location '{body['location']}' is not available for resource group. List of available regions is '{','.join(sorted(arm.catalog.regions))}'.",
                    )
                if g is not None and g["location"] != loc:
                    raise ArmError(
                        409,
                        "InvalidResourceGroupLocation",
                        f"Invalid resource group location '{loc}'. The Resource group already exists in location '{g['location']}'.",
                    )
            if not valid_rg_name(rg):
                raise ArmError(400, "InvalidResourceGroupName", f"The resource group name '{rg}' is invalid.")
            if g is not None and g["state"] == "Deleting":
                raise ArmError(
                    409,
                    "ResourceGroupBeingDeleted",
                    f"The resource group '{g['name']}' is in deprovisioning state and cannot perform this operation.",
                )
            created = g is None
            if created:
                g = {
                    "sub": sub,
                    "name": rg,
                    "location": norm_loc(body["location"]),
                    "state": "Succeeded",
                    "tags": None,
                    "op": None,
                }
                arm.groups[key] = g
            check_tags(body.get("tags"))
            if "tags" in body:
                g["tags"] = body["tags"]
            return Reply(201 if created else 200, self.group_view(g))
        if ctx.method == "DELETE":
            if g is None:
                raise ArmError(404, "ResourceGroupNotFound", f"Resource group '{rg}' could not be found.")
            if g.get("op"):
                op = arm.ops[g["op"]]
            else:
                g["state"] = "Deleting"

                def done(op: dict[str, Any], key: str = key) -> None:
                    grp = arm.groups.pop(key, None)
                    if grp is None:
                        return
                    for k in [k for k, r in arm.res.items() if f"{r['sub']}|{r['rg']}".lower() == key]:
                        arm.res.pop(k, None)

                op = arm.new_op(
                    None, "delete", "Microsoft.Resources", g["location"], ctx.api_version or "", done
                )
                op["sub"] = sub
                g["op"] = op["id"]
            h = self.lro_headers(ctx, op, True)
            return Reply(202, None, {"Location": h["Location"], "Retry-After": h["Retry-After"]})
        raise ArmError(405, "MethodNotAllowed", f"{ctx.method} is not supported on resource groups.")

    # ------------------------------------------------------------ lists
    def page(self, ctx: Ctx, items: list[dict[str, Any]]) -> Reply:
        size = self.arm.config.page_size
        try:
            start = int(ctx.query.get("$skiptoken", "0"))
        except ValueError:
            raise ArmError(400, "InvalidParameter", "The $skiptoken is invalid.", target="$skiptoken")
        body: dict[str, Any] = {"value": items[start : start + size]}
        if start + size < len(items):
            q = dict(ctx.query)
            q["$skiptoken"] = str(start + size)
            body["nextLink"] = f"{ctx.base}{ctx.path}?{urlencode(q, quote_via=quote)}"
        return Reply(200, body)

    def list_provider(self, ctx: Ctx, sub: str, rg: str | None, ns: str, segs: list[str]) -> Reply:
        if ctx.method != "GET" or len(segs) != 2:
            raise ArmError(404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake.")
        tk = f"{segs[0]}/{segs[1]}".lower()
        if tk not in TYPES:
            raise ArmError(
                400,
                "InvalidResourceType",
                f"The resource type '{segs[1]}' could not be found in the namespace '{segs[0]}' for api version '{ctx.api_version}'.",
            )
        self.check_api(ctx, TYPES[tk][2], TYPES[tk][1])
        return self.list_type(ctx, sub, rg, tk)

    def list_type(self, ctx: Ctx, sub: str, rg: str | None, tk: str) -> Reply:
        arm = self.arm
        if (
            tk == VM
            and ctx.query.get("$filter")
            and not ctx.query["$filter"].startswith("'virtualMachineScaleSet/id'")
        ):
            # uncertain: the exact error; the VM list only filters by scale set, not by tag.
            raise ArmError(
                400,
                "InvalidParameter",
                f"The value of parameter $filter is invalid: {ctx.query['$filter']}",
                target="$filter",
            )
        recs = [
            r
            for r in arm.res.values()
            if r["type_key"] == tk
            and r["sub"].lower() == sub.lower()
            and (rg is None or r["rg"].lower() == rg.lower())
        ]
        recs.sort(key=lambda r: (r["rg"].lower(), r["name"].lower()))
        for r in list(recs):
            arm.tick_record(r)
        recs = [r for r in recs if arm.res.get(key_of(r["sub"], r["rg"], r["type_key"], r["name"])) is r]
        expand = ctx.query.get("$expand", "")
        if ctx.query.get("statusOnly", "").lower() == "true":
            expand = "instanceView"
        return self.page(ctx, [view(arm, r, expand) for r in recs])

    def list_resources(self, ctx: Ctx, sub: str, rg: str | None) -> Reply:
        if rg is None:
            self.check_api(ctx, API_RESOURCES, "resources")
        flt = ctx.query.get("$filter", "")
        tag_name = tag_value = rtype = None
        if flt:
            for clause in re.split(r"\s+and\s+", flt.strip()):
                m = re.fullmatch(
                    r"(tagName|tagValue|resourceType)\s+eq\s+'((?:[^']|'')*)'", clause.strip(), re.I
                )
                if not m:
                    raise ArmError(
                        400,
                        "InvalidFilterInQueryString",
                        f"Invalid $filter '{flt}' specified in the query string.",
                    )
                field, value = m.group(1).lower(), m.group(2).replace("''", "'")
                if field == "tagname":
                    tag_name = value
                elif field == "tagvalue":
                    tag_value = value
                else:
                    rtype = value.lower()
            if tag_value is not None and tag_name is None:
                raise ArmError(
                    400, "InvalidFilterInQueryString", f"Invalid $filter '{flt}': tagValue needs tagName."
                )
        items = []
        for r in sorted(self.arm.res.values(), key=lambda r: r["id"].lower()):
            if r["type_key"] == SUBNET or r["sub"].lower() != sub.lower():
                continue
            if rg is not None and r["rg"].lower() != rg.lower():
                continue
            ns, tn, _ = TYPES[r["type_key"]]
            if rtype and rtype != f"{ns}/{tn}".lower():
                continue
            tags = r["model"].get("tags") or {}
            if tag_name is not None:
                matches = [k for k in tags if k.lower() == tag_name.lower()]
                if not matches or (tag_value is not None and tags[matches[0]] != tag_value):
                    continue
            item = {
                "id": r["id"],
                "name": r["name"],
                "type": f"{ns}/{tn}",
                "location": r["model"].get("location"),
            }
            if tags:
                item["tags"] = tags
            items.append(item)
        return self.page(ctx, items)

    # ------------------------------------------------------------ resources
    def resource(self, ctx: Ctx, sub: str, rg: str, segs: list[str]) -> Reply:
        arm = self.arm
        ns, tname = segs[0], segs[1]
        tk = f"{ns}/{tname}".lower()
        if tk not in TYPES:
            raise ArmError(
                400,
                "InvalidResourceType",
                f"The resource type '{tname}' could not be found in the namespace '{ns}' for api version '{ctx.api_version}'.",
            )
        canon_ns, canon_type, versions = TYPES[tk]
        self.check_api(ctx, versions, canon_type)
        if len(segs) == 2:
            if ctx.method != "GET":
                raise ArmError(405, "MethodNotAllowed", f"{ctx.method} is not supported on a collection.")
            return self.list_type(ctx, sub, rg, tk)
        name = segs[2]
        rid = f"/subscriptions/{sub}/resourceGroups/{arm.groups[f'{sub}|{rg}'.lower()]['name']}/providers/{canon_ns}/{canon_type}/{name}"
        rec = arm.get(tk, sub, rg, name)
        if rec is not None:
            rid = rec["id"]
        rest = [s.lower() for s in segs[3:]]
        # fault context: the size and region the call is about
        body_obj: dict[str, Any] = {}
        if ctx.method in ("PUT", "PATCH", "POST") and ctx.raw.strip():
            body_obj = ctx.json()
        size = None
        if tk == VM:
            size = (
                (body_obj.get("properties") or {}).get("hardwareProfile", {}).get("vmSize")
                if isinstance(body_obj.get("properties"), dict)
                else None
            )
            if size is None and rec is not None:
                size = rec["model"]["properties"].get("hardwareProfile", {}).get("vmSize")
        region = (
            norm_loc(body_obj["location"])
            if "location" in body_obj
            else (norm_loc(rec["model"].get("location", "")) if rec else None)
        )
        priority = None
        if tk == VM:
            bp = body_obj.get("properties") if isinstance(body_obj.get("properties"), dict) else {}
            priority = bp.get("priority") or (rec["model"]["properties"].get("priority") if rec else None)
        fctx = {
            "priority": priority,
            "method": ctx.method,
            "type": canon_type + ("/" + segs[3] if len(segs) > 3 else ""),
            "name": segs[-1] if len(segs) in (3, 5) else name,
            "size": size,
            "region": region,
            "text": ctx.path + "\n" + ctx.raw.decode("utf-8", "replace"),
        }
        fault = arm.take_fault(fctx)
        async_fail = None
        if fault is not None and fault["code"] == "Delay":
            # Not an error: this request's operation stays InProgress for `polls` reads.
            arm.req_polls = fault["polls"] if fault["polls"] is not None else arm.config.polls
            arm.req_retry_after = fault["retry_after"]
        elif fault is not None:
            is_async = fault["async"] if fault["async"] is not None else fault["code"] in ASYNC_CODES
            if is_async and ctx.method in ("PUT", "PATCH", "POST"):
                async_fail = {
                    "code": fault["code"],
                    "message": fault["message"] or async_message(fault["code"]),
                }
            else:
                raise arm.fault_error(fault, fctx)
        if async_fail is not None and tk == PPG:
            # Placement groups are synchronous: there is no operation to fail later.
            raise arm.fault_error(fault, fctx)
        if ctx.method in ("PUT", "PATCH", "DELETE") and not rest:
            self.check_preconditions(ctx, rec)

        if tk == VM and rest and rest != ["instanceview"]:
            if ctx.method != "POST" or len(rest) != 1:
                raise ArmError(
                    404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake."
                )
            return self.vm_action(ctx, sub, rg, name, rec, rest[0], async_fail)
        if tk == VM and rest == ["instanceview"]:
            if rec is None:
                raise not_found("Microsoft.Compute/virtualMachines", name, rg)
            arm.tick_record(rec)
            return Reply(200, instance_view(arm, rec))
        if (
            tk in (VNET, LB, NSG)
            and rest == [{VNET: "subnets", LB: "backendaddresspools", NSG: "securityrules"}[tk]]
            and ctx.method == "GET"
        ):
            if rec is None:
                raise not_found(f"{canon_ns}/{canon_type}", name, rg)
            if tk == VNET:
                return self.page(ctx, [view(arm, s) for s in subnets_of(arm, rec)])
            if tk == NSG:
                arm.tick_record(rec)
                return self.page(ctx, view(arm, rec)["properties"]["securityRules"])
            return self.page(ctx, view(arm, rec)["properties"]["backendAddressPools"])
        if tk in (VNET, LB, NSG) and rest:
            if len(rest) != 2:
                raise ArmError(
                    404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake."
                )
            parent = rec
            if parent is None:
                raise not_found(f"{canon_ns}/{canon_type}", name, rg)
            if tk == VNET and rest[0] == "subnets":
                return self.subnet(ctx, parent, segs[4], async_fail)
            if tk == LB and rest[0] == "backendaddresspools":
                return self.backend_pool(ctx, parent, segs[4], async_fail)
            if tk == NSG and rest[0] == "securityrules":
                return self.security_rule(ctx, parent, segs[4], async_fail)
            raise ArmError(404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake.")
        if rest:
            raise ArmError(404, "NotFound", f"The requested path '{ctx.path}' is not served by this fake.")

        if ctx.method == "GET":
            if rec is None:
                raise not_found(f"{canon_ns}/{canon_type}", name, rg)
            arm.tick_record(rec)
            rec = arm.get(tk, sub, rg, name)
            if rec is None:
                raise not_found(f"{canon_ns}/{canon_type}", name, rg)
            return Reply(200, view(arm, rec, ctx.query.get("$expand", "")))
        if ctx.method == "DELETE":
            if rec is None:
                return Reply(204)
            return self.delete(ctx, rec)
        if ctx.method in ("PUT", "PATCH"):
            if ctx.method == "PATCH":
                if rec is None:
                    raise not_found(f"{canon_ns}/{canon_type}", name, rg)
                body = deep_merge(rec["model"], body_obj)
                if "tags" in body_obj:
                    # ARM replaces the whole tag set on PATCH.
                    body["tags"] = copy.deepcopy(body_obj["tags"])
            else:
                body = ctx.json()
            if tk != VM and (not NAME_RE.match(name) or len(name) > 80):
                raise ArmError(
                    400,
                    "InvalidResourceName",
                    f"Resource name {name} is invalid. The name can be up to 80 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.",
                )
            if "location" not in body:
                raise ArmError(
                    400, "LocationRequired", "The location property is required for this definition."
                )
            loc = norm_loc(body["location"])
            if loc not in arm.catalog.regions:
                raise ArmError(
                    400,
                    "LocationNotAvailableForResourceType",
                    f"The provided location '{body['location']}' is not available for resource type "
                    f"'{canon_ns}/{canon_type}'. List of available regions for the resource type is "
                    f"'{','.join(sorted(arm.catalog.regions))}'.",
                )
            if rec is not None and norm_loc(rec["model"]["location"]) != loc:
                raise ArmError(
                    409,
                    "InvalidResourceLocation",
                    f"The resource '{name}' already exists in location '{norm_loc(rec['model']['location'])}' in "
                    f"resource group '{rg}'. A resource with the same name cannot be created in location '{loc}'. "
                    "Please select a new resource name.",
                )
            if (
                rec is not None
                and rec.get("op")
                and arm.ops[rec["op"]]["kind"] == "delete"
                and arm.ops[rec["op"]]["status"] == "InProgress"
            ):
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"Operation 'PUT' is not allowed on {'VM' if tk == VM else 'resource'} '{name}' since the "
                    f"{'VM' if tk == VM else 'resource'} is marked for deletion. You can only retry the Delete "
                    "operation (or wait for an ongoing one to complete).",
                )
            check_tags(body.get("tags"))
            body = dict(body)
            body["location"] = loc
            handler = {
                VM: self.put_vm,
                DISK: self.put_disk,
                PPG: self.put_ppg,
                NIC: self.put_nic,
                PIP: self.put_pip,
                VNET: self.put_vnet,
                LB: self.put_lb,
                NSG: self.put_nsg,
            }[tk]
            return handler(ctx, sub, rg, name, rid, rec, body, async_fail)
        raise ArmError(405, "MethodNotAllowed", f"The method {ctx.method} is not supported on {canon_type}.")

    def check_preconditions(self, ctx: Ctx, rec: dict[str, Any] | None) -> None:
        """If-None-Match: * (create only) and If-Match: ETAG (optimistic concurrency)."""
        inm = ctx.headers.get("if-none-match")
        im = ctx.headers.get("if-match")
        failed = None
        if inm is not None and inm.strip() == "*" and rec is not None:
            failed = "If-None-Match: * on a resource that exists"
        if im is not None:
            if rec is None:
                failed = "If-Match on a resource that does not exist"
            elif im.strip() != "*" and im.strip() != self.etag(rec):
                failed = f"If-Match {im.strip()} but the resource's ETag is {self.etag(rec)}"
        if failed:
            # uncertain: code and wording.
            raise ArmError(
                412,
                "PreconditionFailed",
                f"The condition specified using HTTP conditional header(s) is not met ({failed}).",
            )

    def etag(self, rec: dict[str, Any]) -> str:
        return view(self.arm, rec).get("etag") or f'"{rec["guid"]}"'

    # ------------------------------------------------------------ generic network LRO
    def network_put(
        self,
        ctx: Ctx,
        rec: dict[str, Any],
        created: bool,
        async_fail: dict[str, str] | None,
        on_success: Callable[[], None] | None = None,
        view_rec: dict[str, Any] | None = None,
    ) -> Reply:
        arm = self.arm
        op = arm.active_op(rec)
        if op is not None:
            arm.tick(op)
            op = arm.active_op(rec)
        if op is None:
            rec["state"] = "Updating"

            def done(op: dict[str, Any], rec: dict[str, Any] = rec) -> None:
                rec["state"] = "Failed" if op["fail"] else "Succeeded"
                if not op["fail"] and on_success:
                    on_success()

            op = arm.new_op(
                rec,
                "create" if created else "update",
                "Microsoft.Network",
                rec["model"]["location"] if "location" in rec["model"] else rec.get("location", ""),
                ctx.api_version or "",
                done,
                async_fail,
            )
        rec["etag"] = f'W/"{uuid.uuid4()}"'
        h = self.lro_headers(ctx, op, False)
        return Reply(201 if created else 200, view(arm, view_rec or rec), h)

    def delete(self, ctx: Ctx, rec: dict[str, Any]) -> Reply:
        arm = self.arm
        tk = rec["type_key"]
        op = arm.active_op(rec)
        if op is not None and op["kind"] == "delete":
            return Reply(202, None, self.lro_headers(ctx, op, True))
        # What ARM refuses to delete.
        if tk == DISK and rec.get("owner"):
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Disk {rec['name']} is attached to VM {upper_rg_id(rec['owner'])}.",
            )
        if tk == NIC:
            vm = arm.vm_using_nic(rec["id"])
            if vm is not None:
                raise ArmError(
                    400,
                    "NicInUse",
                    f"Network Interface {rec['id']} is used by existing resource {vm['id']}. In order to delete the "
                    "network interface, it must be dissociated from the resource. To learn more, see aka.ms/deletenic.",
                )
        if tk == PIP:
            user = arm.pip_user(rec["id"])
            if user:
                raise ArmError(
                    400,
                    "PublicIPAddressCannotBeDeleted",
                    f"Public IP address {rec['id']} can not be deleted since it is still allocated to resource "
                    f"{user}. In order to delete the public IP, disassociate/detach the Public IP address from the resource.",
                )
        if tk == VNET:
            for s in subnets_of(arm, rec):
                users = arm.subnet_users(s["id"])
                if users:
                    raise subnet_in_use(s, users)
        if tk == NSG:
            subnets, nics = arm.nsg_users(rec["id"])
            if subnets or nics:
                raise ArmError(
                    400,
                    "InUseNetworkSecurityGroupCannotBeDeleted",
                    f"Network security group {rec['id']} cannot be deleted because it is in use by the "
                    f"following resources: {', '.join(subnets + nics)}. In order to delete the Network "
                    "security group, remove the association with the resource(s). To learn how to do "
                    "this, see aka.ms/deletensg.",
                )
        if tk == PPG:
            vms = [
                vm["id"]
                for vm in arm.all(VM)
                if (ref_id(vm["model"]["properties"].get("proximityPlacementGroup")) or "").lower()
                == rec["id"].lower()
            ]
            if vms:
                # uncertain: the exact code and message.
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"Proximity placement group {rec['id']} cannot be deleted as it is referenced by virtual machines: {', '.join(vms)}.",
                )
            arm.drop(rec)
            return Reply(200)
        if op is not None:
            arm.cancel(op["id"])
        ns = TYPES[tk][0] if tk in TYPES else "Microsoft.Network"
        rec["state"] = "Deleting"

        def done(op: dict[str, Any], rec: dict[str, Any] = rec) -> None:
            self.remove(rec)

        op = arm.new_op(
            rec,
            "delete",
            ns,
            rec["model"].get("location") or rec.get("location", ""),
            ctx.api_version or "",
            done,
        )
        return Reply(202, None, self.lro_headers(ctx, op, True))

    def remove(self, rec: dict[str, Any]) -> None:
        """A delete finished: drop the record and release what it held."""
        arm = self.arm
        tk = rec["type_key"]
        arm.drop(rec)
        if tk == VNET:
            for s in subnets_of(arm, rec):
                arm.drop(s)
        if tk == VM:
            props = rec["model"]["properties"]
            # The OS disk and data disks follow their deleteOption (default Detach: they stay).
            for disk in arm.all(DISK):
                if (disk.get("owner") or "").lower() == rec["id"].lower():
                    disk["owner"] = None
            osd = props.get("storageProfile", {}).get("osDisk", {})
            if rec.get("os_disk_id") and osd.get("deleteOption") == "Delete":
                d = arm.by_id(rec["os_disk_id"])
                if d:
                    arm.drop(d)
            for dd in props.get("storageProfile", {}).get("dataDisks", []) or []:
                if dd.get("deleteOption") == "Delete":
                    d = arm.by_id(ref_id(dd.get("managedDisk")))
                    if d:
                        arm.drop(d)
            for ref in props.get("networkProfile", {}).get("networkInterfaces", []) or []:
                nic = arm.by_id(ref_id(ref))
                if nic is None:
                    continue
                if (ref.get("properties") or {}).get("deleteOption") == "Delete":
                    arm.drop(nic)
                elif arm.config.nic_reservation_s > 0:
                    arm.nic_reservations[nic["id"].lower()] = (
                        rec["id"],
                        time.monotonic() + arm.config.nic_reservation_s,
                    )

    # ------------------------------------------------------------ VMs
    def put_vm(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        loc = body["location"]
        if not NAME_RE.match(name) or len(name) > 64:
            raise ArmError(
                400,
                "InvalidResourceName",
                f"Resource name {name} is invalid. The name can be up to 64 characters long. It must begin with a word character, and it must end with a word character or with '_'. The name may contain word characters or '.', '-', '_'.",
            )
        props = body.get("properties")
        if not isinstance(props, dict):
            raise invalid("Required parameter 'properties' is missing (null).", "properties")
        size = (props.get("hardwareProfile") or {}).get("vmSize")
        if not isinstance(size, str) or not size:
            raise invalid("Required parameter 'hardwareProfile.vmSize' is missing (null).", "vmSize")
        regions = arm.catalog.size_regions.get(size.lower())
        if regions is None:
            raise invalid(
                f"The requested VM size {size} is not available in the current region. The sizes available in the "
                f"current region are: "
                f"{', '.join(sorted(c for s, c in arm.catalog.size_case.items() if loc in arm.catalog.size_regions[s]))}. "
                "Find out more on the available VM sizes in each region at https://aka.ms/azure-regions.",
                "vmSize",
            )
        if loc not in regions:
            raise ArmError(
                409,
                "SkuNotAvailable",
                f"The requested VM size for resource 'Following SKUs have failed for Capacity Restrictions: {size}' "
                f"is currently not available in location '{loc}'. Please try another size or deploy to a different "
                "location or different zone. See https://aka.ms/azureskunotavailable for details.",
            )
        zones = body.get("zones")
        if zones is not None and (
            not isinstance(zones, list) or len(zones) != 1 or zones[0] not in ("1", "2", "3")
        ):
            raise invalid(f"The value of parameter zones is invalid: {zones!r}.", "zones")
        # Spot settings.
        priority = props.get("priority", "Regular")
        if priority not in ("Regular", "Low", "Spot"):
            raise invalid(f"The value '{priority}' of parameter 'priority' is invalid.", "priority")
        if "evictionPolicy" in props and props["evictionPolicy"] is not None:
            if priority == "Regular":
                raise invalid(
                    "Eviction policy can be set only on Azure Spot Virtual Machines.", "evictionPolicy"
                )
            if props["evictionPolicy"] not in ("Deallocate", "Delete"):
                raise invalid(
                    f"The value '{props['evictionPolicy']}' of parameter 'evictionPolicy' is invalid.",
                    "evictionPolicy",
                )
        if props.get("billingProfile") is not None:
            if priority == "Regular":
                raise invalid(
                    "Billing profile can be set only on Azure Spot Virtual Machines.", "billingProfile"
                )
            mp = props["billingProfile"].get("maxPrice")
            if mp is not None and (
                not isinstance(mp, (int, float)) or isinstance(mp, bool) or (mp != -1 and mp <= 0)
            ):
                raise invalid(
                    f"The value '{mp}' of parameter 'billingProfile.maxPrice' is invalid. Allowed values are -1 or a positive price in US dollars.",
                    "billingProfile.maxPrice",
                )
        if rec is not None:
            old = rec["model"]
            oldp = old["properties"]
            if oldp.get("priority", "Regular") != priority:
                raise change_not_allowed("priority")
            if (old.get("zones") or None) != (zones or None):
                raise change_not_allowed("zones")
            old_os = oldp.get("osProfile") or {}
            new_os = props.get("osProfile") or {}
            if new_os and old_os.get("adminUsername") != new_os.get("adminUsername"):
                raise change_not_allowed("osProfile.adminUsername")
            if new_os and new_os.get("computerName", name) != old_os.get("computerName", name):
                raise change_not_allowed("osProfile.computerName")
            old_img = (oldp.get("storageProfile") or {}).get("imageReference")
            new_img = (props.get("storageProfile") or {}).get("imageReference")
            if (
                new_img is not None
                and old_img is not None
                and {k: v for k, v in new_img.items() if k != "exactVersion"}
                != {k: v for k, v in old_img.items() if k != "exactVersion"}
            ):
                raise change_not_allowed("imageReference")
        # Storage.
        sp = props.get("storageProfile")
        if not isinstance(sp, dict) or not isinstance(sp.get("osDisk"), dict):
            if rec is None:
                raise invalid("Required parameter 'storageProfile.osDisk' is missing (null).", "osDisk")
            sp = dict(sp or {})
            sp["osDisk"] = copy.deepcopy(rec["model"]["properties"]["storageProfile"]["osDisk"])
            props["storageProfile"] = sp
        osd = sp["osDisk"]
        create_opt = osd.get("createOption")
        if create_opt not in ("FromImage", "Attach", "Empty", "Copy", "Restore"):
            raise invalid(
                f"The value '{create_opt}' of parameter 'osDisk.createOption' is invalid.",
                "osDisk.createOption",
            )
        for fld, allowed in (
            ("caching", ("None", "ReadOnly", "ReadWrite")),
            ("deleteOption", ("Delete", "Detach")),
            ("osType", ("Linux", "Windows")),
        ):
            if fld in osd and osd[fld] not in allowed:
                raise invalid(
                    f"The value '{osd[fld]}' of parameter 'osDisk.{fld}' is invalid.", f"osDisk.{fld}"
                )
        if rec is None and create_opt == "FromImage":
            img = sp.get("imageReference")
            if not isinstance(img, dict) or not (
                img.get("id") or all(img.get(k) for k in ("publisher", "offer", "sku", "version"))
            ):
                raise invalid(
                    "Required parameter 'imageReference' is missing or incomplete (publisher, offer, sku and version, or id).",
                    "imageReference",
                )
            osp = props.get("osProfile")
            if not isinstance(osp, dict):
                raise invalid("Required parameter 'osProfile' is missing (null).", "osProfile")
            self.check_os_profile(name, osp)
        if rec is None and create_opt not in ("FromImage", "Attach"):
            raise invalid(
                f"createOption '{create_opt}' is not supported by this fake for OS disks.",
                "osDisk.createOption",
            )
        os_disk_rec = None
        if rec is None and create_opt == "Attach":
            os_disk_rec = arm.by_id(ref_id(osd.get("managedDisk")))
            if os_disk_rec is None:
                # uncertain: code and wording.
                raise ArmError(404, "NotFound", f"Disk {ref_id(osd.get('managedDisk'))} was not found.")
            if props.get("osProfile") is not None:
                raise invalid("Parameter 'osProfile' is not allowed.", "osProfile")
            if osd.get("osType") not in ("Linux", "Windows"):
                raise invalid("Required parameter 'osDisk.osType' is missing (null).", "osDisk.osType")
            owner = os_disk_rec.get("owner")
            if owner and owner.lower() != rid.lower():
                raise disk_owned(os_disk_rec, owner)
        # Data disks.
        new_disks: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        luns: set[int] = set()
        for i, dd in enumerate(sp.get("dataDisks") or []):
            if not isinstance(dd, dict):
                raise invalid("Each dataDisks entry must be an object.", f"dataDisks[{i}]")
            lun = dd.get("lun")
            if not isinstance(lun, int) or isinstance(lun, bool) or not 0 <= lun <= 63:
                raise invalid(
                    f"Required parameter 'dataDisks[{i}].lun' is missing or invalid.", f"dataDisks[{i}].lun"
                )
            if dd.get("toBeDetached"):
                new_disks.append((dd, arm.by_id(ref_id(dd.get("managedDisk")))))
                continue
            if lun in luns:
                raise invalid(f"A disk at LUN {lun} already exists.", "dataDisks")
            luns.add(lun)
            opt = dd.get("createOption")
            if opt not in ("Attach", "Empty", "FromImage", "Copy", "Restore"):
                raise invalid(
                    f"The value '{opt}' of parameter 'dataDisks[{i}].createOption' is invalid.",
                    f"dataDisks[{i}].createOption",
                )
            if "deleteOption" in dd and dd["deleteOption"] not in ("Delete", "Detach"):
                raise invalid(
                    f"The value '{dd['deleteOption']}' of parameter 'dataDisks[{i}].deleteOption' is invalid.",
                    f"dataDisks[{i}].deleteOption",
                )
            if "caching" in dd and dd["caching"] not in ("None", "ReadOnly", "ReadWrite"):
                raise invalid(
                    f"The value '{dd['caching']}' of parameter 'dataDisks[{i}].caching' is invalid.",
                    f"dataDisks[{i}].caching",
                )
            disk_id = ref_id(dd.get("managedDisk"))
            if opt == "Attach" or (disk_id and rec is not None):
                disk = arm.by_id(disk_id)
                if disk is None:
                    if not disk_id:
                        raise invalid(
                            f"Required parameter 'dataDisks[{i}].managedDisk.id' is missing (null).",
                            f"dataDisks[{i}].managedDisk.id",
                        )
                    # uncertain: the exact code and wording for a missing disk.
                    raise ArmError(
                        404,
                        "NotFound",
                        f"Disk {disk_id.split('/')[-1]} was not found.",
                        target=f"dataDisks[{i}].managedDisk.id",
                    )
                if norm_loc(disk["model"]["location"]) != loc:
                    raise invalid(
                        f"Disk {disk['id']} is in location '{norm_loc(disk['model']['location'])}', not '{loc}' of the virtual machine.",
                        f"dataDisks[{i}].managedDisk.id",
                    )
                dz = disk["model"].get("zones")
                if dz and (zones or []) != dz:
                    # uncertain: the exact code and wording.
                    raise ArmError(
                        400,
                        "BadRequest",
                        f"Disk {disk['id']} in zone {dz[0]} cannot be attached to a virtual machine in zone {(zones or ['none'])[0]}.",
                        target=f"dataDisks[{i}].managedDisk.id",
                    )
                owner = disk.get("owner")
                if owner and owner.lower() != rid.lower():
                    raise disk_owned(disk, owner)
                new_disks.append((dd, disk))
            elif opt == "Empty":
                if not isinstance(dd.get("diskSizeGB"), int):
                    raise invalid(
                        f"Required parameter 'dataDisks[{i}].diskSizeGB' is missing (null).",
                        f"dataDisks[{i}].diskSizeGB",
                    )
                new_disks.append((dd, None))
            else:
                raise invalid(
                    f"createOption '{opt}' is not supported by this fake for data disks.",
                    f"dataDisks[{i}].createOption",
                )
        # Network.
        nics = (props.get("networkProfile") or {}).get("networkInterfaces")
        if not isinstance(nics, list) or not nics:
            raise invalid("Required parameter 'networkProfile' is missing (null).", "networkProfile")
        if len(nics) > 1 and sum(1 for n in nics if (n.get("properties") or {}).get("primary")) != 1:
            raise invalid(
                f"Virtual machine {name} must have one network interface set as the primary.",
                "networkProfile",
            )

        for n in nics:
            nid = ref_id(n)
            nic = arm.by_id(nid)
            if nic is None or norm_loc(nic["model"]["location"]) != loc:
                raise bad_reference(nid or "(none)", rid)
            other = arm.vm_using_nic(nic["id"], except_vm=rec)
            if other is not None:
                # uncertain: the exact code and wording.
                raise ArmError(
                    400,
                    "NicInUse",
                    f"Network Interface {nic['id']} is used by existing resource {other['id']}.",
                )
            reserved = arm.nic_reservations.get(nic["id"].lower())
            if reserved and reserved[1] > time.monotonic() and reserved[0].lower() != rid.lower():
                raise ArmError(
                    400,
                    "NicReservedForAnotherVm",
                    f"Nic(s) in request is reserved for another Virtual Machine for 180 seconds. Please provide another "
                    f"nic(s) or retry after 180 seconds. Reserved VM: {reserved[0]}",
                )
        ppg_id = ref_id(props.get("proximityPlacementGroup"))
        if ppg_id:
            ppg = arm.by_id(ppg_id)
            if ppg is None:
                raise ArmError(
                    404,
                    "NotFound",
                    f"Proximity placement group {ppg_id} was not found.",
                    target="proximityPlacementGroup",
                )  # uncertain
            if norm_loc(ppg["model"]["location"]) != loc:
                raise invalid(
                    f"Proximity placement group {ppg_id} is in location '{ppg['model']['location']}', not '{loc}'.",
                    "proximityPlacementGroup",
                )
            pz = ppg["model"].get("zones")
            if pz and zones and pz != zones:
                raise invalid(
                    f"Proximity placement group {ppg_id} is pinned to zone {pz[0]}.",
                    "proximityPlacementGroup",
                )
        if os_disk_rec is None and rec is None and osd.get("name"):
            existing = arm.get(DISK, sub, rg, osd["name"])
            if existing is not None:
                raise ArmError(
                    409,
                    "ConflictingUserInput",
                    f"Disk {osd['name']} already exists in resource group {rg.upper()}. Only CreateOption.Attach is supported.",
                    target="/disks/" + osd["name"],
                )

        # Accepted: apply.
        created = rec is None
        if created:
            rec = arm.new_record(VM, sub, rg, name, rid)
            rec["generation"] = 1
        else:
            rec["generation"] = rec.get("generation", 1) + 1
        old_disks = {
            d["id"].lower()
            for d in arm.all(DISK)
            if (d.get("owner") or "").lower() == rec["id"].lower()
            and d["id"].lower() != (rec.get("os_disk_id") or "").lower()
        }
        stored = copy.deepcopy(body)
        stored.pop("id", None)
        stored.pop("name", None)
        stored.pop("type", None)
        stored.pop("etag", None)
        sprops = stored["properties"]
        for k in ("provisioningState", "vmId", "timeCreated", "instanceView"):
            sprops.pop(k, None)
        if sprops.get("osProfile"):
            sprops["osProfile"].setdefault("computerName", name)
            sprops["osProfile"].pop("adminPassword", None)
        elif not created:
            sprops["osProfile"] = rec["model"]["properties"].get("osProfile")
        if priority in ("Spot", "Low"):
            sprops.setdefault("evictionPolicy", "Deallocate")
            sprops.setdefault("billingProfile", {"maxPrice": -1})
        if (
            not created
            and "imageReference" not in sprops["storageProfile"]
            and "imageReference" in rec["model"]["properties"].get("storageProfile", {})
        ):
            sprops["storageProfile"]["imageReference"] = rec["model"]["properties"]["storageProfile"][
                "imageReference"
            ]
        # OS disk resource.
        if created:
            if os_disk_rec is not None:
                os_disk_rec["owner"] = rid
                rec["os_disk_id"] = os_disk_rec["id"]
                sprops["storageProfile"]["osDisk"].setdefault("name", os_disk_rec["name"])
            else:
                os_name = osd.get("name") or f"{name}_OsDisk_1_{uuid.uuid4().hex}"
                sprops["storageProfile"]["osDisk"]["name"] = os_name
                d = arm.new_record(
                    DISK,
                    sub,
                    rg,
                    os_name,
                    f"/subscriptions/{sub}/resourceGroups/{rec['rg']}/providers/Microsoft.Compute/disks/{os_name}",
                )
                md = osd.get("managedDisk") or {}
                d["model"] = {
                    "location": loc,
                    "sku": {"name": md.get("storageAccountType", "Premium_LRS"), "tier": "Premium"},
                    "properties": {
                        "osType": "Linux",
                        "hyperVGeneration": "V2",
                        "creationData": {
                            "createOption": "FromImage",
                            "imageReference": {
                                "id": "/Subscriptions/"
                                + sub
                                + "/Providers/Microsoft.Compute/Locations/"
                                + loc
                                + "/Publishers/canonical/ArtifactTypes/VMImage/Offers/ubuntu/Skus/gen2/Versions/22.04"
                            },
                        },
                        "diskSizeGB": osd.get("diskSizeGB", 30),
                    },
                }
                if zones:
                    d["model"]["zones"] = list(zones)
                d["owner"] = rid
                rec["os_disk_id"] = d["id"]
                sprops["storageProfile"]["osDisk"]["diskSizeGB"] = osd.get("diskSizeGB", 30)
        else:
            sprops["storageProfile"]["osDisk"].setdefault(
                "name", rec["model"]["properties"]["storageProfile"]["osDisk"].get("name")
            )
        # Data disks: attach now, detach when the operation ends.
        keep: set[str] = set()
        final_list = []
        to_detach: set[str] = set()
        for (dd, disk), entry in zip(new_disks, sprops["storageProfile"].get("dataDisks") or []):
            if entry.get("toBeDetached"):
                if disk is not None:
                    to_detach.add(disk["id"].lower())
                continue
            if disk is None:
                dname = entry.get("name") or f"{name}_disk{entry['lun']}_{uuid.uuid4().hex}"
                disk = arm.new_record(
                    DISK,
                    sub,
                    rg,
                    dname,
                    f"/subscriptions/{sub}/resourceGroups/{rec['rg']}/providers/Microsoft.Compute/disks/{dname}",
                )
                disk["model"] = {
                    "location": loc,
                    "sku": {
                        "name": (entry.get("managedDisk") or {}).get("storageAccountType", "Standard_LRS")
                    },
                    "properties": {
                        "creationData": {"createOption": "Empty"},
                        "diskSizeGB": entry["diskSizeGB"],
                    },
                }
                if zones:
                    disk["model"]["zones"] = list(zones)
                entry["name"] = dname
                entry["managedDisk"] = dict(entry.get("managedDisk") or {}, id=disk["id"])
            disk["owner"] = rid
            keep.add(disk["id"].lower())
            final_list.append(entry)
        sprops["storageProfile"]["dataDisks"] = final_list
        to_detach |= old_disks - keep
        rec["model"] = stored
        fail_vm = async_fail

        def done(op: dict[str, Any], rec: dict[str, Any] = rec, to_detach: set[str] = to_detach) -> None:
            for disk in arm.all(DISK):
                if disk["id"].lower() in to_detach and (disk.get("owner") or "").lower() == rec["id"].lower():
                    disk["owner"] = None
            rec["state_time"] = now()
            if op["fail"]:
                rec["state"] = "Failed"
                rec["fail_code"] = op["fail"]["code"]
                rec["fail_message"] = op["fail"]["message"]
                # uncertain: the power state an allocation failure leaves.
                rec["power"] = "deallocated"
            else:
                rec["state"] = "Succeeded"
                rec.pop("fail_code", None)
                if rec.get("power") in (None, "starting"):
                    rec["power"] = "running"

        op = arm.active_op(rec)
        if op is not None:
            arm.tick(op)
            op = arm.active_op(rec)
        if op is None:
            rec["state"] = "Creating" if created else "Updating"
            rec["state_time"] = now()
            if created:
                rec["power"] = "starting"
            op = arm.new_op(
                rec,
                "create" if created else "update",
                "Microsoft.Compute",
                loc,
                ctx.api_version or "",
                done,
                fail_vm,
            )
        else:
            op["on_done"] = done
            if fail_vm and not op["fail"]:
                op["fail"] = fail_vm
        return Reply(201 if created else 200, view(arm, rec), self.lro_headers(ctx, op, False))

    def check_os_profile(self, name: str, osp: dict[str, Any]) -> None:
        user = osp.get("adminUsername")
        if not isinstance(user, str) or not user:
            raise invalid("Required parameter 'adminUsername' is missing (null).", "adminUsername")
        if user.lower() in RESERVED_ADMIN:
            raise invalid("The Admin Username specified is not allowed.", "adminUsername")
        host = osp.get("computerName", name)
        if not isinstance(host, str) or len(host) > 64 or any(c in LINUX_HOST_BAD for c in host) or not host:
            raise invalid(
                "Linux host name cannot exceed 64 characters in length or contain the following characters: "
                "` ~ ! @ # $ % ^ & * ( ) = + _ [ ] { } \\ | ; : ' \" , < > / ?.",
                "computerName",
            )
        lc = osp.get("linuxConfiguration") or {}
        keys = (lc.get("ssh") or {}).get("publicKeys") or []
        if lc.get("disablePasswordAuthentication") and not keys:
            raise invalid(
                "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
                "linuxConfiguration",
            )
        if not lc.get("disablePasswordAuthentication") and not osp.get("adminPassword") and not keys:
            raise invalid(
                "Authentication using either SSH or by user name and password must be enabled in Linux profile.",
                "linuxConfiguration",
            )
        for k in keys:
            path = k.get("path")
            if path != f"/home/{user}/.ssh/authorized_keys":
                raise invalid(
                    f"Destination path for SSH public keys is currently limited to its default value "
                    f"/home/{user}/.ssh/authorized_keys  due to a known issue in Linux provisioning agent.",
                    "linuxConfiguration.ssh.publicKeys.path",
                )
            data = k.get("keyData") or ""
            if not re.match(r"^(ssh-rsa|ssh-ed25519|ecdsa-sha2-nistp\d+) [A-Za-z0-9+/=]+", data):
                raise invalid(
                    "The value of parameter linuxConfiguration.ssh.publicKeys.keyData is invalid.",
                    "linuxConfiguration.ssh.publicKeys.keyData",
                )

    def vm_action(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rec: dict[str, Any] | None,
        action: str,
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        if rec is None:
            raise not_found("Microsoft.Compute/virtualMachines", name, rg)
        props = rec["model"]["properties"]
        if action == "simulateeviction":
            if props.get("priority") != "Spot":
                raise ArmError(
                    409,
                    "OperationNotAllowed",
                    f"Simulate eviction is only supported on Azure Spot Virtual Machines; '{name}' is not one.",
                )
            if props.get("evictionPolicy") == "Delete":
                self.remove(rec)
            else:
                rec["power"] = "deallocated"
            return Reply(204)
        actions = {
            "start": "running",
            "poweroff": "stopped",
            "deallocate": "deallocated",
            "restart": "running",
        }
        if action == "attachdetachdatadisks":
            body = ctx.json()
            dd = copy.deepcopy(props.get("storageProfile", {}).get("dataDisks", []))
            detach = {(d.get("diskId") or "").lower() for d in body.get("dataDisksToDetach") or []}
            dd = [d for d in dd if (ref_id(d.get("managedDisk")) or "").lower() not in detach]
            for a in body.get("dataDisksToAttach") or []:
                dd.append(
                    {
                        "lun": a.get("lun", len(dd)),
                        "createOption": "Attach",
                        "managedDisk": {"id": a.get("diskId")},
                        **({"caching": a["caching"]} if "caching" in a else {}),
                    }
                )
            newbody = copy.deepcopy(rec["model"])
            newbody["properties"]["storageProfile"]["dataDisks"] = dd
            reply = self.put_vm(ctx, sub, rg, name, rec["id"], rec, newbody, async_fail)
            op = arm.active_op(rec)
            assert op is not None
            op["result"] = lambda rec=rec: (200, view(arm, rec)["properties"]["storageProfile"])
            return Reply(202, None, self.lro_headers(ctx, op, True)) if reply.status < 300 else reply
        if action not in actions:
            raise ArmError(404, "NotFound", f"The action '{action}' is not served by this fake.")
        if arm.active_op(rec) is not None:
            raise ArmError(
                409,
                "OperationNotAllowed",
                f"Operation '{action}' is not allowed on VM '{name}' since another operation is in progress.",
            )
        target = actions[action]

        def done(op: dict[str, Any], rec: dict[str, Any] = rec) -> None:
            rec["power"] = target
            rec["state"] = "Succeeded"

        rec["state"] = "Updating"
        rec["power"] = {"running": "starting", "stopped": "stopping", "deallocated": "deallocating"}[target]
        op = arm.new_op(
            rec,
            "action",
            "Microsoft.Compute",
            norm_loc(rec["model"]["location"]),
            ctx.api_version or "",
            done,
        )
        return Reply(202, None, self.lro_headers(ctx, op, True))

    # ------------------------------------------------------------ disks and PPGs
    def put_disk(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        props = body.get("properties")
        if not isinstance(props, dict):
            raise invalid("Required parameter 'properties' is missing (null).", "properties")
        cd = props.get("creationData")
        if not isinstance(cd, dict) or not cd.get("createOption"):
            raise invalid(
                "Required parameter 'creationData.createOption' is missing (null).",
                "creationData.createOption",
            )
        if cd["createOption"] not in ("Empty", "Copy", "FromImage", "Import", "Restore", "Upload"):
            raise invalid(
                f"The value '{cd['createOption']}' of parameter 'creationData.createOption' is invalid.",
                "creationData.createOption",
            )
        if cd["createOption"] == "Empty" and not isinstance(props.get("diskSizeGB"), int):
            raise invalid("Required parameter 'diskSizeGB' is missing (null).", "diskSizeGB")
        if cd["createOption"] == "Copy" and arm.by_id(cd.get("sourceResourceId")) is None:
            raise invalid(
                f"Source resource {cd.get('sourceResourceId')} was not found.",
                "creationData.sourceResourceId",
            )
        size = props.get("diskSizeGB")
        if size is not None and (
            not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= 65536
        ):
            raise invalid(f"The value '{size}' of parameter 'diskSizeGB' is invalid.", "diskSizeGB")
        sku = (body.get("sku") or {}).get("name", "Standard_LRS")
        if sku not in DISK_SKUS:
            raise invalid(f"The value '{sku}' of parameter 'sku.name' is invalid.", "sku.name")
        zones = body.get("zones")
        if zones is not None and (
            not isinstance(zones, list) or len(zones) != 1 or zones[0] not in ("1", "2", "3")
        ):
            raise invalid(f"The value of parameter zones is invalid: {zones!r}.", "zones")
        if rec is not None:
            old = rec["model"]
            if (old.get("zones") or None) != (zones or None):
                raise change_not_allowed("zones")
            old_size = old.get("properties", {}).get("diskSizeGB")
            if isinstance(size, int) and isinstance(old_size, int) and size < old_size:
                # uncertain: code and wording.
                raise ArmError(
                    409,
                    "BadRequest",
                    f"Disk size reduction from {old_size} GB to {size} GB is not supported.",
                )
            if old.get("properties", {}).get("creationData", {}).get("createOption") != cd["createOption"]:
                raise change_not_allowed("creationData.createOption")
        created = rec is None
        if created:
            rec = arm.new_record(DISK, sub, rg, name, rid)
        stored = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k in ("location", "tags", "zones", "sku", "properties")
        }
        stored["sku"] = {"name": sku, "tier": "Premium" if sku.startswith("Premium") else "Standard"}
        for k in ("provisioningState", "diskState", "uniqueId", "timeCreated", "diskSizeBytes"):
            stored["properties"].pop(k, None)
        rec["model"] = stored
        op = arm.active_op(rec)
        if op is None:
            rec["state"] = "Updating"

            def done(op: dict[str, Any], rec: dict[str, Any] = rec) -> None:
                rec["state"] = "Failed" if op["fail"] else "Succeeded"

            op = arm.new_op(
                rec,
                "create" if created else "update",
                "Microsoft.Compute",
                body["location"],
                ctx.api_version or "",
                done,
                async_fail,
            )
        else:
            arm.tick(op)
        # The Disk RP answers a create with 202 and a body (arm.md §4), an update with 200.
        return Reply(202 if created else 200, view(arm, rec), self.lro_headers(ctx, op, True))

    def put_ppg(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        props = body.get("properties") or {}
        ptype = props.get("proximityPlacementGroupType", "Standard")
        if ptype not in ("Standard", "Ultra"):
            raise invalid(
                f"The value '{ptype}' of parameter 'proximityPlacementGroupType' is invalid.",
                "proximityPlacementGroupType",
            )
        zones = body.get("zones")
        if rec is not None and (rec["model"].get("zones") or None) != (zones or None):
            if any(
                True
                for vm in arm.all(VM)
                if (ref_id(vm["model"]["properties"].get("proximityPlacementGroup")) or "").lower()
                == rec["id"].lower()
            ):
                raise change_not_allowed("zones")
        created = rec is None
        if created:
            rec = arm.new_record(PPG, sub, rg, name, rid)
        stored = {
            k: copy.deepcopy(v) for k, v in body.items() if k in ("location", "tags", "zones", "properties")
        }
        stored.setdefault("properties", {})
        for k in ("virtualMachines", "virtualMachineScaleSets", "availabilitySets", "colocationStatus"):
            stored["properties"].pop(k, None)
        rec["model"] = stored
        # Not a long-running operation in the client (arm.md §1): synchronous 201 / 200.
        return Reply(201 if created else 200, view(arm, rec))

    # ------------------------------------------------------------ network
    def put_pip(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        sku = (body.get("sku") or {}).get("name", "Basic")
        if sku not in ("Basic", "Standard"):
            raise invalid(f"The value '{sku}' of parameter 'sku.name' is invalid.", "sku.name")
        props = body.get("properties") or {}
        method = props.get("publicIPAllocationMethod")
        if method not in (None, "Static", "Dynamic"):
            raise invalid(
                f"The value '{method}' of parameter 'publicIPAllocationMethod' is invalid.",
                "publicIPAllocationMethod",
            )
        if sku == "Standard" and method != "Static":
            # The default method is Dynamic, so a Standard IP must say Static.
            raise ArmError(
                400,
                "StandardSkuPublicIPAddressesMustBeStatic",
                f"Standard sku publicIp {rid} must have AllocationMethod set to Static.",
            )
        if rec is not None and (rec["model"].get("sku") or {}).get("name", "Basic") != sku:
            raise change_not_allowed("sku")
        created = rec is None
        if created:
            rec = arm.new_record(PIP, sub, rg, name, rid)
        rec["model"] = {
            k: copy.deepcopy(v)
            for k, v in body.items()
            if k in ("location", "tags", "zones", "sku", "properties")
        }
        rec["model"]["sku"] = {"name": sku, "tier": (body.get("sku") or {}).get("tier", "Regional")}
        for k in ("provisioningState", "ipAddress", "ipConfiguration", "resourceGuid"):
            rec["model"].setdefault("properties", {}).pop(k, None)

        def allocate(rec: dict[str, Any] = rec) -> None:
            if not rec.get("ip"):
                rec["ip"] = arm.next_ip()

        return self.network_put(ctx, rec, created, async_fail, allocate)

    def put_vnet(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        props = body.get("properties") or {}
        prefixes = (props.get("addressSpace") or {}).get("addressPrefixes")
        if not isinstance(prefixes, list) or not prefixes:
            raise ArmError(
                400,
                "InvalidRequestFormat",
                "Cannot parse the request: addressSpace.addressPrefixes is required.",
            )
        nets = []
        for p in prefixes:
            try:
                nets.append(ipaddress.ip_network(p, strict=True))
            except (ValueError, TypeError):
                raise ArmError(
                    400,
                    "InvalidAddressPrefixFormat",
                    f"Address prefix {p} of resource {rid} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24.",
                )
        subnets = props.get("subnets")
        if subnets is not None:
            wanted = {}
            for s in subnets:
                sname = s.get("name")
                if not sname:
                    raise ArmError(
                        400, "InvalidRequestFormat", "Cannot parse the request: every subnet needs a name."
                    )
                wanted[sname.lower()] = s
            self.check_subnets(
                rid, nets, [(s["name"], (s.get("properties") or {}).get("addressPrefix")) for s in subnets]
            )
            for s in subnets:
                nsg_reference(arm, s.get("properties") or {}, body["location"], f"{rid}/subnets/{s['name']}")
            if rec is not None:
                for s in subnets_of(arm, rec):
                    short = s["name"].split("/")[-1]
                    users = arm.subnet_users(s["id"])
                    if short.lower() not in wanted:
                        if users:
                            raise subnet_in_use(s, users)
                    elif users and (wanted[short.lower()].get("properties") or {}).get("addressPrefix") != s[
                        "model"
                    ]["properties"].get("addressPrefix"):
                        raise ArmError(
                            400,
                            "InUseSubnetCannotBeUpdated",
                            f"Subnet {short} is in use and cannot be updated.",
                        )
        elif rec is not None:
            # A VNet PUT without subnets replaces them with none.
            for s in subnets_of(arm, rec):
                users = arm.subnet_users(s["id"])
                if users:
                    raise subnet_in_use(s, users)
        created = rec is None
        if created:
            rec = arm.new_record(VNET, sub, rg, name, rid)
        model = {k: copy.deepcopy(v) for k, v in body.items() if k in ("location", "tags", "properties")}
        model["properties"].pop("subnets", None)
        model["properties"].pop("provisioningState", None)
        rec["model"] = model
        # Replace the subnet set.
        existing = {s["name"].split("/")[-1].lower(): s for s in subnets_of(arm, rec)}
        wanted_list = subnets or []
        for s in existing.values():
            if s["name"].split("/")[-1].lower() not in {w["name"].lower() for w in wanted_list}:
                arm.drop(s)
        for order, s in enumerate(wanted_list):
            srec = existing.get(s["name"].lower())
            if srec is None:
                srec = arm.new_record(SUBNET, sub, rg, f"{name}/{s['name']}", f"{rid}/subnets/{s['name']}")
            srec["order"] = order
            srec["location"] = body["location"]
            srec["model"] = {
                "properties": {
                    k: v
                    for k, v in (s.get("properties") or {}).items()
                    if k not in ("provisioningState", "ipConfigurations")
                }
            }
            srec["state"] = "Succeeded"
        return self.network_put(ctx, rec, created, async_fail)

    def check_subnets(self, vnet_id: str, nets: list[Any], subnets: list[tuple[str, Any]]) -> None:
        parsed = []
        for sname, prefix in subnets:
            try:
                net = ipaddress.ip_network(prefix, strict=True)
            except (ValueError, TypeError):
                raise ArmError(
                    400,
                    "InvalidAddressPrefixFormat",
                    f"Address prefix {prefix} of resource {vnet_id}/subnets/{sname} is not formatted correctly. It should follow CIDR notation, for example 10.0.0.0/24.",
                )
            if not any(net.version == n.version and net.subnet_of(n) for n in nets):
                raise ArmError(
                    400,
                    "NetcfgSubnetRangeOutsideVnet",
                    f"Subnet '{sname}' is not valid because its IP address range is outside the IP address range of virtual network '{vnet_id.split('/')[-1]}'.",
                )
            for other_name, other in parsed:
                if net.overlaps(other):
                    raise ArmError(
                        400,
                        "NetcfgSubnetRangesOverlap",
                        f"Subnet '{sname}' is not valid because its IP address range overlaps with that of an existing subnet '{other_name}' in virtual network '{vnet_id.split('/')[-1]}'.",
                    )
            parsed.append((sname, net))

    def subnet(self, ctx: Ctx, vnet: dict[str, Any], sname: str, async_fail: dict[str, str] | None) -> Reply:
        arm = self.arm
        sid = f"{vnet['id']}/subnets/{sname}"
        srec = arm.get(SUBNET, vnet["sub"], vnet["rg"], f"{vnet['name']}/{sname}")
        if ctx.method == "GET":
            if srec is None:
                raise not_found(
                    "Microsoft.Network/virtualNetworks/subnets", f"{vnet['name']}/{sname}", vnet["rg"]
                )
            arm.tick_record(srec)
            return Reply(200, view(arm, srec))
        if ctx.method == "DELETE":
            if srec is None:
                return Reply(204)
            users = arm.subnet_users(srec["id"])
            if users:
                raise subnet_in_use(srec, users)
            srec["location"] = vnet["model"]["location"]
            return self.delete(ctx, srec)
        if ctx.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{ctx.method} is not supported on subnets.")
        body = ctx.json()
        prefix = (body.get("properties") or {}).get("addressPrefix")
        nets = [
            ipaddress.ip_network(p) for p in vnet["model"]["properties"]["addressSpace"]["addressPrefixes"]
        ]
        others = [
            (s["name"].split("/")[-1], s["model"]["properties"].get("addressPrefix"))
            for s in subnets_of(arm, vnet)
            if s is not srec
        ]
        self.check_subnets(vnet["id"], nets, others + [(sname, prefix)])
        nsg_reference(arm, body.get("properties") or {}, vnet["model"]["location"], sid)
        if (
            srec is not None
            and arm.subnet_users(srec["id"])
            and srec["model"]["properties"].get("addressPrefix") != prefix
        ):
            raise ArmError(
                400, "InUseSubnetCannotBeUpdated", f"Subnet {sname} is in use and cannot be updated."
            )
        created = srec is None
        if created:
            order = 1 + max([s["order"] for s in subnets_of(arm, vnet)] or [-1])
            srec = arm.new_record(SUBNET, vnet["sub"], vnet["rg"], f"{vnet['name']}/{sname}", sid)
            srec["order"] = order
        srec["location"] = vnet["model"]["location"]
        srec["model"] = {
            "location": vnet["model"]["location"],
            "properties": {
                k: v
                for k, v in (body.get("properties") or {}).items()
                if k not in ("provisioningState", "ipConfigurations")
            },
        }
        reply = self.network_put(ctx, srec, created, async_fail)
        return reply

    def put_nic(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        loc = body["location"]
        props = body.get("properties") or {}
        ipcs = props.get("ipConfigurations")
        if not isinstance(ipcs, list) or not ipcs:
            # uncertain: code.
            raise ArmError(
                400,
                "InvalidRequestFormat",
                f"Network interface {rid} must have at least one IP configuration.",
            )
        nsg_reference(arm, props, loc, rid)
        ips = []
        seen_names = set()
        for i, ipc in enumerate(ipcs):
            iname = ipc.get("name")
            if not iname or iname.lower() in seen_names:
                raise ArmError(
                    400,
                    "InvalidRequestFormat",
                    f"Cannot parse the request: ipConfigurations[{i}] needs a unique name.",
                )
            seen_names.add(iname.lower())
            p = ipc.get("properties") or {}
            sid = ref_id(p.get("subnet"))
            srec = arm.by_id(sid)
            if srec is None or norm_loc(srec.get("location", "")) != loc:
                raise bad_reference(sid or "(no subnet)", f"{rid}/ipConfigurations/{iname}")
            pid = ref_id(p.get("publicIPAddress"))
            if pid:
                prec = arm.by_id(pid)
                if prec is None or norm_loc(prec["model"]["location"]) != loc:
                    raise bad_reference(pid, f"{rid}/ipConfigurations/{iname}")
                user = arm.pip_user(prec["id"], except_id=rid)
                if user:
                    # uncertain: code.
                    raise ArmError(
                        400,
                        "PublicIPAddressInUse",
                        f"Resource {rid}/ipConfigurations/{iname} is referencing public IP address {prec['id']} that is already allocated to resource {user}.",
                    )
            for pool in p.get("loadBalancerBackendAddressPools") or []:
                pool_id = ref_id(pool) or ""
                lb = (
                    arm.by_id(pool_id.rsplit("/backendAddressPools/", 1)[0])
                    if "/backendaddresspools/" in pool_id.lower()
                    else None
                )
                if lb is None:
                    raise bad_reference(pool_id, f"{rid}/ipConfigurations/{iname}")
                pname = pool_id.split("/")[-1].lower()
                if not any(
                    (bp.get("name") or "").lower() == pname
                    for bp in lb["model"].get("properties", {}).get("backendAddressPools", [])
                ):
                    raise bad_reference(pool_id, f"{rid}/ipConfigurations/{iname}")
                if norm_loc(lb["model"]["location"]) != loc:
                    raise bad_reference(pool_id, f"{rid}/ipConfigurations/{iname}")
            net = ipaddress.ip_network(srec["model"]["properties"]["addressPrefix"])
            if p.get("privateIPAllocationMethod") == "Static":
                try:
                    addr = ipaddress.ip_address(p.get("privateIPAddress"))
                except (ValueError, TypeError):
                    raise invalid(
                        f"Private static IP address {p.get('privateIPAddress')} is invalid.",
                        "privateIPAddress",
                    )
                if addr not in net:
                    raise ArmError(
                        400,
                        "PrivateIPAddressNotInSubnet",
                        f"IP configuration {rid}/ipConfigurations/{iname} is referencing a private IP address {addr} that is not in the address range of subnet {srec['id']}.",
                    )
                ips.append(str(addr))
            else:
                old = rec.get("ips", []) if rec else []
                old_subnet = None
                if rec and i < len(rec["model"]["properties"].get("ipConfigurations", [])):
                    old_subnet = ref_id(
                        rec["model"]["properties"]["ipConfigurations"][i].get("properties", {}).get("subnet")
                    )
                if i < len(old) and old_subnet and old_subnet.lower() == srec["id"].lower():
                    ips.append(old[i])
                else:
                    ips.append(self.free_ip(srec, net, exclude=rid))
        created = rec is None
        if created:
            rec = arm.new_record(NIC, sub, rg, name, rid)
        model = {k: copy.deepcopy(v) for k, v in body.items() if k in ("location", "tags", "properties")}
        for k in ("provisioningState", "virtualMachine", "macAddress", "resourceGuid", "primary"):
            model["properties"].pop(k, None)
        for ipc in model["properties"]["ipConfigurations"]:
            for k in ("id", "etag", "type"):
                ipc.pop(k, None)
            (ipc.get("properties") or {}).pop("provisioningState", None)
        rec["model"] = model
        rec["ips"] = ips
        return self.network_put(ctx, rec, created, async_fail)

    def free_ip(self, srec: dict[str, Any], net: Any, exclude: str) -> str:
        used = set()
        for nic in self.arm.all(NIC):
            if nic["id"].lower() == exclude.lower():
                continue
            used.update(nic.get("ips", []))
        hosts = list(net.hosts()) if net.num_addresses <= 65536 else []
        for h in hosts[3:]:  # Azure reserves the first four addresses of a subnet (.0 to .3).
            if str(h) not in used:
                return str(h)
        raise ArmError(
            400,
            "SubnetIsFull",
            f"Subnet {srec['name'].split('/')[-1]} with address prefix {net} does not have enough capacity for 1 IP addresses.",
        )

    def put_lb(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        loc = body["location"]
        sku = (body.get("sku") or {}).get("name", "Basic")
        if sku not in ("Basic", "Standard", "Gateway"):
            raise invalid(f"The value '{sku}' of parameter 'sku.name' is invalid.", "sku.name")
        props = copy.deepcopy(body.get("properties") or {})
        names: dict[str, set[str]] = {}
        for coll in LB_CHILDREN:
            items = props.get(coll) or []
            names[coll] = set()
            for item in items:
                n = (item.get("name") or "").lower()
                if not n or n in names[coll]:
                    raise ArmError(
                        400,
                        "InvalidRequestFormat",
                        f"Cannot parse the request: every entry of {coll} needs a unique name.",
                    )
                names[coll].add(n)
        for fe in props.get("frontendIPConfigurations") or []:
            p = fe.get("properties") or {}
            pid = ref_id(p.get("publicIPAddress"))
            if pid:
                prec = arm.by_id(pid)
                if prec is None or norm_loc(prec["model"]["location"]) != loc:
                    raise bad_reference(pid, f"{rid}/frontendIPConfigurations/{fe.get('name')}")
                psku = (prec["model"].get("sku") or {}).get("name", "Basic")
                if psku != sku:
                    raise ArmError(
                        400,
                        "PublicIPAndLBSkuDoNotMatch",
                        f"{sku} sku load balancer {rid} cannot reference {psku} sku publicIP {prec['id']}.",
                    )
                user = arm.pip_user(prec["id"], except_id=rid)
                if user:
                    raise ArmError(
                        400,
                        "PublicIPAddressInUse",
                        f"Resource {rid}/frontendIPConfigurations/{fe.get('name')} is referencing public IP address {prec['id']} that is already allocated to resource {user}.",
                    )  # uncertain: code
            elif ref_id(p.get("subnet")):
                if arm.by_id(ref_id(p.get("subnet"))) is None:
                    raise bad_reference(
                        ref_id(p.get("subnet")) or "", f"{rid}/frontendIPConfigurations/{fe.get('name')}"
                    )
            else:
                raise ArmError(
                    400,
                    "InvalidRequestFormat",
                    f"Frontend IP configuration {rid}/frontendIPConfigurations/{fe.get('name')} needs a publicIPAddress or a subnet.",
                )
        for rule in props.get("loadBalancingRules") or []:
            p = rule.get("properties") or {}
            where = f"{rid}/loadBalancingRules/{rule.get('name')}"
            if p.get("protocol") not in ("Tcp", "Udp", "All"):
                raise invalid(
                    f"The value '{p.get('protocol')}' of parameter 'protocol' is invalid.", "protocol"
                )
            for port in ("frontendPort", "backendPort"):
                v = p.get(port)
                if not isinstance(v, int) or not 0 <= v <= 65535:
                    raise invalid(f"Required parameter '{port}' of {where} is missing or out of range.", port)
            for fld, coll in (
                ("frontendIPConfiguration", "frontendIPConfigurations"),
                ("backendAddressPool", "backendAddressPools"),
                ("probe", "probes"),
            ):
                rid_ref = ref_id(p.get(fld))
                if fld == "frontendIPConfiguration" and not rid_ref:
                    raise invalid(f"Required parameter 'frontendIPConfiguration' of {where} is missing.", fld)
                if rid_ref:
                    prefix = f"{rid}/{coll}/".lower()
                    if (
                        not rid_ref.lower().startswith(prefix)
                        or rid_ref.split("/")[-1].lower() not in names[coll]
                    ):
                        raise bad_reference(rid_ref, where)
        for probe in props.get("probes") or []:
            p = probe.get("properties") or {}
            if p.get("protocol") not in ("Tcp", "Http", "Https"):
                raise invalid(
                    f"The value '{p.get('protocol')}' of parameter 'probe protocol' is invalid.", "protocol"
                )
            if not isinstance(p.get("port"), int):
                raise invalid("Required parameter 'port' of the probe is missing.", "port")
        if rec is not None:
            if (rec["model"].get("sku") or {}).get("name", "Basic") != sku:
                raise change_not_allowed("sku")
            old_pools = {
                bp.get("name", "").lower()
                for bp in rec["model"].get("properties", {}).get("backendAddressPools", [])
            }
            for gone in old_pools - names["backendAddressPools"]:
                members = arm.pool_members(f"{rec['id']}/backendAddressPools/{gone}")
                if members:
                    # uncertain: code.
                    raise ArmError(
                        400,
                        "InUseBackendAddressPoolCannotBeDeleted",
                        f"Backend address pool {rec['id']}/backendAddressPools/{gone} is in use by {members[0]} and cannot be deleted.",
                    )
        created = rec is None
        if created:
            rec = arm.new_record(LB, sub, rg, name, rid)
        for coll in LB_CHILDREN:
            for item in props.get(coll) or []:
                for k in ("id", "etag", "type"):
                    item.pop(k, None)
                ip = item.get("properties")
                if isinstance(ip, dict):
                    ip.pop("provisioningState", None)
                    ip.pop("backendIPConfigurations", None)
        props.pop("provisioningState", None)
        props.pop("resourceGuid", None)
        rec["model"] = {
            "location": loc,
            "sku": {"name": sku, "tier": (body.get("sku") or {}).get("tier", "Regional")},
            "properties": props,
        }
        if body.get("tags") is not None:
            rec["model"]["tags"] = copy.deepcopy(body["tags"])
        return self.network_put(ctx, rec, created, async_fail)

    def backend_pool(
        self, ctx: Ctx, lb: dict[str, Any], pname: str, async_fail: dict[str, str] | None
    ) -> Reply:
        arm = self.arm
        pools = lb["model"].setdefault("properties", {}).setdefault("backendAddressPools", [])
        idx = next((i for i, p in enumerate(pools) if (p.get("name") or "").lower() == pname.lower()), None)

        def pool_view() -> dict[str, Any]:
            for p in view(arm, lb)["properties"]["backendAddressPools"]:
                if p["name"].lower() == pname.lower():
                    return p
            raise ArmError(404, "NotFound", f"Backend address pool {pname} was not found.")

        if ctx.method == "GET":
            if idx is None:
                raise not_found(
                    "Microsoft.Network/loadBalancers/backendAddressPools", f"{lb['name']}/{pname}", lb["rg"]
                )
            arm.tick_record(lb)
            return Reply(200, pool_view())
        if ctx.method == "DELETE":
            if idx is None:
                return Reply(204)
            members = arm.pool_members(f"{lb['id']}/backendAddressPools/{pools[idx]['name']}")
            if members:
                raise ArmError(
                    400,
                    "InUseBackendAddressPoolCannotBeDeleted",
                    f"Backend address pool {lb['id']}/backendAddressPools/{pname} is in use by {members[0]} and cannot be deleted.",
                )  # uncertain
            pools.pop(idx)
            op = arm.new_op(
                lb,
                "update",
                "Microsoft.Network",
                lb["model"]["location"],
                ctx.api_version or "",
                lambda op: None,
            )
            return Reply(202, None, self.lro_headers(ctx, op, True))
        if ctx.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{ctx.method} is not supported on backend pools.")
        body = ctx.json()
        entry = {
            "name": pools[idx]["name"] if idx is not None else pname,
            "properties": {
                k: v
                for k, v in (body.get("properties") or {}).items()
                if k not in ("provisioningState", "backendIPConfigurations", "loadBalancingRules")
            },
        }
        created = idx is None
        if created:
            pools.append(entry)
        else:
            pools[idx] = entry
        reply = self.network_put(ctx, lb, created, async_fail)
        op = arm.active_op(lb)
        if op is not None:
            op["result"] = lambda: (200, pool_view())
        reply.body = pool_view()
        return reply

    # ------------------------------------------------------------ network security groups
    def put_nsg(
        self,
        ctx: Ctx,
        sub: str,
        rg: str,
        name: str,
        rid: str,
        rec: dict[str, Any] | None,
        body: dict[str, Any],
        async_fail: dict[str, str] | None,
    ) -> Reply:
        arm = self.arm
        props = copy.deepcopy(body.get("properties") or {})
        rules = [clean_rule(r) for r in props.get("securityRules") or []]
        check_rules(rid, rules)
        created = rec is None
        if created:
            rec = arm.new_record(NSG, sub, rg, name, rid)
        # What ARM computes is not stored (a GET-then-PUT body carries it back).
        for k in (
            "provisioningState",
            "resourceGuid",
            "defaultSecurityRules",
            "subnets",
            "networkInterfaces",
            "flowLogs",
            "securityRules",
        ):
            props.pop(k, None)
        props["securityRules"] = rules
        rec["model"] = {"location": body["location"], "properties": props}
        if body.get("tags") is not None:
            rec["model"]["tags"] = copy.deepcopy(body["tags"])
        return self.network_put(ctx, rec, created, async_fail)

    def security_rule(
        self, ctx: Ctx, nsg: dict[str, Any], rname: str, async_fail: dict[str, str] | None
    ) -> Reply:
        """`…/networkSecurityGroups/{nsg}/securityRules/{rule}`: a child kept in the NSG's rule list."""
        arm = self.arm
        rules = nsg["model"].setdefault("properties", {}).setdefault("securityRules", [])
        idx = next((i for i, r in enumerate(rules) if (r.get("name") or "").lower() == rname.lower()), None)
        if ctx.method == "GET":
            if idx is None:
                raise not_found(
                    "Microsoft.Network/networkSecurityGroups/securityRules", f"{nsg['name']}/{rname}", nsg["rg"]
                )
            arm.tick_record(nsg)
            return Reply(200, rule_view(nsg, rules[idx]))
        if ctx.method == "DELETE":
            if idx is None:
                return Reply(204)
            rules.pop(idx)
            nsg["etag"] = f'W/"{uuid.uuid4()}"'
            op = arm.new_op(
                nsg,
                "update",
                "Microsoft.Network",
                nsg["model"]["location"],
                ctx.api_version or "",
                lambda op: None,
            )
            return Reply(202, None, self.lro_headers(ctx, op, True))
        if ctx.method != "PUT":
            raise ArmError(405, "MethodNotAllowed", f"{ctx.method} is not supported on security rules.")
        body = ctx.json()
        entry = clean_rule({"name": rules[idx]["name"] if idx is not None else rname, **body})
        entry["name"] = rules[idx]["name"] if idx is not None else rname
        wanted = list(rules)
        if idx is None:
            wanted.append(entry)
        else:
            wanted[idx] = entry
        check_rules(nsg["id"], wanted)
        rules[:] = wanted
        created = idx is None

        def rule_now() -> dict[str, Any]:
            for r in rules:
                if (r.get("name") or "").lower() == rname.lower():
                    return rule_view(nsg, r)
            raise not_found(
                "Microsoft.Network/networkSecurityGroups/securityRules", f"{nsg['name']}/{rname}", nsg["rg"]
            )

        reply = self.network_put(ctx, nsg, created, async_fail)
        op = arm.active_op(nsg)
        if op is not None:
            op["result"] = lambda: (200, rule_now())
        reply.body = rule_now()
        return reply


def clean_rule(rule: Any) -> dict[str, Any]:
    """A security rule as stored: name and properties, without what ARM computes."""
    if not isinstance(rule, dict):
        raise ArmError(400, "InvalidRequestFormat", "Cannot parse the request: a security rule must be an object.")
    props = {
        k: copy.deepcopy(v)
        for k, v in (rule.get("properties") or {}).items()
        if k not in ("provisioningState",)
    }
    return {"name": rule.get("name"), "properties": props}


def check_rules(nsg_id: str, rules: list[dict[str, Any]]) -> None:
    """What ARM refuses in an NSG's rule set: bad names, values outside their enums, priorities
    outside 100..4096, and two rules with the same priority and direction."""
    seen_names: set[str] = set()
    seen: dict[tuple[int, str], str] = {}
    for r in rules:
        rname = r.get("name")
        where = f"{nsg_id}/securityRules/{rname}"
        if not isinstance(rname, str) or not NAME_RE.match(rname) or len(rname) > 80:
            raise ArmError(400, "InvalidResourceName", f"Resource name {rname} is invalid.")
        if rname.lower() in seen_names:
            # uncertain: code.
            raise ArmError(
                400, "InvalidRequestFormat", f"Cannot parse the request: security rule {rname} appears twice."
            )
        seen_names.add(rname.lower())
        p = r["properties"]
        direction = p.get("direction")
        if direction not in ("Inbound", "Outbound"):
            raise invalid(f"The value '{direction}' of parameter 'direction' of {where} is invalid.", "direction")
        if p.get("access") not in ("Allow", "Deny"):
            raise invalid(f"The value '{p.get('access')}' of parameter 'access' of {where} is invalid.", "access")
        if p.get("protocol") not in RULE_PROTOCOLS:
            raise invalid(
                f"The value '{p.get('protocol')}' of parameter 'protocol' of {where} is invalid.", "protocol"
            )
        prio = p.get("priority")
        if not isinstance(prio, int) or isinstance(prio, bool) or prio not in RULE_PRIORITIES:
            # uncertain: code and wording.
            raise ArmError(
                400,
                "SecurityRuleInvalidPriority",
                f"Security rule {where} has invalid Priority. Value provided: {prio} Allowed range 100-4096.",
            )
        for single, multi in (
            ("sourceAddressPrefix", "sourceAddressPrefixes"),
            ("destinationAddressPrefix", "destinationAddressPrefixes"),
            ("sourcePortRange", "sourcePortRanges"),
            ("destinationPortRange", "destinationPortRanges"),
        ):
            if not p.get(single) and not p.get(multi):
                # uncertain: code (ARM also accepts application security groups here).
                raise invalid(f"Security rule {where} needs {single} or {multi}.", single)
        other = seen.get((prio, direction))
        if other is not None:
            # uncertain: code and wording (SecurityRuleConflict is what the NRP answers).
            raise ArmError(
                400,
                "SecurityRuleConflict",
                f"Security rule {rname} conflicts with rule {other}. Rules cannot have the same Priority "
                "and Direction. To learn more, see aka.ms/nsgrules.",
            )
        seen[(prio, direction)] = rname


def nsg_reference(arm: Arm, props: dict[str, Any], loc: str, by: str) -> None:
    """A subnet's or NIC's `networkSecurityGroup` must name an NSG that exists, in its region."""
    nid = ref_id(props.get("networkSecurityGroup"))
    if props.get("networkSecurityGroup") is not None and nid is None:
        raise bad_reference("(no id)", by)
    if nid is None:
        return
    nrec = arm.by_id(nid)
    if nrec is None or nrec["type_key"] != NSG or norm_loc(nrec["model"].get("location", "")) != norm_loc(loc):
        raise bad_reference(nid, by)


def check_tags(tags: Any) -> None:
    """ARM's limits on tags: at most 50, names up to 512 characters without <>%&\\?/, values up to 256."""
    if tags is None:
        return
    if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
        raise ArmError(400, "InvalidRequestContent", "The tags must be an object of string values.")
    if len(tags) > 50:
        # uncertain: code.
        raise ArmError(
            400, "InvalidTagsCount", f"{len(tags)} tags were given; a resource can have at most 50."
        )
    bad = [k for k in tags if any(c in k for c in "<>%&\\?/") or any(ord(c) < 32 for c in k)]
    if bad:
        raise ArmError(
            400,
            "InvalidTagNameCharacters",
            f"The tag names '{','.join(bad)}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
        )
    for k, v in tags.items():
        if len(k) > 512 or len(v) > 256:
            # uncertain: code.
            raise ArmError(
                400,
                "InvalidTagNameLength" if len(k) > 512 else "InvalidTagValueLength",
                f"The tag '{k[:40]}' is too long: names may have 512 characters and values 256.",
            )


def disk_owned(disk: dict[str, Any], owner: str) -> ArmError:
    return ArmError(
        409,
        "ConflictingUserInput",
        f"Disk '{disk['id']}' cannot be attached as the disk is already owned by VM '{upper_rg_id(owner)}'.",
    )


def subnet_in_use(srec: dict[str, Any], users: list[str]) -> ArmError:
    short = srec["name"].split("/")[-1]
    return ArmError(
        400,
        "InUseSubnetCannotBeDeleted",
        f"Subnet {short} is in use by {users[0]} and cannot be deleted. In order to delete the subnet, delete all "
        "the resources within the subnet. See aka.ms/deletesubnet.",
    )


def valid_rg_name(name: str) -> bool:
    return 1 <= len(name) <= 90 and re.fullmatch(r"[-\w._()]+", name) is not None and not name.endswith(".")


# ==================================================================== retail prices
DISPLAY_LOCATIONS = {
    "eastus": "US East",
    "eastus2": "US East 2",
    "westus": "US West",
    "westus2": "US West 2",
    "westus3": "US West 3",
    "centralus": "US Central",
    "northcentralus": "US North Central",
    "southcentralus": "US South Central",
    "westcentralus": "US West Central",
    "westeurope": "EU West",
    "northeurope": "EU North",
    "uksouth": "UK South",
    "ukwest": "UK West",
    "japaneast": "JA East",
    "japanwest": "JA West",
    "australiaeast": "AU East",
    "southeastasia": "AP Southeast",
    "eastasia": "AP East",
}
PRICE_FIELDS = {
    "armregionname": "armRegionName",
    "location": "location",
    "meterid": "meterId",
    "metername": "meterName",
    "productid": "productId",
    "skuid": "skuId",
    "productname": "productName",
    "skuname": "skuName",
    "servicename": "serviceName",
    "serviceid": "serviceId",
    "servicefamily": "serviceFamily",
    "pricetype": "type",
    "type": "type",
    "armskuname": "armSkuName",
    "currencycode": "currencyCode",
    "reservationterm": "reservationTerm",
}


def price_items(catalog: Catalog) -> list[dict[str, Any]]:
    """Retail price items for the catalog's Azure sizes, with the meters a client must skip."""
    items: list[dict[str, Any]] = []
    ns = uuid.UUID("7f1b1d4e-4c1a-4f7e-9a53-8d0f5b0c2e11")
    for row in sorted(catalog.rows, key=lambda r: (r["region"], r["instance_type"], r["spot"])):
        size = row["instance_type"]
        region = row["region"]
        price = float(row["price_per_hour_usd"])
        vcpus = int(row["vcpus"])
        short = size.removeprefix("Standard_").replace("_", " ")
        series = re.sub(r"\d+", "", short.split(" ")[0], count=1)
        product = f"Virtual Machines {series} {' '.join(short.split(' ')[1:])} Series".replace(
            "  ", " "
        ).strip()
        spot = row["spot"] == "true"

        def item(
            meter: str, prod: str, amount: float, kind: str = "Consumption", **extra: Any
        ) -> dict[str, Any]:
            meter_id = str(uuid.uuid5(ns, f"{region}|{size}|{meter}|{prod}|{kind}|{extra}"))
            product_id = "DZH318Z0" + uuid.uuid5(ns, prod).hex[:4].upper()
            out = {
                "currencyCode": "USD",
                "tierMinimumUnits": 0.0,
                "retailPrice": round(amount, 6),
                "unitPrice": round(amount, 6),
                "armRegionName": region,
                "location": DISPLAY_LOCATIONS.get(region, region),
                "effectiveStartDate": "2024-01-01T00:00:00Z",
                "meterId": meter_id,
                "meterName": meter,
                "productId": product_id,
                "skuId": f"{product_id}/{meter_id[:4].upper()}",
                "availabilityId": None,
                "productName": prod,
                "skuName": meter,
                "serviceName": "Virtual Machines",
                "serviceId": "DZH313Z7MMC8",
                "serviceFamily": "Compute",
                "unitOfMeasure": "1 Hour",
                "type": kind,
                "isPrimaryMeterRegion": True,
                "armSkuName": size,
            }
            out.update(extra)
            return out

        windows_fee = 0.046 * vcpus
        if spot:
            items.append(item(f"{short} Spot", product, price))
            items.append(item(f"{short} Spot", product + " Windows", price + windows_fee * 0.6))
            items.append(item(f"{short} Low Priority", product, price * 1.15))
        else:
            items.append(item(short, product, price))
            items.append(item(short, product + " Windows", price + windows_fee))
            items.append(item(short, product, price * 8760 * 0.62, "Reservation", reservationTerm="1 Year"))
            items.append(item(short, product, price * 26280 * 0.4, "Reservation", reservationTerm="3 Years"))
            items.append(item(short, product + " Windows", price * 0.8, "DevTestConsumption"))
    return items


class ODataError(Exception):
    pass


def parse_filter(text: str, case_sensitive: bool) -> Callable[[dict[str, Any]], bool]:
    """A predicate for the Retail Prices `$filter` subset: `field eq 'v'`, and, or, parentheses."""
    tokens = re.findall(r"\(|\)|'(?:[^']|'')*'|[^\s()]+", text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ODataError("unexpected end of $filter")
        pos += 1
        return tokens[pos - 1]

    def atom() -> Callable[[dict[str, Any]], bool]:
        tok = take()
        if tok == "(":
            inner = disj()
            if take() != ")":
                raise ODataError("missing `)`")
            return inner
        field = PRICE_FIELDS.get(tok.lower())
        if field is None:
            raise ODataError(f"unknown field `{tok}`")
        op = take().lower()
        if op != "eq":
            raise ODataError(f"unsupported operator `{op}`")
        lit = take()
        if not (lit.startswith("'") and lit.endswith("'")):
            raise ODataError(f"expected a quoted value after `{tok} eq`")
        value = lit[1:-1].replace("''", "'")
        if case_sensitive:
            return lambda it: str(it.get(field)) == value
        return lambda it: str(it.get(field)).lower() == value.lower()

    def conj() -> Callable[[dict[str, Any]], bool]:
        parts = [atom()]
        while (peek() or "").lower() == "and":
            take()
            parts.append(atom())
        return lambda it: all(p(it) for p in parts)

    def disj() -> Callable[[dict[str, Any]], bool]:
        parts = [conj()]
        while (peek() or "").lower() == "or":
            take()
            parts.append(conj())
        return lambda it: any(p(it) for p in parts)

    pred = disj()
    if pos != len(tokens):
        raise ODataError(f"unexpected `{tokens[pos]}`")
    return pred


def retail_prices(arm: Arm, base: str, path: str, query: dict[str, str]) -> tuple[int, Any]:
    flt = query.get("$filter")
    case_sensitive = query.get("api-version", "") >= "2023-01-01-preview"
    items = arm.price_items
    if flt:
        try:
            pred = parse_filter(flt, case_sensitive)
        except ODataError as e:
            # uncertain: the real error body's shape.
            return 400, {
                "Error": {"Code": "BadRequest", "Message": f"Invalid OData parameters supplied: {e}"}
            }
        items = [it for it in items if pred(it)]
    try:
        skip = int(query.get("$skip", "0"))
    except ValueError:
        return 400, {"Error": {"Code": "BadRequest", "Message": "Invalid OData parameters supplied: $skip"}}
    size = arm.config.prices_page_size
    page = items[skip : skip + size]
    nxt = None
    if skip + size < len(items):
        q = dict(query)
        q["$skip"] = str(skip + size)
        nxt = f"{base}{path}?{urlencode(q, quote_via=quote)}"
    return 200, {
        "BillingCurrency": "USD",
        "CustomerEntityId": "Default",
        "CustomerEntityType": "Retail",
        "Items": page,
        "NextPageLink": nxt,
        "Count": len(page),
    }


# ==================================================================== HTTP
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "flotilla-arm-fake/1"
    arm: Arm
    router: Router

    def log_message(self, fmt: str, *args: Any) -> None:  # quiet: the call log is in /_calls
        if os.environ.get("FLOTILLA_ARM_FAKE_VERBOSE"):
            super().log_message(fmt, *args)

    def do_GET(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PATCH(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def do_HEAD(self) -> None:
        self.dispatch()

    def read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = b""
            while True:
                line = self.rfile.readline().strip()
                n = int(line.split(b";")[0], 16)
                if n == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(n)
                self.rfile.readline()
        return b""

    def send(
        self,
        status: int,
        body: Any,
        headers: dict[str, str] | None = None,
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        if body is None:
            data = b""
        elif isinstance(body, (bytes, str)):
            data = body.encode() if isinstance(body, str) else body
        else:
            data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        if data or status not in (204, 304):
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def dispatch(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        body = self.read_body()
        host = self.headers.get("Host") or f"{self.server.server_address[0]}:{self.server.server_address[1]}"
        base = f"http://{host}"
        arm = self.arm
        if path.startswith("/_"):
            return self.control(path, query, body)
        if path.rstrip("/").lower() == "/api/retail/prices":
            if self.command != "GET":
                return self.send(
                    405, {"Error": {"Code": "MethodNotAllowed", "Message": "Only GET is supported."}}
                )
            with arm.lock:
                status, out = retail_prices(arm, base, parts.path, query)
            return self.send(status, out)
        ctx = Ctx(self.command, path, query, body, base, dict(self.headers.items()))
        with arm.lock:
            try:
                reply = self.router.handle(ctx, self.headers.get("Authorization"))
            except ArmError as e:
                reply = Reply(e.status, e.body(), dict(e.headers, **{"x-ms-error-code": e.code}))
            except Exception as e:  # a bug in the fake: say so loudly, never hang the client
                import traceback

                traceback.print_exc()
                # 400, not 500: the clients retry 500 and would hide the bug behind retries.
                reply = Reply(
                    400,
                    {"error": {"code": "FakeInternalError", "message": f"the ARM fake failed: {e!r}"}},
                    {"x-ms-error-code": "FakeInternalError"},
                )
            finally:
                arm.req_polls = None
                arm.req_retry_after = None
            call = {
                "method": self.command,
                "path": path,
                "query": query,
                "status": reply.status,
                "code": (
                    (reply.body.get("error") or {}).get("code")
                    if reply.status >= 400 and isinstance(reply.body, dict)
                    else None
                ),
                "body": None,
            }
            if body.strip():
                try:
                    call["body"] = json.loads(body)
                except ValueError:
                    call["body"] = body.decode("utf-8", "replace")
            parsed = parse_id(path)
            if parsed:
                call["type"] = TYPES.get(parsed[2], ("", parsed[2].split("/")[-1]))[1]
                call["name"] = parsed[3]
            arm.calls.append(call)
        self.send(reply.status, reply.body, reply.headers)

    def control(self, path: str, query: dict[str, str], body: bytes) -> None:
        arm = self.arm
        method = self.command
        if path == "/_health":
            return self.send(200, "ok", content_type="text/plain")
        if path == "/_reset" and method == "POST":
            arm.reset()
            return self.send(200, {})
        if path == "/_config":
            if method == "POST":
                try:
                    values = json.loads(body or b"{}")
                    if not isinstance(values, dict):
                        raise ValueError("the body must be a JSON object")
                    with arm.lock:
                        arm.config.update(values)
                except ValueError as e:
                    return self.send(400, {"error": str(e)})
            return self.send(200, arm.config.as_dict())
        if path == "/_fault" or path.startswith("/_fault/"):
            if method == "POST" and path == "/_fault":
                try:
                    spec = json.loads(body or b"{}")
                    if not isinstance(spec, dict):
                        raise ValueError("the body must be a JSON object")
                    fault = arm.add_fault(spec)
                except ValueError as e:
                    return self.send(400, {"error": str(e)})
                return self.send(200, {"id": fault["id"]})
            if method == "GET" and path == "/_fault":
                with arm.lock:
                    return self.send(200, [dict(f) for f in arm.faults])
            if method == "DELETE":
                fid = path[len("/_fault/") :] if path.startswith("/_fault/") else None
                with arm.lock:
                    if fid is None:
                        arm.faults.clear()
                    else:
                        arm.faults[:] = [f for f in arm.faults if f["id"] != fid]
                return self.send(200, {})
        if path == "/_calls" and method == "GET":
            with arm.lock:
                calls = list(arm.calls)
            out = [
                c
                for c in calls
                if ("method" not in query or c["method"] == query["method"].upper())
                and ("type" not in query or (c.get("type") or "").lower() == query["type"].lower())
                and ("contains" not in query or query["contains"] in c["path"] + json.dumps(c["body"]))
            ]
            return self.send(200, out)
        if path == "/_state" and method == "GET":
            with arm.lock:
                groups = [
                    {
                        "subscription": g["sub"],
                        "name": g["name"],
                        "location": g["location"],
                        "tags": g.get("tags"),
                        "state": g["state"],
                    }
                    for g in arm.groups.values()
                ]
                want = query.get("type", "").lower()
                resources = [
                    view(arm, r, "instanceView")
                    for r in sorted(arm.res.values(), key=lambda r: r["id"].lower())
                    if not want or r["type_key"].split("/")[-1] == want
                ]
            return self.send(200, {"resourceGroups": groups, "resources": resources})
        return self.send(404, {"error": f"{method} {path} is not a control endpoint"})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    parser.add_argument(
        "--catalog", default=str(DEFAULT_CATALOG), help="offers.csv with the Azure sizes and regions"
    )
    parser.add_argument("--token", help="accept only this bearer token (default: any non-empty one)")
    parser.add_argument("--polls", type=int, default=2, help="reads an operation stays InProgress")
    args = parser.parse_args(argv)

    arm = Arm(Catalog(Path(args.catalog)), args.token)
    arm.config.polls = args.polls
    handler = type("BoundHandler", (Handler,), {"arm": arm, "router": Router(arm)})
    server = ThreadingHTTPServer((args.host, args.port), handler)
    server.daemon_threads = True
    port = server.server_address[1]

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"flotilla ARM fake listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
