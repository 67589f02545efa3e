"""Receiving an upload body: a raw archive (zip, tar, tar.gz) or multipart files, streamed with byte caps."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from fastapi import Request
from starlette.datastructures import UploadFile

from spacehub.archives import UploadCounter, UploadLimits, add_file, extract_archive
from spacehub.errors import InvalidInput, PayloadTooLarge
from spacehub.settings import Settings


def limits_of(settings: Settings) -> UploadLimits:
    return UploadLimits(max_upload_bytes=settings.max_upload_bytes, max_tree_bytes=settings.max_tree_bytes,
                        max_file_bytes=settings.max_file_bytes, max_entries=settings.max_entries)


async def receive_upload(request: Request, dest: Path, settings: Settings) -> int:
    """Unpack the request body into the empty folder `dest`; return the number of files."""
    limits = limits_of(settings)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limits.max_upload_bytes:
        raise PayloadTooLarge(f"upload of {declared} bytes is over the limit of {limits.max_upload_bytes} bytes")
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        return await _receive_multipart(request, dest, limits)
    return await _receive_archive(request, dest, limits)


async def _receive_archive(request: Request, dest: Path, limits: UploadLimits) -> int:
    with tempfile.TemporaryFile(dir=dest.parent) as spool:
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limits.max_upload_bytes:
                raise PayloadTooLarge(f"upload is over the limit of {limits.max_upload_bytes} bytes")
            spool.write(chunk)
        if size == 0:
            raise InvalidInput("the upload is empty: send a zip, a tar(.gz) or multipart files")
        spool.seek(0)
        name = request.query_params.get("filename", "upload")
        return await asyncio.to_thread(extract_archive, spool, name, dest, limits)


async def _receive_multipart(request: Request, dest: Path, limits: UploadLimits) -> int:
    form = await request.form(max_files=limits.max_entries + 1, max_fields=100,
                              max_part_size=limits.max_file_bytes)
    try:
        files = [(key, value) for key, value in form.multi_items() if isinstance(value, UploadFile)]
        if not files:
            raise InvalidInput("multipart upload has no files (send parts named 'files' or one 'archive')")
        archives = [value for key, value in files if key == "archive"]
        if archives:
            if len(files) != 1:
                raise InvalidInput("send either one 'archive' part or 'files' parts, not both")
            archive = archives[0]
            return await asyncio.to_thread(extract_archive, archive.file, archive.filename or "archive", dest,
                                           limits)
        counter = UploadCounter()
        for _key, upload in files:
            if not upload.filename:
                raise InvalidInput("every uploaded file needs a filename (its path in the repository)")
            await asyncio.to_thread(add_file, dest, upload.filename, upload.file, limits, counter)
        return len(files)
    finally:
        await form.close()
