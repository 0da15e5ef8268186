#!/usr/bin/env bash
# Installs what `python -m bench` needs beyond the venv: Apache ActiveMQ 5.17 from
# Debian's `activemq` package (which pulls in a headless JRE). Idempotent; the
# benchmark itself never installs anything. Run as root or with sudo available.
set -euo pipefail

if [ -f /usr/share/activemq/bin/activemq.jar ] && command -v java >/dev/null 2>&1; then
    echo "bench/setup.sh: activemq $(dpkg-query -W -f='${Version}' activemq 2>/dev/null || echo '?') present"
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# The package installs an init script but enables no instance, so nothing starts
# and nothing listens on 61616 afterwards; the benchmark runs its own instances.
$SUDO apt-get install -y -qq --no-install-recommends activemq
version="$(dpkg-query -W -f='${Version}' activemq)"
echo "bench/setup.sh: installed activemq ${version}"
case "$version" in
    5.17.*) ;;
    *) echo "bench/setup.sh: warning: expected ActiveMQ 5.17.x, got ${version}" >&2 ;;
esac
