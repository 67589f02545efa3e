"""What a pod's status (as the API returns it, a plain dict) means for its space: a stage, a message, an exit code.

Pure, so each reaction is tested with recorded watch events and no cluster:
  - scheduled and starting                      -> APP_STARTING
  - unschedulable (no node with a free GPU, ...)-> APP_STARTING, with the scheduler's reason (design.md: waiting
                                                   for a free GPU reads APP_STARTING with a message that says so)
  - running, not yet ready / ready              -> APP_STARTING / RUNNING
  - image pull error, bad container config      -> RUNTIME_ERROR, exit code 125 (the start failed, as
                                                   `docker run` says it); a pod in ImagePullBackOff never recovers
                                                   without a new image, so it is not left waiting
  - OOMKilled                                   -> RUNTIME_ERROR, exit code 137, "out of memory"
  - evicted (over its ephemeral-storage cap)    -> RUNTIME_ERROR, the kubelet's reason
  - any other end                               -> RUNTIME_ERROR, the app's own exit code
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from spacehub.stages import Stage

START_FAILED = 125  # what `docker run` exits with when the container could not be started
PULL_ERRORS = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull", "RegistryUnavailable"}
CONFIG_ERRORS = {"CreateContainerConfigError", "CreateContainerError", "RunContainerError"}


@dataclass(frozen=True)
class PodState:
    stage: Stage
    message: str
    exit_code: int | None  # None while it starts or runs (Runtime.poll's meaning)


def read(pod: dict[str, Any]) -> PodState:
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    containers = status.get("containerStatuses") or []
    state = (containers[0].get("state") or {}) if containers else {}
    terminated = state.get("terminated")
    if terminated and terminated.get("reason") == "OOMKilled":
        return PodState(Stage.RUNTIME_ERROR, "the app ran out of memory (OOMKilled: over its flavor's memory "
                        "limit)", int(terminated.get("exitCode") or 137))
    if status.get("reason"):  # the kubelet ended the pod itself (Evicted: over its ephemeral-storage cap, ...)
        code = int(terminated.get("exitCode", START_FAILED)) if terminated else START_FAILED
        detail = status.get("message") or "no detail"
        return PodState(Stage.RUNTIME_ERROR, f"the pod was stopped by the cluster ({status['reason']}): {detail}",
                        code)
    if terminated:
        code = int(terminated.get("exitCode", 1))
        return PodState(Stage.RUNTIME_ERROR, f"the app exited with code {code}", code)
    if phase in ("Failed", "Succeeded"):
        return PodState(Stage.RUNTIME_ERROR, f"the pod ended ({phase})", 0 if phase == "Succeeded" else START_FAILED)
    waiting = state.get("waiting") or {}
    if waiting.get("reason") in PULL_ERRORS:
        return PodState(Stage.RUNTIME_ERROR, f"could not pull the image ({waiting['reason']}): "
                        f"{waiting.get('message') or 'no detail'}", START_FAILED)
    if waiting.get("reason") in CONFIG_ERRORS:
        return PodState(Stage.RUNTIME_ERROR, f"could not start the container ({waiting['reason']}): "
                        f"{waiting.get('message') or 'no detail'}", START_FAILED)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
            why = condition.get("message") or condition.get("reason") or "no node fits it"
            if "nvidia.com/gpu" in why:
                return PodState(Stage.APP_STARTING, f"waiting for a free GPU: {why}", None)
            return PodState(Stage.APP_STARTING, f"waiting for the cluster to place it: {why}", None)
    if "running" in state:
        if containers[0].get("ready"):
            return PodState(Stage.RUNNING, "running", None)
        return PodState(Stage.APP_STARTING, "the app is starting", None)
    return PodState(Stage.APP_STARTING, waiting.get("reason") and f"starting ({waiting['reason']})" or "starting",
                    None)
