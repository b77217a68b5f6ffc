"""A protocol-level Compute Engine v1 fake for flotilla's end-to-end tests.

Compute Engine has no emulator (../../../shared/TESTING.md), so the GCP provider's tests run the
real `google-cloud-compute-v1` client over HTTP against this server. It follows the public REST
reference as collected in ../../../shared/api/gce.md, and rejects what the real API rejects, so a
provider that passes here does not merely pass against a permissive mock:

* Instances (insert/get/delete/list/aggregatedList, attachDisk/detachDisk, setLabels,
  setMetadata), disks, regional addresses, target pools (addInstance/removeInstance),
  forwarding rules, resource policies (compact placement), machine types and accelerator
  types, all in memory, per project. Paths are `/compute/v1/projects/{project}/...`; `$alt` and
  other unknown query parameters are ignored.
* Mutations answer HTTP 200 with an Operation that stays `RUNNING` for `--op-polls` reads (or
  `--op-seconds`, whichever comes first) and then turns `DONE`; a failed one carries `error`,
  `httpErrorStatusCode` and `httpErrorMessage`, a successful one none of them (the Rust
  client's `to_result()` fails on any of the three).
* A `requestId` must be a UUID other than the nil one; a repeated one returns the original
  operation instead of acting again, as the real API does.
* Refused like the real API: a duplicate name (409 `alreadyExists`), unknown zones, machine
  types or accelerator types, a GPU instance without `onHostMaintenance = TERMINATE`, labels
  that break GCP's label rules, attaching a disk from another zone or one already in use,
  deleting an attached disk or a used address, target pool or resource policy (400
  `resourceInUseByAnotherResource`), more instances in a compact placement policy than its
  `vmCount`, a stale fingerprint on setLabels/setMetadata (412 `conditionNotMet`).
* Fingerprints are URL-safe base64, as the Rust client decodes them.

The Cloud Billing Catalog API's `GET /v1/services/6F81-5844-456A/skus` (Compute Engine's SKUs;
any path prefix before `/v1/` is accepted, so a test can give its own endpoint a tag) lists
core and RAM SKUs of the machine families the fake knows (N1, E2, A2, A3, A3 Mega, A3 Ultra,
G2; no A4) and GPU SKUs of its accelerator types, on demand and `Preemptible`, for geographies
that cover every region it serves, plus SKUs a client must skip (custom, commitments, a
virtual-workstation GPU, C3, storage). Prices are the fake's own list prices (not the embedded
snapshot's). `currencyCode` must be USD; pages hold at most BILLING_PAGE_MAX SKUs whatever
`pageSize` (1..5000) asks, and `nextPageToken` is empty on the last. Errors have Google's JSON
shape with `status` (`PERMISSION_DENIED`, ...).

Control endpoints (not part of Compute):

* `POST /_fault` with JSON
      {"method": "instances.insert", "match": {"zone": "us-central1-a",
       "machineType": "a2-highgpu-1g", "_any": "<lineage>"},
       "code": "ZONE_RESOURCE_POOL_EXHAUSTED", "times": 1}
  makes the next `times` matching calls (all while it exists when absent) fail. `match` keys:
  `zone`, `region`, `machineType` (short name), and `_any`, a string that must occur in the
  call's path, query or body (a lineage), so parallel tests keep faults to their own calls.
  `code` `ZONE_RESOURCE_POOL_EXHAUSTED[_WITH_DETAILS]` and `QUOTA_EXCEEDED` fail in the
  operation's `error` with the real messages and details (`quota` names the quota metric);
  `"in": "sync"` fails the call itself instead, with `status` (HTTP) and `reason`. The code
  `HOLD` keeps matching operations `RUNNING` for as long as the fault exists (a test kills
  the client meanwhile). Answer: `{"id": ...}`; `GET /_fault` lists them with `hits`,
  `DELETE /_fault/<id>` removes one, `DELETE /_fault` all. For the Billing API the method is
  `skus.list`, `_any` matches its path and query, and the call fails synchronously with `code`
  as the error's `status` (`PERMISSION_DENIED` -> 403, `UNAUTHENTICATED` -> 401, or `status`).
* `GET /_calls?method=instances.insert&value=X` lists the calls seen (method, http, path,
  query, body), optionally only one method's and/or those whose path, query or body contain X.
* `POST /_reset` forgets everything; `GET /_health` answers `ok`.

It binds `--host` on `--port` (0: a free one) and writes the port to `--port-file` once it
listens. Plain Python 3.11 standard library; start it with the real interpreter (not a wrapper
script) so that its PID is the server's.
"""

from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import json
import os
import re
import secrets
import signal
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

BASE = "https://www.googleapis.com/compute/v1"
MAX_CALLS = 20_000
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")
# GCP label rules: keys start with a lowercase letter; keys and values hold lowercase letters,
# digits, `_` and `-` (international letters too), at most 63 characters; at most 64 labels.
LABEL_CHARS_RE = re.compile(r"^[a-z0-9_\-\u00C0-\uFFFF]*$")
METADATA_KEY_RE = re.compile(r"^[a-zA-Z0-9\-_]{1,128}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")

# ---------------------------------------------------------------------------------------------
# The catalogue: regions, zones, machine types and accelerator types.
# ---------------------------------------------------------------------------------------------

REGIONS = [
    "asia-east1", "asia-east2", "asia-northeast1", "asia-northeast3", "asia-south1",
    "asia-south2", "asia-southeast1", "asia-southeast2", "australia-southeast1",
    "europe-central2", "europe-north1", "europe-west1", "europe-west2", "europe-west3",
    "europe-west4", "europe-west6", "europe-west9", "me-central2", "me-west1",
    "northamerica-northeast1", "northamerica-northeast2", "southamerica-east1", "us-central1",
    "us-east1", "us-east4", "us-east5", "us-south1", "us-west1", "us-west2", "us-west3",
    "us-west4",
]
ZONE_LETTERS = {"us-central1": "abcf", "us-east1": "bcd", "europe-west1": "bcd"}


def zones_of(region: str) -> list[str]:
    return [f"{region}-{c}" for c in ZONE_LETTERS.get(region, "abc")]


ZONES = {z: r for r in REGIONS for z in zones_of(r)}

# accelerator type -> (description, maximum cards per instance)
ACCELERATORS = {
    "nvidia-tesla-t4": ("NVIDIA T4", 4),
    "nvidia-tesla-v100": ("NVIDIA V100", 8),
    "nvidia-tesla-p100": ("NVIDIA P100", 4),
    "nvidia-tesla-p4": ("NVIDIA P4", 4),
    "nvidia-tesla-a100": ("NVIDIA A100 40GB", 16),
    "nvidia-a100-80gb": ("NVIDIA A100 80GB", 8),
    "nvidia-h100-80gb": ("NVIDIA H100 80GB", 8),
    "nvidia-h100-mega-80gb": ("NVIDIA H100 Mega 80GB", 8),
    "nvidia-h200-141gb": ("NVIDIA H200 141GB", 8),
    "nvidia-l4": ("NVIDIA L4", 8),
    "nvidia-b200": ("NVIDIA B200", 8),
}
# Accelerators that attach to N1 through guestAccelerators.
N1_ACCELERATORS = {"nvidia-tesla-t4", "nvidia-tesla-v100", "nvidia-tesla-p100", "nvidia-tesla-p4"}


def _machine_types() -> dict[str, dict[str, Any]]:
    """name -> {guestCpus, memoryMb, accelerators?}."""
    out: dict[str, dict[str, Any]] = {}

    def add(name: str, cpus: int, mem_gb: float, acc: str | None = None, count: int = 0) -> None:
        t: dict[str, Any] = {"guestCpus": cpus, "memoryMb": int(mem_gb * 1024)}
        if acc:
            t["accelerators"] = [{"guestAcceleratorType": acc, "guestAcceleratorCount": count}]
        out[name] = t

    for n in (1, 2, 4, 8, 16, 32, 64, 96):
        add(f"n1-standard-{n}", n, n * 3.75)
        add(f"n1-highmem-{n}", n, n * 6.5)
    for n in (2, 4, 8, 16, 32):
        add(f"e2-standard-{n}", n, n * 4)
    for g in (1, 2, 4, 8):
        add(f"a2-highgpu-{g}g", 12 * g, 85 * g, "nvidia-tesla-a100", g)
        add(f"a2-ultragpu-{g}g", 12 * g, 170 * g, "nvidia-a100-80gb", g)
        add(f"a3-highgpu-{g}g", 26 * g, 234 * g, "nvidia-h100-80gb", g)
    add("a2-megagpu-16g", 96, 1360, "nvidia-tesla-a100", 16)
    add("a3-edgegpu-8g", 208, 1872, "nvidia-h100-80gb", 8)
    add("a3-edgegpu-8g-nolssd", 208, 1872, "nvidia-h100-80gb", 8)
    add("a3-megagpu-8g", 208, 1872, "nvidia-h100-mega-80gb", 8)
    add("a3-ultragpu-8g", 224, 2952, "nvidia-h200-141gb", 8)
    add("a3-ultragpu-8g-nolssd", 224, 2952, "nvidia-h200-141gb", 8)
    add("a4-highgpu-8g", 224, 3968, "nvidia-b200", 8)
    for cpus, gpus in ((4, 1), (8, 1), (12, 1), (16, 1), (24, 2), (32, 1), (48, 4), (96, 8)):
        add(f"g2-standard-{cpus}", cpus, cpus * 4, "nvidia-l4", gpus)
    return out


MACHINE_TYPES = _machine_types()


# ---------------------------------------------------------------------------------------------
# The Cloud Billing Catalog API: Compute Engine's SKUs (service 6F81-5844-456A).
# ---------------------------------------------------------------------------------------------

