"""moto, plus what flotilla's end-to-end tests need and moto lacks.

moto 5.2 is the EC2/ELBv2/S3 emulator the tests run against (../../../shared/TESTING.md), but it
has no placement groups and no way to make a call fail the way EC2 does under pressure. This
wrapper serves moto's own WSGI app (`DomainDispatcherApplication(create_backend_app)`, exactly
what `moto_server` serves) and sits in front of it:

* EC2 `CreatePlacementGroup` / `DescribePlacementGroups` / `DeletePlacementGroup` are answered
  here, per region, with EC2's XML (moto answers them with HTTP 500 NotImplementedError).
* Faults: `POST /_fault` with JSON
      {"action": "RunInstances", "match": {"InstanceType": "p5.48xlarge"},
       "code": "InsufficientInstanceCapacity", "message": "...", "status": 500, "times": 2}
  makes the next `times` matching calls (every one when `times` is absent or null) fail with
  the service's real error XML. `match` compares query parameters exactly (`"Foo.1": "x"`);
  the key `"_any"` matches a call any of whose parameter values equals it (a lineage, an id),
  and `"_region"` matches the signing region, so parallel tests can keep their faults to
  their own resources. The answer is `{"id": ...}`. `GET /_fault` lists faults with `hits`
  and `held`; `DELETE /_fault/<id>` removes one, `DELETE /_fault` removes all.
* Delays: a fault with `"delay_ms": N` and no `code` lets the call through to moto, which
  carries it out, and then holds moto's answer for N ms before sending it, so that a test can
  kill the client while the call is in flight: the cloud did the work, the caller never heard.
  `held` counts the answers being held right now (a test waits for it to be 1, then kills),
  `max_held` the most held at once (how many such calls the client had in flight);
  removing the fault sends the held answers at once. With a `code` as well, the error is
  answered after the delay and moto never sees the call.
* Calls: `GET /_calls?action=DescribeInstances&value=i-123` lists the calls seen (action,
  service, region, parameters), optionally only those of an action and/or with a parameter
  value equal to `value` (the last 20,000 calls are kept), so a test can count API calls;
  each has `t` (seconds on a monotonic clock, when it arrived) and, when a fault answered
  it, `error` (the code).
* Placement groups take tags at creation (`TagSpecification`) and list them (`tagSet`);
  `DescribePlacementGroups` filters on `tag:KEY`, `group-name` and `strategy`.
* `POST /_reset` clears faults, placement groups and the call log and resets moto
  (`/moto-api/reset`); `GET /_health` answers `ok`.

It binds 127.0.0.1 on `--port` (0: a free one) and writes the port it got to `--port-file`
once it listens, so a test script can run several copies side by side. Its PID is that of
the interpreter that runs it (start it with a venv's `bin/python`, not a wrapper script).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import signal
import sys
import fnmatch
import threading
import time
import uuid
from collections import deque
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl

from werkzeug.serving import make_server

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)

EC2_NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
ELBV2_NS = "http://elasticloadbalancing.amazonaws.com/doc/2015-12-01/"
CREDENTIAL_RE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/aws4_request")
MAX_CALLS = 20_000


def xml_escape(text: str) -> str:
    return (
        text.replace("&", "&amp;")
        .replace("<", "&lt;")
        .replace(">", "&gt;")
        .replace('"', "&quot;")
    )


class Harness:
    """Faults, placement groups and the call log; shared by the server's threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.faults: list[dict[str, Any]] = []
        # (region, name) -> placement group
        self.placement_groups: dict[tuple[str, str], dict[str, str]] = {}
        # (region, name) -> the group's tags
        self.placement_group_tags: dict[tuple[str, str], dict[str, str]] = {}
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_CALLS)
        # fault id -> the event that ends its delays early
        self.releases: dict[str, threading.Event] = {}

    def reset(self) -> None:
        with self.lock:
            self.remove_faults(None)
            self.placement_groups.clear()
            self.placement_group_tags.clear()
            self.calls.clear()

    def add_fault(self, spec: dict[str, Any]) -> dict[str, Any]:
        delay_ms = spec.get("delay_ms")
        if delay_ms is not None and (not isinstance(delay_ms, int) or delay_ms < 0):
            raise ValueError("`delay_ms` must be a non-negative integer or null")
        code = spec.get("code")
        if not isinstance(spec.get("action"), str):
            raise ValueError("a fault needs a string `action`")
        if not isinstance(code, str) and not (code is None and delay_ms is not None):
            raise ValueError("a fault needs a string `code`, or a `delay_ms` without one")
        match = spec.get("match") or {}
        if not isinstance(match, dict):
            raise ValueError("`match` must be an object")
        times = spec.get("times")
        if times is not None and (not isinstance(times, int) or times < 1):
            raise ValueError("`times` must be a positive integer or null")
        fault = {
            "id": uuid.uuid4().hex,
            "action": spec["action"],
            "match": {str(k): str(v) for k, v in match.items()},
            "code": code,
            "message": str(spec.get("message") or f"{code} (injected by the test harness)"),
            "status": int(spec.get("status") or 400),
            "times": times,
            "delay_ms": delay_ms,
            "hits": 0,
            "held": 0,
            "max_held": 0,
        }
        with self.lock:
            self.faults.append(fault)
            # Set when the fault is removed: held answers go out at once.
            self.releases[fault["id"]] = threading.Event()
        return fault

    def take_fault(self, action: str, region: str, params: dict[str, str]) -> dict[str, Any] | None:
        """The first fault that matches this call, counted as used; None when none does."""
        with self.lock:
            for fault in self.faults:
                if fault["action"] != action:
                    continue
                if fault["times"] is not None and fault["hits"] >= fault["times"]:
                    continue
                if not matches(fault["match"], region, params):
                    continue
                fault["hits"] += 1
                return dict(fault)
        return None

    def remove_faults(self, fault_id: str | None) -> None:
        """Removes one fault (all when `fault_id` is None) and releases its held answers.
        The caller holds the lock."""
        gone = [f for f in self.faults if fault_id is None or f["id"] == fault_id]
        self.faults[:] = [f for f in self.faults if f not in gone]
        for f in gone:
            release = self.releases.pop(f["id"], None)
            if release is not None:
                release.set()

    def hold(self, fault: dict[str, Any]) -> None:
        """Waits out a fault's delay, counted in its `held`; ends early when it is removed."""
        delay_ms = fault.get("delay_ms")
        if not delay_ms:
            return
        with self.lock:
            release = self.releases.get(fault["id"])
            live = next((f for f in self.faults if f["id"] == fault["id"]), None)
            if release is None or live is None:
                return
            live["held"] += 1
            live["max_held"] = max(live["max_held"], live["held"])
        try:
            release.wait(delay_ms / 1000.0)
        finally:
            with self.lock:
                live["held"] -= 1

    def record(self, call: dict[str, Any]) -> None:
        with self.lock:
            self.calls.append(call)


