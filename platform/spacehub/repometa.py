"""What the Hub derives from a model or dataset repo's files, computed once per commit to its default branch.

- `pipeline_tag`: the model card's, else from `config.json`'s architectures (`BertForMaskedLM` -> `fill-mask`).
- `library_name`: the card's, else `transformers` when `config.json` names a transformers architecture or
  model type.
- `tags`: the card's tags, plus the library, `safetensors` (when weights are safetensors), the model type, the
  pipeline tag, and `license:<id>`, `dataset:<id>`, `language:<code>` from the card, as the Hub lists them.
- `safetensors`: parameter counts by dtype read from the safetensors headers (their first bytes only, also
  when the file is in LFS), `{"parameters": {"F32": n}, "total": n}`.
- `config`: `architectures` and `model_type` of `config.json`.
"""

from __future__ import annotations

import json
import math
import struct
from typing import Any

from spacehub import lfs
from spacehub.access import repo_key
from spacehub.context import Platform
from spacehub.repos import TreeEntry
from spacehub.store.models import Space

MAX_CONFIG_BYTES = 4 * 1024 * 1024
MAX_SAFETENSORS_HEADER = 64 * 1024 * 1024  # safetensors itself refuses headers over 100 MB
# Architecture name endings -> the pipeline the Hub shows (the common ones; the first match wins).
_PIPELINES = (
    ("ForMaskedLM", "fill-mask"),
    ("ForCausalLM", "text-generation"),
    ("LMHeadModel", "text-generation"),
    ("ForSequenceClassification", "text-classification"),
    ("ForTokenClassification", "token-classification"),
    ("ForQuestionAnswering", "question-answering"),
    ("ForMultipleChoice", "multiple-choice"),
    ("ForSpeechSeq2Seq", "automatic-speech-recognition"),
    ("ForCTC", "automatic-speech-recognition"),
    ("ForAudioClassification", "audio-classification"),
    ("ForImageClassification", "image-classification"),
    ("ForObjectDetection", "object-detection"),
    ("ForSemanticSegmentation", "image-segmentation"),
    ("ForConditionalGeneration", "text2text-generation"),
    ("ForSeq2SeqLM", "text2text-generation"),
    ("Model", "feature-extraction"),
)


def refresh(platform: Platform, space: Space, sha: str | None) -> None:
    """Re-read a model's or dataset's card and derived metadata after its default branch moved."""
    from spacehub import repoview  # repoview imports access, as this module does: keep the import graph flat

    space.card_data = repoview.card_data(platform, space, sha)
    space.meta = derive(platform, space, sha, space.card_data or {})


def derive(platform: Platform, space: Space, sha: str | None, card: dict[str, Any]) -> dict[str, Any]:
    if sha is None:
        return {}
    key = repo_key(space)
    files = [entry for entry in platform.repos.list_tree(key, sha) if entry.kind == "file"]
    config = _config(platform, key, sha, files) if space.repo_type == "model" else {}
    architectures = [str(name) for name in config.get("architectures") or [] if isinstance(name, str)]
    model_type = config.get("model_type") if isinstance(config.get("model_type"), str) else None
    derived: dict[str, Any] = {}
    pipeline = card.get("pipeline_tag") if isinstance(card.get("pipeline_tag"), str) else _pipeline(architectures)
    library = card.get("library_name") if isinstance(card.get("library_name"), str) else None
    if library is None and (architectures or model_type):
        library = "transformers"
    if space.repo_type == "model":
        derived["pipeline_tag"] = pipeline
        derived["library_name"] = library
        if architectures or model_type:
            derived["config"] = {"architectures": architectures, "model_type": model_type}
    weights = [entry for entry in files if entry.path.endswith(".safetensors")]
    summary = _safetensors(platform, key, weights) if space.repo_type == "model" else None
    if summary is not None:
        derived["safetensors"] = summary
    tags: list[str] = [str(tag) for tag in card.get("tags") or [] if isinstance(tag, str | int)]
    if space.repo_type == "model":
        tags += [tag for tag in (library, "safetensors" if weights else None, model_type, pipeline) if tag]
    tags += _card_tags(card)
    derived["tags"] = list(dict.fromkeys(tags))
    return derived


def _pipeline(architectures: list[str]) -> str | None:
    for architecture in architectures:
        for ending, pipeline in _PIPELINES:
            if architecture.endswith(ending):
                return pipeline
    return None


def _card_tags(card: dict[str, Any]) -> list[str]:
    tags = []
    for field, prefix in (("license", "license"), ("datasets", "dataset"), ("language", "language")):
        value = card.get(field)
        values = value if isinstance(value, list) else [value] if value is not None else []
        tags += [f"{prefix}:{item}" for item in values if isinstance(item, str | int)]
    return tags


def _config(platform: Platform, key: str, sha: str, files: list[TreeEntry]) -> dict[str, Any]:
    entry = next((entry for entry in files if entry.path == "config.json"), None)
    if entry is None or entry.size > MAX_CONFIG_BYTES:
        return {}
    try:
        config = json.loads(_read(platform, key, entry, 0, MAX_CONFIG_BYTES))
    except ValueError:
        return {}
    return config if isinstance(config, dict) else {}


def _safetensors(platform: Platform, key: str, weights: list[TreeEntry]) -> dict[str, Any] | None:
    counts: dict[str, int] = {}
    for entry in weights:
        try:
            length = struct.unpack("<Q", _read(platform, key, entry, 0, 8))[0]
            if length > MAX_SAFETENSORS_HEADER:
                continue
            header = json.loads(_read(platform, key, entry, 8, length))
        except (struct.error, ValueError):
            continue  # not a safetensors file after all: the Hub leaves it out too
        for name, tensor in header.items() if isinstance(header, dict) else ():
            if name == "__metadata__" or not isinstance(tensor, dict):
                continue
            shape, dtype = tensor.get("shape"), tensor.get("dtype")
            if isinstance(dtype, str) and isinstance(shape, list) and all(isinstance(d, int) for d in shape):
                counts[dtype] = counts.get(dtype, 0) + math.prod(shape)
    if not counts:
        return None
    return {"parameters": counts, "total": sum(counts.values())}


def _read(platform: Platform, key: str, entry: TreeEntry, start: int, length: int) -> bytes:
    """Bytes of a file as the Hub serves it: the LFS object when the blob is a pointer."""
    pointer = lfs.pointers(platform, key, [entry.blob_id]).get(entry.blob_id) \
        if entry.size <= lfs.MAX_POINTER_BYTES else None
    if pointer is not None and platform.objects.size(pointer.oid) is not None:
        return b"".join(platform.objects.read(pointer.oid, start, length))
    return b"".join(platform.repos.stream_blob(key, entry.blob_id, start, length))
