"""A space's configuration: the YAML front matter of its README.md, parsed safely and checked by a schema.

Unknown keys are kept (the Hub has many), never fatal. A bad field raises SpaceConfigError naming the field.
"""

from __future__ import annotations

import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spacehub.errors import SpaceConfigError

SDKS = ("gradio", "docker", "static", "streamlit")
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}([a-z]+\d*)?$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
_FRONT_MATTER = re.compile(r"\A---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(\r?\n|\Z)", re.DOTALL)


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    title: str | None = None
    emoji: str | None = None
    colorFrom: str | None = None  # noqa: N815 - the Hub's key
    colorTo: str | None = None  # noqa: N815
    sdk: Literal["gradio", "docker", "static", "streamlit"] | None = None
    sdk_version: str | None = None
    python_version: str | None = None
    app_file: str | None = None
    app_port: int | None = Field(default=None, ge=1, le=65535)
    short_description: str | None = Field(default=None, max_length=60)
    license: str | None = None
    pinned: bool | None = None

    @field_validator("sdk_version")
    @classmethod
    def _sdk_version(cls, v: Any) -> str | None:
        if v is None:
            return None
        v = str(v)
        if not _VERSION.match(v):
            raise ValueError("must be a version like 6.31.0")
        return v

    @field_validator("python_version", mode="before")
    @classmethod
    def _python_version(cls, v: Any) -> str | None:
        if v is None:
            return None
        v = str(v)
        if not _PYTHON.match(v):
            raise ValueError("must look like 3.11")
        return v

    @field_validator("app_file")
    @classmethod
    def _app_file(cls, v: str | None) -> str | None:
        if v is None:
            return None
        parts = v.split("/")
        if v.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in v or "\0" in v:
            raise ValueError("must be a relative path inside the repository")
        return v

    @field_validator("colorFrom", "colorTo")
    @classmethod
    def _color(cls, v: str | None) -> str | None:
        if v is not None and v not in COLORS:
            raise ValueError(f"must be one of {', '.join(COLORS)}")
        return v

    def card_data(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True, by_alias=True)


def split_front_matter(readme: str) -> tuple[str | None, str]:
    """Return (yaml text or None, body)."""
    match = _FRONT_MATTER.match(readme.lstrip("\ufeff"))
    if not match:
        return None, readme
    return match.group(1), readme[match.end():]


def parse_front_matter(readme: str) -> dict[str, Any]:
    text, _ = split_front_matter(readme)
    if text is None:
        return {}
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SpaceConfigError(f"README.md front matter is not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpaceConfigError("README.md front matter must be a mapping of keys to values")
    return data


def parse_config(readme: str | None) -> SpaceConfig:
    """Parse and check README.md. A missing README gives an empty config (the space's own sdk applies)."""
    data = parse_front_matter(readme) if readme else {}
    try:
        return SpaceConfig.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "front matter"
        message = str(err["msg"]).removeprefix("Value error, ")
        raise SpaceConfigError(f"README.md field '{field}': {message}") from None
