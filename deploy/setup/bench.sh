#!/usr/bin/env bash
# What `make bench` needs on a fresh Debian machine (idempotent; needs root only when something is missing):
#   wrk     the load generator
#   nginx   the anchor the proxy is measured against (each bench starts its own instance on 127.0.0.1;
#           the system service is not started on install, so nothing listens on port 80 because of this)
set -euo pipefail
need=()
command -v wrk >/dev/null || need+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need+=(nginx)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
  echo "missing: ${need[*]}; run as root: bash $0 (or apt-get install ${need[*]})" >&2
  exit 1
fi
echo "installing: ${need[*]}"
# Debian starts a package's service on install unless policy-rc.d says no: say no, for this install only.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