BILLING_SERVICE = "6F81-5844-456A"
# The real API serves at most 5000 SKUs a page; this one at most BILLING_PAGE_MAX whatever
# `pageSize` asks (AIP-158 lets a server return fewer), so a client must follow
# `nextPageToken` to see them all.
BILLING_PAGE_MAX = 300
BILLING_PATH_RE = re.compile(r"^(?P<prefix>(?:/[^/]+)*?)/v1/services/(?P<service>[^/]+)/skus$")

# Where a SKU applies, as its description says ("running in Americas"), with a price factor
# over the Americas list price. Every region the fake serves is in exactly one.
BILLING_GEOS: list[tuple[str, float, list[str]]] = [
    ("Americas", 1.0, ["us-central1", "us-east1", "us-east5", "us-south1", "us-west1"]),
    ("Virginia", 1.126, ["us-east4"]),
    ("Los Angeles", 1.2, ["us-west2"]),
    ("Salt Lake City", 1.2, ["us-west3"]),
    ("Las Vegas", 1.126, ["us-west4"]),
    ("Montreal", 1.1, ["northamerica-northeast1"]),
    ("Toronto", 1.1, ["northamerica-northeast2"]),
    ("Sao Paulo", 1.588, ["southamerica-east1"]),
    ("EMEA", 1.1, ["europe-west1", "europe-north1", "europe-west4"]),
    ("London", 1.288, ["europe-west2"]),
    ("Frankfurt", 1.288, ["europe-west3"]),
    ("Zurich", 1.392, ["europe-west6"]),
    ("Paris", 1.164, ["europe-west9"]),
    ("Warsaw", 1.288, ["europe-central2"]),
    ("Tel Aviv", 1.1, ["me-west1"]),
    ("Dammam", 1.3, ["me-central2"]),
    ("APAC", 1.16, ["asia-east1", "asia-southeast1"]),
    ("Hong Kong", 1.4, ["asia-east2"]),
    ("Tokyo", 1.288, ["asia-northeast1"]),
    ("Seoul", 1.288, ["asia-northeast3"]),
    ("Mumbai", 1.2, ["asia-south1"]),
    ("Delhi", 1.2, ["asia-south2"]),
    ("Jakarta", 1.3, ["asia-southeast2"]),
    ("Sydney", 1.42, ["australia-southeast1"]),
]
# Machine-family SKU words -> (vCPU-hour, GiB-hour) in the Americas, on demand, and the spot
# factor. The fake's own list prices: close to Google's, deliberately not equal to the
# embedded snapshot's, so a test can tell which priced an offer. A4 (a4-highgpu-8g) has no
# core or RAM SKU here, as in Google's catalog for a while: its offers stay unpriced.
BILLING_FAMILIES: dict[str, tuple[float, float, float]] = {
    "N1 Predefined Instance": (0.0335, 0.0045, 0.21),
    "E2 Instance": (0.023, 0.0031, 0.3),
    "A2 Instance": (0.0331, 0.0044, 0.45),
    "A3 Instance": (0.0335, 0.0045, 0.4),
    "A3Plus Instance": (0.032, 0.0043, 0.4),
    "A3Ultra Instance": (0.035, 0.0047, 0.4),
    "G2 Instance": (0.026, 0.003, 0.42),
}
# GPU SKU words -> (GPU-hour in the Americas on demand, spot factor), one per accelerator type
# the fake knows.
BILLING_GPUS: dict[str, tuple[float, float]] = {
    "Nvidia Tesla T4 GPU": (0.37, 0.4),
    "Nvidia Tesla V100 GPU": (2.6, 0.45),
    "Nvidia Tesla P100 GPU": (1.55, 0.45),
    "Nvidia Tesla P4 GPU": (0.62, 0.35),
    "Nvidia Tesla A100 GPU": (2.99, 0.45),
    "Nvidia A100 80GB GPU": (3.98, 0.85),
    "Nvidia H100 80GB GPU": (10.9, 0.83),
    "Nvidia H100 80GB Mega GPU": (11.2, 0.4),
    "Nvidia H200 141GB GPU": (10.7, 0.5),
    "Nvidia L4 GPU": (0.61, 0.42),
    "Nvidia B200 GPU": (10.4, 0.38),
}


def _money(usd: float) -> dict[str, Any]:
    units = int(usd)
    return {"currencyCode": "USD", "units": str(units), "nanos": int(round((usd - units) * 1e9))}


def _sku(description: str, family: str, group: str, usage: str, unit: str, usd: float, regions: list[str]) -> dict[str, Any]:
    digest = uuid.uuid5(uuid.NAMESPACE_URL, f"{description}/{usage}").hex.upper()
    sku_id = f"{digest[0:4]}-{digest[4:8]}-{digest[8:12]}"
    unit_text = {"h": ("hour", "s", "second", 3600), "GiBy.h": ("gibibyte hour", "By.s", "byte second", 3865470566400),
                 "GiBy.mo": ("gibibyte month", "By.s", "byte second", 2839756800000000)}[unit]
    return {
        "name": f"services/{BILLING_SERVICE}/skus/{sku_id}",
        "skuId": sku_id,
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": family, "resourceGroup": group, "usageType": usage},
        "serviceRegions": list(regions),
        "pricingInfo": [{
            "summary": "",
            "pricingExpression": {
                "usageUnit": unit,
                "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": 0, "unitPrice": _money(usd)}],
                "usageUnitDescription": unit_text[0],
                "baseUnit": unit_text[1],
                "baseUnitDescription": unit_text[2],
                "baseUnitConversionFactor": unit_text[3],
            },
            "currencyConversionRate": 1,
            "effectiveTime": "2026-05-01T00:00:00Z",
        }],
        "serviceProviderName": "Google",
        "geoTaxonomy": {"type": "MULTI_REGIONAL" if len(regions) > 1 else "REGIONAL", "regions": list(regions)},
    }


def _billing_skus() -> list[dict[str, Any]]:
    """Every SKU, ordered by skuId as the API lists them."""
    out = []
    for geo, factor, regions in BILLING_GEOS:
        where = f"running in {geo}"
        for words, (core, ram, spot) in BILLING_FAMILIES.items():
            group = "N1Standard" if words.startswith("N1 ") else None
            for usage, prefix, f in (("OnDemand", "", 1.0), ("Preemptible", "Spot Preemptible ", spot)):
                out.append(_sku(f"{prefix}{words} Core {where}", "Compute", group or "CPU", usage, "h", round(core * factor * f, 6), regions))
                out.append(_sku(f"{prefix}{words} Ram {where}", "Compute", group or "RAM", usage, "GiBy.h", round(ram * factor * f, 6), regions))
        for words, (gpu, spot) in BILLING_GPUS.items():
            out.append(_sku(f"{words} {where}", "Compute", "GPU", "OnDemand", "h", round(gpu * factor, 6), regions))
            out.append(_sku(f"{words} attached to Spot Preemptible VMs {where}", "Compute", "GPU", "Preemptible", "h", round(gpu * factor * spot, 6), regions))
        # What a client must leave alone: other shapes, commitments, workstation licences,
        # families it does not know, and what is not a VM at all.
        out.append(_sku(f"N1 Custom Instance Core {where}", "Compute", "CPU", "OnDemand", "h", round(0.0349 * factor, 6), regions))
        out.append(_sku(f"Commitment v1: N1 Cpu in {geo} for 1 Year", "Compute", "CPU", "Commit1Yr", "h", round(0.0199 * factor, 6), regions))
        out.append(_sku(f"Nvidia Tesla T4 Virtual Workstation GPU {where}", "Compute", "GPU", "OnDemand", "h", round(0.55 * factor, 6), regions))
        out.append(_sku(f"C3 Instance Core {where}", "Compute", "CPU", "OnDemand", "h", round(0.0339 * factor, 6), regions))
        out.append(_sku(f"Storage PD Capacity in {geo}", "Storage", "PDStandard", "OnDemand", "GiBy.mo", round(0.04 * factor, 6), regions))
    return sorted(out, key=lambda s: s["skuId"])


BILLING_SKUS = _billing_skus()


def billing_error(status: int, code: str, message: str, reason: str | None = None) -> dict[str, Any]:
    """A Google API error in the shape of the Billing API's (which, unlike Compute's, has `status`)."""
    err: dict[str, Any] = {"code": status, "message": message, "status": code}
    if reason:
        err["details"] = [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": reason, "domain": "googleapis.com"}]
    return {"error": err}


def now_rfc3339() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="milliseconds")


def new_id() -> str:
    return str(secrets.randbits(63))


def fingerprint() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(8)).decode()


def last(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


def ref_scope(url: str, kind: str) -> str | None:
    """The zone or region named in a (full or partial) resource URL: `kind` is zones|regions."""
    m = re.search(rf"(?:^|/){kind}/([^/]+)", url)
    return m.group(1) if m else None


class ApiError(Exception):
    """A synchronous error answer in Compute's JSON shape."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message

    def body(self) -> dict[str, Any]:
        # No `status` field: the real Compute API is not known to send one (gce.md §0, §6), so
        # a client must go by the HTTP status.
        return {
            "error": {
                "code": self.status,
                "message": self.message,
                "errors": [{"message": self.message, "domain": "global", "reason": self.reason}],
            }
        }


def not_found(what: str) -> ApiError:
    return ApiError(404, "notFound", f"The resource '{what}' was not found")


def invalid(field: str, value: Any, why: str) -> ApiError:
    return ApiError(400, "invalid", f"Invalid value for field '{field}': '{value}'. {why}")


def in_use(what: str, user: str) -> ApiError:
    return ApiError(
        400,
        "resourceInUseByAnotherResource",
        f"The {what} is already being used by '{user}'",
    )


# ---------------------------------------------------------------------------------------------
# Filters (the `filter` query parameter of list calls).
# ---------------------------------------------------------------------------------------------

FILTER_TERM = re.compile(
    r"""\s*(?P<field>[A-Za-z_][\w.\-]*)\s*(?P<op>!=|=|:|\beq\b|\bne\b)\s*
        (?P<value>"(?:[^"\\]|\\.)*"|'[^']*'|[^\s()]+)\s*""",
    re.VERBOSE,
)


