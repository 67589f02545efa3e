"""A space's configuration: the YAML front matter of its README.md, parsed safely and checked by a schema.

Unknown keys are kept (the Hub has many), never fatal. A bad field raises SpaceConfigError naming the field.

The front matter is hostile input that ends up stored (a space's card) and served in every listing, so it is
bounded before and after parsing: its size, YAML aliases (refused: a few hundred bytes of nested aliases expand
to gigabytes, the "billion laughs"), nesting depth and node count, every string and key, and the stored card as
a whole. Every refusal is a SpaceConfigError that names the rule broken.
"""

from __future__ import annotations

import datetime
import json
import math
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from spacehub.errors import SpaceConfigError

SDKS = ("gradio", "docker", "static")  # what this platform builds: an error names only these
COLORS = ("red", "yellow", "green", "blue", "indigo", "purple", "pink", "gray")
_VERSION = re.compile(r"^\d+(\.\d+){0,2}([a-z]+\d*)?$")
_PYTHON = re.compile(r"^3\.\d{1,2}$")
# The fences are found with str.find, not one lazy `(.*?)` regex: that costs about 0.1 us a character, a second
# for a 10 MB README, where finding "\n---" is a memchr.
_OPENING_FENCE = re.compile(r"\A---[ \t]*\r?\n")
_CLOSING_FENCE = re.compile(r"---[ \t]*(\r?\n|\Z)")

# Limits on what a README may ask us to parse and store (the Hub's own cards are far smaller than these).
MAX_FRONT_MATTER_BYTES = 64 * 1024  # the YAML text between the `---` lines
MAX_DEPTH = 20  # nested mappings and lists
MAX_NODES = 5_000  # scalars, mappings and lists together
MAX_KEY_CHARS = 100  # any mapping key
MAX_STRING_CHARS = 2_000  # any string value, where its field has no tighter cap of its own
MAX_CARD_BYTES = 16 * 1024  # the card as stored and served (JSON): what a listing of many spaces multiplies


class SpaceConfig(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True)

    title: str | None = Field(default=None, max_length=200)
    emoji: str | None = Field(default=None, max_length=16)
    colorFrom: str | None = None  # noqa: N815 - the Hub's key
    colorTo: str | None = None  # noqa: N815
    sdk: Literal["gradio", "docker", "static"] | None = None
    sdk_version: str | None = Field(default=None, max_length=32)
    python_version: str | None = None
    app_file: str | None = Field(default=None, max_length=255)
    app_port: int | None = Field(default=None, ge=1, le=65535)
    short_description: str | None = Field(default=None, max_length=60)
    license: str | None = Field(default=None, max_length=100)
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


class _BoundedLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing aliases and counting depth and nodes while the document is composed
    (before anything is built from it, so a hostile document costs no more than its own size)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            alias = self.peek_event()
            raise SpaceConfigError(f"README.md front matter: YAML aliases (*{alias.anchor}) are not allowed "
                                   "(write the value out where it is needed)")
        self.nodes += 1
        if self.nodes > MAX_NODES:
            raise SpaceConfigError(f"README.md front matter has more than {MAX_NODES} values")
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise SpaceConfigError(f"README.md front matter is nested more than {MAX_DEPTH} levels deep")
        try:
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1


def _card_value(value: Any, where: str) -> Any:
    """The value as JSON can store and serve it, every string and key within its cap."""
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            raise SpaceConfigError(f"README.md field '{where}': longer than {MAX_STRING_CHARS} characters")
        return value
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            name = _card_key(key, where)
            out[name] = _card_value(item, f"{where}.{name}" if where else name)
        return out
    if isinstance(value, list | set | tuple):
        items = sorted(value, key=str) if isinstance(value, set) else value
        return [_card_value(item, f"{where}[{i}]") for i, item in enumerate(items)]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN or infinity
    if isinstance(value, datetime.date):  # YAML timestamps (`date: 2024-01-01`) as the text they were
        return value.isoformat()
    if isinstance(value, bytes):
        raise SpaceConfigError(f"README.md field '{where}': binary values (!!binary) are not allowed")
    return value  # None, bool, int, float


def _card_key(key: Any, where: str) -> str:
    name = key.isoformat() if isinstance(key, datetime.date) else str(key)
    if len(name) > MAX_KEY_CHARS:
        at = f" under '{where}'" if where else ""
        raise SpaceConfigError(f"README.md front matter: a key{at} is longer than {MAX_KEY_CHARS} characters")
    return name


def split_front_matter(readme: str) -> tuple[str | None, str]:
    """Return (yaml text or None, body)."""
    text = readme.lstrip("\ufeff")
    opening = _OPENING_FENCE.match(text)
    if not opening:
        return None, readme
    start = opening.end()
    newline = text.find("\n---", start)
    while newline != -1:
        closing = _CLOSING_FENCE.match(text, newline + 1)
        if closing:
            end = newline - 1 if newline > start and text[newline - 1] == "\r" else newline
            return text[start:end], text[closing.end():]
        newline = text.find("\n---", newline + 1)
    return None, readme


def parse_front_matter(readme: str) -> dict[str, Any]:
    """The front matter as a JSON-safe mapping within every limit above; SpaceConfigError naming the rule."""
    text, _ = split_front_matter(readme)
    if text is None:
        return {}
    if len(text.encode("utf-8", "surrogatepass")) > MAX_FRONT_MATTER_BYTES:
        raise SpaceConfigError(f"README.md front matter is larger than {MAX_FRONT_MATTER_BYTES // 1024} KB")
    loader = _BoundedLoader(text)
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        raise SpaceConfigError(f"README.md front matter is not valid YAML: {exc}") from None
    finally:
        loader.dispose()
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise SpaceConfigError("README.md front matter must be a mapping of keys to values")
    card: dict[str, Any] = _card_value(data, "")
    size = len(json.dumps(card, ensure_ascii=False).encode())
    if size > MAX_CARD_BYTES:
        raise SpaceConfigError(f"README.md front matter holds {size // 1024} KB of metadata: more than the "
                               f"{MAX_CARD_BYTES // 1024} KB a space's card may keep")
    return card


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


def check_readme(data: bytes | None) -> SpaceConfig:
    """README.md's bytes (None: no README) checked as a build checks them: what every commit to a space must
    pass before it lands, so a hostile README is refused at once instead of by a build job."""
    if data is None:
        return parse_config(None)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SpaceConfigError("README.md is not UTF-8 text") from None
    return parse_config(text)
