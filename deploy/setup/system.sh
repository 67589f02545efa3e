#!/usr/bin/env bash
# System packages the tests need on a fresh Debian machine (idempotent; run as root).
#   git                 repos are real git repositories
#   libnss-myhostname   lets Python resolve *.localhost names (browsers and curl do it on their own)
#   wrk, nginx-light    load generator and the anchor proxy for `make bench`
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
[ -e /lib/x86_64-linux-gnu/libnss_myhostname.so.2 ] || [ -e /usr/lib/x86_64-linux-gnu/libnss_myhostname.so.2 ] \
  || need+=(libnss-myhostname)
for extra in "$@"; do dpkg -s "$extra" >/dev/null 2>&1 || need+=("$extra"); done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# libnss-myhostname adds itself to nsswitch.conf on install; make sure it is there.
grep -q myhostname /etc/nsswitch.conf || sed -i 's/^hosts:\(.*\)$/hosts:\1 myhostname/' /etc/nsswitch.conf
python3 -c "import socket; socket.getaddrinfo('probe.space.localhost', 80)" \
  || { echo "*.localhost names do not resolve for Python" >&2; exit 1; }
