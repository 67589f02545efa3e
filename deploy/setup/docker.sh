#!/usr/bin/env bash
# Install and start a Docker engine for spacehub's docker runtime (CI and single-machine installs).
#
# Idempotent: run it as often as you like; each step checks first and says what it did or skipped.
#   - installs Debian's docker.io (dockerd + the 20.10 client with BuildKit) and debootstrap (offline base image)
#   - writes spacehub's dockerd config to its own file (never touches an existing /etc/docker/daemon.json)
#   - starts dockerd in the background when nothing answers, logging to a file, and waits (bounded) for it
#
# Why these dockerd settings (see design.md §4 and reference/security.md §1.6):
#   icc=false          containers on the default bridge cannot open connections to each other
#   live-restore       a dockerd restart does not kill running spaces
#   no-new-privileges  default for every container, on top of the runtime's own --security-opt
#   json-file caps     a chatty app cannot fill the disk with its log
#
# Then, when SPACEHUB_CLI names an installed `spacehub` command, it puts spacehub's sandbox in force with
# `spacehub sandbox install` (its own network, the egress rules on it and on the default bridge, the build-step
# runc wrapper; see the README's security section). `spacehub serve` refuses the Docker runtime without it. The
# rules live in the kernel only: run this (or `spacehub sandbox install`) again after every boot.
#
# Environment knobs: SPACEHUB_DOCKERD_LOG (log file), SPACEHUB_DOCKERD_CONFIG (config file),
# SPACEHUB_DOCKERD_WAIT_S (how long to wait for the engine to answer), SPACEHUB_CLI (the spacehub command).
set -euo pipefail

LOG_FILE="${SPACEHUB_DOCKERD_LOG:-/var/log/spacehub-dockerd.log}"
CONFIG_FILE="${SPACEHUB_DOCKERD_CONFIG:-/etc/docker/spacehub-daemon.json}"
WAIT_S="${SPACEHUB_DOCKERD_WAIT_S:-60}"
# Debian's client: it speaks BuildKit without the buildx plugin (a newer client may come first on PATH).
DOCKER=/usr/bin/docker

say() { printf 'docker.sh: %s\n' "$*"; }

if [ "$(id -u)" -ne 0 ]; then
    say "must run as root" >&2
    exit 1
fi

# 1. Packages ---------------------------------------------------------------------------------------------
missing=()
[ -x /usr/sbin/dockerd ] && [ -x "$DOCKER" ] || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
# The sandbox: iptables rules, network namespaces (tests), per-container ext4 filesystems, the runc wrapper's
# python3 (the host's own, not a venv's).
command -v iptables >/dev/null 2>&1 || missing+=(iptables)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v mkfs.ext4 >/dev/null 2>&1 || missing+=(e2fsprogs)
[ -x /usr/bin/python3 ] || missing+=(python3)
if [ "${#missing[@]}" -gt 0 ]; then
    say "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # Package lists may be stale or absent on a fresh machine: refresh once if the first try fails.
    if ! apt-get install -y --no-install-recommends "${missing[@]}"; then
        apt-get update
        apt-get install -y --no-install-recommends "${missing[@]}"
    fi
else
    say "docker.io, debootstrap and the sandbox's tools already installed"
fi

# 2. dockerd config -------------------------------------------------------------------------------------
desired_config='{
  "icc": false,
  "live-restore": true,
  "no-new-privileges": true,
  "storage-driver": "overlay2",
  "log-driver": "json-file",
  "log-opts": {"max-size": "10m", "max-file": "3"},
  "features": {"buildkit": true}
}'
mkdir -p "$(dirname "$CONFIG_FILE")"
if [ -f "$CONFIG_FILE" ] && [ "$(cat "$CONFIG_FILE")" = "$desired_config" ]; then
    say "config $CONFIG_FILE up to date"
    config_changed=0
else
    printf '%s\n' "$desired_config" >"$CONFIG_FILE"
    say "wrote $CONFIG_FILE"
    config_changed=1
fi

# 3. Start dockerd ---------------------------------------------------------------------------------------
engine_answers() { timeout 10 "$DOCKER" info >/dev/null 2>&1; }

if engine_answers; then
    say "dockerd already answering"
    if [ "$config_changed" = 1 ]; then
        say "WARNING: config changed while dockerd runs; restart dockerd to apply it" >&2
    fi
    # An engine someone else started may lack icc=false: say so loudly (the bridge option tells).
    icc="$("$DOCKER" network inspect bridge \
        --format '{{index .Options "com.docker.network.bridge.enable_icc"}}' 2>/dev/null || true)"
    if [ "$icc" != "false" ]; then
        say "WARNING: the default bridge allows inter-container traffic (icc=$icc);" \
            "restart dockerd with --config-file $CONFIG_FILE" >&2
    fi
else
    if pidof dockerd >/dev/null 2>&1; then
        say "dockerd is running but not answering yet; waiting for it"
    else
        say "starting dockerd (log: $LOG_FILE)"
        mkdir -p "$(dirname "$LOG_FILE")"
        # A pid file left by an engine that died (or a machine image taken while one ran) blocks the start.
        rm -f /var/run/docker.pid
        # setsid + nohup: the engine outlives this script and the CI step that called it.
        setsid nohup /usr/sbin/dockerd --config-file "$CONFIG_FILE" >>"$LOG_FILE" 2>&1 </dev/null &
    fi
    started=$SECONDS
    deadline=$((started + WAIT_S))
    until engine_answers; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            say "dockerd did not answer within ${WAIT_S}s; last log lines:" >&2
            tail -n 30 "$LOG_FILE" >&2 || true
            exit 1
        fi
        sleep 1
    done
    say "dockerd answering after about $((SECONDS - started))s"
fi

"$DOCKER" version --format 'docker.sh: server {{.Server.Version}}, client {{.Client.Version}}'
say "default bridge icc=$("$DOCKER" network inspect bridge \
    --format '{{index .Options "com.docker.network.bridge.enable_icc"}}')"

# 4. spacehub's sandbox --------------------------------------------------------------------------------------
if [ -n "${SPACEHUB_CLI:-}" ] && [ -x "$SPACEHUB_CLI" ]; then
    "$SPACEHUB_CLI" sandbox install
else
    say "spacehub is not installed yet: run \`spacehub sandbox install\` (as root) once it is"
fi