def parse_filter(text: str) -> list[tuple[str, str, str]]:
    """`a = "x" AND (labels.b = y)` -> [(field, op, value)], all of which must hold."""
    out: list[tuple[str, str, str]] = []
    rest = text.strip()
    while rest:
        rest = rest.lstrip()
        if rest.startswith("AND ") or rest.startswith("AND("):
            rest = rest[3:]
            continue
        if rest.startswith("OR ") or rest.startswith("OR("):
            raise ApiError(400, "invalid", f"Invalid list filter expression '{text}': OR is not supported by this fake.")
        depth = 0
        if rest.startswith("("):
            depth = 1
            rest = rest[1:]
        m = FILTER_TERM.match(rest)
        if not m:
            raise ApiError(400, "invalid", f"Invalid list filter expression '{text}'.")
        value = m.group("value")
        if value[:1] in "\"'":
            value = value[1:-1].replace('\\"', '"')
        out.append((m.group("field"), m.group("op"), value))
        rest = rest[m.end():]
        if depth:
            rest = rest.lstrip()
            if not rest.startswith(")"):
                raise ApiError(400, "invalid", f"Invalid list filter expression '{text}': unbalanced parentheses.")
            rest = rest[1:]
    return out


def field_value(item: dict[str, Any], path: str) -> Any:
    cur: Any = item
    for part in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def matches_filter(item: dict[str, Any], terms: list[tuple[str, str, str]]) -> bool:
    for field, op, value in terms:
        got = field_value(item, field)
        if isinstance(got, (dict, list)):
            got = json.dumps(got)
        got_s = "" if got is None else str(got).lower() if isinstance(got, bool) else str(got)
        if field in ("zone", "region", "machineType") and op in ("=", "!="):
            # A URL field compares against its last segment or the whole URL.
            ok = got_s == value or last(got_s) == value
        elif op in ("=",):
            ok = got is not None and got_s == value
        elif op == "!=":
            ok = got_s != value
        elif op == ":":
            ok = got is not None and (value == "*" or value in got_s)
        elif op == "eq":
            ok = got is not None and re.fullmatch(value, got_s) is not None
        else:  # ne
            ok = got is None or re.fullmatch(value, got_s) is None
        if not ok:
            return False
    return True


# ---------------------------------------------------------------------------------------------
# The in-memory cloud.
# ---------------------------------------------------------------------------------------------

# collection -> (scope kind, compute#kind, list kind)
COLLECTIONS = {
    "instances": ("zones", "compute#instance"),
    "disks": ("zones", "compute#disk"),
    "addresses": ("regions", "compute#address"),
    "targetPools": ("regions", "compute#targetPool"),
    "forwardingRules": ("regions", "compute#forwardingRule"),
    "resourcePolicies": ("regions", "compute#resourcePolicy"),
}


