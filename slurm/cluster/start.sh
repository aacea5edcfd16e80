#!/usr/bin/env bash
# Start a private one-node Slurm cluster (Slurm 22.05, Debian 12) on this
# machine, as root, with accounting (MariaDB + slurmdbd) so that `sacct` works
# and submitit notices jobs that died. For tests and demos only.
#
# Usage: slurm/cluster/start.sh [STATE_DIR]
#   STATE_DIR (or $LCM_SLURM_STATE): the cluster's state folder; without one a
#   fresh folder is made under $TMPDIR (/tmp). Everything the cluster writes
#   lies there (configs, munge key and socket, DB data, spool, logs, pid files);
#   nothing goes to /etc or /run. Its ports are found free at start. Clients
#   find it through SLURM_CONF=<state>/etc/slurm.conf, printed at the end
#   (and kept in <state>/env.sh). Stop it with slurm/cluster/stop.sh STATE_DIR.
#
# Order: munged -> MariaDB -> slurmdbd -> `sacctmgr add cluster` -> slurmctld
# -> slurmd -> wait for the node to be `idle`.
#
# Idempotent: a daemon that is already running is left alone; if the whole
# cluster is up and the node idle it says so and exits 0. State persists in
# the state folder across stop/start. slurm/cluster/install.sh installs the
# packages. Other settings: slurm/cluster/common.sh.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source-path=SCRIPTDIR source=common.sh
. "$HERE/common.sh"

[ "$(id -u)" -eq 0 ] || { echo "$_me: must run as root (slurmd runs jobs as their users)" >&2; exit 1; }
for c in munged mungekey mariadb-install-db mariadbd mariadb slurmdbd slurmctld slurmd sinfo sacctmgr python3; do
  command -v "$c" >/dev/null 2>&1 || { echo "$_me: '$c' not found; run slurm/cluster/install.sh first" >&2; exit 1; }
done

dir=${1:-${LCM_SLURM_STATE:-}}
if [ -z "$dir" ]; then
  dir=$(mktemp -d "${TMPDIR:-/tmp}/lcm-slurm.XXXXXX")
elif [ -e "$dir/etc/slurm.conf" ] && ! grep -qF "$MARKER" "$dir/etc/slurm.conf"; then
  echo "$_me: $dir/etc/slurm.conf was not written by this script; give an empty or new folder" >&2
  exit 1
fi
mkdir -p "$dir"
set_state "$(cd "$dir" && pwd)"

dump_logs() {
  local f
  for f in "$MUNGE_DIR/munged.log" "$STATE/mysql/mariadb.log" "$STATE/log/mariadbd.out" \
           "$STATE/log/slurmdbd.log" "$STATE/log/slurmctld.log" "$STATE/log/slurmd.log" \
           "$STATE/log/daemons.out"; do
    if [ -s "$f" ]; then
      echo "----- last lines of $f -----" >&2
      tail -n 25 "$f" >&2
    fi
  done
}
die() {
  echo "$_me: ERROR: $*" >&2
  dump_logs
  echo "$_me: the cluster is left half-started; run slurm/cluster/stop.sh $STATE to clean up" >&2
  exit 1
}

node_state() { sinfo -h -o %T 2>/dev/null | head -n 1; }
any_alive() {
  alive "$PID_MUNGED" munged || alive "$PID_MARIADB" mariadbd || alive "$PID_SLURMDBD" slurmdbd ||
    alive "$PID_SLURMCTLD" slurmctld || alive "$PID_SLURMD" slurmd
}
all_alive() {
  alive "$PID_MUNGED" munged && alive "$PID_MARIADB" mariadbd && alive "$PID_SLURMDBD" slurmdbd &&
    alive "$PID_SLURMCTLD" slurmctld && alive "$PID_SLURMD" slurmd
}
# "Up" = the node answers and can run jobs: idle, or busy with jobs already.
node_up() { case "$(node_state)" in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac; }
announce() {
  say "use it: export SLURM_CONF=$SLURM_CONF   (or: . $STATE/env.sh); stop it: slurm/cluster/stop.sh $STATE"
}
if [ -f "$SLURM_CONF" ] && all_alive && node_up; then
  say "cluster '$CLUSTER' already up and $(node_state) (state folder $STATE)"
  announce
  exit 0
fi

t0=$SECONDS
mkdir -p "$STATE"/{etc,run,log,spool/ctld,spool/d,mysql} "$MUNGE_DIR"
chmod 755 "$STATE" "$STATE/run"   # munged wants its socket's folder reachable by every user