def matches(match: dict[str, str], region: str, params: dict[str, str]) -> bool:
    for key, want in match.items():
        if key == "_any":
            if want not in params.values():
                return False
        elif key == "_region":
            if region != want:
                return False
        elif params.get(key) != want:
            return False
    return True


def error_xml(service: str, code: str, message: str) -> bytes:
    request_id = str(uuid.uuid4())
    if service == "elasticloadbalancing":
        body = (
            f'<ErrorResponse xmlns="{ELBV2_NS}"><Error><Type>Sender</Type>'
            f"<Code>{xml_escape(code)}</Code><Message>{xml_escape(message)}</Message></Error>"
            f"<RequestId>{request_id}</RequestId></ErrorResponse>"
        )
    else:
        body = (
            f"<Response><Errors><Error><Code>{xml_escape(code)}</Code>"
            f"<Message>{xml_escape(message)}</Message></Error></Errors>"
            f"<RequestID>{request_id}</RequestID></Response>"
        )
    return ('<?xml version="1.0" encoding="UTF-8"?>\n' + body).encode()


class PlacementGroups:
    """The three EC2 placement-group calls moto does not implement."""

    def __init__(self, harness: Harness) -> None:
        self.harness = harness

    def handle(self, action: str, region: str, params: dict[str, str]) -> tuple[int, bytes]:
        request_id = str(uuid.uuid4())
        groups = self.harness.placement_groups
        tags = self.harness.placement_group_tags
        if action == "CreatePlacementGroup":
            name = params.get("GroupName", "")
            strategy = params.get("Strategy", "cluster")
            if not name:
                return 400, error_xml("ec2", "MissingParameter", "GroupName is required")
            if strategy not in ("cluster", "spread", "partition"):
                return 400, error_xml(
                    "ec2", "InvalidParameterValue", f"Invalid strategy: {strategy}"
                )
            with self.harness.lock:
                if (region, name) in groups:
                    return 400, error_xml(
                        "ec2",
                        "InvalidPlacementGroup.Duplicate",
                        f"The placement group '{name}' already exists.",
                    )
                group_id = "pg-" + uuid.uuid4().hex[:17]
                group = {
                    "groupName": name,
                    "groupId": group_id,
                    "strategy": strategy,
                    "state": "available",
                    "groupArn": f"arn:aws:ec2:{region}:123456789012:placement-group/{name}",
                }
                groups[(region, name)] = group
                tags[(region, name)] = tag_specs(params, "placement-group")
            return 200, self.response(
                action, request_id, "placementGroup", group_xml(group, tags[(region, name)])
            )
        if action == "DescribePlacementGroups":
            names = list_param(params, "GroupName")
            ids = list_param(params, "GroupId")
            with self.harness.lock:
                found = [
                    (g, dict(tags.get(key, {}))) for key, g in groups.items() if key[0] == region
                ]
            for name in names:
                if not any(g["groupName"] == name for g, _ in found):
                    return 400, error_xml(
                        "ec2",
                        "InvalidPlacementGroup.Unknown",
                        f"The Placement Group '{name}' is unknown.",
                    )
            if names:
                found = [(g, t) for g, t in found if g["groupName"] in names]
            if ids:
                found = [(g, t) for g, t in found if g["groupId"] in ids]
            for key, values in filters(params).items():
                found = [(g, t) for g, t in found if group_matches(g, t, key, values)]
            items = "".join(f"<item>{group_xml(g, t)}</item>" for g, t in found)
            return 200, self.response(action, request_id, "placementGroupSet", items)
        # DeletePlacementGroup
        name = params.get("GroupName", "")
        with self.harness.lock:
            if (region, name) not in groups:
                return 400, error_xml(
                    "ec2",
                    "InvalidPlacementGroup.Unknown",
                    f"The Placement Group '{name}' is unknown.",
                )
            del groups[(region, name)]
            tags.pop((region, name), None)
        return 200, self.response(action, request_id, "return", "true")

    @staticmethod
    def response(action: str, request_id: str, element: str, inner: str) -> bytes:
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            f'<{action}Response xmlns="{EC2_NS}"><requestId>{request_id}</requestId>'
            f"<{element}>{inner}</{element}></{action}Response>"
        ).encode()


