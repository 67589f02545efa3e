"""A space's runtime settings as the Hub exposes them: hardware, sleep time, secrets and variables.

`GET /api/spaces/hardware` lists the flavors this install can run. Volumes (`set_space_volumes`,
`create_repo(space_volumes=...)`) are not supported: spacehub offers persistent storage tiers mounted at `/data`
(`request_space_storage`), so a volume is refused with 400, never dropped silently.

Each answers what `huggingface_hub` parses: a SpaceRuntime for hardware and sleep time, the full variables dict
for variable changes. Secret values are write-only: no endpoint ever returns one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from spacehub import access, hardware, spaces, variables
from spacehub.api.serialize import hub_time, runtime_json
from spacehub.context import Platform
from spacehub.errors import InvalidInput
from spacehub.requestdeps import SESSION, get_platform, require_user
from spacehub.store.models import Space, User

router = APIRouter()

# Every write commits before it answers: the session dependency's own commit runs after the response is sent,
# and the client's next call must see the change.


VOLUMES_UNSUPPORTED = ("volumes are not supported here: spacehub gives a space persistent storage at /data "
                       "through a storage tier instead (request_space_storage('small'|'medium'|'large'))")


def refuse_volumes(volumes: list[dict[str, Any]] | None) -> None:
    if volumes:
        raise InvalidInput(VOLUMES_UNSUPPORTED)


@router.get("/api/spaces/hardware")
def list_hardware(platform: Platform = Depends(get_platform)) -> JSONResponse:
    return JSONResponse(hardware.hub_listing(platform.settings))


class Volumes(BaseModel):
    model_config = ConfigDict(extra="ignore")
    volumes: list[dict[str, Any]] = Field(default_factory=list)


@router.put("/api/spaces/{owner}/{name}/volumes")
def set_volumes(owner: str, name: str, body: Volumes, session: Session = SESSION,
                user: User = Depends(require_user)) -> JSONResponse:
    access.get_writable(session, user, owner, name)
    raise InvalidInput(VOLUMES_UNSUPPORTED)


@router.delete("/api/spaces/{owner}/{name}/volumes")
def delete_volumes(owner: str, name: str, session: Session = SESSION,
                   user: User = Depends(require_user)) -> JSONResponse:
    access.get_writable(session, user, owner, name)
    return JSONResponse({})  # a space here never has volumes: there is nothing to delete


class Hardware(BaseModel):
    model_config = ConfigDict(extra="ignore")
    flavor: str
    sleepTimeSeconds: int | None = None  # noqa: N815 - the Hub's key


class SleepTime(BaseModel):
    model_config = ConfigDict(extra="ignore")
    seconds: int


class Variable(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    value: str = ""
    description: str | None = None


class VariableKey(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str


@router.post("/api/spaces/{owner}/{name}/hardware")
def request_hardware(owner: str, name: str, body: Hardware, platform: Platform = Depends(get_platform),
                     session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    spaces.request_hardware(platform, session, space, body.flavor, body.sleepTimeSeconds)
    session.commit()
    return JSONResponse(runtime_json(platform.settings, space))


@router.post("/api/spaces/{owner}/{name}/sleeptime")
def set_sleep_time(owner: str, name: str, body: SleepTime, platform: Platform = Depends(get_platform),
                   session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    spaces.set_sleep_time(session, space, body.seconds)
    session.commit()
    return JSONResponse(runtime_json(platform.settings, space))


# Secrets ----------------------------------------------------------------------------------------------------


def _secrets_json(session: Session, space: Space) -> dict[str, dict[str, str | None]]:
    return {row.key: {"description": row.description or None, "updatedAt": hub_time(row.updated_at)}
            for row in variables.rows(session, space, secret=True)}


@router.get("/api/spaces/{owner}/{name}/secrets")
def get_secrets(owner: str, name: str, session: Session = SESSION,
                user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    return JSONResponse(_secrets_json(session, space))


@router.post("/api/spaces/{owner}/{name}/secrets")
def add_secret(owner: str, name: str, body: Variable, platform: Platform = Depends(get_platform),
               session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    variables.put(platform, session, space, body.key, body.value, body.description or "", secret=True)
    session.commit()
    return JSONResponse({})


@router.delete("/api/spaces/{owner}/{name}/secrets")
def delete_secret(owner: str, name: str, body: VariableKey, platform: Platform = Depends(get_platform),
                  session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    variables.delete(platform, session, space, body.key, secret=True)
    session.commit()
    return JSONResponse({})


# Variables --------------------------------------------------------------------------------------------------


def _variables_json(session: Session, space: Space) -> dict[str, dict[str, str | None]]:
    return {row.key: {"value": row.value, "description": row.description or None,
                      "updatedAt": hub_time(row.updated_at)}
            for row in variables.rows(session, space, secret=False)}


@router.get("/api/spaces/{owner}/{name}/variables")
def get_variables(owner: str, name: str, session: Session = SESSION,
                  user: User = Depends(require_user)) -> JSONResponse:
    # Variables are the owner's settings, not part of the public repo: read like secrets' names.
    space = access.get_writable(session, user, owner, name)
    return JSONResponse(_variables_json(session, space))


@router.post("/api/spaces/{owner}/{name}/variables")
def add_variable(owner: str, name: str, body: Variable, platform: Platform = Depends(get_platform),
                 session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    variables.put(platform, session, space, body.key, body.value, body.description or "", secret=False)
    session.commit()
    return JSONResponse(_variables_json(session, space))


@router.delete("/api/spaces/{owner}/{name}/variables")
def delete_variable(owner: str, name: str, body: VariableKey, platform: Platform = Depends(get_platform),
                    session: Session = SESSION, user: User = Depends(require_user)) -> JSONResponse:
    space = access.get_writable(session, user, owner, name)
    variables.delete(platform, session, space, body.key, secret=False)
    session.commit()
    return JSONResponse(_variables_json(session, space))
