#!/usr/bin/env bash
# Install the system packages the test suite needs beyond Python: Debian's `prometheus` package, which
# brings `prometheus` and `promtool` (used by tests/unit/observability/test_alert_rules.py and
# tests/integration/test_prometheus.py). Idempotent; run as root (CI runs as root).
#
# The tests start their own Prometheus on a free loopback port with a temporary storage dir, so nothing
# must stay running: on a machine with systemd the Debian package starts `prometheus.service` (and the
# node exporter it recommends, which we do not install); it is stopped and disabled here.
set -euo pipefail

need_install=0
command -v promtool >/dev/null 2>&1 || need_install=1
command -v prometheus >/dev/null 2>&1 || need_install=1

if [ "$need_install" = 1 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-ci-deps: need root to install the 'prometheus' package (or install it yourself)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  # policy-rc.d = 101 keeps invoke-rc.d from starting services while the package installs
  # (matters on sysvinit containers; harmless elsewhere).
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    created_policy=1
  fi
  cleanup() { if [ "$created_policy" = 1 ]; then rm -f "$policy"; fi; }
  trap cleanup EXIT
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# Whatever the package may have started: stop it and keep it from starting at boot.
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 || true
fi
if [ -x /etc/init.d/prometheus ]; then
  if command -v service >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
  fi
  if command -v update-rc.d >/dev/null 2>&1; then
    update-rc.d prometheus disable >/dev/null 2>&1 || true
  fi
fi

promtool --version 2>&1 | head -n 1

# PostgreSQL server binaries (initdb, pg_ctl): the store tests and the multi-replica tests start their
# own server on a free loopback port, as the `postgres` user when run as root.
if ! command -v pg_ctl >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
  systemctl disable --now postgresql.service >/dev/null 2>&1 || true
fi
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/postgresql ]; then
  service postgresql stop >/dev/null 2>&1 || true
fi
id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres

# kubectl (its built-in kustomize builds deploy/k8s in tests/deploy). Debian's kubernetes-client
# (kubectl 1.20, kustomize v2) also builds it.
if ! command -v kubectl >/dev/null 2>&1 && ! command -v kustomize >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends kubernetes-client >/dev/null
fi
