"""Self-test of the ARM and Retail Prices fake (tests/arm/server.py).

The Azure provider's end-to-end tests trust the fake to behave like Azure Resource Manager; this
file checks every rule and fault the fake claims (../../../shared/api/arm.md), over real HTTP,
against a server started here on a free port. Plain standard library:

    python3 tests/arm/test_server.py            # starts its own server
    FLOTILLA_AZURE_ENDPOINT=http://127.0.0.1:PORT python3 tests/arm/test_server.py
                                                 # or uses a running one (it resets it)
"""

from __future__ import annotations

import csv
import http.client
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

HERE = Path(__file__).resolve().parent
SERVER = HERE / "server.py"
CATALOG = HERE.parents[1] / "fixtures" / "catalog" / "offers.csv"
SUB = "00000000-0000-0000-0000-0000000000aa"
COMPUTE = "2024-07-01"
DISKS = "2024-03-02"
NETWORK = "2024-03-01"
RESOURCES = "2021-04-01"
GPU = "Standard_NC24ads_A100_v4"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFlotillaTestKeyOnlyForTheFakeXXXXXXXXXXXXXX test"


class Server:
    """A running fake: one started here, or the one FLOTILLA_AZURE_ENDPOINT names."""

    def __init__(self, *extra: str) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        endpoint = os.environ.get("FLOTILLA_AZURE_ENDPOINT") if not extra else None
        if endpoint:
            self.base = endpoint.rstrip("/")
        else:
            self.tmp = tempfile.TemporaryDirectory()
            port_file = os.path.join(self.tmp.name, "port")
            self.proc = subprocess.Popen(
                [sys.executable, str(SERVER), "--port", "0", "--port-file", port_file, *extra],
                stderr=subprocess.PIPE,
            )
            for _ in range(200):
                if os.path.exists(port_file):
                    break
                if self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the fake exited: {self.proc.stderr.read().decode() if self.proc.stderr else ''}"
                    )
                time.sleep(0.05)
            else:
                raise RuntimeError("the fake did not write its port file within 10 s")
            with open(port_file, encoding="utf-8") as f:
                self.base = f"http://127.0.0.1:{f.read().strip()}"
        parts = urlsplit(self.base)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
            if self.proc.stderr:
                self.proc.stderr.close()
            self.tmp.cleanup()

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        token: str | None = "test-token",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], Any]:
        if path.startswith("http"):
            parts = urlsplit(path)
            path = parts.path + ("?" + parts.query if parts.query else "")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            h["content-type"] = "application/json"
        conn.request(method, path, body=data, headers=h)
        resp = conn.getresponse()
        raw = resp.read()
        conn.close()
        out: Any = None
        if raw:
            try:
                out = json.loads(raw)
            except ValueError:
                out = raw.decode()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out


S: Server


def setUpModule() -> None:
    global S
    S = Server()


def tearDownModule() -> None:
    S.stop()


def rg_path(rg: str) -> str:
    return f"/subscriptions/{SUB}/resourceGroups/{rg}"


def res_path(rg: str, kind: str, name: str = "", api: str | None = None) -> str:
    api = api or (
        DISKS if kind.endswith("/disks") else COMPUTE if kind.startswith("Microsoft.Compute") else NETWORK
    )
    suffix = f"/{name}" if name else ""
    return f"{rg_path(rg)}/providers/{kind}{suffix}?api-version={api}"


VMS = "Microsoft.Compute/virtualMachines"
DISK = "Microsoft.Compute/disks"
PPG = "Microsoft.Compute/proximityPlacementGroups"
NIC = "Microsoft.Network/networkInterfaces"
PIP = "Microsoft.Network/publicIPAddresses"
VNET = "Microsoft.Network/virtualNetworks"
LB = "Microsoft.Network/loadBalancers"
NSG = "Microsoft.Network/networkSecurityGroups"


class ArmCase(unittest.TestCase):
    """Each test gets a fresh fake state and its own resource group."""

    def setUp(self) -> None:
        status, _, _ = S.call("POST", "/_reset", token=None)
        self.assertEqual(status, 200)
        S.call(
            "POST",
            "/_config",
            {"polls": 2, "retry_after": 0, "page_size": 5, "nic_reservation_s": 0},
            token=None,
        )
        self.rg = "rg-" + uuid.uuid4().hex[:8]
        status, _, _ = S.call("PUT", f"{rg_path(self.rg)}?api-version={RESOURCES}", {"location": "eastus"})
        self.assertEqual(status, 201)

    def tearDown(self) -> None:
        calls = S.call("GET", "/_calls", token=None)[2]
        broken = [c for c in calls if c.get("code") == "FakeInternalError"]
        self.assertEqual(broken, [], "the fake itself failed")

    # ---------------------------------------------------------------- helpers
    def ok(
        self, method: str, path: str, body: Any = None, status: int | tuple[int, ...] = (200, 201, 202, 204)
    ) -> tuple[dict[str, str], Any]:
        got, headers, out = S.call(method, path, body)
        want = status if isinstance(status, tuple) else (status,)
        self.assertIn(got, want, f"{method} {path} -> {got} {out}")
        return headers, out

    def err(self, method: str, path: str, body: Any, status: int, code: str) -> dict[str, Any]:
        got, headers, out = S.call(method, path, body)
        self.assertEqual(got, status, f"{method} {path} -> {got} {out}")
        self.assertEqual(out["error"]["code"], code, out)
        self.assertEqual(headers.get("x-ms-error-code"), code)
        return out["error"]

    def wait(self, headers: dict[str, str]) -> dict[str, Any]:
        """Polls Azure-AsyncOperation until terminal; returns the last status body."""
        url = headers["azure-asyncoperation"]
        self.assertTrue(url.startswith(S.base + "/"), url)
        for _ in range(20):
            status, _, body = S.call("GET", url)
            self.assertEqual(status, 200, body)
            if body["status"] != "InProgress":
                return body
        self.fail("operation never finished")

    def put_done(self, path: str, body: Any) -> dict[str, Any]:
        headers, _ = self.ok("PUT", path, body, (200, 201, 202))
        if "azure-asyncoperation" in headers:
            self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, out = self.ok("GET", path, status=200)
        return out

    def delete_done(self, path: str) -> None:
        headers, _ = self.ok("DELETE", path, status=(200, 202, 204))
        if "azure-asyncoperation" in headers:
            self.assertEqual(self.wait(headers)["status"], "Succeeded")
        self.assertEqual(S.call("GET", path)[0], 404)

    def rid(self, kind: str, name: str) -> str:
        return f"{rg_path(self.rg)}/providers/{kind}/{name}"

    def network(self, region: str = "eastus", vnet: str = "vnet") -> str:
        self.put_done(
            res_path(self.rg, VNET, vnet),
            {
                "location": region,
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [{"name": "default", "properties": {"addressPrefix": "10.0.0.0/24"}}],
                },
            },
        )
        return f"{self.rid(VNET, vnet)}/subnets/default"

    def nic(self, name: str, subnet: str, region: str = "eastus", **extra: Any) -> str:
        ipc: dict[str, Any] = {"subnet": {"id": subnet}, "privateIPAllocationMethod": "Dynamic"}
        ipc.update(extra)
        self.put_done(
            res_path(self.rg, NIC, name),
            {
                "location": region,
                "properties": {"ipConfigurations": [{"name": "ipconfig1", "properties": ipc}]},
            },
        )
        return self.rid(NIC, name)

    def disk(self, name: str, size: int = 64, region: str = "eastus", zones: list[str] | None = None) -> str:
        body: dict[str, Any] = {
            "location": region,
            "sku": {"name": "Premium_LRS"},
            "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": size},
        }
        if zones:
            body["zones"] = zones
        self.put_done(res_path(self.rg, DISK, name), body)
        return self.rid(DISK, name)

    def vm_body(
        self, nic: str, size: str = GPU, region: str = "eastus", disks: list[str] | None = None, **props: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "location": region,
            "tags": {"flotilla-lineage": "lin-1", "flotilla-address": "fleet.train[0]"},
            "properties": {
                "hardwareProfile": {"vmSize": size},
                "storageProfile": {
                    "imageReference": {
                        "publisher": "Canonical",
                        "offer": "0001-com-ubuntu-server-jammy",
                        "sku": "22_04-lts-gen2",
                        "version": "latest",
                    },
                    "osDisk": {
                        "createOption": "FromImage",
                        "caching": "ReadWrite",
                        "managedDisk": {"storageAccountType": "Premium_LRS"},
                    },
                    "dataDisks": [
                        {"lun": i, "createOption": "Attach", "managedDisk": {"id": d}}
                        for i, d in enumerate(disks or [])
                    ],
                },
                "osProfile": {
                    "adminUsername": "azureuser",
                    "linuxConfiguration": {
                        "disablePasswordAuthentication": True,
                        "ssh": {
                            "publicKeys": [
                                {"path": "/home/azureuser/.ssh/authorized_keys", "keyData": SSH_KEY}
                            ]
                        },
                    },
                },
                "networkProfile": {"networkInterfaces": [{"id": nic, "properties": {"primary": True}}]},
            },
        }
        body["properties"].update(props)
        return body

    def vm(self, name: str, nic: str, **kw: Any) -> dict[str, Any]:
        return self.put_done(res_path(self.rg, VMS, name), self.vm_body(nic, **kw))

    def fault(self, **spec: Any) -> str:
        status, _, out = S.call("POST", "/_fault", spec, token=None)
        self.assertEqual(status, 200, out)
        return out["id"]


