#!/usr/bin/env bash
# Install the packages of a one-node test Slurm cluster (Debian 12, root).
#
# Idempotent and fast when everything is already installed (no apt call at all).
# Non-interactive: safe in CI (no stdin, no prompts). `apt-get update` runs only
# when the install fails (e.g. missing package lists on a fresh image).
#
# Usage: sudo slurm/cluster/install.sh
set -euo pipefail

PKGS=(slurmctld slurmd slurm-client munge slurmdbd mariadb-server)
export DEBIAN_FRONTEND=noninteractive

if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: must run as root (it calls apt-get)" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "install.sh: apt-get not found (this script targets Debian 12)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [ "${#missing[@]}" -eq 0 ]; then
  echo "install.sh: already installed: ${PKGS[*]}"
  exit 0
fi

echo "install.sh: installing ${missing[*]}"
APT_OPTS=(-y -q --no-install-recommends -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
# Packages' postinst scripts try to start services; there is no systemd here and
# we start the daemons by hand (start.sh), so forbid service starts during install.
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1
fi
cleanup() { if [ "$made_policy" = 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

if ! apt-get install "${APT_OPTS[@]}" "${missing[@]}" </dev/null; then
  echo "install.sh: install failed; running apt-get update and retrying" >&2
  apt-get update -q </dev/null
  apt-get install "${APT_OPTS[@]}" "${missing[@]}" </dev/null
fi
echo "install.sh: done"
