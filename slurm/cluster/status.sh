#!/usr/bin/env bash
# Show the state of a test cluster of slurm/cluster/start.sh: daemons, ports, nodes, queue.
# Usage: slurm/cluster/status.sh STATE_DIR   (or LCM_SLURM_STATE=STATE_DIR)
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"
require_state "${1:-}"
load_ports
echo "state folder $STATE; SLURM_CONF=$SLURM_CONF"
echo "ports: slurmctld ${CTLD_PORT:-?}, slurmd ${SLURMD_PORT:-?}, slurmdbd ${DBD_PORT:-?}, MariaDB ${DB_PORT:-?}"
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
