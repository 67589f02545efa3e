#!/bin/sh
# Redis for the stack: append-only persistence in /data, a password, listening where REDIS_LISTEN/REDIS_PORT say.
set -eu
exec redis-server --bind "${REDIS_LISTEN:-127.0.0.1}" --port "${REDIS_PORT:-6379}" \
  --requirepass "${REDIS_PASSWORD:?REDIS_PASSWORD is required}" --dir /data --appendonly yes \
  --maxmemory-policy noeviction --protected-mode yes
