"""The CLI's HTTP side: where the platform is, which token to send, and reading its answers and log streams."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import httpx

from spacehub.settings import Settings

CREDENTIALS = Path(os.environ.get("XDG_CONFIG_HOME", Path.home() / ".config")) / "spacehub" / "credentials.json"


def saved_credentials() -> dict[str, str]:
    try:
        data = json.loads(CREDENTIALS.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def save_credentials(url: str, token: str) -> None:
    CREDENTIALS.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(CREDENTIALS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"url": url, "token": token}, fh)


class Client:
    def __init__(self, settings: Settings) -> None:
        saved = saved_credentials()
        self.url = (settings.url or saved.get("url") or settings.base_url).rstrip("/")
        token = settings.token.get_secret_value() if settings.token else saved.get("token")
        self.token = token
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=headers, timeout=httpx.Timeout(60, read=600))

    def check(self, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            try:
                message = response.json().get("error", response.text)
            except ValueError:
                message = response.text
            # A README the server refused reads as the stage a build would have reported.
            label = "CONFIG_ERROR" if response.headers.get("x-error-code") == "ConfigError" else response.status_code
            raise click.ClickException(f"{label}: {message}")
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.check(self.http.get(path, **kwargs))

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.check(self.http.post(path, **kwargs))

    def sse(self, path: str, params: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
        """Yield the JSON payload of each `data:` event of a Server-Sent-Events stream."""
        with self.http.stream("GET", path, params=params, timeout=httpx.Timeout(60, read=None)) as response:
            if response.status_code >= 400:
                response.read()
                self.check(response)
            event_id = None
            for line in response.iter_lines():
                if line.startswith("id: "):
                    event_id = line[len("id: "):]
                elif line.startswith("data: {"):
                    yield {**json.loads(line[len("data: "):]), "id": event_id}