# ---------------------------------------------------------------- ports
# Free TCP ports for slurmctld, slurmd, slurmdbd and MariaDB, drawn below the
# kernel's ephemeral range (where outgoing connections take theirs) and checked
# by binding them. A restart keeps the ports while any daemon of this cluster
# still runs (it listens on them).
free_ports() {
  python3 - "$1" <<'EOF'
import random, socket, sys
low, high = 20000, 32000
try:
    with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
        high = min(high, int(fh.read().split()[0]))
except (OSError, ValueError):
    pass
found = []
for port in random.sample(range(low, high), high - low):
    try:
        for host in ("", "127.0.0.1"):
            with socket.socket() as s:
                s.bind((host, port))
    except OSError:
        continue
    found.append(port)
    if len(found) == int(sys.argv[1]):
        break
print(" ".join(map(str, found)))
EOF
}
if [ -r "$PORTS_FILE" ] && any_alive; then
  load_ports
else
  read -r CTLD_PORT SLURMD_PORT DBD_PORT DB_PORT <<<"$(free_ports 4)"
  [ -n "${DB_PORT:-}" ] || die "found no 4 free TCP ports between 20000 and 32000"
  printf 'CTLD_PORT=%s\nSLURMD_PORT=%s\nDBD_PORT=%s\nDB_PORT=%s\n' \
    "$CTLD_PORT" "$SLURMD_PORT" "$DBD_PORT" "$DB_PORT" > "$PORTS_FILE"
fi

# ---------------------------------------------------------------- configs
HOST=$(hostname -s 2>/dev/null || hostname)
CPUS=$(nproc)
mem_total=$(awk '/^MemTotal:/ {print int($2/1024)}' /proc/meminfo)
reserve=$((mem_total / 10)); [ "$reserve" -ge 1024 ] || reserve=1024
MEM_MB=$((mem_total - reserve))   # leave ~10 % (at least 1 GiB) to the OS
[ "$MEM_MB" -ge 1000 ] || MEM_MB=1000

if [ -s "$STATE/db.pass" ]; then
  DB_PASS=$(cat "$STATE/db.pass")
else
  DB_PASS=$(head -c 32 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 24)
  (umask 077; printf '%s' "$DB_PASS" > "$STATE/db.pass")
fi

render() {  # render TEMPLATE DEST MODE
  local tmp
  tmp=$(mktemp "$2.XXXXXX")
  sed -e "s|@MARKER@|$MARKER|g" -e "s|@STATE@|$STATE|g" -e "s|@CLUSTER@|$CLUSTER|g" \
      -e "s|@HOST@|$HOST|g" -e "s|@CPUS@|$CPUS|g" -e "s|@MEM_MB@|$MEM_MB|g" \
      -e "s|@PARTITION@|$PARTITION|g" -e "s|@CTLD_PORT@|$CTLD_PORT|g" \
      -e "s|@SLURMD_PORT@|$SLURMD_PORT|g" -e "s|@DBD_PORT@|$DBD_PORT|g" \
      -e "s|@DB_PORT@|$DB_PORT|g" -e "s|@DB_PASS@|$DB_PASS|g" \
      -e "s|@MUNGE_SOCKET@|$MUNGE_SOCKET|g" "$1" > "$tmp"
  chmod "$3" "$tmp"
  mv -f "$tmp" "$2"
}
render "$HERE/templates/slurm.conf.in" "$CONF_DIR/slurm.conf" 644
render "$HERE/templates/slurmdbd.conf.in" "$CONF_DIR/slurmdbd.conf" 600
printf '# the test cluster of slurm/cluster/start.sh: source this file to use it\nexport SLURM_CONF=%s\n' \
  "$SLURM_CONF" > "$STATE/env.sh"
say "config: $SLURM_CONF (node $HOST, $CPUS CPUs, ${MEM_MB} MiB, partition $PARTITION;" \
  "ports: slurmctld $CTLD_PORT, slurmd $SLURMD_PORT, slurmdbd $DBD_PORT, MariaDB $DB_PORT)"

# ---------------------------------------------------------------- munge
# A munged of its own, with its own key and socket (Slurm: AuthInfo=socket=...).
# --force: munged refuses a socket whose folders are not reachable by every
# user, and a state folder may lie in a root-only folder (pytest's tmp_path);
# every client of this cluster runs as root.
munge_ok() { munge -n -S "$MUNGE_SOCKET" </dev/null 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }
if ! alive "$PID_MUNGED" munged; then
  chmod 700 "$MUNGE_DIR"
  if [ ! -s "$MUNGE_KEY" ]; then
    mungekey --create --keyfile="$MUNGE_KEY" || die "mungekey could not create $MUNGE_KEY"
  fi
  chmod 400 "$MUNGE_KEY"
  say "starting munged"
  munged --force --key-file="$MUNGE_KEY" --socket="$MUNGE_SOCKET" --pid-file="$PID_MUNGED" \
    --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" \
    </dev/null >>"$STATE/log/daemons.out" 2>&1 || die "munged failed to start"
