#!/usr/bin/env bash
# System packages the tests need on a fresh Debian machine (idempotent; run as root).
#   git                 repos are real git repositories
#   libnss-myhostname   lets Python resolve *.localhost names (browsers and curl do it on their own)
#   (wrk and nginx, for `make bench`, come from deploy/setup/bench.sh)
#   chromium            the real browser of the UI tests (tests/e2e), driven by Playwright
#   fonts-noto-color-emoji  so spaces' emoji render in the browser and in the screenshots the tests save
#   git-lfs             `git lfs push/clone` against the LFS batch API (tests/integration/test_lfs.py)
#   postgresql          the database-touching tests run on it too (`make test-postgres`); the tests start a
#                       private cluster of their own, so Debian's default cluster is left stopped
#   docker-compose      brings up the production stack of deploy/compose/ (tests/deploy)
#   docker-registry     the CNCF distribution registry: the registry round trip (tests/docker/test_registry.py)
#                       starts a private one on loopback; Debian's own service is not used
#   busybox             the shell tools of the BuildKit image, to run the Kubernetes build pod's own scripts
#                       (tests/kubernetes/test_build_scripts.py)
set -euo pipefail
need=()
command -v git >/dev/null || need+=(git)
[ -e /lib/x86_64-linux-gnu/libnss_myhostname.so.2 ] || [ -e /usr/lib/x86_64-linux-gnu/libnss_myhostname.so.2 ] \
  || need+=(libnss-myhostname)
command -v chromium >/dev/null || need+=(chromium)
command -v git-lfs >/dev/null || need+=(git-lfs)
dpkg -s fonts-noto-color-emoji >/dev/null 2>&1 || need+=(fonts-noto-color-emoji)
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || need+=(postgresql)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v busybox >/dev/null || need+=(busybox)
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
