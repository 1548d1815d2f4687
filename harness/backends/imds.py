"""A fake EC2 instance metadata service (IMDSv2) per node, from the node's spec.

Both backends serve it: the local backend in each node's network namespace (supervisor.py), kind
from a host-network pod on each worker (`python -m harness.backends.imds`, deploy/imds.yaml), at
169.254.169.254:80 either way, so drivers using the SDKs' default endpoint find it.

IMDSv2 as drivers use it (research/external-drivers.md Part 2, 5): `PUT /latest/api/token` with
`X-aws-ec2-metadata-token-ttl-seconds` answers a token and echoes the TTL header; every GET must
carry `X-aws-ec2-metadata-token` with a live token (401 otherwise); IMDSv1 (no token) is refused,
as on instances that require v2. Served: the instance-identity document and the usual meta-data
(instance type, id, region, zone, placement, MACs)."""

from __future__ import annotations

import argparse
import hashlib
import json
import secrets
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def metadata(node: str, instance_type: str, macs: list[str], cluster: str, private_ip: str = "198.18.0.2",
             region: str = "us-east-2") -> dict:
    """The answers of one node: stable per cluster and node, in EC2's formats."""
    h = hashlib.sha256(f"{cluster}/{node}".encode()).hexdigest()
    iid = f"i-{h[:17]}"
    zone = f"{region}{'abc'[int(h[17], 16) % 3]}"
    doc = {"accountId": "000000000000", "architecture": "x86_64", "availabilityZone": zone, "imageId": f"ami-{h[20:37]}",
           "instanceId": iid, "instanceType": instance_type, "pendingTime": "2026-01-01T00:00:00Z",
           "privateIp": private_ip, "region": region, "version": "2017-09-30"}
    meta = {"instance-type": instance_type, "instance-id": iid, "ami-id": doc["imageId"], "hostname": node,
            "local-hostname": node, "local-ipv4": private_ip, "placement/availability-zone": zone, "placement/region": region,
            "placement/availability-zone-id": f"use2-az{1 + int(h[17], 16) % 3}", "mac": macs[0] if macs else "",
            "network/interfaces/macs/": "".join(f"{m}/\n" for m in macs).rstrip("\n")}
    for i, m in enumerate(macs):
        meta[f"network/interfaces/macs/{m}/device-number"] = str(i)
    return {"document": doc, "meta": meta}


def node_metadata(node: str, topology, cluster: str, private_ip: str = "198.18.0.2") -> dict:
    """metadata() of a node from its fakedev topology: its instance type and its ENAs' MACs."""
    import fakedev

    macs = [fakedev.ena_mac(topology.instance_type, e.bdf) for e in topology.ena]
    return metadata(node, topology.instance_type, macs, cluster, private_ip)


class _Handler(BaseHTTPRequestHandler):
    server_version = "EC2ws"
    data: dict = {}
    tokens: dict[str, float] = {}
    lock = threading.Lock()

    def log_message(self, *args) -> None:  # quiet: requests are not worth a log line each
        pass

    def _send(self, code: int, body: str, headers: dict | None = None) -> None:
        raw = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json" if body.startswith("{") else "text/plain")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def do_PUT(self) -> None:
        if self.path != "/latest/api/token":
            return self._send(404, "Not Found")
        try:
            ttl = int(self.headers.get("X-aws-ec2-metadata-token-ttl-seconds", ""))
        except ValueError:
            return self._send(400, "Bad Request: X-aws-ec2-metadata-token-ttl-seconds is required")
        if not 1 <= ttl <= 21600:
            return self._send(400, "Bad Request: TTL out of range 1..21600")
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.tokens[token] = time.monotonic() + ttl
        self._send(200, token, {"X-Aws-Ec2-Metadata-Token-Ttl-Seconds": str(ttl)})

    def do_GET(self) -> None:
        token = self.headers.get("X-aws-ec2-metadata-token", "")
        with self.lock:
            live = self.tokens.get(token, 0) > time.monotonic()
        if not live:
            return self._send(401, "Unauthorized")
        path = self.path.split("?", 1)[0]
        if path == "/latest/dynamic/instance-identity/document":
            return self._send(200, json.dumps(self.data["document"], indent=2))
        if path.startswith("/latest/meta-data/"):
            key = path[len("/latest/meta-data/"):]
            meta = self.data["meta"]
            if key in meta:
                return self._send(200, meta[key])
            if key == "" or key.endswith("/"):
                children = sorted({k[len(key):].split("/")[0] + ("/" if "/" in k[len(key):] else "")
                                   for k in meta if k.startswith(key) and k != key})
                if children:
                    return self._send(200, "\n".join(children))
        self._send(404, "Not Found")


class Imds:
    """Serves one node's metadata on an already-bound listening socket (made inside the node's
    namespace at 169.254.169.254:80)."""

    def __init__(self, listener: socket.socket, data: dict) -> None:
        handler = type("NodeImds", (_Handler,), {"data": data, "tokens": {}, "lock": threading.Lock()})
        self.server = ThreadingHTTPServer(listener.getsockname(), handler, bind_and_activate=False)
        self.server.socket.close()
        self.server.socket = listener
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="imds",
                         daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def main(argv: list[str] | None = None) -> int:
    """Serve one node's metadata (the JSON `metadata()` returns, one key per Kubernetes node in
    --data) until killed; the kind backend's per-node IMDS pod runs this."""
    ap = argparse.ArgumentParser(prog="python -m harness.backends.imds",
                                 description="fake IMDSv2 for one node (dra-harness)")
    ap.add_argument("--data", required=True, help="JSON file: {node name: metadata}")
    ap.add_argument("--node", required=True, help="this node's name (the pod's spec.nodeName)")
    ap.add_argument("--listen", default="169.254.169.254:80", help="address:port (default %(default)s)")
    a = ap.parse_args(argv)
    try:
        with open(a.data) as f:
            data = json.load(f)[a.node]
    except (OSError, ValueError, KeyError) as e:
        ap.exit(2, f"imds: no metadata for node {a.node} in {a.data} ({e.__class__.__name__}: {e})\n")
    host, _, port = a.listen.rpartition(":")
    listener = socket.create_server((host, int(port)), backlog=64)
    server = Imds(listener, data)
    print(f"imds: serving {a.node} ({data['meta']['instance-type']}) on {a.listen}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
