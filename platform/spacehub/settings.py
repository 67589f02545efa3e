"""The one typed settings object. Built at the entry points (CLI commands, app factories), never at import time.

Every field reads `SPACEHUB_<NAME>`; lists are comma-separated. Every timing is a setting so tests can run in
seconds. The README's settings table documents each of them.
"""

from __future__ import annotations

import re
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

CommaList = Annotated[list[str], NoDecode]


def _split_commas(value: object) -> object:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SPACEHUB_", extra="ignore", frozen=True)

    # Where everything lives
    data_dir: Path = Field(default=Path.home() / ".spacehub", description="All state: db, repos, envs, logs")
    disks_dir: Path | None = Field(default=None, description="The Docker runtime's capped disks (loop-mounted "
                                   "filesystems); default <data dir>/disks. dockerd binds from it by path: a "
                                   "platform in a container must see it at the host's path")
    host: str = Field(default="127.0.0.1", description="Address of the one public port")
    port: int = Field(default=8000, description="The one public port (proxy: API, UI and spaces)")
    public_url: str | None = Field(default=None, description="Public URL of the platform; default http://localhost:PORT")
    spaces_domain: str = Field(default="space.localhost", description="Spaces live at <label>.<spaces_domain>")
    spaces_port: int | None = Field(default=None, description="Port in space URLs; default: the public URL's port")
    log_format: Literal["text", "json"] = Field(default="text", description="Log lines of every role: text, or "
                                                "one JSON object per line (time, level, logger, message)")
    proxy_figures_timeout_s: float = Field(default=5.0, gt=0, description="Under `spacehub serve`, how long the "
                                           "API's /metrics waits for the proxy process's figures (then goes without)")
    runtime: Literal["process", "docker", "kubernetes", "auto"] = Field(default="process",
                                                                         description="Runtime for spaces")

    # Backing services
    redis_url: str | None = Field(default=None, description="Unset: embedded redis-server on a unix socket")
    redis_check_s: float = Field(default=1.0, gt=0, description="How often `serve` checks its embedded "
                                 "redis-server (one that died is started again at once)")
    redis_connect_timeout_s: float = Field(default=5.0, gt=0, description="How long connecting to Redis may "
                                           "take before the request fails with 503")
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After of a 503 answered while a dependency "
                               "(Redis, the database) is down")
    api_listen: str | None = Field(default=None, description="Where the API listens and the proxy sends API "
                                   "traffic: unset: a unix socket under the run dir; or host:port (roles apart)")
    api_trusted_proxies: CommaList = Field(
        default_factory=lambda: ["127.0.0.1", "::1"], description="With SPACEHUB_API_LISTEN: the proxies' addresses, "
        "the only peers whose X-Forwarded-For the API believes (the client address rate limits count); on the unix "
        "socket only the proxy can connect, so it is always believed there")
    database_url: str | None = Field(default=None, description="Unset: SQLite under the data dir. PostgreSQL: "
                                     "postgresql+psycopg://USER:PASSWORD@HOST:5432/DB (the spacehub[postgres] extra)")
    database_pool_size: int = Field(default=5, ge=1, description="Connections each process keeps open to "
                                    "PostgreSQL (as many again in bursts)")
    database_pool_timeout_s: float = Field(default=30.0, gt=0, description="How long a request waits for a free "
                                           "database connection before it fails")
    database_connect_timeout_s: float = Field(default=10.0, gt=0, description="How long connecting to "
                                              "PostgreSQL may take (at start: then one line names the cause)")
    admin_token: SecretStr | None = Field(default=None, description="First start creates user `admin` with it")
    secrets_key_file: Path | None = Field(default=None, description="Key file that seals space secrets at rest "
                                          "(made once, mode 0600); unset: secrets.key in the data dir")

    # Package sources for every build
    pip_index_url: str | None = Field(default=None, description="Package index for builds")
    pip_extra_index_urls: CommaList = Field(default_factory=list, description="Extra package indexes")
    pip_find_links: CommaList = Field(default_factory=list, description="find-links folders or URLs")

    # Builds
    python_versions: CommaList = Field(default_factory=lambda: ["3.11"], description="Python versions offered")
    default_gradio_version: str = Field(default="6.31.0", description="Gradio used when sdk_version is unset")
    build_timeout_s: int = Field(default=1800, description="A build is failed after this long")
    build_cancel_check_s: float = Field(default=1.0, description="How often a running build checks whether a "
                                        "newer push superseded it (and then stops)")
    workers: int = Field(default=1, description="Build workers started by `spacehub serve`")
    job_timeout_s: int | None = Field(default=None, gt=0, description="Hard limit on one build job (build, then "
                                      "start until ready); must exceed build_timeout_s + ready_timeout_s. Unset: "
                                      "their sum plus 120")

    # Uploads (every upload is hostile until checked)
    max_upload_bytes: int = Field(default=512 * 1024 * 1024, description="Largest upload body")
    max_tree_bytes: int = Field(default=1024 * 1024 * 1024, description="Largest unpacked tree")
    max_file_bytes: int = Field(default=256 * 1024 * 1024, description="Largest single file")
    max_entries: int = Field(default=10_000, description="Most files in one upload")
    lfs_threshold_bytes: int = Field(default=10 * 1024 * 1024, description="Hub API preupload answers `lfs` "
                                     "for files this large or larger (and for paths .gitattributes marks "
                                     "filter=lfs); -1: never (every file inline, for clients that cannot turn "
                                     "Xet off)")
    lfs_max_file_bytes: int = Field(default=50 * 1024 ** 3, description="Largest LFS object (enforced while "
                                    "its bytes stream in)")
    lfs_chunk_bytes: int = Field(default=64 * 1024 * 1024, gt=0, description="Part size of multipart LFS "
                                 "uploads (objects larger than this are sent in parts)")
    lfs_link_ttl_s: float = Field(default=24 * 3600.0, description="Lifetime of the signed upload and verify "
                                  "links the LFS batch API hands out")
    lfs_gc_grace_s: float = Field(default=24 * 3600.0, description="An LFS object no branch or tag references "
                                  "is deleted by garbage collection once it is this old (so an upload whose "
                                  "commit is still coming is kept)")

    # Running
    ready_timeout_s: float = Field(default=180.0, description="Time an app gets to answer its readiness probe")
    stop_grace_s: float = Field(default=5.0, description="SIGTERM to SIGKILL grace when stopping an app")
    fork_server: bool = Field(default=True, description="Process runtime: start Gradio apps by forking a "
                              "per-environment server that has already imported the heavy modules (false: "
                              "always a plain `python app.py`)")
    fork_server_preload: CommaList = Field(
        default_factory=lambda: [
            "gradio", "gradio.http_server", "pydantic.v1", "anyio._backends._asyncio", "starlette.middleware.cors",
            "uvicorn.lifespan.on", "uvicorn.loops.auto", "uvicorn.loops.asyncio", "uvicorn.protocols.http.auto",
            "uvicorn.protocols.http.h11_impl", "uvicorn.protocols.websockets.auto", "fastapi.telemetry._runtime",
            "encodings.idna", "encodings.unicode_escape", "multiprocessing.synchronize",
            "torch", "transformers", "transformers.modeling_utils"],
        description="Modules a fork-server imports before forking, each only if its environment has it (what "
        "`import gradio` leaves to `launch()` included: each module imported here is memory its apps share)")
    fork_server_start_timeout_s: float = Field(default=180.0, description="Time a new fork-server gets to import "
                                               "its modules; past it the app is started plainly")
    fork_server_idle_s: float = Field(default=600.0, description="A fork-server whose environment no space uses "
                                      "(running, starting or sleeping) is stopped after this long without a start")
    shutdown_grace_s: float = Field(default=30.0, ge=0, description="On SIGTERM or Ctrl-C, how long open "
                                    "requests, streams and jobs get to finish before they are cut")
    reconcile_interval_s: float = Field(default=5.0, description="How often the supervisor repairs drift")
    lost_job_s: float = Field(default=30.0, gt=0, description="A build or start whose RQ job is gone (work-horse "
                              "or worker killed, Redis lost) is failed, or queued again, after this long")
    route_refresh_s: float = Field(default=30.0, gt=0, description="The proxy reloads its whole route table and "
                                   "space list this often (a safety net: each change reloads its own entry at once)")
    strict_transitions: bool = Field(default=False, description="An illegal stage transition raises (tests) "
                                     "instead of being logged")
    log_stream_max: int = Field(default=5000, description="Lines kept per log stream")
    run_log_max_bytes: int = Field(default=16 * 1024 * 1024, gt=0, description="Process runtime: an app's log "
                                   "file is emptied once it is over this size and copied to its run-log stream "
                                   "(also the most one supervisor tick copies: older output is skipped)")
    sse_keepalive_s: float = Field(default=15.0, description="Keep-alive interval of log streams")
    token_cache_s: float = Field(default=5.0, description="How long the proxy trusts a checked token (or a "
                                 "refusal) at a private space's host before checking it again (a safety net: a "
                                 "revocation clears every proxy's cache before its call returns)")
    proxy_ack_timeout_s: float = Field(default=5.0, ge=0, description="A change of a route or of who may read "
                                       "what waits at most this long for every proxy process to confirm it has "
                                       "applied it before the call that made it returns; 0: do not wait")

    # Sleep, wake, redeploys, crashes and disk (spacehub_runner.lifecycle)
    freeze_after_s: float = Field(default=60.0, description="Idle seconds before a running space is frozen "
                                  "(SIGSTOP / docker pause: no CPU, memory kept, still RUNNING); 0: never")
    default_sleep_time_s: int = Field(default=48 * 3600, description="Idle seconds before a space that sets no "
                                      "sleep time of its own is stopped (SLEEPING); -1: never")
    activity_flush_s: float = Field(default=1.0, description="How often the proxy publishes per-space activity "
                                    "(last request, requests in flight) to Redis")
    wake_timeout_s: float = Field(default=60.0, description="How long an API request to a frozen, sleeping or "
                                  "starting space is held while it wakes; then 503 with Retry-After")
    wake_page_after_s: float = Field(default=1.0, description="How long a browser asking for HTML waits for a "
                                     "waking space before it gets the waiting page (which reloads once ready)")
    drain_timeout_s: float = Field(default=60.0, description="After a redeploy, the old revision finishes its "
                                   "open requests and streams for at most this long before it is stopped")
    restart_backoff_s: float = Field(default=10.0, description="Delay before the first restart of a crashed app; "
                                     "doubles with each crash in a row")
    restart_backoff_max_s: float = Field(default=300.0, description="Longest delay between restarts of a "
                                         "crashing app")
    max_restarts: int = Field(default=5, description="Crashes in a row restarted before the space is marked "
                              "RUNTIME_ERROR")
    restart_reset_s: float = Field(default=600.0, description="An app that ran this long after a restart has "
                                   "recovered: its next crash is the first of a new row")
    gc_interval_s: float = Field(default=3600.0, description="How often unused environments, app copies, "
                                 "images, build caches and stale checkouts are collected")
    gc_keep_s: float = Field(default=7 * 24 * 3600.0, description="How long an environment, app copy or image "
                             "that no space needs is kept before it is collected")
    min_free_disk_mb: int = Field(default=1024, description="Builds and starts are refused while less than this "
                                  "many MB are free under the data dir")

    # Rate limits (spacehub.ratelimit): COUNT/SECONDS per peer address and per account, or `off`
    rate_limit_signin_address: str = Field(default="10/300", description="Failed sign-ins from one address")
    rate_limit_signin_account: str = Field(default="30/300", description="Failed sign-ins into one account, "
                                           "from any address")
    rate_limit_invalid_token: str = Field(default="30/300", description="Invalid or expired tokens from one "
                                          "address (then even a valid one waits)")
    rate_limit_signup: str = Field(default="10/3600", description="Accounts created from one address (and by "
                                   "one signed-in admin)")
    rate_limit_writes: str = Field(default="60/60", description="Uploads, commits, pushes and duplicates per "
                                   "account and per address")
    rate_limit_builds: str = Field(default="20/60", description="Restarts and rebuilds per account and per "
                                   "address")

    # Web UI
    signup: Literal["open", "admin"] = Field(
        default="admin", description="Who creates accounts in the web UI: `open` (anyone; needs the docker "
        "runtime) or `admin` (signed-in admins only)")
    session_max_age_s: int = Field(default=14 * 24 * 3600, description="A browser sign-in lasts this long")
    space_sign_ttl_s: float = Field(default=120.0, description="Lifetime of the signed token in a private "
                                    "space's iframe URL (exchanged at once for a cookie)")
    space_cookie_max_age_s: int = Field(default=12 * 3600, description="Lifetime of a private space's access "
                                        "cookie on its own host")
    ui_poll_s: float = Field(default=1.0, description="How often a space page's live stream checks the stage")
    app_info_timeout_s: float = Field(default=5.0, description="Timeout of the app's /gradio_api/info fetch "
                                      "for the \"Use via API\" snippets")

    # Docker runtime and builder (read through spacehub_runner.dockeropts.DockerOptions)
    docker_ping_timeout_s: float = Field(default=2.0, description="`auto` runtime: how long a Docker ping may take")
    docker_base_image: str = Field(default="spacehub/base:py{python}",
                                   description="Base image per Python version ({python}); e.g. python:{python}-slim")
    docker_sdk_repo: str = Field(default="spacehub/sdk", description="Repository of SDK images (base + Gradio)")
    docker_app_repo: str = Field(default="spacehub/app", description="Repository of space images (content-named)")
    docker_cli: str = Field(default="/usr/bin/docker", description="Docker client that speaks BuildKit")
    docker_debian_suite: str = Field(default="bookworm", description="Debian suite of the offline base bootstrap")
    docker_debian_mirror: str = Field(default="http://deb.debian.org/debian", description="Debian mirror")
    docker_debian_security_mirror: str = Field(default="http://deb.debian.org/debian-security",
                                               description="Debian security mirror")
    docker_uv_index_strategy: str = Field(default="unsafe-best-match", description="uv index strategy in builds")
    docker_network: str = Field(default="spacehub", description="Network of space containers: spacehub's own "
                                "bridge, made and policed by `spacehub sandbox install` (never `host`)")
    docker_bridge: str = Field(default="spacehub0", description="Bridge interface of that network")
    docker_egress_internet: bool = Field(default=True, description="Containers and build steps may reach the "
                                         "public internet on tcp 80 and 443 (never private, loopback or link-local "
                                         "addresses, nor the host)")
    docker_egress_dns: CommaList = Field(default_factory=list, description="DNS servers containers and build "
                                         "steps may query (port 53); default: the host's resolvers")
    docker_egress_blocked: CommaList = Field(default_factory=list, description="More IPv4 networks containers "
                                             "may never reach (private, loopback, link-local and the host's own "
                                             "networks always are)")
    docker_sandbox_reassert: bool = Field(default=True, description="Roles that start containers put back the "
                                          "egress rules that are gone or damaged (a reboot, a firewall flush): at "
                                          "start, and the supervisor every SPACEHUB_DOCKER_SANDBOX_CHECK_S; needs "
                                          "root or CAP_NET_ADMIN")
    docker_sandbox_check_s: float = Field(default=30.0, gt=0, description="How often the supervisor checks that "
                                          "the egress rules are in place (and puts back what is missing)")
    docker_gateway_ports: CommaList = Field(default_factory=list, description="Ports on the bridge gateways "
                                            "containers may reach besides the public port (`a-b` ranges), e.g. "
                                            "for several platforms on one engine")
    docker_package_ports: str = Field(default="28300-28399", description="Ports the build-time package server "
                                      "(local package sources) takes one of; only build steps reach them")
    docker_build_caps: CommaList = Field(
        default_factory=lambda: ["CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID"],
        description="The only capabilities a build step keeps (it also runs with no-new-privileges)")
    docker_build_disk_gb: float = Field(default=50.0, gt=0, description="A build is stopped once the disk "
                                        "holding Docker's data has lost this much space since the build began")
    docker_build_disk_check_s: float = Field(default=1.0, gt=0, description="How often a build's disk use is "
                                             "checked")
    docker_cpu_scale: float = Field(default=0.5, description="Flavor vCPUs x this = a container's CPU limit")
    docker_memory_scale: float = Field(default=0.125, description="Flavor memory x this = a container's memory limit")
    docker_pids_limit: int = Field(default=512, description="Most processes in one container")
    docker_log_max_size: str = Field(default="10m", description="Size of one container log file")
    docker_log_max_file: int = Field(default=3, description="Container log files kept")

    # Image registry (the docker builder pushes there; runtimes run images by digest)
    registry: str | None = Field(default=None, description="Registry the docker builder pushes space images to, "
                                 "as host[:port][/path] (e.g. registry.example.com/spacehub); unset: images stay "
                                 "on the building engine")
    registry_username: str | None = Field(default=None, description="User name for the registry (push and pull)")
    registry_password: SecretStr | None = Field(default=None, description="Password or token for the registry")

    # Kubernetes runtime (SPACEHUB_RUNTIME=kubernetes; spacehub_runner.kube)
    kube_config: Path | None = Field(default=None, description="Kubernetes: kubeconfig file; unset: the "
                                     "in-cluster service account, else $KUBECONFIG / ~/.kube/config")
    kube_namespace: str = Field(default="spacehub-spaces", description="Kubernetes: namespace of space pods")
    kube_platform_namespace: str = Field(default="spacehub", description="Kubernetes: namespace of the "
                                         "platform's own pods (the only ones that may reach spaces)")
    kube_storage_class: str | None = Field(default=None, description="Kubernetes: storage class of spaces' "
                                           "persistent volume claims; unset: the cluster's default")
    kube_flavors: Path | None = Field(default=None, description="Kubernetes: YAML file, flavor -> schedulable, "
                                      "node_selector, tolerations, read_only_root (spacehub.kubeplacement)")
    kube_egress_internet: bool = Field(default=True, description="Kubernetes: space pods may reach the public "
                                       "internet on tcp 80 and 443 (never private or link-local addresses)")
    kube_pull_secret: str | None = Field(default=None, description="Kubernetes: name of the dockerconfigjson "
                                         "Secret (in the spaces namespace) that pulls from SPACEHUB_REGISTRY")
    kube_watch_timeout_s: int = Field(default=300, gt=0, description="Kubernetes: the pod watch is renewed "
                                      "after this long")
    kube_watch_retry_s: float = Field(default=1.0, gt=0, description="Kubernetes: wait before watching again "
                                      "after a failed watch")

    # Kubernetes builder (SPACEHUB_BUILDER=kubernetes; spacehub_runner.builders.kubernetes)
    builder: Literal["auto", "process", "docker", "kubernetes"] = Field(
        default="auto", description="Builder of space images: `auto` = the runtime's own (process for process, "
        "docker for docker and kubernetes), `kubernetes` = rootless BuildKit Jobs on the cluster")
    kube_build_namespace: str = Field(default="spacehub-builds", description="Kubernetes builder: namespace of "
                                      "build Jobs (apart from the spaces': rootless BuildKit is not `restricted`)")
    kube_build_image: str = Field(default="moby/buildkit:v0.27.0-rootless", description="Kubernetes builder: "
                                  "the rootless BuildKit image (has `buildctl-daemonless.sh`, `wget`, `tar`)")
    kube_build_context_host: str | None = Field(default=None, description="Kubernetes builder: the worker's "
                                                "address build pods fetch the build context from (its pod IP)")
    kube_build_context_ports: str = Field(default="28400-28409", description="Kubernetes builder: ports the "
                                          "worker serves build contexts on, one per running build")
    kube_build_cpus: float = Field(default=2.0, gt=0, description="Kubernetes builder: CPUs of a build pod")
    kube_build_memory_gb: float = Field(default=4.0, gt=0, description="Kubernetes builder: memory of a build pod")
    kube_build_disk_gb: float = Field(default=20.0, gt=0, description="Kubernetes builder: ephemeral storage of "
                                      "a build pod (the kubelet evicts a build over it)")
    kube_build_ttl_s: int = Field(default=600, ge=0, description="Kubernetes builder: a finished Job the worker "
                                  "did not delete (it crashed) is removed after this long")
    kube_build_poll_s: float = Field(default=1.0, gt=0, description="Kubernetes builder: how often a build pod's "
                                     "state is read while it starts and ends")

    # Hardware, GPUs and storage
    hardware_table: Path | None = Field(default=None, description="YAML file: flavor -> cpus, memory_gb, gpus")
    # NoDecode must wrap the whole Optional: outside it, "0" is JSON-decoded to the int 0 and refused.
    gpus: Annotated[list[str] | None, NoDecode] = Field(default=None,
                                                         description="GPU device ids to hand out; unset: ask NVML")
    gpu_share: int = Field(default=1, ge=1, description="How many spaces may share one GPU device")
    storage_small_gb: int = Field(default=20, description="Size of the `small` persistent storage tier")
    storage_medium_gb: int = Field(default=150, description="Size of the `medium` persistent storage tier")
    storage_large_gb: int = Field(default=1000, description="Size of the `large` persistent storage tier")

    # CLI
    url: str | None = Field(default=None, description="CLI: platform URL (default: the public URL)")
    token: SecretStr | None = Field(default=None, description="CLI: API token (default: saved by `login`)")

    _split = field_validator("pip_extra_index_urls", "pip_find_links", "python_versions", "gpus", "api_trusted_proxies",
                             "fork_server_preload", "docker_egress_dns", "docker_egress_blocked",
                             "docker_gateway_ports", "docker_build_caps", mode="before")(_split_commas)

    @field_validator("rate_limit_signin_address", "rate_limit_signin_account", "rate_limit_invalid_token",
                     "rate_limit_signup", "rate_limit_writes", "rate_limit_builds")
    @classmethod
    def _rate_limit_shape(cls, value: str) -> str:
        if not re.fullmatch(r"off|[1-9]\d*/[1-9]\d*", value.strip().lower()):
            raise ValueError(f"{value!r} is not COUNT/SECONDS (e.g. 10/300) or off")
        return value

    @field_validator("registry")
    @classmethod
    def _registry_shape(cls, value: str | None) -> str | None:
        # A bare reference prefix: a scheme, tag or digest here would make every pushed name invalid.
        if value is not None and not re.fullmatch(r"[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d{1,5})?(/[a-z0-9._-]+)*",
                                                  value):
            raise ValueError(f"SPACEHUB_REGISTRY {value!r} must be host[:port][/path] in lower case, without a "
                             "scheme (e.g. registry.example.com:5000/spacehub)")
        return value

    @field_validator("admin_token")
    @classmethod
    def _admin_token_shape(cls, value: SecretStr | None) -> SecretStr | None:
        # Platform tokens carry the `sh_` prefix: the proxy recognises (and strips) them by it, so a token
        # without it would reach apps and could not open private spaces.
        if value is not None:
            secret = value.get_secret_value()
            if len(secret) < 24 or not re.fullmatch(r"sh_[A-Za-z0-9_-]+", secret):
                raise ValueError("SPACEHUB_ADMIN_TOKEN must start with 'sh_' and be at least 24 characters long "
                                 "(letters, digits, '-' and '_')")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        """Settings that only make sense together: a contradiction refuses to start, naming both sides."""
        problems = [message for broken, message in (
            (self.job_timeout_s is not None and self.job_timeout_s <= self.build_timeout_s + self.ready_timeout_s,
             f"SPACEHUB_JOB_TIMEOUT_S ({self.job_timeout_s}) must exceed SPACEHUB_BUILD_TIMEOUT_S "
             f"({self.build_timeout_s}) + SPACEHUB_READY_TIMEOUT_S ({self.ready_timeout_s:g}): a build job builds, "
             "then starts the app and waits until it is ready"),
            (self.wake_page_after_s > self.wake_timeout_s,
             f"SPACEHUB_WAKE_PAGE_AFTER_S ({self.wake_page_after_s:g}) must not exceed SPACEHUB_WAKE_TIMEOUT_S "
             f"({self.wake_timeout_s:g}): the waiting page is shown while the request is still held"),
            (self.restart_backoff_s > self.restart_backoff_max_s,
             f"SPACEHUB_RESTART_BACKOFF_S ({self.restart_backoff_s:g}) must not exceed "
             f"SPACEHUB_RESTART_BACKOFF_MAX_S ({self.restart_backoff_max_s:g})"),
        ) if broken]
        if problems:
            raise ValueError("contradictory settings: " + "; ".join(problems))
        return self

    @property
    def build_job_timeout_s(self) -> int:
        """RQ's hard limit on one build job: longer than the build and the start it ends with together."""
        if self.job_timeout_s is not None:
            return self.job_timeout_s
        return int(self.build_timeout_s + self.ready_timeout_s) + 120

    @cached_property
    def base_url(self) -> str:
        return (self.public_url or f"http://localhost:{self.port}").rstrip("/")

    @cached_property
    def platform_hosts(self) -> frozenset[str]:
        """Host header values (without port) that reach the API and UI."""
        public = urlsplit(self.base_url).hostname or "localhost"
        # host.docker.internal: how containers reach the public port (their HF_ENDPOINT), see serve.py.
        return frozenset({public.lower(), "localhost", "127.0.0.1", "[::1]", "::1", "host.docker.internal"})

    def storage_gb(self, tier: str) -> int:
        """Size of a persistent storage tier (the Hub's small / medium / large)."""
        sizes = {"small": self.storage_small_gb, "medium": self.storage_medium_gb, "large": self.storage_large_gb}
        return sizes[tier]

    @cached_property
    def spaces_scheme(self) -> str:
        return urlsplit(self.base_url).scheme or "http"

    def space_url(self, label: str) -> str:
        port = self.spaces_port if self.spaces_port is not None else urlsplit(self.base_url).port
        suffix = f":{port}" if port else ""
        return f"{self.spaces_scheme}://{label}.{self.spaces_domain}{suffix}"

    # Paths under the data dir
    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def lfs_dir(self) -> Path:
        return self.data_dir / "lfs"

    @property
    def envs_dir(self) -> Path:
        return self.data_dir / "envs"

    @property
    def apps_dir(self) -> Path:
        return self.data_dir / "apps"

    @property
    def disk_caps_dir(self) -> Path:
        return self.disks_dir or self.data_dir / "disks"

    @property
    def logs_dir(self) -> Path:
        return self.data_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.data_dir / "run"

    @property
    def api_socket(self) -> Path:
        return self.run_dir / "api.sock"

    @property
    def proxy_figures_socket(self) -> Path:
        """Where the proxy of `spacehub serve` serves its /metrics figures to the API (spacehub.metrics)."""
        return self.run_dir / "proxy-metrics.sock"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'spacehub.db'}"


def load_settings(**overrides: object) -> Settings:
    return Settings(**overrides)  # type: ignore[arg-type]


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as SPACEHUB_* variables, so child processes (workers, supervisor) see the same ones."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, list):
            value = ",".join(str(v) for v in value)
        env[f"SPACEHUB_{name.upper()}"] = str(value)
    return env
