#!/usr/bin/env bash
# Show the state of the one-node test cluster: daemons, nodes, queue.
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
for d in "munged:$PID_MUNGED" "mariadbd:$PID_MARIADB" "slurmdbd:$PID_SLURMDBD" \
         "slurmctld:$PID_SLURMCTLD" "slurmd:$PID_SLURMD"; do
  name=${d%%:*}; f=${d#*:}
  if pid=$(pid_of "$f" "$name"); then echo "$name: running (pid $pid)"; else echo "$name: stopped"; fi
done
if alive "$PID_SLURMCTLD" slurmctld; then
  echo; sinfo
  echo; squeue
else
  echo "(slurmctld is not running: no sinfo/squeue)"
fi
