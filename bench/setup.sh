#!/usr/bin/env bash
# Installs what `python -m bench` needs beyond the venv, from Debian, only when missing:
#   - Apache ActiveMQ 5.17 (`activemq`, which pulls in a headless JRE);
#   - the jars ActiveMQ's MQTT transport needs but the `activemq` package does not
#     depend on: `libmqtt-client-java` (org.fusesource.mqtt-client, the MQTT codec) and
#     `libhawtdispatch-java` (hawtdispatch + hawtdispatch-transport). The transport
#     itself, activemq-mqtt.jar, is in `libactivemq-java` already;
#   - Mosquitto 2 (`mosquitto`, which also has mosquitto_passwd);
#   - RabbitMQ 3 (`rabbitmq-server`, with Erlang; its STOMP and MQTT plugins ship in
#     the package). Debian would start it as a system service on 5672 with its own
#     data folder; the benchmark runs its own instance instead (see below).
# Idempotent; the benchmark itself never installs anything. Run as root or with sudo.
set -euo pipefail

PACKAGES=(activemq libmqtt-client-java libhawtdispatch-java mosquitto rabbitmq-server)

missing=()
for pkg in "${PACKAGES[@]}"; do
    if [ "$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)" != "installed" ]; then
        missing+=("$pkg")
    fi
done
if ! command -v java >/dev/null 2>&1; then
    missing+=(default-jre-headless)
fi

report() {
    for pkg in "${PACKAGES[@]}"; do
        echo "bench/setup.sh: $pkg $(dpkg-query -W -f='${Version}' "$pkg" 2>/dev/null || echo 'missing')"
    done
}

if [ "${#missing[@]}" -eq 0 ]; then
    report
    exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
# `activemq`, `mosquitto` and `rabbitmq-server` ship a system service. ActiveMQ's
# enables no instance, but Mosquitto's would start a broker on 127.0.0.1:1883 and
# RabbitMQ's one on 5672 (plus epmd on 4369) on install.
# The benchmark runs its own instances, so while installing, tell invoke-rc.d /
# deb-systemd-invoke not to start services (the standard policy-rc.d hook) —
# unless the machine already has a policy, which is then left as it is.
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
    # shellcheck disable=SC2016
    $SUDO sh -c "printf '#!/bin/sh\n# bench/setup.sh: no service starts during install\nexit 101\n' > $POLICY && chmod 755 $POLICY"
    trap '$SUDO rm -f "$POLICY"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
report
case "$(dpkg-query -W -f='${Version}' activemq)" in
    5.17.*) ;;
    *) echo "bench/setup.sh: warning: expected ActiveMQ 5.17.x" >&2 ;;
esac
case "$(dpkg-query -W -f='${Version}' mosquitto)" in
    2.*) ;;
    *) echo "bench/setup.sh: warning: expected Mosquitto 2.x" >&2 ;;
esac
case "$(dpkg-query -W -f='${Version}' rabbitmq-server)" in
    3.*) ;;
    *) echo "bench/setup.sh: warning: expected RabbitMQ 3.x" >&2 ;;
esac
# If a service was started anyway (a policy the machine had that allows it), stop it:
# the benchmark's own RabbitMQ needs the node name and epmd to itself.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet rabbitmq-server 2>/dev/null; then
    $SUDO systemctl stop rabbitmq-server || true
    $SUDO systemctl disable rabbitmq-server || true
fi
