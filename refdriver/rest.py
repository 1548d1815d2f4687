"""The few API calls a driver makes, as plain JSON over the kubernetes client's connection (its
TLS, its credentials, its retries).

Why not the generated API classes: in the kubernetes client 37 (openapi-generator 7), the first use of
`CoreV1Api` defines about 300 pydantic models, 0.8 s of CPU, and `ResourceV1Api` another 0.2 s,
in every driver process that starts (profiled: that was a third of a driver's start-up). A
driver reads one Node and writes ResourceSlices; JSON dicts are what it already builds."""

from __future__ import annotations

import json
from urllib.parse import quote

from kubernetes.client.rest import ApiException

SLICES = "/apis/resource.k8s.io/v1/resourceslices"


class Rest:
    def __init__(self, api_client) -> None:
        self.api = api_client

    def request(self, method: str, path: str, body: dict | None = None, query: dict[str, str] | None = None,
                content_type: str = "application/json") -> dict | None:
        """One call; the decoded JSON answer. An answer that is not 2xx raises ApiException with its
        status and reason, as the generated classes do, so callers keep their `e.status` checks."""
        _, url, headers, data, _ = self.api.param_serialize(
            method=method, resource_path=path, query_params=list((query or {}).items()),
            header_params={"Accept": "application/json", **({"Content-Type": content_type} if body is not None else {})},
            body=body, auth_settings=["BearerToken"])
        resp = self.api.call_api(method, url, header_params=headers, body=data)
        resp.read()
        if not 200 <= resp.status < 300:
            raise ApiException(http_resp=resp)
        return json.loads(resp.data) if resp.data else None

    # -- what drivers use --------------------------------------------------------------------------
    def read_node(self, name: str) -> dict:
        return self.request("GET", f"/api/v1/nodes/{quote(name, safe='')}")

    def list_slices(self, field_selector: str) -> list[dict]:
        return self.request("GET", SLICES, query={"fieldSelector": field_selector})["items"]

    def create_slice(self, obj: dict) -> dict:
        return self.request("POST", SLICES, obj)

    def replace_slice(self, name: str, obj: dict) -> dict:
        return self.request("PUT", f"{SLICES}/{quote(name, safe='')}", obj)

    def delete_slice(self, name: str) -> None:
        self.request("DELETE", f"{SLICES}/{quote(name, safe='')}")

    def read_claim(self, namespace: str, name: str) -> dict:
        return self.request("GET", f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace, safe='')}/resourceclaims/"
                            f"{quote(name, safe='')}")

    def apply_claim_status(self, namespace: str, name: str, body: dict, manager: str) -> dict:
        """Server-side apply of a claim's status as `manager` (its entries only; status.py)."""
        return self.request("PATCH", f"/apis/resource.k8s.io/v1/namespaces/{quote(namespace, safe='')}/resourceclaims/"
                            f"{quote(name, safe='')}/status", body, {"fieldManager": manager, "force": "true"},
                            content_type="application/apply-patch+yaml")  # JSON is YAML

    def server_minor(self) -> str:
        return self.request("GET", "/version")["minor"]
