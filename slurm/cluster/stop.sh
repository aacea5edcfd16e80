#!/usr/bin/env bash
# Stop the private test cluster that slurm/cluster/start.sh started.
#
# Usage: slurm/cluster/stop.sh STATE_DIR   (or LCM_SLURM_STATE=STATE_DIR)
#
# It touches only what that cluster owns: it cancels the cluster's own jobs by
# job id (the queue of this cluster's slurmctld; never `scancel --user`), then
# stops slurmd, slurmctld, slurmdbd, mariadbd and munged by the pids in the
# state folder (SIGTERM, SIGKILL after a grace period), and last ends any job
# step left behind by this cluster's slurmd (slurmstepd processes whose
# environment names this cluster's slurm.conf) with their job's processes. Another Slurm on the machine, and its
# jobs, are never touched. Idempotent: never fails when things are already
# stopped. The state (accounting DB, job state) stays in the folder for the
# next start; `rm -rf STATE_DIR` afterwards removes every trace.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"

if [ "$(id -u)" -ne 0 ]; then echo "$_me: must run as root" >&2; exit 1; fi
require_state "${1:-}"

# stop_group GRACE COMM:PIDFILE... : SIGTERM every daemon of the group, wait
# for all of them to exit, SIGKILL whatever is left after GRACE seconds.
# (Each daemon takes ~2 s to exit; stopping independent ones together halves
# the stop time.)
stop_group() {
  local grace=$1 d comm f pid end; shift
  local pids=()
  for d in "$@"; do
    comm=${d%%:*}; f=${d#*:}
    if pid=$(pid_of "$f" "$comm"); then
      say "stopping $comm (pid $pid)"
      kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
    fi
  done
  end=$((SECONDS + grace))
  for pid in "${pids[@]}"; do
    while kill -0 "$pid" 2>/dev/null; do
      if [ "$SECONDS" -ge "$end" ]; then
        say "pid $pid did not exit within ${grace}s; sending SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        sleep 0.5
        break
      fi
      sleep 0.1
    done
  done
  for d in "$@"; do rm -f "${d#*:}" 2>/dev/null; done
  return 0
}

# This cluster's jobs: SLURM_CONF (set by require_state) points every client at
# our own slurmctld, so squeue lists our jobs only.
if alive "$PID_SLURMCTLD" slurmctld; then
  jobs=$(timeout 10 squeue -h -o %A </dev/null 2>/dev/null | sort -u | tr '\n' ' ')
  if [ -n "${jobs// /}" ]; then
    say "cancelling this cluster's jobs: $jobs"
    # shellcheck disable=SC2086
    timeout 15 scancel $jobs </dev/null >/dev/null 2>&1 || true
    # let the cancelled jobs end (KillWait=5 in our slurm.conf)
    end=$((SECONDS + 15))
    while [ -n "$(timeout 5 squeue -h -o %A </dev/null 2>/dev/null)" ] && [ "$SECONDS" -lt "$end" ]; do
      sleep 0.5
    done
  fi
fi

# slurmd and slurmctld first; slurmdbd after slurmctld (which hands it the last
# accounting records); then the DB and munge (nobody needs them any more).
stop_group 20 "slurmd:$PID_SLURMD" "slurmctld:$PID_SLURMCTLD"
stop_group 20 "slurmdbd:$PID_SLURMDBD"
stop_group 60 "mariadbd:$PID_MARIADB" "munged:$PID_MUNGED"

# Job steps can outlive slurmd: end those of this cluster and their job's
# processes, by pid (SIGTERM, then SIGKILL after 5 s, as KillWait would).
steps=$(step_pids)
if [ -n "$steps" ]; then
  victims=""
  for pid in $steps; do
    say "ending a leftover job step of this cluster: slurmstepd pid $pid and its processes"
    victims="$victims $pid $(descendants "$pid" | tr '\n' ' ')"
  done
  # shellcheck disable=SC2086
  kill -TERM $victims 2>/dev/null
  end=$((SECONDS + 5))
  for pid in $victims; do
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
  done
fi
say "stopped (state kept in $STATE)"
exit 0
