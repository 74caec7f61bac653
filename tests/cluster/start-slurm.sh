#!/usr/bin/env bash
# start-slurm.sh -- bring up a single-node SLURM cluster on this machine, loopback only.
#
#   1. apt-get installs slurmctld, slurmd, slurm-client and munge if they are missing
#   2. writes /etc/slurm/slurm.conf from slurm.conf.in, sized from `slurmd -C`
#   3. starts munged, slurmctld and slurmd by hand (no systemd here) unless they already run
#   4. waits until the node is idle
#
# Every daemon this script starts is appended ("NAME PID") to the record file, and
# stop-slurm.sh stops exactly those PIDs. Daemons that were already running are reused and not
# recorded, so they survive the stop.
#
# usage: start-slurm.sh [--record FILE]     (default record: /run/rnnlm-slurm/started-daemons)
# environment: SLURM_PARTITION (default "debug"), WAIT_IDLE_S (default 60)
# Needs root: apt-get, and slurmd must run as root to launch jobs as their users.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RECORD=$RNNLM_SLURM_DEFAULT_RECORD
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=$2; shift 2 ;;
    *) echo "usage: $0 [--record FILE]" >&2; exit 2 ;;
  esac
done

SLURM_CONF=$RNNLM_SLURM_CONF
MARKER=$RNNLM_SLURM_CONF_MARKER
STATE_DIR=/var/spool/rnnlm-slurm
LOG_DIR=/var/log/rnnlm-slurm
RUN_DIR=$RNNLM_SLURM_RUN_DIR
PARTITION=${SLURM_PARTITION:-debug}
WAIT_IDLE_S=${WAIT_IDLE_S:-60}
APT_LOG=/tmp/rnnlm-slurm-apt.log