class Cloud:
    """Every resource, operation, fault and call, behind one lock."""

    def __init__(self, op_polls: int, op_seconds: float) -> None:
        self.lock = threading.RLock()
        self.op_polls = op_polls
        self.op_seconds = op_seconds
        self.reset()

    def reset(self) -> None:
        with self.lock:
            # (collection, project, scope, name) -> resource
            self.items: dict[tuple[str, str, str, str], dict[str, Any]] = {}
            # (project, scope kind, scope, name) -> operation record
            self.ops: dict[tuple[str, str, str, str], dict[str, Any]] = {}
            # (project, requestId) -> operation key
            self.request_ids: dict[tuple[str, str], tuple[str, str, str, str]] = {}
            self.faults: list[dict[str, Any]] = []
            self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
            self.address_seq = 0

    # -- faults ---------------------------------------------------------------------------

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(spec, dict) or not isinstance(spec.get("method"), str) or not isinstance(spec.get("code"), str):
            raise ApiError(400, "invalid", "a fault needs a `method` and a `code`")
        fault = {
            "id": uuid.uuid4().hex[:12],
            "method": spec["method"],
            "match": dict(spec.get("match") or {}),
            "code": spec["code"],
            "message": spec.get("message"),
            "in": spec.get("in"),
            "status": spec.get("status"),
            "reason": spec.get("reason"),
            "quota": spec.get("quota"),
            "times": spec.get("times"),
            "hits": 0,
        }
        with self.lock:
            self.faults.append(fault)
        return fault

    def take_fault(self, method: str, ctx: dict[str, str], raw: str) -> dict[str, Any] | None:
        with self.lock:
            for f in self.faults:
                if f["method"] != method:
                    continue
                if f["times"] is not None and f["hits"] >= f["times"]:
                    continue
                ok = True
                for k, v in f["match"].items():
                    if k == "_any":
                        ok = str(v) in raw
                    else:
                        ok = ctx.get(k) == v
                    if not ok:
                        break
                if ok:
                    f["hits"] += 1
                    return f
        return None

    def holding(self, fault_id: str | None) -> bool:
        if not fault_id:
            return False
        with self.lock:
            return any(f["id"] == fault_id for f in self.faults)

    # -- operations -----------------------------------------------------------------------

    def new_op(
        self,
        project: str,
        scope_kind: str,
        scope: str,
        op_type: str,
        target: dict[str, Any] | str,
        request_id: str | None,
        on_done: Any = None,
        fault: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        name = f"operation-{int(time.time() * 1000)}-{secrets.token_hex(6)}-{secrets.token_hex(4)}-{secrets.token_hex(4)}"
        target_link = target if isinstance(target, str) else target["selfLink"]
        target_id = "" if isinstance(target, str) else target.get("id", "")
        scope_url = f"{BASE}/projects/{project}/{scope_kind}/{scope}"
        op: dict[str, Any] = {
            "kind": "compute#operation",
            "id": new_id(),
            "name": name,
            "operationType": op_type,
            "targetLink": target_link,
            "status": "RUNNING",
            "progress": 0,
            "user": "flotilla-tests@example.iam.gserviceaccount.com",
            "insertTime": now_rfc3339(),
            "startTime": now_rfc3339(),
            "selfLink": f"{scope_url}/operations/{name}",
        }
        op["zone" if scope_kind == "zones" else "region"] = scope_url
        if target_id:
            op["targetId"] = target_id
        if request_id:
            op["clientOperationId"] = request_id
        key = (project, scope_kind, scope, name)
        self.ops[key] = {
            "op": op,
            "polls": 0,
            "started": time.monotonic(),
            "on_done": on_done,
            "fault": fault,
            "hold": fault["id"] if fault and fault["code"] == "HOLD" else None,
        }
        if request_id:
            self.request_ids[(project, request_id)] = key
        return op

    def settle(self, key: tuple[str, str, str, str] | None = None, poll: bool = False) -> None:
        """Finishes operations that have been read often enough or run long enough."""
        keys = [key] if key else list(self.ops)
        for k in keys:
            rec = self.ops.get(k)
            if not rec or rec["op"]["status"] == "DONE":
                continue
            if poll and k == key:
                rec["polls"] += 1
            if self.holding(rec["hold"]):
                continue
            due = rec["polls"] >= self.op_polls or time.monotonic() - rec["started"] >= self.op_seconds
            if due:
                self.finish(rec)

    def finish(self, rec: dict[str, Any]) -> None:
        op = rec["op"]
        error = None
        fault = rec["fault"]
        if fault and fault["code"] != "HOLD":
            error = fault
        if rec["on_done"]:
            rec["on_done"](error)
        op["status"] = "DONE"
        op["progress"] = 100
        op["endTime"] = now_rfc3339()
        if error:
            op.update(op_error(error, op))


def op_error(fault: dict[str, Any], op: dict[str, Any]) -> dict[str, Any]:
    """The `error`, `httpErrorStatusCode` and `httpErrorMessage` of a failed operation."""
    code = fault["code"]
    scope = op.get("zone") or op.get("region") or ""
    scope_path = scope.split("/compute/v1/", 1)[-1]
    zone = last(scope)
    region = ZONES.get(zone, zone)
    if code.startswith("ZONE_RESOURCE_POOL_EXHAUSTED"):
        message = fault["message"] or (
            f"The zone '{scope_path}' does not have enough resources available to fulfill the "
            "request.  Try a different zone, or try again later."
            + ("  '(resource type:compute)'." if code.endswith("_WITH_DETAILS") else "")
        )
        details = [
            {"errorInfo": {"reason": "resource_availability", "domain": "compute.googleapis.com",
                           "metadatas": {"zone": zone, "vmType": "unknown", "zonesAvailable": ""}}},
            {"help": {"links": [{"description": "Troubleshooting documentation",
                                 "url": "https://cloud.google.com/compute/docs/resource-error"}]}},
            {"localizedMessage": {"locale": "en-US",
                                  "message": f"A VM instance is currently unavailable in the {zone} zone."}},
        ]
        status, status_text = fault["status"] or 503, "SERVICE UNAVAILABLE"
    elif code == "QUOTA_EXCEEDED":
        quota = fault["quota"] or "GPUS_ALL_REGIONS"
        message = fault["message"] or f"Quota '{quota}' exceeded.  Limit: 0.0 in region {region}."
        details = [
            {"quotaInfo": {"metricName": f"compute.googleapis.com/{quota.lower()}",
                           "limitName": f"{quota}-per-project-region", "limit": 0.0,
                           "dimensions": {"region": region}}},
        ]
        status, status_text = fault["status"] or 403, "FORBIDDEN"
    else:
        message = fault["message"] or f"{code} (injected by the flotilla test fake)"
        details = []
        status, status_text = fault["status"] or 400, "BAD REQUEST"
    err: dict[str, Any] = {"code": code, "message": message}
    if details:
        err["errorDetails"] = details
    return {
        "error": {"errors": [err]},
        "httpErrorStatusCode": status,
        "httpErrorMessage": status_text,
    }


# ---------------------------------------------------------------------------------------------
# The API.
# ---------------------------------------------------------------------------------------------


class Api:
    """Routes one Compute call to the cloud, under its lock."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    # -- helpers --------------------------------------------------------------------------

    def link(self, project: str, scope_kind: str, scope: str, collection: str, name: str) -> str:
        return f"{BASE}/projects/{project}/{scope_kind}/{scope}/{collection}/{name}"

    def check_scope(self, project: str, scope_kind: str, scope: str) -> None:
        known = ZONES if scope_kind == "zones" else REGIONS
        if scope not in known:
            raise not_found(f"projects/{project}/{scope_kind}/{scope}")

    def get_item(self, collection: str, project: str, scope: str, name: str) -> dict[str, Any]:
        item = self.cloud.items.get((collection, project, scope, name))
        if item is None:
            scope_kind = COLLECTIONS[collection][0]
            raise not_found(f"projects/{project}/{scope_kind}/{scope}/{collection}/{name}")
        return item

    def find_by_link(self, collection: str, url: str, project: str) -> dict[str, Any] | None:
        scope_kind = COLLECTIONS[collection][0]
        scope = ref_scope(url, scope_kind)
        m = re.search(r"(?:^|/)projects/([^/]+)/", url)
        proj = m.group(1) if m else project
        if not scope:
            return None
        return self.cloud.items.get((collection, proj, scope, last(url)))

    def request_id(self, query: dict[str, str]) -> str | None:
        rid = query.get("requestId")
        if rid is None or rid == "":
            return None
        if not UUID_RE.match(rid) or rid.replace("-", "").strip("0") == "":
            raise invalid("requestId", rid, "The requestId must be a valid UUID other than the zero UUID.")
        return rid

    def replay(self, project: str, rid: str | None) -> dict[str, Any] | None:
        if rid is None:
            return None
        key = self.cloud.request_ids.get((project, rid))
        if key is None:
            return None
        self.cloud.settle(key)
        return self.cloud.ops[key]["op"]

    def check_name(self, collection: str, name: Any) -> str:
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise invalid("resource.name", name, "Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'")
        return name

    def check_labels(self, labels: Any, field: str = "resource.labels") -> dict[str, str]:
        if labels is None:
            return {}
        if not isinstance(labels, dict) or len(labels) > 64:
            raise invalid(field, labels, "Labels must be a map of at most 64 entries.")
        for k, v in labels.items():
            if (
                not isinstance(k, str) or not 1 <= len(k) <= 63 or not LABEL_CHARS_RE.match(k)
                or not (k[0].isalpha() and k[0].islower())
                or not isinstance(v, str) or len(v) > 63 or not LABEL_CHARS_RE.match(v)
            ):
                raise invalid(
                    f"{field}",
                    f"{k}={v}",
                    "Label keys and values can only contain lowercase letters, numeric characters, "
                    "underscores and dashes; keys must start with a lowercase letter; each is at most 63 characters.",
                )
        return dict(labels)

    def dup(self, collection: str, project: str, scope: str, name: str) -> None:
        if (collection, project, scope, name) in self.cloud.items:
            scope_kind = COLLECTIONS[collection][0]
            raise ApiError(
                409,
                "alreadyExists",
                f"The resource 'projects/{project}/{scope_kind}/{scope}/{collection}/{name}' already exists",
            )

    def base_item(self, collection: str, project: str, scope: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        scope_kind, kind = COLLECTIONS[collection]
        item = copy.deepcopy(body)
        item.update(
            {
                "kind": kind,
                "id": new_id(),
                "name": name,
                "creationTimestamp": now_rfc3339(),
                "selfLink": self.link(project, scope_kind, scope, collection, name),
            }
        )
        item["zone" if scope_kind == "zones" else "region"] = f"{BASE}/projects/{project}/{scope_kind}/{scope}"
        return item

    # -- listing --------------------------------------------------------------------------

    def list_items(self, collection: str, project: str, scope: str | None, query: dict[str, str]) -> list[dict[str, Any]]:
        terms = parse_filter(query.get("filter", "")) if query.get("filter") else []
        out = [
            item
            for (c, p, s, _), item in sorted(self.cloud.items.items(), key=lambda kv: kv[0])
            if c == collection and p == project and (scope is None or s == scope) and matches_filter(item, terms)
        ]
        return out

    def page(self, items: list[Any], query: dict[str, str]) -> tuple[list[Any], str | None]:
        try:
            size = int(query.get("maxResults", "500"))
        except ValueError:
            raise invalid("maxResults", query.get("maxResults"), "Must be an integer.")
        if not 0 <= size <= 500:
            raise invalid("maxResults", size, "Must be between 0 and 500.")
        size = size or 500
        start = 0
        token = query.get("pageToken")
        if token:
            try:
                start = int(base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)[1])
            except Exception:
                raise invalid("pageToken", token, "Invalid page token.")
        chunk = items[start:start + size]
        nxt = None
        if start + size < len(items):
            nxt = base64.urlsafe_b64encode(f"offset:{start + size}".encode()).decode()
        return chunk, nxt

    def list_reply(self, collection: str, project: str, scope_kind: str, scope: str, items: list[Any], query: dict[str, str]) -> dict[str, Any]:
        chunk, nxt = self.page(items, query)
        kind = COLLECTIONS.get(collection, ("", f"compute#{collection[:-1]}"))[1]
        out: dict[str, Any] = {
            "kind": kind + "List",
            "id": f"projects/{project}/{scope_kind}/{scope}/{collection}",
            "items": chunk,
            "selfLink": f"{BASE}/projects/{project}/{scope_kind}/{scope}/{collection}",
        }
        if nxt:
            out["nextPageToken"] = nxt
        return out

    def aggregated_reply(self, collection: str, project: str, items: list[dict[str, Any]], query: dict[str, str], scope_field: str) -> dict[str, Any]:
        chunk, nxt = self.page(items, query)
        scope_kind = COLLECTIONS.get(collection, ("zones",))[0]
        groups: dict[str, dict[str, Any]] = {}
        for it in chunk:
            key = f"{scope_kind}/{last(it[scope_field])}"
            groups.setdefault(key, {collection: []})[collection].append(it)
        if not query.get("pageToken"):
            scopes = ZONES if scope_kind == "zones" else REGIONS
            for s in scopes:
                key = f"{scope_kind}/{s}"
                if key not in groups:
                    groups[key] = {
                        "warning": {
                            "code": "NO_RESULTS_ON_PAGE",
                            "message": f"There are no results for scope '{key}' on this page.",
                            "data": [{"key": "scope", "value": key}],
                        }
                    }
        kind = COLLECTIONS.get(collection, ("", f"compute#{collection[:-1]}"))[1]
        out: dict[str, Any] = {
            "kind": kind + "AggregatedList",
            "id": f"projects/{project}/aggregated/{collection}",
            "items": dict(sorted(groups.items())),
            "selfLink": f"{BASE}/projects/{project}/aggregated/{collection}",
        }
        if nxt:
            out["nextPageToken"] = nxt
        return out

    # -- catalogue ------------------------------------------------------------------------

    def machine_type(self, project: str, zone: str, name: str) -> dict[str, Any]:
        t = MACHINE_TYPES[name]
        out: dict[str, Any] = {
            "kind": "compute#machineType",
            "id": str(abs(hash(name)) % 10**12),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": name,
            "description": f"{t['guestCpus']} vCPUs, {t['memoryMb'] / 1024:g} GB RAM",
            "guestCpus": t["guestCpus"],
            "memoryMb": t["memoryMb"],
            "maximumPersistentDisks": 128,
            "maximumPersistentDisksSizeGb": "263168",
            "zone": zone,
            "selfLink": self.link(project, "zones", zone, "machineTypes", name),
            "isSharedCpu": False,
        }
        if "accelerators" in t:
            out["accelerators"] = copy.deepcopy(t["accelerators"])
        return out

    def accelerator_type(self, project: str, zone: str, name: str) -> dict[str, Any]:
        desc, cards = ACCELERATORS[name]
        return {
            "kind": "compute#acceleratorType",
            "id": str(abs(hash(name)) % 10**12),
            "creationTimestamp": "1969-12-31T16:00:00.000-08:00",
            "name": name,
            "description": desc,
            "zone": f"{BASE}/projects/{project}/zones/{zone}",
            "selfLink": self.link(project, "zones", zone, "acceleratorTypes", name),
            "maximumCardsPerInstance": cards,
        }

    def catalogue(self, what: str, project: str, zone: str | None, query: dict[str, str]) -> list[dict[str, Any]]:
        zones = [zone] if zone else sorted(ZONES)
        names = sorted(MACHINE_TYPES if what == "machineTypes" else ACCELERATORS)
        make = self.machine_type if what == "machineTypes" else self.accelerator_type
        terms = parse_filter(query.get("filter", "")) if query.get("filter") else []
        out = []
        for z in zones:
            for n in names:
                # Cheap pre-check on the name before building the item.
                item = make(project, z, n)
                if matches_filter(item, terms):
                    out.append(item)
        return out

    # -- dispatch -------------------------------------------------------------------------

    def handle(self, http: str, parts: list[str], query: dict[str, str], body: dict[str, Any], raw: str) -> tuple[int, Any, str]:
        """(status, JSON answer, method name) for a call under /compute/v1/projects/."""
        if not parts:
            raise not_found("/")
        project = parts[0]
        rest = parts[1:]
        cloud = self.cloud
        with cloud.lock:
            cloud.settle()
            # /aggregated/{collection}
            if len(rest) == 2 and rest[0] == "aggregated" and http == "GET":
                collection = rest[1]
                method = f"{collection}.aggregatedList"
                if collection in ("machineTypes", "acceleratorTypes"):
                    items = self.catalogue(collection, project, None, query)
                    return 200, self.aggregated_reply(collection, project, items, query, "zone"), method
                if collection not in COLLECTIONS:
                    raise not_found(f"projects/{project}/aggregated/{collection}")
                scope_kind = COLLECTIONS[collection][0]
                items = self.list_items(collection, project, None, query)
                field = "zone" if scope_kind == "zones" else "region"
                return 200, self.aggregated_reply(collection, project, items, query, field), method
            if len(rest) < 3 or rest[0] not in ("zones", "regions"):
                raise not_found(f"projects/{'/'.join(parts)}")
            scope_kind, scope, collection = rest[0], rest[1], rest[2]
            self.check_scope(project, scope_kind, scope)
            tail = rest[3:]
            # Operations.
            if collection == "operations" and len(tail) >= 1:
                prefix = "zoneOperations" if scope_kind == "zones" else "regionOperations"
                key = (project, scope_kind, scope, tail[0])
                rec = cloud.ops.get(key)
                if rec is None:
                    raise not_found(f"projects/{project}/{scope_kind}/{scope}/operations/{tail[0]}")
                if len(tail) == 1 and http == "GET":
                    cloud.settle(key, poll=True)
                    return 200, rec["op"], f"{prefix}.get"
                if len(tail) == 2 and tail[1] == "wait" and http == "POST":
                    deadline = time.monotonic() + 2.0
                    while rec["op"]["status"] != "DONE" and time.monotonic() < deadline:
                        cloud.settle(key, poll=True)
                        if rec["op"]["status"] == "DONE":
                            break
                        cloud.lock.release()
                        try:
                            time.sleep(0.05)
                        finally:
                            cloud.lock.acquire()
                    return 200, rec["op"], f"{prefix}.wait"
                raise not_found(f"projects/{'/'.join(parts)}")
            if collection in ("machineTypes", "acceleratorTypes") and scope_kind == "zones" and http == "GET":
                method = f"{collection}.{'list' if not tail else 'get'}"
                if tail:
                    table = MACHINE_TYPES if collection == "machineTypes" else ACCELERATORS
                    if tail[0] not in table:
                        raise not_found(f"projects/{project}/zones/{scope}/{collection}/{tail[0]}")
                    make = self.machine_type if collection == "machineTypes" else self.accelerator_type
                    return 200, make(project, scope, tail[0]), method
                items = self.catalogue(collection, project, scope, query)
                return 200, self.list_reply(collection, project, "zones", scope, items, query), method
            if collection not in COLLECTIONS or COLLECTIONS[collection][0] != scope_kind:
                raise not_found(f"projects/{'/'.join(parts)}")
            if not tail:
                if http == "GET":
                    items = self.list_items(collection, project, scope, query)
                    return 200, self.list_reply(collection, project, scope_kind, scope, items, query), f"{collection}.list"
                if http == "POST":
                    method = f"{collection}.insert"
                    rid = self.request_id(query)
                    replayed = self.replay(project, rid)
                    if replayed is not None:
                        return 200, replayed, method
                    fault = self.fault(method, scope_kind, scope, body, raw)
                    op = getattr(self, f"insert_{collection}")(project, scope, body, rid, fault)
                    return 200, op, method
                raise not_found(f"projects/{'/'.join(parts)}")
            name = tail[0]
            if len(tail) == 1:
                if http == "GET":
                    return 200, self.get_item(collection, project, scope, name), f"{collection}.get"
                if http == "DELETE":
                    method = f"{collection}.delete"
                    rid = self.request_id(query)
                    replayed = self.replay(project, rid)
                    if replayed is not None:
                        return 200, replayed, method
                    item = self.get_item(collection, project, scope, name)
                    fault = self.fault(method, scope_kind, scope, item, raw)
                    return 200, self.delete(collection, project, scope, item, rid, fault), method
                raise not_found(f"projects/{'/'.join(parts)}")
            if len(tail) == 2 and http == "POST":
                verb = tail[1]
                method = f"{collection}.{verb}"
                handler = getattr(self, f"{collection}_{verb}", None)
                if handler is None:
                    raise not_found(f"projects/{'/'.join(parts)}")
                rid = self.request_id(query)
                replayed = self.replay(project, rid)
                if replayed is not None:
                    return 200, replayed, method
                item = self.get_item(collection, project, scope, name)
                fault = self.fault(method, scope_kind, scope, item, raw)
                return 200, handler(project, scope, item, body, query, rid, fault), method
            raise not_found(f"projects/{'/'.join(parts)}")

    def fault(self, method: str, scope_kind: str, scope: str, body: dict[str, Any], raw: str) -> dict[str, Any] | None:
        ctx = {
            "zone": scope if scope_kind == "zones" else "",
            "region": scope if scope_kind == "regions" else ZONES.get(scope, ""),
            "machineType": last(str(body.get("machineType", ""))),
        }
        f = self.cloud.take_fault(method, ctx, raw)
        if f is None:
            return None
        sync = f["in"] == "sync" or (
            f["in"] is None and f["code"] not in ("HOLD", "QUOTA_EXCEEDED") and not f["code"].startswith("ZONE_RESOURCE_POOL_EXHAUSTED")
        )
        if sync:
            status = int(f["status"] or (403 if f["code"] == "QUOTA_EXCEEDED" else 400))
            reason = f["reason"] or ("quotaExceeded" if f["code"] == "QUOTA_EXCEEDED" else f["code"])
            message = f["message"] or (
                f"Quota '{f['quota'] or 'GPUS_ALL_REGIONS'}' exceeded.  Limit: 0.0 in region {ctx['region']}."
                if f["code"] == "QUOTA_EXCEEDED"
                else f"{f['code']} (injected by the flotilla test fake)"
            )
            raise ApiError(status, reason, message)
        return f

    # -- instances ------------------------------------------------------------------------

    def insert_instances(self, project: str, zone: str, body: dict[str, Any], rid: str | None, fault: dict[str, Any] | None) -> dict[str, Any]:
        name = self.check_name("instances", body.get("name"))
        self.dup("instances", project, zone, name)
        region = ZONES[zone]
        mt_ref = body.get("machineType")
        if not isinstance(mt_ref, str) or not mt_ref:
            raise ApiError(400, "required", "Required field 'resource.machineType' not specified")
        mt_zone = ref_scope(mt_ref, "zones")
        mt = last(mt_ref)
        if mt not in MACHINE_TYPES or (mt_zone and mt_zone != zone):
            raise invalid(
                "resource.machineType",
                mt_ref,
                f"Machine type with name '{mt}' does not exist in zone '{zone}'.",
            )
        bundled = MACHINE_TYPES[mt].get("accelerators")
        accs = body.get("guestAccelerators") or []
        for i, acc in enumerate(accs):
            ref = acc.get("acceleratorType", "") if isinstance(acc, dict) else ""
            a = last(ref)
            a_zone = ref_scope(ref, "zones")
            if a not in ACCELERATORS or (a_zone and a_zone != zone):
                raise invalid(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    ref,
                    f"Accelerator type '{a}' does not exist in zone '{zone}'.",
                )
            count = acc.get("acceleratorCount")
            if not isinstance(count, int) or count < 1 or count > ACCELERATORS[a][1]:
                raise invalid(f"resource.guestAccelerators[{i}].acceleratorCount", count, "Invalid accelerator count.")
            if bundled:
                raise invalid(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    ref,
                    f"Machine type '{mt}' comes with its accelerators; guestAccelerators cannot be specified.",
                )
            if not mt.startswith("n1-") or a not in N1_ACCELERATORS:
                raise invalid(
                    f"resource.guestAccelerators[{i}].acceleratorType",
                    ref,
                    f"Accelerator type '{a}' cannot be attached to machine type '{mt}'.",
                )
        scheduling = body.get("scheduling") or {}
        gpu = bool(accs) or bool(bundled)
        if gpu and scheduling.get("onHostMaintenance") != "TERMINATE":
            raise ApiError(400, "badRequest", "Instances with guest accelerators do not support live migration.")
        spot = scheduling.get("provisioningModel") == "SPOT"
        if spot:
            if scheduling.get("automaticRestart") is True or scheduling.get("onHostMaintenance") == "MIGRATE":
                raise ApiError(
                    400,
                    "badRequest",
                    "Invalid value for field 'resource.scheduling': Spot VMs cannot automatically restart or live migrate.",
                )
            action = scheduling.get("instanceTerminationAction")
            if action not in (None, "STOP", "DELETE"):
                raise invalid("resource.scheduling.instanceTerminationAction", action, "Must be STOP or DELETE.")
        labels = self.check_labels(body.get("labels"))
        for item in (body.get("metadata") or {}).get("items") or []:
            if not isinstance(item, dict) or not METADATA_KEY_RE.match(str(item.get("key", ""))):
                raise invalid("resource.metadata", item, "Metadata keys must match [a-zA-Z0-9-_]{1,128}.")
        # Disks: exactly one boot disk; sources must exist in the zone and be free.
        disks = body.get("disks") or []
        boots = [d for d in disks if d.get("boot")]
        if len(boots) != 1:
            raise ApiError(400, "invalid", "Invalid value for field 'resource.disks': exactly one boot disk must be specified.")
        attached: list[dict[str, Any]] = []
        new_disks: list[dict[str, Any]] = []
        for i, d in enumerate(disks):
            if d.get("source"):
                disk = self.find_by_link("disks", d["source"], project)
                if disk is None:
                    raise not_found(d["source"].split("/compute/v1/", 1)[-1])
                if last(disk["zone"]) != zone:
                    raise invalid(f"resource.disks[{i}].source", d["source"], f"Disk must be in zone '{zone}'.")
                if disk.get("users"):
                    raise in_use(f"disk resource '{disk['selfLink']}'", disk["users"][0])
                attached.append((d, disk))
            elif d.get("initializeParams"):
                ip = d["initializeParams"]
                if d.get("boot") and not (ip.get("sourceImage") or ip.get("sourceSnapshot")):
                    raise ApiError(400, "invalid", "Invalid value for field 'resource.disks[0]': a boot disk needs a source image or snapshot.")
                dname = ip.get("diskName") or (name if d.get("boot") else f"{name}-{i}")
                self.check_name("disks", dname)
                self.dup("disks", project, zone, dname)
                new_disks.append((d, dname, ip))
            else:
                raise ApiError(400, "invalid", f"Invalid value for field 'resource.disks[{i}]': a disk needs a source or initializeParams.")
        policies = body.get("resourcePolicies") or []
        for pref in policies:
            pol = self.find_by_link("resourcePolicies", pref, project)
            if pol is None or last(pol["region"]) != region:
                raise invalid("resource.resourcePolicies", pref, f"Resource policy must exist in region '{region}'.")
            gp = pol.get("groupPlacementPolicy") or {}
            cap = gp.get("vmCount")
            if cap is not None and len(pol.get("users", [])) >= int(cap):
                raise ApiError(
                    400,
                    "badRequest",
                    f"The resource policy '{pol['selfLink']}' already holds its {cap} VMs (vmCount).",
                )
        # Accepted: make it.
        inst = self.base_item("instances", project, zone, name, body)
        inst["machineType"] = self.link(project, "zones", zone, "machineTypes", mt)
        inst["status"] = "PROVISIONING"
        inst["labels"] = labels
        inst["labelFingerprint"] = fingerprint()
        inst["fingerprint"] = fingerprint()
        inst["cpuPlatform"] = "Unknown CPU Platform"
        inst["metadata"] = {
            "kind": "compute#metadata",
            "fingerprint": fingerprint(),
            "items": copy.deepcopy((body.get("metadata") or {}).get("items") or []),
        }
        sched = {"onHostMaintenance": "MIGRATE", "automaticRestart": True, "preemptible": False, "provisioningModel": "STANDARD"}
        if gpu or spot:
            sched.update({"onHostMaintenance": "TERMINATE"})
        if spot:
            sched.update({"automaticRestart": False})
        sched.update(scheduling)
        inst["scheduling"] = sched
        if accs:
            inst["guestAccelerators"] = [
                {"acceleratorType": self.link(project, "zones", zone, "acceleratorTypes", last(a["acceleratorType"])),
                 "acceleratorCount": a["acceleratorCount"]}
                for a in accs
            ]
        nics = body.get("networkInterfaces") or [{}]
        out_nics = []
        for n, nic in enumerate(nics):
            nic = copy.deepcopy(nic)
            nic.setdefault("network", f"{BASE}/projects/{project}/global/networks/default")
            nic["name"] = f"nic{n}"
            nic["kind"] = "compute#networkInterface"
            nic["networkIP"] = nic.get("networkIP") or f"10.128.{secrets.randbelow(250)}.{secrets.randbelow(250) + 2}"
            for ac in nic.get("accessConfigs") or []:
                ac.setdefault("kind", "compute#accessConfig")
                ac.setdefault("natIP", f"34.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 2}")
            out_nics.append(nic)
        inst["networkInterfaces"] = out_nics
        if policies:
            inst["resourcePolicies"] = [
                self.find_by_link("resourcePolicies", p, project)["selfLink"] for p in policies
            ]
        out_disks = []
        made: list[dict[str, Any]] = []
        for index, d in enumerate(disks):
            ad = {
                "kind": "compute#attachedDisk",
                "type": d.get("type", "PERSISTENT"),
                "mode": d.get("mode", "READ_WRITE"),
                "boot": bool(d.get("boot")),
                "autoDelete": bool(d.get("autoDelete", False)),
                "interface": d.get("interface", "SCSI"),
                "index": index,
            }
            src = next((disk for (dd, disk) in attached if dd is d), None)
            if src is None:
                _, dname, ip = next(x for x in new_disks if x[0] is d)
                disk = self.base_item("disks", project, zone, dname, {})
                disk.update({
                    "sizeGb": str(ip.get("diskSizeGb") or "10"),
                    "type": self.link(project, "zones", zone, "diskTypes", last(ip.get("diskType") or "pd-standard")),
                    "status": "CREATING",
                    "labels": self.check_labels(ip.get("labels"), "resource.disks.initializeParams.labels"),
                    "labelFingerprint": fingerprint(),
                })
                if ip.get("sourceImage"):
                    disk["sourceImage"] = ip["sourceImage"]
                self.cloud.items[("disks", project, zone, dname)] = disk
                made.append(disk)
                src = disk
            ad["source"] = src["selfLink"]
            ad["deviceName"] = d.get("deviceName") or (name if d.get("boot") else src["name"])
            ad["diskSizeGb"] = src["sizeGb"]
            src["users"] = [inst["selfLink"]]
            out_disks.append(ad)
        inst["disks"] = out_disks
        self.cloud.items[("instances", project, zone, name)] = inst
        for p in inst.get("resourcePolicies", []):
            pol = self.find_by_link("resourcePolicies", p, project)
            pol.setdefault("users", []).append(inst["selfLink"])
        def done(error: dict[str, Any] | None) -> None:
            if error:
                # A failed insert leaves nothing behind: the instance GET answers 404.
                self.remove_instance(project, zone, inst, error=True)
                return
            inst["status"] = "RUNNING"
            inst["lastStartTimestamp"] = now_rfc3339()
            for disk in made:
                disk["status"] = "READY"

        return self.cloud.new_op(project, "zones", zone, "insert", inst, rid, done, fault)

    def remove_instance(self, project: str, zone: str, inst: dict[str, Any], error: bool = False) -> None:
        self.cloud.items.pop(("instances", project, zone, inst["name"]), None)
        for ad in inst.get("disks", []):
            disk = self.find_by_link("disks", ad["source"], project)
            if disk is None:
                continue
            disk["users"] = [u for u in disk.get("users", []) if u != inst["selfLink"]]
            if ad.get("autoDelete") or (error and disk.get("status") == "CREATING"):
                self.cloud.items.pop(("disks", project, zone, disk["name"]), None)
        for (c, p, s, n), item in list(self.cloud.items.items()):
            if c == "resourcePolicies" and p == project:
                item["users"] = [u for u in item.get("users", []) if u != inst["selfLink"]]

    def instances_attachDisk(self, project: str, zone: str, inst: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        src = body.get("source")
        if not src:
            raise ApiError(400, "required", "Required field 'resource.source' not specified")
        disk = self.find_by_link("disks", src, project)
        if disk is None:
            raise not_found(src.split("/compute/v1/", 1)[-1])
        if last(disk["zone"]) != zone:
            raise invalid("resource.source", src, f"Disk must be in the same zone as the instance ('{zone}').")
        if disk.get("users"):
            raise in_use(f"disk resource '{disk['selfLink'].split('/compute/v1/', 1)[-1]}'", disk["users"][0])
        device = body.get("deviceName") or disk["name"]
        if any(d.get("deviceName") == device for d in inst["disks"]):
            raise invalid("resource.deviceName", device, "The device name is already in use on this instance.")
        inst["disks"].append({
            "kind": "compute#attachedDisk",
            "type": "PERSISTENT",
            "mode": body.get("mode", "READ_WRITE"),
            "source": disk["selfLink"],
            "deviceName": device,
            "index": max((d["index"] for d in inst["disks"]), default=-1) + 1,
            "boot": False,
            "autoDelete": bool(body.get("autoDelete", False)),
            "interface": body.get("interface", "SCSI"),
            "diskSizeGb": disk["sizeGb"],
        })
        disk["users"] = [inst["selfLink"]]
        inst["fingerprint"] = fingerprint()
        return self.cloud.new_op(project, "zones", zone, "attachDisk", inst, rid, None, fault)

    def instances_detachDisk(self, project: str, zone: str, inst: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        device = query.get("deviceName")
        if not device:
            raise ApiError(400, "required", "Required field 'deviceName' not specified")
        ad = next((d for d in inst["disks"] if d.get("deviceName") == device), None)
        if ad is None:
            raise invalid("deviceName", device, f"No attached disk found with device name '{device}'")
        if ad.get("boot"):
            raise ApiError(400, "badRequest", "The boot disk cannot be detached from a running instance.")
        inst["disks"].remove(ad)
        disk = self.find_by_link("disks", ad["source"], project)
        if disk is not None:
            disk["users"] = [u for u in disk.get("users", []) if u != inst["selfLink"]]
        inst["fingerprint"] = fingerprint()
        return self.cloud.new_op(project, "zones", zone, "detachDisk", inst, rid, None, fault)

    def instances_setLabels(self, project: str, zone: str, inst: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        if body.get("labelFingerprint") != inst["labelFingerprint"]:
            raise ApiError(
                412,
                "conditionNotMet",
                "Labels fingerprint either invalid or resource labels have changed",
            )
        inst["labels"] = self.check_labels(body.get("labels"), "labels")
        inst["labelFingerprint"] = fingerprint()
        return self.cloud.new_op(project, "zones", zone, "setLabels", inst, rid, None, fault)

    def instances_setMetadata(self, project: str, zone: str, inst: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        if body.get("fingerprint") != inst["metadata"]["fingerprint"]:
            raise ApiError(
                412,
                "conditionNotMet",
                "Supplied fingerprint does not match current metadata fingerprint.",
            )
        for item in body.get("items") or []:
            if not isinstance(item, dict) or not METADATA_KEY_RE.match(str(item.get("key", ""))):
                raise invalid("metadata", item, "Metadata keys must match [a-zA-Z0-9-_]{1,128}.")
        inst["metadata"] = {"kind": "compute#metadata", "fingerprint": fingerprint(), "items": copy.deepcopy(body.get("items") or [])}
        return self.cloud.new_op(project, "zones", zone, "setMetadata", inst, rid, None, fault)

    # -- disks ----------------------------------------------------------------------------

    def insert_disks(self, project: str, zone: str, body: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        name = self.check_name("disks", body.get("name"))
        self.dup("disks", project, zone, name)
        labels = self.check_labels(body.get("labels"))
        size = body.get("sizeGb")
        try:
            size_n = int(size) if size is not None else 500
        except (TypeError, ValueError):
            raise invalid("resource.sizeGb", size, "Must be an integer.")
        if size_n < 1 or size_n > 65536:
            raise invalid("resource.sizeGb", size, "Disk size must be between 1 and 65536 GB.")
        dtype = body.get("type") or f"zones/{zone}/diskTypes/pd-standard"
        t_zone = ref_scope(dtype, "zones")
        if t_zone and t_zone != zone:
            raise invalid("resource.type", dtype, f"Disk type must be in zone '{zone}'.")
        if last(dtype) not in ("pd-standard", "pd-balanced", "pd-ssd", "pd-extreme", "hyperdisk-balanced", "hyperdisk-throughput", "hyperdisk-extreme", "hyperdisk-ml"):
            raise invalid("resource.type", dtype, f"Disk type '{last(dtype)}' does not exist in zone '{zone}'.")
        disk = self.base_item("disks", project, zone, name, body)
        disk.update({
            "sizeGb": str(size_n),
            "type": self.link(project, "zones", zone, "diskTypes", last(dtype)),
            "status": "CREATING",
            "labels": labels,
            "labelFingerprint": fingerprint(),
            "users": [],
        })
        self.cloud.items[("disks", project, zone, name)] = disk

        def done(error: dict[str, Any] | None) -> None:
            if error:
                self.cloud.items.pop(("disks", project, zone, name), None)
            else:
                disk["status"] = "READY"

        return self.cloud.new_op(project, "zones", zone, "insert", disk, rid, done, fault)

    # -- addresses, target pools, forwarding rules, resource policies ---------------------

    def insert_addresses(self, project: str, region: str, body: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        name = self.check_name("addresses", body.get("name"))
        self.dup("addresses", project, region, name)
        labels = self.check_labels(body.get("labels"))
        atype = body.get("addressType", "EXTERNAL")
        if atype not in ("EXTERNAL", "INTERNAL"):
            raise invalid("resource.addressType", atype, "Must be EXTERNAL or INTERNAL.")
        self.cloud.address_seq += 1
        seq = self.cloud.address_seq
        addr = self.base_item("addresses", project, region, name, body)
        addr.update({
            "address": body.get("address") or f"35.{200 + seq // 62500 % 50}.{seq // 250 % 250}.{seq % 250 + 1}",
            "addressType": atype,
            "networkTier": body.get("networkTier", "PREMIUM"),
            "status": "RESERVED",
            "labels": labels,
            "labelFingerprint": fingerprint(),
        })
        self.cloud.items[("addresses", project, region, name)] = addr
        return self.cloud.new_op(project, "regions", region, "insert", addr, rid, self.undo_on_error("addresses", project, region, name), fault)

    def insert_targetPools(self, project: str, region: str, body: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        name = self.check_name("targetPools", body.get("name"))
        self.dup("targetPools", project, region, name)
        members = []
        for ref in body.get("instances") or []:
            inst = self.find_by_link("instances", ref, project)
            if inst is None or ZONES.get(last(inst["zone"])) != region:
                raise invalid("resource.instances", ref, f"Instance must exist in region '{region}'.")
            members.append(inst["selfLink"])
        pool = self.base_item("targetPools", project, region, name, body)
        pool["instances"] = members
        pool.setdefault("sessionAffinity", "NONE")
        self.cloud.items[("targetPools", project, region, name)] = pool
        return self.cloud.new_op(project, "regions", region, "insert", pool, rid, self.undo_on_error("targetPools", project, region, name), fault)

    def pool_refs(self, project: str, region: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for i, ref in enumerate(body.get("instances") or []):
            url = ref.get("instance") if isinstance(ref, dict) else None
            if not url:
                raise ApiError(400, "required", f"Required field 'resource.instances[{i}].instance' not specified")
            inst = self.find_by_link("instances", url, project)
            if inst is None:
                raise not_found(url.split("/compute/v1/", 1)[-1])
            if ZONES.get(last(inst["zone"])) != region:
                raise invalid(f"resource.instances[{i}].instance", url, f"Instance must be in region '{region}'.")
            out.append(inst)
        return out

    def targetPools_addInstance(self, project: str, region: str, pool: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        for inst in self.pool_refs(project, region, body):
            if inst["selfLink"] not in pool["instances"]:
                pool["instances"].append(inst["selfLink"])
        return self.cloud.new_op(project, "regions", region, "addInstance", pool, rid, None, fault)

    def targetPools_removeInstance(self, project: str, region: str, pool: dict[str, Any], body: dict[str, Any], query: dict[str, str], rid: str | None, fault: Any) -> dict[str, Any]:
        refs = [r.get("instance", "") for r in body.get("instances") or [] if isinstance(r, dict)]
        if not refs:
            raise ApiError(400, "required", "Required field 'resource.instances' not specified")
        names = {(ref_scope(r, "zones"), last(r)) for r in refs}
        pool["instances"] = [u for u in pool["instances"] if (ref_scope(u, "zones"), last(u)) not in names]
        return self.cloud.new_op(project, "regions", region, "removeInstance", pool, rid, None, fault)

    def insert_forwardingRules(self, project: str, region: str, body: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        name = self.check_name("forwardingRules", body.get("name"))
        self.dup("forwardingRules", project, region, name)
        labels = self.check_labels(body.get("labels"))
        target = body.get("target")
        pool = self.find_by_link("targetPools", target, project) if target else None
        if pool is None:
            raise invalid("resource.target", target, "The target must be an existing target pool in this region.")
        proto = body.get("IPProtocol", "TCP")
        if proto not in ("TCP", "UDP", "ESP", "AH", "SCTP", "ICMP", "L3_DEFAULT"):
            raise invalid("resource.IPProtocol", proto, "Unknown protocol.")
        port_range = body.get("portRange")
        if port_range is not None and not re.fullmatch(r"\d{1,5}(-\d{1,5})?", str(port_range)):
            raise invalid("resource.portRange", port_range, "Must be a port or a range such as 8000-8080.")
        ip = body.get("IPAddress")
        address = None
        if ip:
            if "/" in ip:
                address = self.find_by_link("addresses", ip, project)
                if address is None:
                    raise not_found(ip.split("/compute/v1/", 1)[-1])
            else:
                address = next(
                    (a for (c, p, s, _), a in self.cloud.items.items() if c == "addresses" and p == project and s == region and a["address"] == ip),
                    None,
                )
            if address is not None and address.get("users"):
                raise in_use(f"address '{address['name']}'", address["users"][0])
        rule = self.base_item("forwardingRules", project, region, name, body)
        rule.update({
            "IPAddress": address["address"] if address else (ip or f"34.{secrets.randbelow(250)}.{secrets.randbelow(250)}.{secrets.randbelow(250) + 1}"),
            "IPProtocol": proto,
            "target": pool["selfLink"],
            "loadBalancingScheme": body.get("loadBalancingScheme", "EXTERNAL"),
            "networkTier": body.get("networkTier", "PREMIUM"),
            "labels": labels,
            "labelFingerprint": fingerprint(),
        })
        if port_range is not None:
            rule["portRange"] = f"{port_range}-{port_range}" if "-" not in str(port_range) else str(port_range)
        self.cloud.items[("forwardingRules", project, region, name)] = rule
        if address is not None:
            address["users"] = [rule["selfLink"]]
            address["status"] = "IN_USE"
        return self.cloud.new_op(project, "regions", region, "insert", rule, rid, self.undo_on_error("forwardingRules", project, region, name), fault)

    def insert_resourcePolicies(self, project: str, region: str, body: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        name = self.check_name("resourcePolicies", body.get("name"))
        self.dup("resourcePolicies", project, region, name)
        gp = body.get("groupPlacementPolicy")
        if gp is not None:
            if gp.get("collocation", "COLLOCATED") not in ("COLLOCATED", "UNSPECIFIED_COLLOCATION"):
                raise invalid("resource.groupPlacementPolicy.collocation", gp.get("collocation"), "Must be COLLOCATED.")
            vm = gp.get("vmCount")
            if vm is not None and (not isinstance(vm, int) or not 2 <= vm <= 1500):
                raise invalid("resource.groupPlacementPolicy.vmCount", vm, "vmCount must be between 2 and 1500.")
        pol = self.base_item("resourcePolicies", project, region, name, body)
        pol["status"] = "CREATING"
        pol["users"] = []
        self.cloud.items[("resourcePolicies", project, region, name)] = pol

        def done(error: dict[str, Any] | None) -> None:
            if error:
                self.cloud.items.pop(("resourcePolicies", project, region, name), None)
            else:
                pol["status"] = "READY"

        return self.cloud.new_op(project, "regions", region, "insert", pol, rid, done, fault)

    def undo_on_error(self, collection: str, project: str, scope: str, name: str) -> Any:
        def done(error: dict[str, Any] | None) -> None:
            if error:
                self.cloud.items.pop((collection, project, scope, name), None)

        return done

    # -- delete ---------------------------------------------------------------------------

    def delete(self, collection: str, project: str, scope: str, item: dict[str, Any], rid: str | None, fault: Any) -> dict[str, Any]:
        scope_kind = COLLECTIONS[collection][0]
        key = (collection, project, scope, item["name"])
        short = item["selfLink"].split("/compute/v1/", 1)[-1]
        if collection == "disks" and item.get("users"):
            raise in_use(f"disk resource '{short}'", item["users"][0])
        if collection == "addresses" and item.get("users"):
            raise in_use(f"address resource '{short}'", item["users"][0])
        if collection == "resourcePolicies" and item.get("users"):
            raise in_use(f"resource policy '{short}'", item["users"][0])
        if collection == "targetPools":
            for (c, p, s, _), rule in self.cloud.items.items():
                if c == "forwardingRules" and p == project and rule.get("target") == item["selfLink"]:
                    raise in_use(f"target pool '{short}'", rule["selfLink"])
        if collection == "instances":
            item["status"] = "STOPPING"
        elif collection in ("disks", "resourcePolicies"):
            item["status"] = "DELETING"

        def done(error: dict[str, Any] | None) -> None:
            if error:
                if collection == "instances":
                    item["status"] = "RUNNING"
                elif collection in ("disks",):
                    item["status"] = "READY"
                return
            if collection == "instances":
                self.remove_instance(project, scope, item)
                return
            self.cloud.items.pop(key, None)
            if collection == "forwardingRules":
                for (c, p, s, _), a in self.cloud.items.items():
                    if c == "addresses" and item["selfLink"] in a.get("users", []):
                        a["users"] = [u for u in a["users"] if u != item["selfLink"]]
                        if not a["users"]:
                            a["status"] = "RESERVED"
                            a.pop("users")

        return self.cloud.new_op(project, scope_kind, scope, "delete", item, rid, done, fault)


# ---------------------------------------------------------------------------------------------
# HTTP.
# ---------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    server_version = "flotilla-gce-fake/1"
    protocol_version = "HTTP/1.1"
    api: Api

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
        if os.environ.get("GCE_FAKE_VERBOSE"):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self.dispatch("GET")

    def do_POST(self) -> None:
        self.dispatch("POST")

    def do_DELETE(self) -> None:
        self.dispatch("DELETE")

    def do_PUT(self) -> None:
        self.dispatch("PUT")

    def do_PATCH(self) -> None:
        self.dispatch("PATCH")

    def reply(self, status: int, value: Any, content_type: str = "application/json; charset=UTF-8") -> None:
        body = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def dispatch(self, http: str) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        length = int(self.headers.get("Content-Length") or 0)
        raw_body = self.rfile.read(length) if length else b""
        cloud = self.api.cloud
        try:
            if path == "/_health":
                return self.reply(200, b"ok", "text/plain")
            if path == "/_reset" and http == "POST":
                cloud.reset()
                return self.reply(200, {"reset": True})
            if path == "/_fault" or path.startswith("/_fault/"):
                return self.fault_api(http, path, raw_body)
            if path == "/_calls" and http == "GET":
                return self.calls_api(query)
            billing = BILLING_PATH_RE.match(path)
            if billing:
                return self.billing_api(http, path, billing.group("service"), query, url.query)
            prefix = "/compute/v1/projects/"
            if not path.startswith(prefix):
                raise not_found(path)
            try:
                body = json.loads(raw_body) if raw_body.strip() else {}
            except json.JSONDecodeError as e:
                raise ApiError(400, "parseError", f"Invalid JSON payload received. {e}")
            if not isinstance(body, dict):
                raise ApiError(400, "parseError", "Invalid JSON payload received. Expected an object.")
            parts = [p for p in path[len(prefix):].split("/") if p]
            raw = path + "?" + url.query + " " + raw_body.decode("utf-8", "replace")
            method = "?"
            try:
                status, answer, method = self.api.handle(http, parts, query, body, raw)
            except ApiError:
                method = guess_method(http, parts)
                raise
            finally:
                q = {k: v for k, v in query.items() if k != "$alt"}
                with cloud.lock:
                    cloud.calls.append({"method": method if method != "?" else guess_method(http, parts), "http": http, "path": path, "query": q, "body": body})
            return self.reply(status, answer)
        except ApiError as e:
            return self.reply(e.status, e.body())
        except Exception as e:  # a bug in the fake: say so loudly, as a 500
            import traceback

            traceback.print_exc()
            return self.reply(500, ApiError(500, "backendError", f"fake error: {e!r}").body())

    def fault_api(self, http: str, path: str, raw_body: bytes) -> None:
        cloud = self.api.cloud
        if http == "POST" and path == "/_fault":
            try:
                spec = json.loads(raw_body or b"{}")
            except json.JSONDecodeError as e:
                raise ApiError(400, "parseError", str(e))
            fault = cloud.add_fault(spec)
            return self.reply(200, {"id": fault["id"]})
        if http == "GET" and path == "/_fault":
            with cloud.lock:
                return self.reply(200, list(cloud.faults))
        if http == "DELETE":
            fault_id = path[len("/_fault/"):] if path.startswith("/_fault/") else None
            with cloud.lock:
                before = len(cloud.faults)
                cloud.faults = [f for f in cloud.faults if fault_id is not None and f["id"] != fault_id]
                removed = before - len(cloud.faults)
            return self.reply(200, {"removed": removed})
        raise not_found(path)

    def billing_api(self, http: str, path: str, service: str, query: dict[str, str], raw_query: str) -> None:
        """`services.skus.list` of the Cloud Billing Catalog API, under any path prefix (so a
        test can point FLOTILLA_GCP_BILLING_ENDPOINT at `http://HOST:PORT/<its tag>` and scope
        faults to its own calls through `_any`)."""
        cloud = self.api.cloud
        q = {k: v for k, v in query.items() if k != "$alt"}
        with cloud.lock:
            cloud.calls.append({"method": "skus.list", "http": http, "path": path, "query": q, "body": {}})
        if http != "GET":
            return self.reply(404, billing_error(404, "NOT_FOUND", f"Method {http} {path} not found."))
        fault = cloud.take_fault("skus.list", {}, f"{path}?{raw_query}")
        if fault is not None:
            code = fault["code"]
            status = int(fault["status"] or {"PERMISSION_DENIED": 403, "UNAUTHENTICATED": 401, "RESOURCE_EXHAUSTED": 429, "UNAVAILABLE": 503, "INTERNAL": 500}.get(code, 400))
            message = fault["message"] or {
                "PERMISSION_DENIED": "The caller does not have permission",
                "UNAUTHENTICATED": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
            }.get(code, f"{code} (injected by the flotilla test fake)")
            return self.reply(status, billing_error(status, code, message, fault["reason"]))
        if service != BILLING_SERVICE:
            return self.reply(404, billing_error(404, "NOT_FOUND", f"Service not found: services/{service}"))
        currency = query.get("currencyCode", "USD")
        if currency != "USD":
            # The real API converts; this fake knows list prices in USD only, and says so.
            return self.reply(400, billing_error(400, "INVALID_ARGUMENT", f"currency_code {currency!r}: this fake prices in USD only"))
        try:
            size = int(query.get("pageSize") or 5000)
        except ValueError:
            return self.reply(400, billing_error(400, "INVALID_ARGUMENT", f"Invalid value at 'page_size' (TYPE_INT32), \"{query.get('pageSize')}\""))
        if not 0 < size <= 5000:
            return self.reply(400, billing_error(400, "INVALID_ARGUMENT", "page_size must be between 1 and 5000"))
        size = min(size, BILLING_PAGE_MAX)
        start = 0
        token = query.get("pageToken")
        if token:
            try:
                kind, offset = base64.urlsafe_b64decode(token.encode()).decode().split(":", 1)
                start = int(offset)
                if kind != "skus" or not 0 < start < len(BILLING_SKUS):
                    raise ValueError(token)
            except Exception:
                return self.reply(400, billing_error(400, "INVALID_ARGUMENT", "Invalid page token."))
        chunk = BILLING_SKUS[start:start + size]
        more = start + size < len(BILLING_SKUS)
        nxt = base64.urlsafe_b64encode(f"skus:{start + size}".encode()).decode() if more else ""
        # The real API always sends nextPageToken, empty on the last page.
        return self.reply(200, {"skus": chunk, "nextPageToken": nxt})

    def calls_api(self, query: dict[str, str]) -> None:
        method = query.get("method")
        value = query.get("value")
        with self.api.cloud.lock:
            calls = list(self.api.cloud.calls)
        out = [
            c
            for c in calls
            if (not method or c["method"] == method)
            and (not value or value in c["path"] or value in json.dumps(c["query"]) or value in json.dumps(c["body"]))
        ]
        return self.reply(200, out)


def guess_method(http: str, parts: list[str]) -> str:
    rest = parts[1:]
    if len(rest) >= 3:
        collection = rest[2]
        if len(rest) == 3:
            return f"{collection}.{'list' if http == 'GET' else 'insert'}"
        if len(rest) == 4:
            return f"{collection}.{ {'GET': 'get', 'DELETE': 'delete'}.get(http, http.lower()) }"
        return f"{collection}.{rest[4]}"
    if len(rest) == 2 and rest[0] == "aggregated":
        return f"{rest[1]}.aggregatedList"
    return "?"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file")
    parser.add_argument("--op-polls", type=int, default=2, help="reads of an operation before it is DONE")
    parser.add_argument("--op-seconds", type=float, default=3.0, help="seconds after which an unread operation is DONE")
    args = parser.parse_args(argv)
    cloud = Cloud(args.op_polls, args.op_seconds)
    Handler.api = Api(cloud)
    server = ThreadingHTTPServer((args.host, args.port), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(port))
        os.replace(tmp, args.port_file)

    def stop(signum: int, frame: Any) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"gce fake listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
