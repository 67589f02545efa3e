""""Use via API": the app's endpoints (its `/gradio_api/info`, fetched from its upstream) as ready-to-copy snippets."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

import httpx

from spacehub.routetable import RedisRouteTable
from spacehub.settings import Settings
from spacehub.store.models import Space

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Parameter:
    name: str
    label: str
    python_type: str
    example: Any
    has_default: bool


@dataclass(frozen=True)
class Endpoint:
    api_name: str  # "/greet"
    parameters: list[Parameter]
    returns: list[str]


@dataclass(frozen=True)
class Snippets:
    endpoints: list[Endpoint]
    python: list[tuple[str, str]] = field(default_factory=list)  # (endpoint, gradio_client code)
    curl: list[tuple[str, str]] = field(default_factory=list)
    hub: str = ""
    note: str = ""


def fetch_info(settings: Settings, space: Space, route_table: RedisRouteTable) -> dict[str, Any] | None:
    """The app's `/gradio_api/info`, straight from its upstream (no proxy hop, no wake-up); None if unknown."""
    target = route_table.get(space.label)
    if not target:
        return None
    host = f"{space.label}.{settings.spaces_domain}"
    if target.startswith("unix:"):
        transport = httpx.HTTPTransport(uds=target[5:])
        base = "http://app"
    else:
        transport = httpx.HTTPTransport()
        base = f"http://{target}"
    try:
        with httpx.Client(transport=transport, timeout=settings.app_info_timeout_s) as client:
            response = client.get(f"{base}/gradio_api/info", headers={"Host": host})
        if response.status_code != 200:
            return None
        info = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        log.info("no /gradio_api/info from %s: %s", space.repo_id, exc)
        return None
    return info if isinstance(info, dict) else None


def _example(parameter: dict[str, Any]) -> Any:
    if "example_input" in parameter:
        return parameter["example_input"]
    return parameter.get("parameter_default")


def endpoints_of(info: dict[str, Any]) -> list[Endpoint]:
    found = []
    for api_name, spec in sorted((info.get("named_endpoints") or {}).items()):
        if not isinstance(spec, dict) or spec.get("show_api") is False:
            continue
        params = [Parameter(name=str(p.get("parameter_name") or p.get("label") or f"input_{i}"),
                            label=str(p.get("label") or ""),
                            python_type=str((p.get("python_type") or {}).get("type") or "Any"),
                            example=_example(p), has_default=bool(p.get("parameter_has_default")))
                  for i, p in enumerate(spec.get("parameters") or [])]
        returns = [str(r.get("label") or (r.get("python_type") or {}).get("type") or "value")
                   for r in spec.get("returns") or []]
        found.append(Endpoint(api_name=str(api_name), parameters=params, returns=returns))
    return found


def _py(value: Any) -> str:
    if isinstance(value, dict) and value.get("meta", {}).get("_type") == "gradio.FileData" and value.get("url"):
        return f"handle_file({value['url']!r})"
    return repr(value)


def build_snippets(settings: Settings, space: Space, info: dict[str, Any] | None) -> Snippets:
    url = settings.space_url(space.label)
    hub = (
        "from huggingface_hub import HfApi\n\n"
        f"api = HfApi(endpoint={settings.base_url!r}, token='<your token>')\n"
        f"runtime = api.get_space_runtime({space.repo_id!r})\n"
        "print(runtime.stage, runtime.hardware)\n"
        f"api.restart_space({space.repo_id!r})  # needs a write token\n"
    )
    if info is None:
        note = ("The app is not running, so its endpoints are unknown; they appear here once it runs."
                if space.sdk == "gradio" else "This space is not a Gradio app: call its HTTP routes directly.")
        return Snippets(endpoints=[], hub=hub, note=note)
    endpoints = endpoints_of(info)
    token = ", token='<your token>'" if space.private else ""
    auth = " -H \"Authorization: Bearer $TOKEN\"" if space.private else ""
    python, curl = [], []
    for endpoint in endpoints:
        args = "".join(f"\n    {p.name}={_py(p.example)}," for p in endpoint.parameters)
        needs_file = any("handle_file" in _py(p.example) for p in endpoint.parameters)
        imports = "from gradio_client import Client" + (", handle_file" if needs_file else "")
        python.append((endpoint.api_name, (
            f"{imports}\n\nclient = Client({url!r}{token})\n"
            f"result = client.predict({args}\n    api_name={endpoint.api_name!r},\n)\nprint(result)\n")))
        data = json.dumps({"data": [p.example for p in endpoint.parameters]}).replace("'", "'\\''")
        call = f"{url}/gradio_api/call{endpoint.api_name}"
        curl.append((endpoint.api_name, (
            f"EVENT_ID=$(curl -s -X POST {call}{auth} \\\n  -H \"Content-Type: application/json\" \\\n"
            f"  -d '{data}' | cut -d'\"' -f4)\n"
            f"curl -sN {call}/$EVENT_ID{auth}\n")))
    note = "" if endpoints else "This app has no named API endpoints."
    return Snippets(endpoints=endpoints, python=python, curl=curl, hub=hub, note=note)
