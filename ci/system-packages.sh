#!/usr/bin/env bash
# Debian packages the test suite needs: a single-node SLURM cluster with accounting (slurmctld, slurmd, slurmdbd,
# munge, MariaDB) for tests/test_slurm.py and Chromium for the report's screenshot test. Idempotent: installs only
# what is missing (quick when everything is there); needs root when something is missing.
set -euo pipefail

PACKAGES=(slurmctld slurmd slurmdbd slurm-client munge mariadb-server iproute2 util-linux chromium)

missing=()
for package in "${PACKAGES[@]}"; do
    if [[ "$(dpkg-query -W -f='${Status}' "$package" 2>/dev/null)" != "install ok installed" ]]; then
        missing+=("$package")
    fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
    exit 0
fi
if [[ "$(id -u)" -ne 0 ]]; then
    echo "system-packages: not root; missing Debian packages: ${missing[*]} (the tests that need them skip)" >&2
    exit 0
fi
echo "system-packages: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