class AuthAndRouting(ArmCase):
    def test_control_endpoints(self) -> None:
        status, _, body = S.call("GET", "/_health", token=None)
        self.assertEqual((status, body), (200, "ok"))
        self.assertEqual(S.call("GET", "/_nope", token=None)[0], 404)
        config = S.call("GET", "/_config", token=None)[2]
        self.assertEqual(config["polls"], 2)
        self.put_done(res_path(self.rg, PIP, "p"), {"location": "eastus"})
        self.assertEqual(S.call("POST", "/_reset", token=None)[0], 200)
        state = S.call("GET", "/_state", token=None)[2]
        self.assertEqual(state, {"resourceGroups": [], "resources": []})
        self.assertEqual(S.call("GET", "/_calls", token=None)[2], [])

    def test_bearer_token_is_required(self) -> None:
        status, headers, out = S.call("GET", f"{rg_path(self.rg)}?api-version={RESOURCES}", token=None)
        self.assertEqual(status, 401)
        self.assertEqual(out["error"]["code"], "AuthenticationFailed")
        self.assertIn("www-authenticate", headers)
        status, _, out = S.call(
            "GET",
            f"{rg_path(self.rg)}?api-version={RESOURCES}",
            token=None,
            headers={"Authorization": "Basic abc"},
        )
        self.assertEqual((status, out["error"]["code"]), (401, "AuthenticationFailed"))

    def test_a_fixed_token_rejects_others(self) -> None:
        other = Server("--token", "the-token")
        try:
            path = f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES}"
            status, _, out = other.call("GET", path, token="wrong")
            self.assertEqual((status, out["error"]["code"]), (401, "InvalidAuthenticationToken"))
            self.assertEqual(other.call("GET", path, token="the-token")[0], 200)
        finally:
            other.stop()

    def test_api_versions_are_the_clients(self) -> None:
        self.err("GET", f"{rg_path(self.rg)}/providers/{VMS}/x", None, 400, "MissingApiVersionParameter")
        self.err("GET", res_path(self.rg, VMS, "x", api="2023-03-01"), None, 400, "NoRegisteredProviderFound")
        self.err("GET", res_path(self.rg, DISK, "x", api=COMPUTE), None, 400, "NoRegisteredProviderFound")
        self.err("GET", res_path(self.rg, NIC, "x", api=COMPUTE), None, 400, "NoRegisteredProviderFound")
        for kind in (VMS, DISK, PPG, NIC, PIP, VNET, LB):
            self.err("GET", res_path(self.rg, kind, "missing"), None, 404, "ResourceNotFound")

    def test_bad_subscription_and_missing_group(self) -> None:
        self.err(
            "GET",
            f"/subscriptions/not-a-guid/resourceGroups/x?api-version={RESOURCES}",
            None,
            400,
            "InvalidSubscriptionId",
        )
        self.err("GET", res_path("nope", VMS, "x"), None, 404, "ResourceGroupNotFound")
        self.err("PUT", res_path("nope", PIP, "x"), {"location": "eastus"}, 404, "ResourceGroupNotFound")

    def test_unknown_location_and_missing_location(self) -> None:
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {"location": "moon"},
            400,
            "LocationNotAvailableForResourceType",
        )
        self.err("PUT", res_path(self.rg, PIP, "p"), {"properties": {}}, 400, "LocationRequired")
        self.err(
            "PUT", res_path(self.rg, PIP, "bad!name"), {"location": "eastus"}, 400, "InvalidResourceName"
        )

    def test_tag_limits(self) -> None:
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {"location": "eastus", "tags": {"a/b": "x"}},
            400,
            "InvalidTagNameCharacters",
        )
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {"location": "eastus", "tags": {"k": "v" * 257}},
            400,
            "InvalidTagValueLength",
        )
        many = {f"k{i}": "v" for i in range(51)}
        self.err(
            "PUT", res_path(self.rg, PIP, "p"), {"location": "eastus", "tags": many}, 400, "InvalidTagsCount"
        )
        self.err(
            "PUT",
            f"{rg_path(self.rg)}?api-version={RESOURCES}",
            {"location": "eastus", "tags": {"a?": "x"}},
            400,
            "InvalidTagNameCharacters",
        )
        self.put_done(
            res_path(self.rg, PIP, "p"),
            {"location": "eastus", "tags": {"flotilla-address": "fleet.train[0]"}},
        )

    def test_invalid_json(self) -> None:
        status, _, out = S.call(
            "PUT", res_path(self.rg, PIP, "p"), None, headers={"content-type": "application/json"}
        )
        self.assertEqual((status, out["error"]["code"]), (400, "InvalidRequestContent"))


class ResourceGroups(ArmCase):
    def test_put_get_head_and_idempotent_put(self) -> None:
        path = f"{rg_path(self.rg)}?api-version={RESOURCES}"
        _, out = self.ok("PUT", path, {"location": "East US", "tags": {"a": "b"}}, 200)
        self.assertEqual(out["location"], "eastus")
        self.assertEqual(out["properties"]["provisioningState"], "Succeeded")
        self.assertEqual(S.call("HEAD", path)[0], 204)
        self.assertEqual(S.call("HEAD", f"{rg_path('absent')}?api-version={RESOURCES}")[0], 404)
        self.err("GET", f"{rg_path('absent')}?api-version={RESOURCES}", None, 404, "ResourceGroupNotFound")
        self.err("PUT", path, {"location": "westus"}, 409, "InvalidResourceGroupLocation")
        _, listing = self.ok(
            "GET", f"/subscriptions/{SUB}/resourcegroups?api-version={RESOURCES}", status=200
        )
        self.assertEqual([g["name"] for g in listing["value"]], [self.rg])

    def test_delete_removes_everything_after_polling_location(self) -> None:
        self.network()
        headers, _ = self.ok("DELETE", f"{rg_path(self.rg)}?api-version={RESOURCES}", status=202)
        self.assertIn("location", headers)
        codes = []
        for _ in range(10):
            status, _, _ = S.call("GET", headers["location"])
            codes.append(status)
            if status != 202:
                break
        self.assertEqual(codes, [202, 202, 204])
        self.err("GET", res_path(self.rg, VNET, "vnet"), None, 404, "ResourceGroupNotFound")
        _, state = self.ok("GET", "/_state", status=200)
        self.assertEqual(state["resources"], [])


