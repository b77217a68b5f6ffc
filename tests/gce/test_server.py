"""Self-test of the Compute Engine fake (tests/gce/server.py): it starts a private copy on a
free port and checks, over HTTP, that it keeps the promises of ../../../shared/api/gce.md that
the GCP provider's tests rely on. scripts/test runs it before the fake the tests use.

Plain Python 3.11 standard library; exits non-zero on the first broken promise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
P = "/compute/v1/projects/p"


class Fake:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="gce-selftest-")
        port_file = os.path.join(self.dir, "port")
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "server.py"), "--port", "0", "--port-file", port_file]
        )
        deadline = time.monotonic() + 10
        while not os.path.exists(port_file):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the fake did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            self.base = f"http://127.0.0.1:{f.read().strip()}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as f:
                raw = f.read()
                return f.status, json.loads(raw) if f.headers.get_content_type() == "application/json" else raw
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    def wait(self, op: dict[str, Any]) -> tuple[dict[str, Any], int]:
        scope = f"zones/{op['zone'].rsplit('/', 1)[1]}" if "zone" in op else f"regions/{op['region'].rsplit('/', 1)[1]}"
        for polls in range(1, 20):
            status, got = self.call("GET", f"{P}/{scope}/operations/{op['name']}?$alt=json")
            assert status == 200, got
            if got["status"] == "DONE":
                return got, polls
        raise AssertionError(f"operation {op['name']} never finished")


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"FAILED: {what}")
    print(f"ok: {what}")


def instance(name: str, zone: str, **extra: Any) -> dict[str, Any]:
    body = {
        "name": name,
        "machineType": f"zones/{zone}/machineTypes/n1-standard-8",
        "guestAccelerators": [{"acceleratorType": f"projects/p/zones/{zone}/acceleratorTypes/nvidia-tesla-t4", "acceleratorCount": 1}],
        "scheduling": {"onHostMaintenance": "TERMINATE"},
        "disks": [{"boot": True, "autoDelete": True, "initializeParams": {"sourceImage": "projects/debian-cloud/global/images/family/debian-12", "diskSizeGb": "200"}}],
        "labels": {"flotilla-lineage": "abc", "flotilla-address": "fleet_a_0_"},
    }
    body.update(extra)
    return body


def main() -> None:
    fake = Fake()
    try:
        run(fake)
    finally:
        fake.stop()


def run(f: Fake) -> None:
    z = f"{P}/zones/us-central1-a"
    check(f.call("GET", "/_health") == (200, b"ok"), "/_health answers ok")

    s, o = f.call("POST", f"{z}/instances?requestId=not-a-uuid", instance("i1", "us-central1-a"))
    check(s == 400, "a requestId that is not a UUID is refused")
    s, o = f.call("POST", f"{z}/instances", instance("i1", "us-central1-a", scheduling={}))
    check(s == 400 and "live migration" in o["error"]["message"], "a GPU instance without TERMINATE is refused (400)")
    s, o = f.call("POST", f"{z}/instances", instance("i1", "us-central1-a", labels={"Bad:Key": "x"}))
    check(s == 400, "labels that break GCP's rules are refused")
    s, o = f.call("POST", f"{z}/instances", instance("i1", "us-central1-a", machineType="zones/us-central1-a/machineTypes/zz-9"))
    check(s == 400, "an unknown machine type is refused")
    s, o = f.call("POST", f"{z}/instances", instance("i1", "us-central1-a", guestAccelerators=[{"acceleratorType": "nvidia-tesla-zz", "acceleratorCount": 1}]))
    check(s == 400, "an unknown accelerator type is refused")

    rid = str(uuid.uuid4())
    s, op = f.call("POST", f"{z}/instances?requestId={rid}&$alt=json", instance("i1", "us-central1-a"))
    check(s == 200 and op["status"] == "RUNNING" and op["clientOperationId"] == rid, "insert answers 200 with a RUNNING operation")
    s, again = f.call("POST", f"{z}/instances?requestId={rid}", instance("i1", "us-central1-a"))
    check(again["name"] == op["name"], "a repeated requestId returns the original operation")
    s, dup = f.call("POST", f"{z}/instances", instance("i1", "us-central1-a"))
    check(s == 409 and dup["error"]["errors"][0]["reason"] == "alreadyExists", "a duplicate name is 409 alreadyExists")
    s, i = f.call("GET", f"{z}/instances/i1")
    check(i["status"] == "PROVISIONING", "the instance is PROVISIONING while its insert runs")
    done, polls = f.wait(op)
    check(polls >= 2 and not any(k in done for k in ("error", "httpErrorStatusCode", "httpErrorMessage")), "the operation stays RUNNING for a few polls, then DONE without error fields")
    s, i = f.call("GET", f"{z}/instances/i1")
    check(i["status"] == "RUNNING" and "+" not in i["labelFingerprint"] and "/" not in i["labelFingerprint"], "the instance runs; fingerprints are URL-safe base64")

    s, agg = f.call("GET", f"{P}/aggregated/instances?filter=labels.flotilla-lineage%20%3D%20%22abc%22")
    scopes = [k for k, v in agg["items"].items() if "instances" in v]
    check(scopes == ["zones/us-central1-a"], "aggregatedList filters on labels")
    s, agg = f.call("GET", f"{P}/aggregated/instances?filter=labels.flotilla-lineage%20%3D%20%22zzz%22")
    check(not any("instances" in v for v in agg["items"].values()), "a filter that matches nothing lists nothing")

    s, page1 = f.call("GET", f"{P}/aggregated/machineTypes?filter=name%20%3D%20%22g2-standard-4%22&maxResults=2")
    s, page2 = f.call("GET", f"{P}/aggregated/machineTypes?filter=name%20%3D%20%22g2-standard-4%22&maxResults=2&pageToken={page1.get('nextPageToken', '')}")
    first = [t["zone"] for v in page1["items"].values() for t in v.get("machineTypes", [])]
    second = [t["zone"] for v in page2["items"].values() for t in v.get("machineTypes", [])]
    check(len(first) == 2 and len(second) == 2 and not set(first) & set(second), "aggregatedList pages with maxResults and pageToken")
    s, op = f.call("POST", f"{P}/zones/us-central1-b/disks", {"name": "d1", "sizeGb": "100"})
    f.wait(op)
    s, o = f.call("POST", f"{z}/instances/i1/attachDisk", {"source": "projects/p/zones/us-central1-b/disks/d1"})
    check(s == 400, "attaching a disk from another zone is refused")
    s, op = f.call("POST", f"{z}/disks", {"name": "d2", "sizeGb": "100", "type": "zones/us-central1-a/diskTypes/pd-balanced"})
    f.wait(op)
    s, op = f.call("POST", f"{z}/instances/i1/attachDisk", {"source": "projects/p/zones/us-central1-a/disks/d2", "deviceName": "d2"})
    f.wait(op)
    s, o = f.call("DELETE", f"{z}/disks/d2")
    check(s == 400 and o["error"]["errors"][0]["reason"] == "resourceInUseByAnotherResource", "deleting an attached disk is resourceInUseByAnotherResource")
    s, op = f.call("POST", f"{z}/instances/i1/detachDisk?deviceName=d2", {})
    f.wait(op)
    s, d = f.call("GET", f"{z}/disks/d2")
    check(not d.get("users"), "detachDisk frees the disk")

    s, _ = f.call("POST", "/_fault", {"method": "instances.insert", "match": {"zone": "us-central1-b", "machineType": "g2-standard-4"}, "code": "ZONE_RESOURCE_POOL_EXHAUSTED"})
    g = instance("g1", "us-central1-b", machineType="zones/us-central1-b/machineTypes/g2-standard-4", scheduling={"onHostMaintenance": "TERMINATE", "provisioningModel": "SPOT", "instanceTerminationAction": "DELETE", "automaticRestart": False})
    del g["guestAccelerators"]
    s, op = f.call("POST", f"{P}/zones/us-central1-b/instances", g)
    done, _ = f.wait(op)
    check(done["error"]["errors"][0]["code"] == "ZONE_RESOURCE_POOL_EXHAUSTED" and done["httpErrorStatusCode"] == 503, "capacity faults fail the operation with ZONE_RESOURCE_POOL_EXHAUSTED")
    s, _ = f.call("GET", f"{P}/zones/us-central1-b/instances/g1")
    check(s == 404, "a capacity-failed instance is gone")
    g["machineType"] = "zones/us-central1-c/machineTypes/g2-standard-4"
    f.call("POST", "/_fault", {"method": "instances.insert", "match": {"zone": "us-central1-c"}, "code": "QUOTA_EXCEEDED", "quota": "NVIDIA_L4_GPUS", "times": 1})
    s, op = f.call("POST", f"{P}/zones/us-central1-c/instances", g)
    done, _ = f.wait(op)
    check(done["error"]["errors"][0]["code"] == "QUOTA_EXCEEDED" and "NVIDIA_L4_GPUS" in done["error"]["errors"][0]["message"], "quota faults name the quota")
    s, op = f.call("POST", f"{P}/zones/us-central1-c/instances", dict(g, name="g2"))
    done, _ = f.wait(op)
    check("error" not in done, "a fault with `times` fires only that often")
    hold = f.call("POST", "/_fault", {"method": "instances.insert", "match": {"_any": "held"}, "code": "HOLD"})[1]["id"]
    s, op = f.call("POST", f"{z}/instances", instance("held", "us-central1-a"))
    for _ in range(5):
        check(f.call("GET", f"{z}/operations/{op['name']}")[1]["status"] == "RUNNING", "a HOLD fault keeps the operation RUNNING") if _ == 4 else f.call("GET", f"{z}/operations/{op['name']}")
    f.call("DELETE", f"/_fault/{hold}")
    done, _ = f.wait(op)
    check("error" not in done, "removing the HOLD fault lets the operation finish")

    s, op = f.call("POST", f"{P}/regions/us-central1/addresses", {"name": "a1", "labels": {"x": "y"}})
    f.wait(op)
    s, a = f.call("GET", f"{P}/regions/us-central1/addresses/a1")
    s, op = f.call("POST", f"{P}/regions/us-central1/targetPools", {"name": "tp1", "instances": ["zones/us-central1-a/instances/i1"]})
    f.wait(op)
    s, op = f.call("POST", f"{P}/regions/us-central1/forwardingRules", {"name": "fr1", "IPAddress": a["address"], "IPProtocol": "TCP", "portRange": "80", "target": "projects/p/regions/us-central1/targetPools/tp1"})
    f.wait(op)
    s, o = f.call("DELETE", f"{P}/regions/us-central1/addresses/a1")
    check(s == 400, "deleting an address in use is refused")
    s, op = f.call("POST", f"{P}/regions/us-central1/targetPools/tp1/removeInstance", {"instances": [{"instance": "zones/us-central1-a/instances/i1"}]})
    f.wait(op)
    s, tp = f.call("GET", f"{P}/regions/us-central1/targetPools/tp1")
    check(tp["instances"] == [], "removeInstance takes a member out")
    s, op = f.call("POST", f"{P}/regions/us-central1/resourcePolicies", {"name": "rp", "groupPlacementPolicy": {"collocation": "COLLOCATED", "vmCount": 2}})
    check(f.wait(op)[0]["operationType"] == "insert", "resource policies are made through regional operations")
    s, mt = f.call("GET", f"{P}/aggregated/machineTypes?filter=name%20%3D%20%22a2-highgpu-1g%22")
    check(len([k for k, v in mt["items"].items() if "machineTypes" in v]) > 10, "machineTypes.aggregatedList lists a type's zones")
    s, _ = f.call("POST", f"{z}/instances/i1/setLabels", {"labels": {"a": "b"}, "labelFingerprint": "stale"})
    check(s == 412, "setLabels with a stale fingerprint is 412")
    s, op = f.call("DELETE", f"{z}/instances/i1")
    f.wait(op)
    check(f.call("GET", f"{z}/instances/i1")[0] == 404 and f.call("GET", f"{z}/disks/i1")[0] == 404, "delete removes the instance and its auto-delete boot disk")
    s, calls = f.call("GET", "/_calls?method=instances.insert")
    check(len(calls) >= 8, "the call log records calls")
    billing(f)
    print("all promises kept")


def billing(f: Fake) -> None:
    """The Cloud Billing Catalog API's services.skus.list for Compute Engine."""
    skus_path = "/v1/services/6F81-5844-456A/skus"
    s, page = f.call("GET", f"{skus_path}?currencyCode=USD&pageSize=5000")
    check(s == 200 and 0 < len(page["skus"]) < 5000 and page["nextPageToken"], "skus.list answers a first page and a nextPageToken")
    skus = list(page["skus"])
    pages = 1
    while page["nextPageToken"]:
        s, page = f.call("GET", f"{skus_path}?currencyCode=USD&pageSize=5000&pageToken={page['nextPageToken']}")
        check(s == 200, f"page {pages + 1} of skus.list answers")
        skus += page["skus"]
        pages += 1
    check(pages > 2 and page["nextPageToken"] == "", "SKUs come in several pages; the last has an empty nextPageToken")
    check(len({k["skuId"] for k in skus}) == len(skus), "every SKU is listed once")
    first = skus[0]
    price = first["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"]
    check(isinstance(price["units"], str) and isinstance(price["nanos"], int) and price["currencyCode"] == "USD", "prices are google.type.Money (units as a string, nanos)")

    def covered(words: str, usage: str, unit: str) -> set[str]:
        out: set[str] = set()
        for k in skus:
            d = k["description"].removeprefix("Spot Preemptible ")
            if d.startswith(words + " ") and k["category"]["usageType"] == usage and k["pricingInfo"][0]["pricingExpression"]["usageUnit"] == unit:
                out.update(k["serviceRegions"])
        return out

    s, agg = f.call("GET", f"{P}/aggregated/acceleratorTypes?filter=name%20%3D%20%22nvidia-l4%22")
    regions = {scope.split("/", 1)[1].rsplit("-", 1)[0] for scope, v in agg["items"].items() if "acceleratorTypes" in v}
    check(len(regions) > 20, "the regions that offer L4s are known")
    for usage in ("OnDemand", "Preemptible"):
        check(covered("G2 Instance Core", usage, "h") >= regions and covered("G2 Instance Ram", usage, "GiBy.h") >= regions, f"G2 core and RAM SKUs ({usage}) cover every region")
        check(covered("Nvidia L4 GPU", usage, "h") >= regions, f"L4 GPU SKUs ({usage}) cover every region")
    check(not covered("A4 Instance Core", "OnDemand", "h"), "A4 has no core SKU (its offers stay unpriced)")
    check(any(k["category"]["usageType"] == "Commit1Yr" for k in skus) and any(k["category"]["resourceFamily"] == "Storage" for k in skus), "SKUs a client must skip are listed too")

    check(f.call("GET", f"{skus_path}?pageSize=0")[0] == 400 and f.call("GET", f"{skus_path}?pageSize=5001")[0] == 400, "a pageSize outside 1..5000 is refused")
    check(f.call("GET", f"{skus_path}?pageToken=bogus")[0] == 400, "a bad page token is refused")
    check(f.call("GET", f"{skus_path}?currencyCode=EUR")[0] == 400, "a currency other than USD is refused (the fake knows USD only)")
    s, o = f.call("GET", "/v1/services/0000-0000-0000/skus")
    check(s == 404 and o["error"]["status"] == "NOT_FOUND", "an unknown service is 404 NOT_FOUND")
    s, o = f.call("GET", f"/tagged{skus_path}?pageSize=1")
    check(s == 200 and len(o["skus"]) == 1, "skus.list answers under a path prefix, and honours a small pageSize")
    fault = f.call("POST", "/_fault", {"method": "skus.list", "match": {"_any": "denied-tag"}, "code": "PERMISSION_DENIED"})[1]["id"]
    s, o = f.call("GET", f"/denied-tag{skus_path}?currencyCode=USD")
    check(s == 403 and o["error"]["status"] == "PERMISSION_DENIED" and o["error"]["code"] == 403, "a PERMISSION_DENIED fault answers 403 in Google's error shape")
    check(f.call("GET", f"{skus_path}?pageSize=1")[0] == 200, "the fault keeps to the calls it matches")
    check(f.call("GET", "/_fault")[1][-1]["hits"] == 1, "the fault counts its hits")
    f.call("DELETE", f"/_fault/{fault}")
    s, calls = f.call("GET", "/_calls?method=skus.list&value=denied-tag")
    check(len(calls) == 1 and calls[0]["path"].startswith("/denied-tag/"), "the call log records skus.list calls")


if __name__ == "__main__":
    main()