def group_xml(group: dict[str, str], tags: dict[str, str]) -> str:
    fields = "".join(f"<{k}>{xml_escape(v)}</{k}>" for k, v in group.items())
    items = "".join(
        f"<item><key>{xml_escape(k)}</key><value>{xml_escape(v)}</value></item>"
        for k, v in sorted(tags.items())
    )
    return fields + f"<tagSet>{items}</tagSet>"


def tag_specs(params: dict[str, str], resource_type: str) -> dict[str, str]:
    """The tags of `TagSpecification.N` entries for `resource_type`."""
    tags: dict[str, str] = {}
    n = 1
    while f"TagSpecification.{n}.ResourceType" in params:
        if params[f"TagSpecification.{n}.ResourceType"] == resource_type:
            m = 1
            while f"TagSpecification.{n}.Tag.{m}.Key" in params:
                key = params[f"TagSpecification.{n}.Tag.{m}.Key"]
                tags[key] = params.get(f"TagSpecification.{n}.Tag.{m}.Value", "")
                m += 1
        n += 1
    return tags


def filters(params: dict[str, str]) -> dict[str, list[str]]:
    """`Filter.N.Name` / `Filter.N.Value.M` as name -> values."""
    out: dict[str, list[str]] = {}
    n = 1
    while f"Filter.{n}.Name" in params:
        out[params[f"Filter.{n}.Name"]] = list_param(params, f"Filter.{n}.Value")
        n += 1
    return out