class LongRunningOperations(ArmCase):
    def test_put_answers_201_with_async_operation_then_succeeds_after_polls(self) -> None:
        headers, out = self.ok(
            "PUT",
            res_path(self.rg, PIP, "pip"),
            {
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
            201,
        )
        self.assertEqual(out["properties"]["provisioningState"], "Updating")
        self.assertNotIn("ipAddress", out["properties"])
        self.assertEqual(headers["retry-after"], "0")
        url = headers["azure-asyncoperation"]
        self.assertTrue(
            url.startswith(
                S.base + f"/subscriptions/{SUB}/providers/Microsoft.Network/locations/eastus/operations/"
            ),
            url,
        )
        self.assertTrue(url.endswith(f"?api-version={NETWORK}"))
        seen = []
        for _ in range(5):
            body = S.call("GET", url)[2]
            seen.append(body["status"])
            if body["status"] != "InProgress":
                break
        self.assertEqual(seen, ["InProgress", "InProgress", "Succeeded"])
        self.assertIn("endTime", body)
        self.assertEqual(S.call("GET", url)[1]["retry-after"], "0")
        self.assertNotIn("error", body)
        _, got = self.ok("GET", res_path(self.rg, PIP, "pip"), status=200)
        self.assertEqual(got["properties"]["provisioningState"], "Succeeded")
        self.assertRegex(got["properties"]["ipAddress"], r"^\d+\.\d+\.\d+\.\d+$")
        # A repeated PUT of an existing resource is 200, never 409.
        status, headers, out = S.call(
            "PUT",
            res_path(self.rg, PIP, "pip"),
            {
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        )
        self.assertEqual(status, 200)
        self.assertIn("azure-asyncoperation", headers)

    def test_polls_is_configurable_and_resource_reads_count(self) -> None:
        S.call("POST", "/_config", {"polls": 0}, token=None)
        headers, _ = self.ok("PUT", res_path(self.rg, PIP, "pip"), {"location": "eastus"}, 201)
        self.assertEqual(
            S.call("GET", res_path(self.rg, PIP, "pip"))[2]["properties"]["provisioningState"], "Succeeded"
        )
        self.assertEqual(S.call("GET", headers["azure-asyncoperation"])[2]["status"], "Succeeded")
        status, _, out = S.call("POST", "/_config", {"polls": -1}, token=None)
        self.assertEqual(status, 400)
        status, _, out = S.call("POST", "/_config", {"bogus": 1}, token=None)
        self.assertEqual(status, 400)

    def test_delete_is_202_with_location_and_missing_delete_is_204(self) -> None:
        self.put_done(res_path(self.rg, PIP, "pip"), {"location": "eastus"})
        headers, _ = self.ok("DELETE", res_path(self.rg, PIP, "pip"), status=202)
        self.assertIn("azure-asyncoperation", headers)
        self.assertEqual(
            S.call("GET", res_path(self.rg, PIP, "pip"))[2]["properties"]["provisioningState"], "Deleting"
        )
        codes = [S.call("GET", headers["location"])[0] for _ in range(3)]
        self.assertEqual(codes[-1], 204)
        self.assertEqual(S.call("GET", res_path(self.rg, PIP, "pip"))[0], 404)
        self.assertEqual(S.call("DELETE", res_path(self.rg, PIP, "pip"))[0], 204)


class Networking(ArmCase):
    def test_vnet_subnet_rules(self) -> None:
        subnet = self.network()
        _, vnet = self.ok("GET", res_path(self.rg, VNET, "vnet"), status=200)
        self.assertEqual([s["id"] for s in vnet["properties"]["subnets"]], [subnet])
        base = {"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.1.0.0/16"]}}}
        outside = json.loads(json.dumps(base))
        outside["properties"]["subnets"] = [{"name": "s", "properties": {"addressPrefix": "10.9.0.0/24"}}]
        self.err("PUT", res_path(self.rg, VNET, "v2"), outside, 400, "NetcfgSubnetRangeOutsideVnet")
        overlap = json.loads(json.dumps(base))
        overlap["properties"]["subnets"] = [
            {"name": "a", "properties": {"addressPrefix": "10.1.0.0/24"}},
            {"name": "b", "properties": {"addressPrefix": "10.1.0.128/25"}},
        ]
        self.err("PUT", res_path(self.rg, VNET, "v2"), overlap, 400, "NetcfgSubnetRangesOverlap")
        bad = json.loads(json.dumps(base))
        bad["properties"]["addressSpace"]["addressPrefixes"] = ["10.1.0.1/16"]
        self.err("PUT", res_path(self.rg, VNET, "v2"), bad, 400, "InvalidAddressPrefixFormat")
        # Subnet child resource.
        sub_path = f"{rg_path(self.rg)}/providers/{VNET}/vnet/subnets/second?api-version={NETWORK}"
        self.err(
            "PUT",
            sub_path,
            {"properties": {"addressPrefix": "10.0.0.128/25"}},
            400,
            "NetcfgSubnetRangesOverlap",
        )
        headers, out = self.ok("PUT", sub_path, {"properties": {"addressPrefix": "10.0.1.0/24"}}, 201)
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, vnet = self.ok("GET", res_path(self.rg, VNET, "vnet"), status=200)
        self.assertEqual([s["name"] for s in vnet["properties"]["subnets"]], ["default", "second"])
        _, listing = self.ok(
            "GET", f"{rg_path(self.rg)}/providers/{VNET}/vnet/subnets?api-version={NETWORK}", status=200
        )
        self.assertEqual([s["name"] for s in listing["value"]], ["default", "second"])
        self.delete_done(sub_path)

    def test_subnet_in_use_cannot_be_deleted_or_dropped(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        _, got = self.ok("GET", subnet + f"?api-version={NETWORK}", status=200)
        self.assertEqual(got["properties"]["ipConfigurations"], [{"id": f"{nic}/ipConfigurations/ipconfig1"}])
        self.err("DELETE", subnet + f"?api-version={NETWORK}", None, 400, "InUseSubnetCannotBeDeleted")
        self.err("DELETE", res_path(self.rg, VNET, "vnet"), None, 400, "InUseSubnetCannotBeDeleted")
        # A VNet PUT without its subnets would delete them: refused while one is in use.
        self.err(
            "PUT",
            res_path(self.rg, VNET, "vnet"),
            {"location": "eastus", "properties": {"addressSpace": {"addressPrefixes": ["10.0.0.0/16"]}}},
            400,
            "InUseSubnetCannotBeDeleted",
        )
        self.delete_done(res_path(self.rg, NIC, "nic1"))
        self.delete_done(subnet + f"?api-version={NETWORK}")
        self.delete_done(res_path(self.rg, VNET, "vnet"))

    def test_nic_references_and_addresses(self) -> None:
        subnet = self.network()
        self.err(
            "PUT",
            res_path(self.rg, NIC, "n"),
            {
                "location": "eastus",
                "properties": {
                    "ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": subnet + "x"}}}]
                },
            },
            400,
            "InvalidResourceReference",
        )
        # The subnet's network is in eastus: a NIC elsewhere cannot use it.
        self.err(
            "PUT",
            res_path(self.rg, NIC, "n"),
            {
                "location": "westus",
                "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": subnet}}}]},
            },
            400,
            "InvalidResourceReference",
        )
        self.err(
            "PUT",
            res_path(self.rg, NIC, "n"),
            {"location": "eastus", "properties": {"ipConfigurations": []}},
            400,
            "InvalidRequestFormat",
        )
        self.nic("n1", subnet)
        self.nic("n2", subnet)
        ips = [
            S.call("GET", res_path(self.rg, NIC, n))[2]["properties"]["ipConfigurations"][0]["properties"][
                "privateIPAddress"
            ]
            for n in ("n1", "n2")
        ]
        self.assertEqual(ips, ["10.0.0.4", "10.0.0.5"])

    def test_public_ip_rules(self) -> None:
        subnet = self.network()
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Dynamic"},
            },
            400,
            "StandardSkuPublicIPAddressesMustBeStatic",
        )
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {"location": "eastus", "sku": {"name": "Standard"}},
            400,
            "StandardSkuPublicIPAddressesMustBeStatic",
        )
        self.put_done(
            res_path(self.rg, PIP, "p"),
            {
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        )
        nic = self.nic("n1", subnet, publicIPAddress={"id": self.rid(PIP, "p")})
        _, pip = self.ok("GET", res_path(self.rg, PIP, "p"), status=200)
        self.assertEqual(pip["properties"]["ipConfiguration"]["id"], f"{nic}/ipConfigurations/ipconfig1")
        self.err("DELETE", res_path(self.rg, PIP, "p"), None, 400, "PublicIPAddressCannotBeDeleted")
        self.err(
            "PUT",
            res_path(self.rg, NIC, "n2"),
            {
                "location": "eastus",
                "properties": {
                    "ipConfigurations": [
                        {
                            "name": "c",
                            "properties": {
                                "subnet": {"id": subnet},
                                "publicIPAddress": {"id": self.rid(PIP, "p")},
                            },
                        }
                    ]
                },
            },
            400,
            "PublicIPAddressInUse",
        )
        self.err(
            "PUT",
            res_path(self.rg, PIP, "p"),
            {"location": "eastus", "sku": {"name": "Basic"}},
            409,
            "PropertyChangeNotAllowed",
        )

    def test_load_balancer_with_pool_of_nics(self) -> None:
        subnet = self.network()
        self.put_done(
            res_path(self.rg, PIP, "lbip"),
            {
                "location": "eastus",
                "sku": {"name": "Standard"},
                "properties": {"publicIPAllocationMethod": "Static"},
            },
        )
        self.put_done(res_path(self.rg, PIP, "basic"), {"location": "eastus", "sku": {"name": "Basic"}})
        lb_id = self.rid(LB, "lb")
        body = {
            "location": "eastus",
            "sku": {"name": "Standard"},
            "tags": {"flotilla-lineage": "lin-1"},
            "properties": {
                "frontendIPConfigurations": [
                    {"name": "fe", "properties": {"publicIPAddress": {"id": self.rid(PIP, "lbip")}}}
                ],
                "backendAddressPools": [{"name": "be"}],
                "probes": [{"name": "p", "properties": {"protocol": "Tcp", "port": 22}}],
                "loadBalancingRules": [
                    {
                        "name": "r",
                        "properties": {
                            "frontendIPConfiguration": {"id": f"{lb_id}/frontendIPConfigurations/fe"},
                            "backendAddressPool": {"id": f"{lb_id}/backendAddressPools/be"},
                            "probe": {"id": f"{lb_id}/probes/p"},
                            "protocol": "Tcp",
                            "frontendPort": 22,
                            "backendPort": 22,
                        },
                    }
                ],
            },
        }
        wrong_sku = json.loads(json.dumps(body))
        wrong_sku["properties"]["frontendIPConfigurations"][0]["properties"]["publicIPAddress"]["id"] = (
            self.rid(PIP, "basic")
        )
        self.err("PUT", res_path(self.rg, LB, "lb"), wrong_sku, 400, "PublicIPAndLBSkuDoNotMatch")
        dangling = json.loads(json.dumps(body))
        dangling["properties"]["loadBalancingRules"][0]["properties"]["probe"]["id"] = f"{lb_id}/probes/nope"
        self.err("PUT", res_path(self.rg, LB, "lb"), dangling, 400, "InvalidResourceReference")
        lb = self.put_done(res_path(self.rg, LB, "lb"), body)
        pool_id = lb["properties"]["backendAddressPools"][0]["id"]
        self.assertEqual(pool_id, f"{lb_id}/backendAddressPools/be")
        self.err("DELETE", res_path(self.rg, PIP, "lbip"), None, 400, "PublicIPAddressCannotBeDeleted")
        # Pool membership lives on the NICs: updating them updates the pool in place.
        nic = self.nic("n1", subnet, loadBalancerBackendAddressPools=[{"id": pool_id}])
        self.err(
            "PUT",
            res_path(self.rg, NIC, "n2"),
            {
                "location": "eastus",
                "properties": {
                    "ipConfigurations": [
                        {
                            "name": "c",
                            "properties": {
                                "subnet": {"id": subnet},
                                "loadBalancerBackendAddressPools": [
                                    {"id": f"{lb_id}/backendAddressPools/zzz"}
                                ],
                            },
                        }
                    ]
                },
            },
            400,
            "InvalidResourceReference",
        )
        _, lb = self.ok("GET", res_path(self.rg, LB, "lb"), status=200)
        self.assertEqual(
            lb["properties"]["backendAddressPools"][0]["properties"]["backendIPConfigurations"],
            [{"id": f"{nic}/ipConfigurations/ipconfig1"}],
        )
        pool_path = f"{rg_path(self.rg)}/providers/{LB}/lb/backendAddressPools/be?api-version={NETWORK}"
        _, pool = self.ok("GET", pool_path, status=200)
        self.assertEqual(len(pool["properties"]["backendIPConfigurations"]), 1)
        self.err("DELETE", pool_path, None, 400, "InUseBackendAddressPoolCannotBeDeleted")
        no_pool = json.loads(json.dumps(body))
        no_pool["properties"]["backendAddressPools"] = []
        no_pool["properties"]["loadBalancingRules"] = []
        self.err("PUT", res_path(self.rg, LB, "lb"), no_pool, 400, "InUseBackendAddressPoolCannotBeDeleted")
        # Leaving the pool.
        self.nic("n1", subnet)
        _, pool = self.ok("GET", pool_path, status=200)
        self.assertNotIn("backendIPConfigurations", pool["properties"])
        headers, pool = self.ok(
            "PUT",
            f"{rg_path(self.rg)}/providers/{LB}/lb/backendAddressPools/be2?api-version={NETWORK}",
            {"properties": {}},
            201,
        )
        self.assertEqual(pool["id"], f"{lb_id}/backendAddressPools/be2")
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        self.delete_done(res_path(self.rg, LB, "lb"))
        self.delete_done(res_path(self.rg, PIP, "lbip"))


def allow_rule(name: str, priority: int, port: int = 80, direction: str = "Inbound") -> dict[str, Any]:
    return {
        "name": name,
        "properties": {
            "protocol": "Tcp",
            "sourceAddressPrefix": "Internet",
            "sourcePortRange": "*",
            "destinationAddressPrefix": "VirtualNetwork",
            "destinationPortRange": str(port),
            "access": "Allow",
            "priority": priority,
            "direction": direction,
        },
    }


class NetworkSecurityGroups(ArmCase):
    def nsg(self, name: str = "nsg", rules: list[dict[str, Any]] | None = None, region: str = "eastus") -> str:
        self.put_done(
            res_path(self.rg, NSG, name),
            {"location": region, "tags": {"k": "v"}, "properties": {"securityRules": rules or []}},
        )
        return self.rid(NSG, name)

    def test_create_is_a_long_running_put_with_rules_and_defaults(self) -> None:
        headers, body = self.ok(
            "PUT",
            res_path(self.rg, NSG, "nsg"),
            {"location": "eastus", "tags": {"k": "v"}, "properties": {"securityRules": [allow_rule("web", 1000)]}},
            201,
        )
        self.assertIn("azure-asyncoperation", headers)
        self.assertEqual(body["properties"]["provisioningState"], "Updating")
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, got = self.ok("GET", res_path(self.rg, NSG, "nsg"), status=200)
        self.assertEqual(got["type"], "Microsoft.Network/networkSecurityGroups")
        self.assertEqual(got["tags"], {"k": "v"})
        self.assertEqual(got["properties"]["provisioningState"], "Succeeded")
        [rule] = got["properties"]["securityRules"]
        self.assertEqual(rule["id"], f"{self.rid(NSG, 'nsg')}/securityRules/web")
        self.assertEqual(rule["properties"]["priority"], 1000)
        defaults = {r["name"]: r["properties"]["priority"] for r in got["properties"]["defaultSecurityRules"]}
        self.assertEqual(defaults["DenyAllInBound"], 65500)
        self.assertEqual(len(defaults), 6)
        # The list of a group holds it.
        _, listed = self.ok("GET", res_path(self.rg, NSG), status=200)
        self.assertEqual([x["name"] for x in listed["value"]], ["nsg"])
        # A GET-then-PUT round trip (with what ARM computed) is accepted and changes nothing.
        self.put_done(res_path(self.rg, NSG, "nsg"), got)
        _, again = self.ok("GET", res_path(self.rg, NSG, "nsg"), status=200)
        self.assertEqual(len(again["properties"]["securityRules"]), 1)

    def test_security_rule_children_put_get_list_delete(self) -> None:
        nsg = self.nsg()
        rule_path = f"{nsg}/securityRules/web?api-version={NETWORK}"
        headers, body = self.ok("PUT", rule_path, {"properties": allow_rule("x", 1000, 8080)["properties"]}, 201)
        self.assertEqual(body["name"], "web")
        self.assertEqual(body["id"], f"{nsg}/securityRules/web")
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, got = self.ok("GET", rule_path, status=200)
        self.assertEqual(got["properties"]["destinationPortRange"], "8080")
        self.assertEqual(got["properties"]["provisioningState"], "Succeeded")
        # An update of the same rule (same priority) is no conflict with itself.
        _, upd = self.ok("PUT", rule_path, {"properties": allow_rule("x", 1000, 9090)["properties"]}, 200)
        self.assertEqual(upd["properties"]["destinationPortRange"], "9090")
        _, listed = self.ok("GET", f"{nsg}/securityRules?api-version={NETWORK}", status=200)
        self.assertEqual([r["name"] for r in listed["value"]], ["web"])
        _, whole = self.ok("GET", res_path(self.rg, NSG, "nsg"), status=200)
        self.assertEqual(whole["properties"]["securityRules"][0]["name"], "web")
        self.delete_done(rule_path)
        self.assertEqual(S.call("DELETE", rule_path)[0], 204)
        self.err("GET", rule_path, None, 404, "ResourceNotFound")
        # A rule of an NSG that does not exist.
        self.err(
            "PUT",
            f"{self.rid(NSG, 'nope')}/securityRules/web?api-version={NETWORK}",
            {"properties": allow_rule("x", 1000)["properties"]},
            404,
            "ResourceNotFound",
        )

    def test_same_priority_and_direction_conflict(self) -> None:
        nsg = self.nsg(rules=[allow_rule("a", 1000)])
        # Through the child resource…
        self.err(
            "PUT",
            f"{nsg}/securityRules/b?api-version={NETWORK}",
            {"properties": allow_rule("b", 1000, 443)["properties"]},
            400,
            "SecurityRuleConflict",
        )
        # …and in one NSG body.
        self.err(
            "PUT",
            res_path(self.rg, NSG, "nsg2"),
            {"location": "eastus", "properties": {"securityRules": [allow_rule("a", 1000), allow_rule("b", 1000, 443)]}},
            400,
            "SecurityRuleConflict",
        )
        self.assertEqual(S.call("GET", res_path(self.rg, NSG, "nsg2"))[0], 404)
        # The same priority in the other direction is fine.
        self.ok(
            "PUT",
            f"{nsg}/securityRules/out?api-version={NETWORK}",
            {"properties": allow_rule("out", 1000, 443, "Outbound")["properties"]},
            201,
        )
        _, got = self.ok("GET", res_path(self.rg, NSG, "nsg"), status=200)
        self.assertEqual(sorted(r["name"] for r in got["properties"]["securityRules"]), ["a", "out"])

    def test_priorities_outside_100_to_4096_and_bad_values(self) -> None:
        nsg = self.nsg()
        for prio in (99, 4097, 0, "1000"):
            self.err(
                "PUT",
                f"{nsg}/securityRules/r?api-version={NETWORK}",
                {"properties": allow_rule("r", prio)["properties"]},  # type: ignore[arg-type]
                400,
                "SecurityRuleInvalidPriority",
            )
        for prio in (100, 4096):
            self.ok(
                "PUT",
                f"{nsg}/securityRules/r{prio}?api-version={NETWORK}",
                {"properties": allow_rule("r", prio)["properties"]},
                201,
            )
        bad = allow_rule("r", 200)
        bad["properties"]["direction"] = "Sideways"
        self.err("PUT", f"{nsg}/securityRules/r?api-version={NETWORK}", bad, 400, "InvalidParameter")
        bad = allow_rule("r", 200)
        bad["properties"]["protocol"] = "Sctp"
        self.err("PUT", f"{nsg}/securityRules/r?api-version={NETWORK}", bad, 400, "InvalidParameter")

    def test_subnet_and_nic_must_reference_an_existing_nsg(self) -> None:
        missing = self.rid(NSG, "missing")
        body = {
            "location": "eastus",
            "properties": {
                "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                "subnets": [
                    {
                        "name": "default",
                        "properties": {"addressPrefix": "10.0.0.0/24", "networkSecurityGroup": {"id": missing}},
                    }
                ],
            },
        }
        self.err("PUT", res_path(self.rg, VNET, "vnet"), body, 400, "InvalidResourceReference")
        self.assertEqual(S.call("GET", res_path(self.rg, VNET, "vnet"))[0], 404)
        # An NSG in another region is no better.
        west = self.nsg("west", region="westus2")
        body["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"] = west
        self.err("PUT", res_path(self.rg, VNET, "vnet"), body, 400, "InvalidResourceReference")
        nsg = self.nsg()
        body["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"] = nsg
        vnet = self.put_done(res_path(self.rg, VNET, "vnet"), body)
        self.assertEqual(vnet["properties"]["subnets"][0]["properties"]["networkSecurityGroup"], {"id": nsg})
        # The child subnet PUT checks it too.
        self.err(
            "PUT",
            f"{self.rid(VNET, 'vnet')}/subnets/other?api-version={NETWORK}",
            {"properties": {"addressPrefix": "10.0.1.0/24", "networkSecurityGroup": {"id": missing}}},
            400,
            "InvalidResourceReference",
        )
        subnet = f"{self.rid(VNET, 'vnet')}/subnets/default"
        got, _, out = S.call(
            "PUT",
            res_path(self.rg, NIC, "nic1"),
            {
                "location": "eastus",
                "properties": {
                    "networkSecurityGroup": {"id": missing},
                    "ipConfigurations": [{"name": "ipconfig1", "properties": {"subnet": {"id": subnet}}}],
                },
            },
        )
        self.assertEqual((got, out["error"]["code"]), (400, "InvalidResourceReference"))
        # The NSG lists its subnet.
        _, g = self.ok("GET", res_path(self.rg, NSG, "nsg"), status=200)
        self.assertEqual([x["id"].lower() for x in g["properties"]["subnets"]], [subnet.lower()])

    def test_an_nsg_in_use_cannot_be_deleted(self) -> None:
        nsg = self.nsg()
        self.put_done(
            res_path(self.rg, VNET, "vnet"),
            {
                "location": "eastus",
                "properties": {
                    "addressSpace": {"addressPrefixes": ["10.0.0.0/16"]},
                    "subnets": [
                        {
                            "name": "default",
                            "properties": {"addressPrefix": "10.0.0.0/24", "networkSecurityGroup": {"id": nsg}},
                        }
                    ],
                },
            },
        )
        self.err("DELETE", res_path(self.rg, NSG, "nsg"), None, 400, "InUseNetworkSecurityGroupCannotBeDeleted")
        # Used by a NIC, the same.
        nsg2 = self.nsg("nsg2")
        self.put_done(
            res_path(self.rg, NIC, "nic1"),
            {
                "location": "eastus",
                "properties": {
                    "networkSecurityGroup": {"id": nsg2},
                    "ipConfigurations": [
                        {
                            "name": "ipconfig1",
                            "properties": {"subnet": {"id": f"{self.rid(VNET, 'vnet')}/subnets/default"}},
                        }
                    ],
                },
            },
        )
        self.err("DELETE", res_path(self.rg, NSG, "nsg2"), None, 400, "InUseNetworkSecurityGroupCannotBeDeleted")
        self.delete_done(res_path(self.rg, NIC, "nic1"))
        self.delete_done(res_path(self.rg, NSG, "nsg2"))
        # Once the VNet (and its subnet) is gone, the NSG can go.
        self.delete_done(res_path(self.rg, VNET, "vnet"))
        self.delete_done(res_path(self.rg, NSG, "nsg"))


