#!/usr/bin/env bash
# Stop the one-node test cluster started by slurm/cluster/start.sh:
# cancel all root jobs, SIGTERM slurmd, slurmctld, slurmdbd via their pid
# files (waiting for each to exit, SIGKILL after a grace period), then
# mariadbd and munged. Only daemons whose pid file lies in the state dir are
# touched. Idempotent: never fails when things are already stopped.
# State (accounting DB, job state) stays in the state dir for the next start.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"

if [ "$(id -u)" -ne 0 ]; then echo "$_me: must run as root" >&2; exit 1; fi

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

if alive "$PID_SLURMCTLD" slurmctld; then
  timeout 15 scancel --user=root </dev/null >/dev/null 2>&1 || true
  # let the cancelled jobs end (KillWait=5 in our slurm.conf)
  end=$((SECONDS + 15))
  while [ -n "$(timeout 5 squeue -h -o %i </dev/null 2>/dev/null)" ] && [ "$SECONDS" -lt "$end" ]; do
    sleep 0.5
  done
fi

# slurmd and slurmctld first; slurmdbd after slurmctld (which hands it the last
# accounting records); then the DB and munge (nobody needs them any more).
stop_group 20 "slurmd:$PID_SLURMD" "slurmctld:$PID_SLURMCTLD"
stop_group 20 "slurmdbd:$PID_SLURMDBD"
stop_group 60 "mariadbd:$PID_MARIADB" "munged:$PID_MUNGED"

# Job steps outlive slurmd; end any left from this cluster (only when the
# slurm.conf on this machine is ours, i.e. this machine runs no other Slurm).
ours=0; grep -qF "$MARKER" "$CONF_DIR/slurm.conf" 2>/dev/null && ours=1
for pid in $( [ "$ours" = 1 ] && pgrep -x slurmstepd 2>/dev/null); do
  say "ending leftover slurmstepd (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
done
say "stopped (state kept in $STATE)"
exit 0