fi
wait_for "$TIMEOUT" "munged:$PID_MUNGED" munge_ok || die "munged does not answer on $MUNGE_SOCKET (or exited)"

# ---------------------------------------------------------------- MariaDB
DATADIR=$STATE/mysql/data
SOCK=$STATE/mysql/mysqld.sock
sql() { mariadb --no-defaults --protocol=socket --socket="$SOCK" -uroot -N -e "$1"; }
if ! alive "$PID_MARIADB" mariadbd; then
  # as root, like the other daemons: the state folder may lie in a folder only root can enter
  if [ ! -d "$DATADIR/mysql" ]; then
    say "initialising MariaDB data folder $DATADIR"
    mariadb-install-db --no-defaults --user=root --datadir="$DATADIR" \
      --auth-root-authentication-method=socket --skip-test-db \
      >>"$STATE/log/mariadb-install.log" 2>&1 || { tail -n 30 "$STATE/log/mariadb-install.log" >&2; die "mariadb-install-db failed"; }
  fi
  say "starting mariadbd on 127.0.0.1:$DB_PORT"
  setsid mariadbd --no-defaults --user=root --datadir="$DATADIR" --socket="$SOCK" \
    --pid-file="$PID_MARIADB" --log-error="$STATE/mysql/mariadb.log" \
    --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
    --innodb-buffer-pool-size=128M --innodb-lock-wait-timeout=900 \
    </dev/null >>"$STATE/log/mariadbd.out" 2>&1 &
  wait_for "$TIMEOUT" "pid:$!" sql "SELECT 1" || die "MariaDB does not answer on $SOCK (or exited)"
fi
sql "CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
     ALTER USER 'slurm'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
     GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
     FLUSH PRIVILEGES;" || die "could not create the slurm DB user"

# ---------------------------------------------------------------- slurmdbd
dbd_ok() { sacctmgr -n -P show cluster format=cluster </dev/null; }
if ! alive "$PID_SLURMDBD" slurmdbd; then
  say "starting slurmdbd"
  slurmdbd </dev/null >>"$STATE/log/daemons.out" 2>&1 || die "slurmdbd failed to start"
fi
wait_for "$TIMEOUT" "slurmdbd:$PID_SLURMDBD" dbd_ok || die "slurmdbd does not answer on 127.0.0.1:$DBD_PORT (or exited)"
if ! dbd_ok | grep -qx "$CLUSTER"; then
  say "registering cluster '$CLUSTER' in the accounting DB"
  sacctmgr -i add cluster "$CLUSTER" </dev/null >/dev/null || die "sacctmgr add cluster failed"
fi

# ---------------------------------------------------------------- slurmctld + slurmd
if ! alive "$PID_SLURMCTLD" slurmctld; then
  say "starting slurmctld"
  slurmctld </dev/null >>"$STATE/log/daemons.out" 2>&1 || die "slurmctld failed to start"
fi
wait_for "$TIMEOUT" "slurmctld:$PID_SLURMCTLD" scontrol ping || die "slurmctld does not answer (or exited)"
if ! alive "$PID_SLURMD" slurmd; then
  say "starting slurmd"
  slurmd </dev/null >>"$STATE/log/daemons.out" 2>&1 || die "slurmd failed to start"
fi

# ---------------------------------------------------------------- wait for idle
end=$((SECONDS + TIMEOUT)); t_slurmd=$SECONDS; resumed=0; st=""
while :; do
  st=$(node_state || true)
  case "$st" in idle|mixed|allocated|completing) break ;; esac
  # A node left down/drained by an earlier unclean stop: resume it once.
  case "$st" in
    down*|drain*|fail*)
      if [ "$resumed" = 0 ] && [ $((SECONDS - t0)) -ge 3 ]; then
        say "node is '$st'; resuming it"
        scontrol update nodename="$HOST" state=resume </dev/null || true
        resumed=1
      fi ;;
  esac
  if [ $((SECONDS - t_slurmd)) -ge 3 ] && ! alive "$PID_SLURMD" slurmd; then die "slurmd exited"; fi
  [ "$SECONDS" -lt "$end" ] || { sinfo -N -l >&2 || true; die "node not idle after ${TIMEOUT}s (state '$st')"; }
  sleep 0.2
done
say "cluster '$CLUSTER' up: partition '$PARTITION' $st ($((SECONDS - t0)) s; state folder $STATE)"
announce