class VirtualMachines(ArmCase):
    def test_create_flow_and_what_it_creates(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        headers, out = self.ok(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, priority="Spot", evictionPolicy="Delete", billingProfile={"maxPrice": -1}),
            201,
        )
        self.assertEqual(out["properties"]["provisioningState"], "Creating")
        self.assertEqual(out["location"], "eastus")
        self.assertEqual(headers["retry-after"], "0")
        self.assertIn(
            f"/providers/Microsoft.Compute/locations/eastus/operations/", headers["azure-asyncoperation"]
        )
        self.assertTrue(headers["azure-asyncoperation"].endswith(f"api-version={COMPUTE}"))
        # The compute client's own loop re-sends the same PUT: 200, same operation.
        status, again, body = S.call(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, priority="Spot", evictionPolicy="Delete", billingProfile={"maxPrice": -1}),
        )
        self.assertEqual(status, 200)
        self.assertEqual(again["azure-asyncoperation"], headers["azure-asyncoperation"])
        self.assertEqual(body["properties"]["provisioningState"], "Creating")
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, vm = self.ok("GET", res_path(self.rg, VMS, "vm1") + "&$expand=instanceView", status=200)
        p = vm["properties"]
        self.assertEqual(p["provisioningState"], "Succeeded")
        self.assertEqual(p["hardwareProfile"]["vmSize"], GPU)
        self.assertEqual(
            (p["priority"], p["evictionPolicy"], p["billingProfile"]), ("Spot", "Delete", {"maxPrice": -1})
        )
        self.assertEqual(vm["tags"]["flotilla-lineage"], "lin-1")
        self.assertRegex(p["vmId"], r"^[0-9a-f-]{36}$")
        self.assertEqual(p["osProfile"]["computerName"], "vm1")
        self.assertEqual(p["storageProfile"]["osDisk"]["osType"], "Linux")
        codes = [s["code"] for s in p["instanceView"]["statuses"]]
        self.assertEqual(codes, ["ProvisioningState/succeeded", "PowerState/running"])
        _, view = self.ok(
            "GET", f"{rg_path(self.rg)}/providers/{VMS}/vm1/instanceView?api-version={COMPUTE}", status=200
        )
        self.assertEqual(view["statuses"][1]["code"], "PowerState/running")
        # The NIC knows its VM; the OS disk is a managed disk owned by it (group upper-cased, as Compute does).
        _, n = self.ok("GET", res_path(self.rg, NIC, "nic1"), status=200)
        self.assertEqual(n["properties"]["virtualMachine"]["id"], self.rid(VMS, "vm1"))
        os_disk = p["storageProfile"]["osDisk"]["name"]
        _, d = self.ok("GET", res_path(self.rg, DISK, os_disk), status=200)
        self.assertEqual(d["managedBy"], self.rid(VMS, "vm1").replace(self.rg, self.rg.upper()))
        self.assertEqual(d["properties"]["diskState"], "Attached")
        self.err("DELETE", res_path(self.rg, NIC, "nic1"), None, 400, "NicInUse")

    def test_rejects_missing_or_foreign_references(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic + "-missing"),
            400,
            "InvalidResourceReference",
        )
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, disks=[self.rid(DISK, "nope")]),
            404,
            "NotFound",
        )
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, proximityPlacementGroup={"id": self.rid(PPG, "nope")}),
            404,
            "NotFound",
        )
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, region="westus"),
            400,
            "InvalidResourceReference",
        )
        west_disk = self.disk("west", region="westus")
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, disks=[west_disk]),
            400,
            "InvalidParameter",
        )
        zonal = self.disk("zonal", zones=["2"])
        self.err("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic, disks=[zonal]), 400, "BadRequest")
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm1"))[0], 404)

    def test_sizes(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        e = self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, size="Standard_Bogus_v9"),
            400,
            "InvalidParameter",
        )
        self.assertEqual(e["target"], "vmSize")
        # A size the catalog lists, in a region it does not list it for.
        regions = set()
        with open(CATALOG, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["provider"] == "azure" and row["instance_type"] == "Standard_ND96isr_H100_v5":
                    regions.add(row["region"])
        self.assertNotIn("eastasia", regions)
        subnet_ea = self.network(region="eastasia", vnet="vnet-ea")
        nic_ea = self.nic("nic-ea", subnet_ea, region="eastasia")
        e = self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic_ea, size="Standard_ND96isr_H100_v5", region="eastasia"),
            409,
            "SkuNotAvailable",
        )
        self.assertIn("Standard_ND96isr_H100_v5", e["message"])
        self.vm("cpu", nic, size="Standard_D2s_v5")

    def test_os_profile_rules(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.err("PUT", res_path(self.rg, VMS, "vm_1"), self.vm_body(nic), 400, "InvalidParameter")
        body = self.vm_body(nic)
        body["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"][0][
            "path"
        ] = "/root/.ssh/authorized_keys"
        e = self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 400, "InvalidParameter")
        self.assertEqual(e["target"], "linuxConfiguration.ssh.publicKeys.path")
        body = self.vm_body(nic)
        body["properties"]["osProfile"]["adminUsername"] = "root"
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 400, "InvalidParameter")
        body = self.vm_body(nic)
        body["properties"]["osProfile"]["linuxConfiguration"]["ssh"]["publicKeys"] = []
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 400, "InvalidParameter")
        body = self.vm_body(nic)
        del body["properties"]["osProfile"]
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 400, "InvalidParameter")

    def test_spot_settings_and_immutable_properties(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, evictionPolicy="Delete"),
            400,
            "InvalidParameter",
        )
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, priority="Spot", billingProfile={"maxPrice": 0}),
            400,
            "InvalidParameter",
        )
        self.err(
            "PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic, priority="Cheap"), 400, "InvalidParameter"
        )
        vm = self.vm("vm1", nic, priority="Spot", billingProfile={"maxPrice": 2.5})
        self.assertEqual(vm["properties"]["evictionPolicy"], "Deallocate")
        self.assertEqual(vm["properties"]["billingProfile"], {"maxPrice": 2.5})
        self.err("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 409, "PropertyChangeNotAllowed")
        body = self.vm_body(nic, priority="Spot")
        body["zones"] = ["1"]
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 409, "PropertyChangeNotAllowed")
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, priority="Spot", region="westus"),
            409,
            "InvalidResourceLocation",
        )

    def test_nic_used_by_two_vms(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.vm("vm1", nic)
        self.err("PUT", res_path(self.rg, VMS, "vm2"), self.vm_body(nic), 400, "NicInUse")

    def test_data_disks_attach_detach_and_delete(self) -> None:
        subnet = self.network()
        nic1 = self.nic("nic1", subnet)
        nic2 = self.nic("nic2", subnet)
        data = self.disk("data1", size=128)
        _, d = self.ok("GET", res_path(self.rg, DISK, "data1"), status=200)
        self.assertEqual(
            (d["properties"]["diskState"], d["properties"]["diskSizeBytes"]), ("Unattached", 128 * 1024**3)
        )
        vm = self.vm("vm1", nic1, disks=[data])
        self.assertEqual(vm["properties"]["storageProfile"]["dataDisks"][0]["name"], "data1")
        self.assertEqual(
            vm["properties"]["storageProfile"]["dataDisks"][0]["managedDisk"]["id"].lower(), data.lower()
        )
        # A disk cannot belong to two VMs, nor be deleted while attached.
        self.err(
            "PUT",
            res_path(self.rg, VMS, "vm2"),
            self.vm_body(nic2, disks=[data]),
            409,
            "ConflictingUserInput",
        )
        self.err("DELETE", res_path(self.rg, DISK, "data1"), None, 409, "OperationNotAllowed")
        dup = self.vm_body(nic1, disks=[data, data])
        dup["properties"]["storageProfile"]["dataDisks"][1]["lun"] = 0
        self.err("PUT", res_path(self.rg, VMS, "vm1"), dup, 400, "InvalidParameter")
        # Detach by leaving it out: the disk stays owned until the update finishes.
        headers, out = self.ok("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic1), 200)
        self.assertEqual(out["properties"]["provisioningState"], "Updating")
        self.assertEqual(out["properties"]["storageProfile"]["dataDisks"], [])
        self.err("DELETE", res_path(self.rg, DISK, "data1"), None, 409, "OperationNotAllowed")
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, d = self.ok("GET", res_path(self.rg, DISK, "data1"), status=200)
        self.assertEqual(d["properties"]["diskState"], "Unattached")
        self.assertNotIn("managedBy", d)
        # Re-attached to another VM, then deleted once free.
        self.vm("vm2", nic2, disks=[data])
        _, d = self.ok("GET", res_path(self.rg, DISK, "data1"), status=200)
        self.assertEqual(d["managedBy"].lower(), self.rid(VMS, "vm2").lower())
        self.delete_done(res_path(self.rg, VMS, "vm2"))
        self.delete_done(res_path(self.rg, DISK, "data1"))

    def test_concurrent_attaches_of_one_disk_have_one_winner(self) -> None:
        import threading

        subnet = self.network()
        data = self.disk("shared")
        nics = [self.nic(f"nic{i}", subnet) for i in range(8)]
        results: list[int] = []
        lock = threading.Lock()

        def attach(i: int) -> None:
            status, _, _ = S.call(
                "PUT", res_path(self.rg, VMS, f"vm{i}"), self.vm_body(nics[i], disks=[data])
            )
            with lock:
                results.append(status)

        threads = [threading.Thread(target=attach, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [201] + [409] * 7)

    def test_disk_rules(self) -> None:
        self.err(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {"location": "eastus", "properties": {"diskSizeGB": 10}},
            400,
            "InvalidParameter",
        )
        self.err(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {"location": "eastus", "properties": {"creationData": {"createOption": "Empty"}}},
            400,
            "InvalidParameter",
        )
        self.err(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {
                "location": "eastus",
                "sku": {"name": "Gold"},
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 10},
            },
            400,
            "InvalidParameter",
        )
        headers, out = self.ok(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {
                "location": "eastus",
                "zones": ["1"],
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 10},
            },
            202,
        )
        self.assertEqual(out["properties"]["provisioningState"], "Updating")
        self.assertIn(
            f"/providers/Microsoft.Compute/locations/eastus/operations/", headers["azure-asyncoperation"]
        )
        self.assertTrue(headers["azure-asyncoperation"].endswith(f"api-version={DISKS}"))
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        self.err(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {
                "location": "eastus",
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 10},
            },
            409,
            "PropertyChangeNotAllowed",
        )
        _, out = self.ok(
            "PUT",
            res_path(self.rg, DISK, "d"),
            {
                "location": "eastus",
                "zones": ["1"],
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 20},
            },
            200,
        )
        self.assertEqual(out["properties"]["diskSizeGB"], 20)

    def test_delete_vm_releases_nic_and_follows_delete_options(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        vm = self.vm("vm1", nic)
        os_disk = vm["properties"]["storageProfile"]["osDisk"]["name"]
        headers, _ = self.ok("DELETE", res_path(self.rg, VMS, "vm1"), status=202)
        self.assertIn("location", headers)
        self.assertEqual(
            S.call("GET", res_path(self.rg, VMS, "vm1"))[2]["properties"]["provisioningState"], "Deleting"
        )
        self.err("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 409, "OperationNotAllowed")
        self.err("DELETE", res_path(self.rg, NIC, "nic1"), None, 400, "NicInUse")
        codes = []
        for _ in range(5):
            codes.append(S.call("GET", headers["location"])[0])
            if codes[-1] != 202:
                break
        self.assertEqual(codes[-1], 204)
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm1"))[0], 404)
        # Default deleteOption Detach: the OS disk and NIC stay, free.
        _, d = self.ok("GET", res_path(self.rg, DISK, os_disk), status=200)
        self.assertEqual(d["properties"]["diskState"], "Unattached")
        _, n = self.ok("GET", res_path(self.rg, NIC, "nic1"), status=200)
        self.assertNotIn("virtualMachine", n["properties"])
        # With deleteOption Delete they go with the VM.
        body = self.vm_body(nic)
        body["properties"]["storageProfile"]["osDisk"]["deleteOption"] = "Delete"
        body["properties"]["networkProfile"]["networkInterfaces"][0]["properties"]["deleteOption"] = "Delete"
        vm = self.put_done(res_path(self.rg, VMS, "vm2"), body)
        self.delete_done(res_path(self.rg, VMS, "vm2"))
        self.assertEqual(
            S.call("GET", res_path(self.rg, DISK, vm["properties"]["storageProfile"]["osDisk"]["name"]))[0],
            404,
        )
        self.assertEqual(S.call("GET", res_path(self.rg, NIC, "nic1"))[0], 404)

    def test_named_os_disk_left_behind_conflicts(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        body = self.vm_body(nic)
        body["properties"]["storageProfile"]["osDisk"]["name"] = "vm1-os"
        self.put_done(res_path(self.rg, VMS, "vm1"), body)
        self.delete_done(res_path(self.rg, VMS, "vm1"))
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 409, "ConflictingUserInput")

    def test_attach_an_existing_os_disk(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        vm = self.vm("vm1", nic)
        os_id = vm["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"]
        body = {
            "location": "eastus",
            "properties": {
                "hardwareProfile": {"vmSize": GPU},
                "storageProfile": {
                    "osDisk": {"createOption": "Attach", "osType": "Linux", "managedDisk": {"id": os_id}}
                },
                "networkProfile": {"networkInterfaces": [{"id": self.nic("nic2", subnet)}]},
            },
        }
        self.err("PUT", res_path(self.rg, VMS, "vm2"), body, 409, "ConflictingUserInput")
        self.delete_done(res_path(self.rg, VMS, "vm1"))
        with_profile = json.loads(json.dumps(body))
        with_profile["properties"]["osProfile"] = {"adminUsername": "azureuser"}
        self.err("PUT", res_path(self.rg, VMS, "vm2"), with_profile, 400, "InvalidParameter")
        vm2 = self.put_done(res_path(self.rg, VMS, "vm2"), body)
        self.assertEqual(
            vm2["properties"]["storageProfile"]["osDisk"]["managedDisk"]["id"].lower(), os_id.lower()
        )

    def test_conditional_requests(self) -> None:
        path = res_path(self.rg, PIP, "p")
        status, _, _ = S.call("PUT", path, {"location": "eastus"}, headers={"If-None-Match": "*"})
        self.assertEqual(status, 201)
        status, _, out = S.call("PUT", path, {"location": "eastus"}, headers={"If-None-Match": "*"})
        self.assertEqual((status, out["error"]["code"]), (412, "PreconditionFailed"))
        etag = S.call("GET", path)[2]["etag"]
        self.assertEqual(S.call("PUT", path, {"location": "eastus"}, headers={"If-Match": etag})[0], 200)
        status, _, _ = S.call("PUT", path, {"location": "eastus"}, headers={"If-Match": etag})
        self.assertEqual(status, 412)  # the previous PUT changed the ETag

    def test_nic_reservation_after_delete(self) -> None:
        S.call("POST", "/_config", {"nic_reservation_s": 600}, token=None)
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.vm("vm1", nic)
        self.delete_done(res_path(self.rg, VMS, "vm1"))
        self.err("PUT", res_path(self.rg, VMS, "vm2"), self.vm_body(nic), 400, "NicReservedForAnotherVm")
        self.vm("vm1", nic)  # the same VM name may take it back

    def test_patch_actions_and_eviction(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.vm("vm1", nic, priority="Spot", evictionPolicy="Deallocate")
        headers, out = self.ok("PATCH", res_path(self.rg, VMS, "vm1"), {"tags": {"team": "llm"}}, 200)
        self.assertEqual(out["tags"], {"team": "llm"})
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        headers, _ = self.ok(
            "POST", f"{rg_path(self.rg)}/providers/{VMS}/vm1/deallocate?api-version={COMPUTE}", status=202
        )
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        _, view = self.ok(
            "GET", f"{rg_path(self.rg)}/providers/{VMS}/vm1/instanceView?api-version={COMPUTE}", status=200
        )
        self.assertEqual(view["statuses"][-1]["code"], "PowerState/deallocated")
        headers, _ = self.ok(
            "POST", f"{rg_path(self.rg)}/providers/{VMS}/vm1/start?api-version={COMPUTE}", status=202
        )
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        self.ok(
            "POST",
            f"{rg_path(self.rg)}/providers/{VMS}/vm1/simulateEviction?api-version={COMPUTE}",
            status=204,
        )
        _, view = self.ok(
            "GET", f"{rg_path(self.rg)}/providers/{VMS}/vm1/instanceView?api-version={COMPUTE}", status=200
        )
        self.assertEqual(view["statuses"][-1]["code"], "PowerState/deallocated")
        # Policy Delete: eviction deletes the VM.
        nic2 = self.nic("nic2", subnet)
        self.vm("vm2", nic2, priority="Spot", evictionPolicy="Delete")
        self.ok(
            "POST",
            f"{rg_path(self.rg)}/providers/{VMS}/vm2/simulateEviction?api-version={COMPUTE}",
            status=204,
        )
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm2"))[0], 404)
        nic3 = self.nic("nic3", subnet)
        self.vm("vm3", nic3)
        self.err(
            "POST",
            f"{rg_path(self.rg)}/providers/{VMS}/vm3/simulateEviction?api-version={COMPUTE}",
            None,
            409,
            "OperationNotAllowed",
        )

    def test_attach_detach_data_disks_action(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.vm("vm1", nic)
        data = self.disk("data1")
        headers, _ = self.ok(
            "POST",
            f"{rg_path(self.rg)}/providers/{VMS}/vm1/attachDetachDataDisks?api-version={COMPUTE}",
            {"dataDisksToAttach": [{"diskId": data, "lun": 3}]},
            202,
        )
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        status, _, body = S.call("GET", headers["location"])
        self.assertEqual(status, 200)
        self.assertEqual(body["dataDisks"][0]["lun"], 3)
        _, d = self.ok("GET", res_path(self.rg, DISK, "data1"), status=200)
        self.assertEqual(d["properties"]["diskState"], "Attached")

    def test_proximity_placement_groups(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        status, headers, ppg = S.call(
            "PUT",
            res_path(self.rg, PPG, "ppg1"),
            {
                "location": "eastus",
                "properties": {"proximityPlacementGroupType": "Standard", "intent": {"vmSizes": [GPU]}},
            },
        )
        self.assertEqual(status, 201)
        self.assertNotIn("azure-asyncoperation", headers)
        self.assertEqual(ppg["properties"]["virtualMachines"], [])
        self.assertEqual(S.call("PUT", res_path(self.rg, PPG, "ppg1"), {"location": "eastus"})[0], 200)
        self.vm("vm1", nic, proximityPlacementGroup={"id": self.rid(PPG, "ppg1")})
        _, ppg = self.ok("GET", res_path(self.rg, PPG, "ppg1"), status=200)
        self.assertEqual(
            [v["id"].lower() for v in ppg["properties"]["virtualMachines"]], [self.rid(VMS, "vm1").lower()]
        )
        self.err("DELETE", res_path(self.rg, PPG, "ppg1"), None, 409, "OperationNotAllowed")
        self.delete_done(res_path(self.rg, VMS, "vm1"))
        self.assertEqual(S.call("DELETE", res_path(self.rg, PPG, "ppg1"))[0], 200)
        self.assertEqual(S.call("DELETE", res_path(self.rg, PPG, "ppg1"))[0], 204)


class Faults(ArmCase):
    def test_allocation_failed_is_asynchronous(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        fid = self.fault(code="AllocationFailed", size=GPU, region="eastus", times=1)
        headers, out = self.ok("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 201)
        self.assertEqual(out["properties"]["provisioningState"], "Creating")
        op = self.wait(headers)
        self.assertEqual(op["status"], "Failed")
        self.assertEqual(op["error"]["code"], "AllocationFailed")
        self.assertIn("sufficient capacity", op["error"]["message"])
        _, vm = self.ok("GET", res_path(self.rg, VMS, "vm1") + "&$expand=instanceView", status=200)
        self.assertEqual(vm["properties"]["provisioningState"], "Failed")
        self.assertEqual(
            vm["properties"]["instanceView"]["statuses"][0]["code"],
            "ProvisioningState/failed/AllocationFailed",
        )
        # The failed VM still holds its NIC until it is deleted; a retried PUT succeeds (times = 1).
        self.err("DELETE", res_path(self.rg, NIC, "nic1"), None, 400, "NicInUse")
        headers, out = self.ok("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 200)
        self.assertEqual(self.wait(headers)["status"], "Succeeded")
        faults = S.call("GET", "/_fault", token=None)[2]
        self.assertEqual([(f["id"], f["hits"]) for f in faults], [(fid, 1)])

    def test_other_async_capacity_codes(self) -> None:
        subnet = self.network()
        for i, code in enumerate(
            [
                "ZonalAllocationFailed",
                "OverconstrainedAllocationRequest",
                "OverconstrainedZonalAllocationRequest",
            ]
        ):
            nic = self.nic(f"nic{i}", subnet)
            self.fault(code=code, name=f"vm{i}")
            headers, _ = self.ok("PUT", res_path(self.rg, VMS, f"vm{i}"), self.vm_body(nic), 201)
            op = self.wait(headers)
            self.assertEqual((op["status"], op["error"]["code"]), ("Failed", code))

    def test_sku_not_available_and_quota_are_synchronous_409(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.fault(code="SkuNotAvailable", size=GPU, region="eastus", times=1)
        e = self.err("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 409, "SkuNotAvailable")
        self.assertIn(GPU, e["message"])
        self.assertIn("eastus", e["message"])
        self.fault(code="OperationNotAllowed", size=GPU, times=1)
        e = self.err("PUT", res_path(self.rg, VMS, "vm1"), self.vm_body(nic), 409, "OperationNotAllowed")
        self.assertIn("Cores quota", e["message"])
        self.assertIn("Additional Required: 24", e["message"])
        self.fault(code="OperationNotAllowed", size=GPU, times=1)
        e = self.err(
            "PUT",
            res_path(self.rg, VMS, "vm1"),
            self.vm_body(nic, priority="Spot"),
            409,
            "OperationNotAllowed",
        )
        self.assertIn("LowPriorityCores quota", e["message"])
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm1"))[0], 404)
        self.vm("vm1", nic)

    def test_faults_match_size_region_name_and_contains(self) -> None:
        subnet = self.network()
        nic = self.nic("nic1", subnet)
        self.fault(code="SkuNotAvailable", size=GPU, region="westus")
        self.fault(code="SkuNotAvailable", contains="other-lineage")
        self.fault(code="SkuNotAvailable", size="Standard_ND96isr_H100_v5")
        vm = self.vm("vm1", nic)  # none of them match
        # Capacity faults leave reads alone.
        self.fault(code="AllocationFailed", name="vm1")
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm1"))[0], 200)
        body = self.vm_body(nic)
        body["tags"]["flotilla-lineage"] = "other-lineage"
        self.err("PUT", res_path(self.rg, VMS, "vm1"), body, 409, "SkuNotAvailable")
        self.assertEqual(vm["properties"]["provisioningState"], "Succeeded")
        self.assertEqual(S.call("DELETE", "/_fault", token=None)[0], 200)
        self.assertEqual(S.call("GET", "/_fault", token=None)[2], [])

    def test_throttling_429_with_retry_after(self) -> None:
        fid = self.fault(code="TooManyRequests", method="GET", type="virtualMachines", retry_after=3, times=2)
        for _ in range(2):
            status, headers, out = S.call("GET", res_path(self.rg, VMS, "vm1"))
            self.assertEqual(status, 429)
            self.assertEqual(headers["retry-after"], "3")
            self.assertEqual(headers["x-ms-ratelimit-remaining-subscription-reads"], "0")
            self.assertEqual(out["error"]["code"], "TooManyRequests")
        self.assertEqual(S.call("GET", res_path(self.rg, VMS, "vm1"))[0], 404)
        self.fault(code="TooManyRequests", status=429, type="publicIPAddresses")
        status, headers, _ = S.call("PUT", res_path(self.rg, PIP, "p"), {"location": "eastus"})
        self.assertEqual((status, headers["x-ms-ratelimit-remaining-subscription-writes"]), (429, "0"))
        self.assertEqual(S.call("DELETE", f"/_fault/{fid}", token=None)[0], 200)
        self.assertEqual(len(S.call("GET", "/_fault", token=None)[2]), 1)
        throttled = S.call("GET", "/_calls?method=PUT&type=publicIPAddresses", token=None)[2]
        self.assertEqual([(c["status"], c["code"]) for c in throttled], [(429, "TooManyRequests")])

    def test_throttling_operation_polls(self) -> None:
        headers, _ = self.ok("PUT", res_path(self.rg, PIP, "p"), {"location": "eastus"}, 201)
        self.fault(code="TooManyRequests", type="operations", times=1, retry_after=2)
        status, h, _ = S.call("GET", headers["azure-asyncoperation"])
        self.assertEqual((status, h["retry-after"]), (429, "2"))
        self.assertEqual(self.wait(headers)["status"], "Succeeded")

    def test_any_code_can_fail_a_network_or_disk_operation(self) -> None:
        subnet = self.network()
        self.fault(
            code="InternalServerError",
            type="networkInterfaces",
            method="PUT",
            message="boom",
            **{"async": True},
        )
        headers, _ = self.ok(
            "PUT",
            res_path(self.rg, NIC, "n1"),
            {
                "location": "eastus",
                "properties": {"ipConfigurations": [{"name": "c", "properties": {"subnet": {"id": subnet}}}]},
            },
            201,
        )
        op = self.wait(headers)
        self.assertEqual(
            (op["status"], op["error"]), ("Failed", {"code": "InternalServerError", "message": "boom"})
        )
        self.assertEqual(
            S.call("GET", res_path(self.rg, NIC, "n1"))[2]["properties"]["provisioningState"], "Failed"
        )
        self.fault(code="DiskServiceInternalError", type="disks", times=1, **{"async": True})
        headers, _ = self.ok(
            "PUT",
            res_path(self.rg, DISK, "d1"),
            {
                "location": "eastus",
                "properties": {"creationData": {"createOption": "Empty"}, "diskSizeGB": 8},
            },
            202,
        )
        self.assertEqual(self.wait(headers)["error"]["code"], "DiskServiceInternalError")
        # Placement groups have no operation: an asynchronous fault answers the PUT itself.
        self.fault(code="AllocationFailed", type="proximityPlacementGroups", method="PUT")
        self.err("PUT", res_path(self.rg, PPG, "g"), {"location": "eastus"}, 409, "AllocationFailed")

    def test_delay_keeps_one_operation_in_progress_longer(self) -> None:
        self.fault(code="Delay", contains="slow-one", polls=6, retry_after=1, times=1)
        headers, _ = self.ok("PUT", res_path(self.rg, PIP, "fast"), {"location": "eastus"}, 201)
        self.assertEqual(headers["retry-after"], "0")
        headers, _ = self.ok(
            "PUT", res_path(self.rg, PIP, "p"), {"location": "eastus", "tags": {"x": "slow-one"}}, 201
        )
        self.assertEqual(headers["retry-after"], "1")
        statuses = []
        for _ in range(10):
            statuses.append(S.call("GET", headers["azure-asyncoperation"])[2]["status"])
            if statuses[-1] != "InProgress":
                break
        self.assertEqual(statuses, ["InProgress"] * 6 + ["Succeeded"])

    def test_bad_fault_specs(self) -> None:
        for spec in (
            {},
            {"code": "X", "times": 0},
            {"code": "X", "bogus": 1},
            {"code": "Delay", "polls": -1},
        ):
            status, _, out = S.call("POST", "/_fault", spec, token=None)
            self.assertEqual(status, 400, spec)


class Lists(ArmCase):
    def test_paged_lists_with_absolute_next_link(self) -> None:
        for i in range(7):
            self.put_done(
                res_path(self.rg, PIP, f"p{i}"),
                {"location": "eastus", "tags": {"flotilla-lineage": "lin-a" if i % 2 else "lin-b"}},
            )
        status, _, page = S.call("GET", res_path(self.rg, PIP))
        self.assertEqual(status, 200)
        self.assertEqual(len(page["value"]), 5)
        self.assertTrue(page["nextLink"].startswith(S.base + "/"))
        self.assertIn(f"api-version={NETWORK}", page["nextLink"])
        page2 = S.call("GET", page["nextLink"])[2]
        self.assertNotIn("nextLink", page2)
        names = [p["name"] for p in page["value"] + page2["value"]]
        self.assertEqual(names, [f"p{i}" for i in range(7)])
        # Subscription-wide list.
        allp = S.call("GET", f"/subscriptions/{SUB}/providers/{PIP}?api-version={NETWORK}")[2]
        self.assertEqual(len(allp["value"]), 5)

    def test_vm_lists_with_instance_view(self) -> None:
        subnet = self.network()
        self.vm("vm1", self.nic("nic1", subnet))
        out = S.call("GET", f"/subscriptions/{SUB}/providers/{VMS}?api-version={COMPUTE}&statusOnly=true")[2]
        self.assertEqual(
            out["value"][0]["properties"]["instanceView"]["statuses"][1]["code"], "PowerState/running"
        )
        out = S.call("GET", res_path(self.rg, VMS) + "&$expand=instanceView")[2]
        self.assertIn("instanceView", out["value"][0]["properties"])
        out = S.call("GET", res_path(self.rg, VMS))[2]
        self.assertNotIn("instanceView", out["value"][0]["properties"])

    def test_vm_list_has_no_tag_filter(self) -> None:
        self.err(
            "GET",
            res_path(self.rg, VMS) + "&$filter=" + quote("tagName eq 'x'"),
            None,
            400,
            "InvalidParameter",
        )

    def test_generic_resources_by_tag(self) -> None:
        self.put_done(
            res_path(self.rg, PIP, "a"), {"location": "eastus", "tags": {"flotilla-lineage": "lin-a"}}
        )
        self.put_done(
            res_path(self.rg, PIP, "b"), {"location": "eastus", "tags": {"flotilla-lineage": "lin-b"}}
        )
        self.put_done(res_path(self.rg, PIP, "c"), {"location": "eastus"})
        flt = quote("tagName eq 'flotilla-lineage' and tagValue eq 'lin-a'")
        out = S.call("GET", f"{rg_path(self.rg)}/resources?api-version={RESOURCES}&$filter={flt}")[2]
        self.assertEqual([r["name"] for r in out["value"]], ["a"])
        flt = quote("tagName eq 'flotilla-lineage'")
        out = S.call("GET", f"/subscriptions/{SUB}/resources?api-version={RESOURCES}&$filter={flt}")[2]
        self.assertEqual(sorted(r["name"] for r in out["value"]), ["a", "b"])
        self.err(
            "GET",
            f"{rg_path(self.rg)}/resources?api-version={RESOURCES}&$filter={quote('name gt 1')}",
            None,
            400,
            "InvalidFilterInQueryString",
        )

    def test_calls_and_state(self) -> None:
        self.put_done(res_path(self.rg, PIP, "a"), {"location": "eastus", "tags": {"k": "needle"}})
        calls = S.call("GET", "/_calls?method=PUT&type=publicIPAddresses", token=None)[2]
        self.assertEqual(len(calls), 1)
        self.assertEqual(
            (calls[0]["name"], calls[0]["status"], calls[0]["body"]["tags"]), ("a", 201, {"k": "needle"})
        )
        self.assertEqual(len(S.call("GET", "/_calls?contains=needle", token=None)[2]), 1)
        state = S.call("GET", "/_state?type=publicIPAddresses", token=None)[2]
        self.assertEqual([r["name"] for r in state["resources"]], ["a"])
        self.assertEqual([g["name"] for g in state["resourceGroups"]], [self.rg])


class RetailPrices(unittest.TestCase):
    def setUp(self) -> None:
        S.call("POST", "/_config", {"prices_page_size": 100}, token=None)

    def fetch_all(self, flt: str, api: str | None = None) -> list[dict[str, Any]]:
        url = "/api/retail/prices?$filter=" + quote(flt) + (f"&api-version={api}" if api else "")
        items: list[dict[str, Any]] = []
        pages = 0
        while url:
            status, _, body = S.call("GET", url, token=None)
            self.assertEqual(status, 200, body)
            self.assertEqual(body["Count"], len(body["Items"]))
            self.assertEqual(body["BillingCurrency"], "USD")
            items += body["Items"]
            url = body["NextPageLink"]
            pages += 1
            if url:
                self.assertTrue(url.startswith(S.base + "/api/retail/prices?"), url)
        self.pages = pages
        return items

    def test_one_sku_in_one_region(self) -> None:
        want = {}
        with open(CATALOG, newline="", encoding="utf-8") as f:
            for row in csv.DictReader(f):
                if row["provider"] == "azure" and row["instance_type"] == GPU and row["region"] == "eastus":
                    want[row["spot"]] = float(row["price_per_hour_usd"])
        items = self.fetch_all(
            f"serviceName eq 'Virtual Machines' and armRegionName eq 'eastus' and armSkuName eq '{GPU}'"
        )
        linux = [i for i in items if i["type"] == "Consumption" and not i["productName"].endswith("Windows")]
        ondemand = [i for i in linux if not i["skuName"].endswith((" Spot", " Low Priority"))]
        spot = [i for i in linux if i["skuName"].endswith(" Spot")]
        self.assertEqual([i["retailPrice"] for i in ondemand], [want["false"]])
        self.assertEqual([i["retailPrice"] for i in spot], [want["true"]])
        self.assertEqual(ondemand[0]["unitOfMeasure"], "1 Hour")
        # The meters a client must skip are there too.
        kinds = {
            (i["type"], i["productName"].endswith("Windows"), i["skuName"].split(" ")[-1]) for i in items
        }
        self.assertIn(("Reservation", False, "v4"), kinds)
        self.assertIn(("Consumption", True, "v4"), kinds)
        self.assertIn(("Consumption", False, "Priority"), kinds)
        self.assertIn(("DevTestConsumption", True, "v4"), kinds)

    def test_paging_covers_every_item_once(self) -> None:
        S.call("POST", "/_config", {"prices_page_size": 7}, token=None)
        items = self.fetch_all("armRegionName eq 'eastus' or armRegionName eq 'westus2'")
        self.assertGreater(self.pages, 3)
        self.assertEqual(
            len({i["meterId"] + i["productName"] + i["type"] + str(i.get("reservationTerm")) for i in items}),
            len(items),
        )
        self.assertEqual({i["armRegionName"] for i in items}, {"eastus", "westus2"})
        sizes = {i["armSkuName"] for i in items if i["armRegionName"] == "eastus"}
        with open(CATALOG, newline="", encoding="utf-8") as f:
            want = {
                r["instance_type"]
                for r in csv.DictReader(f)
                if r["provider"] == "azure" and r["region"] == "eastus"
            }
        self.assertEqual(sizes, want)

    def test_filter_syntax_and_case(self) -> None:
        self.assertTrue(
            self.fetch_all("armregionname eq 'EASTUS' and (armSkuName eq 'standard_nc24ads_a100_v4')")
        )
        self.assertEqual(self.fetch_all("armRegionName eq 'EASTUS'", api="2023-01-01-preview"), [])
        for bad in (
            "armRegionName gt 'x'",
            "nosuchfield eq 'x'",
            "armRegionName eq x",
            "(armRegionName eq 'x'",
        ):
            status, _, body = S.call("GET", "/api/retail/prices?$filter=" + quote(bad), token=None)
            self.assertEqual(status, 400, bad)
            self.assertEqual(body["Error"]["Code"], "BadRequest")


if __name__ == "__main__":
    unittest.main(verbosity=1)
