#!/usr/bin/env bash
# Installs what the container tests need, from the Debian packages, when it is missing:
# podman, runc (crun cannot run on some hosts' cgroup layouts), mmdebstrap (a base image without a
# registry) and uidmap. Without root or apt-get it only says why the container tests will skip.
set -euo pipefail
missing=()
for tool in podman runc mmdebstrap newuidmap; do
    command -v "$tool" > /dev/null || missing+=("$tool")
done
if [ "${#missing[@]}" -eq 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get > /dev/null; then
    echo "ci-deps: ${missing[*]} missing and this is not root with apt-get;" \
        "the container tests will skip (install podman to run them)" >&2
    exit 0
fi
echo "ci-deps: installing podman runc mmdebstrap uidmap (missing: ${missing[*]})" >&2
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends podman runc mmdebstrap uidmap > /dev/null