started_ns=$(date +%s%N)
say() {
  local ms=$(( ($(date +%s%N) - started_ns) / 1000000 ))
  printf '[start-slurm %d.%03ds] %s\n' $((ms / 1000)) $((ms % 1000)) "$*"
}
die() { echo "start-slurm.sh: $*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "must run as root (apt-get, and slurmd launches jobs as their users)"

# --- 1. packages -------------------------------------------------------------------------
missing=()
for package in slurmctld slurmd slurm-client munge; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  command -v apt-get >/dev/null || die "packages ${missing[*]} are missing and there is no apt-get to install them"
  say "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Try the existing package lists first; a fresh machine may need `apt-get update`.
  if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >"$APT_LOG" 2>&1; then
    apt-get update -q >>"$APT_LOG" 2>&1 || true
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$APT_LOG" 2>&1 \
      || { tail -n 20 "$APT_LOG" >&2; die "apt-get install failed (full log: $APT_LOG)"; }
  fi
fi
say "slurm $(dpkg-query -W -f='${Version}' slurmctld) installed"

# --- 2. configuration --------------------------------------------------------------------
node=$(hostname -s)
hardware=$(slurmd -C | head -n 1)   # "NodeName=vm CPUs=2 Boards=1 SocketsPerBoard=1 ... RealMemory=24105"
field() { sed -n "s/.*[[:space:]]$1=\([0-9]*\).*/\1/p" <<<"$hardware"; }
memory=$(( $(field RealMemory) * 95 / 100 ))

mkdir -p /etc/slurm "$STATE_DIR/ctld" "$STATE_DIR/d" "$LOG_DIR" "$RUN_DIR"
chown slurm:slurm "$STATE_DIR/ctld" "$LOG_DIR" "$RUN_DIR"

new_conf=$(mktemp)
trap 'rm -f "$new_conf"' EXIT
sed -e "s|@MARKER@|$MARKER|" -e "s|@NODE@|$node|g" -e "s|@STATE_DIR@|$STATE_DIR|g" \
    -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LOG_DIR@|$LOG_DIR|g" -e "s|@PARTITION@|$PARTITION|g" \
    -e "s|@CPUS@|$(field CPUs)|" -e "s|@SOCKETS@|$(field SocketsPerBoard)|" \
    -e "s|@CORES@|$(field CoresPerSocket)|" -e "s|@THREADS@|$(field ThreadsPerCore)|" \
    -e "s|@MEMORY@|$memory|" "$HERE/slurm.conf.in" >"$new_conf"

config_changed=0
if ! cmp -s "$new_conf" "$SLURM_CONF"; then
  # Never overwrite the configuration of a real cluster this machine may belong to.
  if [ -s "$SLURM_CONF" ] && ! grep -qF "$MARKER" "$SLURM_CONF"; then
    die "$SLURM_CONF exists and was not written by this script; move it away to use the test cluster"
  fi
  install -m 644 "$new_conf" "$SLURM_CONF"
  config_changed=1
fi
say "config: node $node, $(field CPUs) CPUs, ${memory} MB, partition $PARTITION (changed: $config_changed)"

# --- 3. daemons --------------------------------------------------------------------------
mkdir -p "$(dirname "$RECORD")"
touch "$RECORD"
record() { echo "$1 $2" >>"$RECORD"; say "started $1 (pid $2)"; }

# start_daemon NAME PIDFILE COMMAND...: run COMMAND (which daemonizes) unless the PID file
# names a live NAME, then record the PID it wrote. Sets started_now to 1 or 0.
start_daemon() {
  local name=$1 pidfile=$2 pid; shift 2
  pid=$(pid_from_file "$pidfile" || true)
  started_now=0
  if is_daemon "$pid" "$name"; then
    say "$name already running (pid $pid), reusing it"
    return 0
  fi
  started_now=1
  rm -f "$pidfile"   # a stale file would make the wait below return at once
  "$@"
  wait_until 10 test -s "$pidfile" || die "$name wrote no PID file $pidfile; see $LOG_DIR"
  record "$name" "$(pid_from_file "$pidfile")"
}

# The munge package's postinst creates the key; a half-configured install may lack it.
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge
chown munge:munge /run/munge
start_daemon munged /run/munge/munged.pid runuser -u munge -- /usr/sbin/munged --force
munge -n | unmunge >/dev/null || die "munge does not work; see /var/log/munge/munged.log"

if [ "$config_changed" = 1 ]; then
  # Daemons found on our PID files read the old configuration: restart them.
  terminate "$(pid_from_file "$RUN_DIR/slurmd.pid" || true)" slurmd
  terminate "$(pid_from_file "$RUN_DIR/slurmctld.pid" || true)" slurmctld
fi
# -c: start with no jobs from an earlier run (an unclean stop can leave ghosts holding CPUs).
start_daemon slurmctld "$RUN_DIR/slurmctld.pid" slurmctld -c -i
slurmd_started_at=$(date +%s)
start_daemon slurmd "$RUN_DIR/slurmd.pid" slurmd
slurmd_fresh=$started_now

# --- 4. wait for the node ----------------------------------------------------------------
# slurmctld may report a state restored from disk before this slurmd registered, so also
# require that the node's SlurmdStartTime is not older than the slurmd checked above.
node_ready() {
  local line state boot
  line=$(scontrol show node -o "$node" 2>/dev/null) || return 1
  state=$(sed -n 's/.* State=\([A-Z+_]*\).*/\1/p' <<<"$line")
  boot=$(sed -n 's/.* SlurmdStartTime=\([^ ]*\).*/\1/p' <<<"$line")
  case "$state" in
    *DRAIN*|DOWN*) scontrol update nodename="$node" state=resume >/dev/null 2>&1 || true; return 1 ;;
    IDLE*|MIXED*|ALLOCATED*) ;;
    *) return 1 ;;
  esac
  # A reused slurmd registered long ago; only a fresh one must be newer than its start.
  [ "$slurmd_fresh" = 0 ] || [ "$(date -d "$boot" +%s 2>/dev/null || echo 0)" -ge $(( slurmd_started_at - 1 )) ]
}
if ! wait_until "$WAIT_IDLE_S" node_ready; then
  scontrol show node "$node" >&2 || true
  tail -n 20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
  die "node $node not idle after ${WAIT_IDLE_S}s"
fi
say "node $node ready: $(sinfo -h -N -o '%N %P %t %c CPUs %m MB')"