def group_matches(group: dict[str, str], tags: dict[str, str], key: str, values: list[str]) -> bool:
    """Whether a placement group passes one filter; values are EC2 wildcards (`*`, `?`)."""
    if key.startswith("tag:"):
        have = tags.get(key[len("tag:") :])
    elif key == "tag-key":
        return any(fnmatch.fnmatchcase(k, v) for k in tags for v in values)
    elif key == "group-name":
        have = group["groupName"]
    elif key == "strategy":
        have = group["strategy"]
    elif key == "state":
        have = group["state"]
    else:
        return False
    return have is not None and any(fnmatch.fnmatchcase(have, glob(v)) for v in values)


def glob(value: str) -> str:
    """An EC2 filter value as an fnmatch pattern: only `*` and `?` are special."""
    return value.replace("[", "[[]")


def list_param(params: dict[str, str], name: str) -> list[str]:
    prefix = name + "."
    return [v for k, v in sorted(params.items()) if k.startswith(prefix)]


PLACEMENT_ACTIONS = {"CreatePlacementGroup", "DescribePlacementGroups", "DeletePlacementGroup"}


class App:
    """WSGI app: the harness's own paths, then faults and placement groups, then moto."""

    def __init__(self) -> None:
        self.moto = DomainDispatcherApplication(create_backend_app)
        self.harness = Harness()
        self.placement = PlacementGroups(self.harness)

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        method = environ.get("REQUEST_METHOD", "GET")
        if path == "/_health":
            return reply(start_response, 200, b"ok", "text/plain")
        if path == "/_reset" and method == "POST":
            self.harness.reset()
            environ["PATH_INFO"] = "/moto-api/reset"
            return self.moto(environ, start_response)
        if path == "/_fault" or path.startswith("/_fault/"):
            return self.fault_api(environ, start_response, method, path)
        if path == "/_calls" and method == "GET":
            return self.calls_api(environ, start_response)

        body = read_body(environ)
        service, region = signing_scope(environ)
        params = dict(parse_qsl(environ.get("QUERY_STRING", ""), keep_blank_values=True))
        content_type = environ.get("CONTENT_TYPE", "")
        if body and content_type.startswith("application/x-www-form-urlencoded"):
            params.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
        action = params.get("Action")
        if action:
            call = {
                "action": action,
                "service": service,
                "region": region,
                "params": params,
                "t": time.monotonic(),
            }
            self.harness.record(call)
            fault = self.harness.take_fault(action, region, params)
            if fault is not None and fault["code"] is not None:
                call["error"] = fault["code"]
            if fault is not None and fault["code"] is None:
                return self.delayed(environ, start_response, body, fault)
            if fault is not None:
                self.harness.hold(fault)
                return reply(
                    start_response,
                    fault["status"],
                    error_xml(service, fault["code"], fault["message"]),
                    "text/xml",
                )
            if service == "ec2" and action in PLACEMENT_ACTIONS:
                status, out = self.placement.handle(action, region, params)
                return reply(start_response, status, out, "text/xml")
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return self.moto(environ, start_response)

    def delayed(
        self,
        environ: dict[str, Any],
        start_response: Callable[..., Any],
        body: bytes,
        fault: dict[str, Any],
    ) -> Iterable[bytes]:
        """Lets moto carry the call out, then holds its answer for the fault's delay."""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        answered: list[Any] = []

        def capture(status: str, headers: list[Any], exc_info: Any = None) -> Callable[[bytes], None]:
            answered[:] = [status, headers]
            return lambda _data: None

        out = self.moto(environ, capture)
        try:
            payload = b"".join(out)
        finally:
            close = getattr(out, "close", None)
            if close is not None:
                close()
        self.harness.hold(fault)
        start_response(answered[0], answered[1])
        return [payload]

    def fault_api(
        self, environ: dict[str, Any], start_response: Callable[..., Any], method: str, path: str
    ) -> Iterable[bytes]:
        if method == "POST" and path == "/_fault":
            try:
                spec = json.loads(read_body(environ) or b"{}")
                if not isinstance(spec, dict):
                    raise ValueError("the body must be a JSON object")
                fault = self.harness.add_fault(spec)
            except (ValueError, TypeError) as e:
                return json_reply(start_response, 400, {"error": str(e)})
            return json_reply(start_response, 200, {"id": fault["id"]})
        if method == "GET" and path == "/_fault":
            with self.harness.lock:
                faults = [dict(f) for f in self.harness.faults]
            return json_reply(start_response, 200, faults)
        if method == "DELETE":
            fault_id = path[len("/_fault/") :] if path.startswith("/_fault/") else None
            with self.harness.lock:
                self.harness.remove_faults(fault_id)
            return json_reply(start_response, 200, {})
        return json_reply(start_response, 405, {"error": f"{method} {path} is not supported"})

    def calls_api(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        query = dict(parse_qsl(environ.get("QUERY_STRING", "")))
        action = query.get("action")
        value = query.get("value")
        with self.harness.lock:
            calls = list(self.harness.calls)
        out = [
            c
            for c in calls
            if (action is None or c["action"] == action)
            and (value is None or value in c["params"].values())
        ]
        return json_reply(start_response, 200, out)


def read_body(environ: dict[str, Any]) -> bytes:
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    stream = environ.get("wsgi.input")
    if stream is None:
        return b""
    if length > 0:
        return stream.read(length)
    if environ.get("HTTP_TRANSFER_ENCODING", "").lower() == "chunked" or environ.get(
        "wsgi.input_terminated"
    ):
        return stream.read()
    return b""


def signing_scope(environ: dict[str, Any]) -> tuple[str, str]:
    """(service, region) from the SigV4 Authorization header; ("", "") when unsigned."""
    m = CREDENTIAL_RE.search(environ.get("HTTP_AUTHORIZATION", ""))
    if not m:
        return "", ""
    return m.group(2), m.group(1)


def reply(start_response: Callable[..., Any], status: int, body: bytes, content_type: str) -> list[bytes]:
    reason = {200: "OK", 400: "Bad Request", 405: "Method Not Allowed", 500: "Internal Server Error", 503: "Service Unavailable"}
    start_response(
        f"{status} {reason.get(status, 'Error')}",
        [("Content-Type", content_type), ("Content-Length", str(len(body)))],
    )
    return [body]


def json_reply(start_response: Callable[..., Any], status: int, value: Any) -> list[bytes]:
    return reply(start_response, status, json.dumps(value).encode(), "application/json")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args(argv)

    server = make_server(args.host, args.port, App(), threaded=True, request_handler=MotoRequestHandler)
    port = server.server_address[1]
    os.environ.setdefault("MOTO_PORT", str(port))

    def stop(signum: int, frame: Any) -> None:
        # shutdown() waits for serve_forever to return: do it off the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(f"{port}\n")
        os.replace(tmp, args.port_file)
    print(f"flotilla moto harness listening on http://{args.host}:{port}", file=sys.stderr, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
