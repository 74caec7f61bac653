#!/usr/bin/env bash
# stop-slurm.sh -- stop the daemons that start-slurm.sh started, and nothing else.
#
# Reads the record file ("NAME PID" per line, in start order) and stops those PIDs in reverse
# order: each PID gets SIGTERM only if /proc/PID/comm still names NAME and it is not a zombie
# (PIDs get reused), then SIGKILL after 10 s. No pkill/killall, nothing matched by name.
# Daemons that start-slurm.sh found running and reused are not in the record and keep running.
# Once no controller of ours runs, the slurm.conf that start-slurm.sh wrote is removed too: while it
# names an unreachable controller, every SLURM client call (and so every Snakemake start, whose
# SLURM plugin asks `scontrol show config`) waits about 10 s for it.
#
# usage: stop-slurm.sh [--record FILE] [--cancel-jobs]
#   --cancel-jobs  first scancel the caller's jobs and wait for them to leave the node: their
#                  slurmstepd processes outlive slurmd and would keep running otherwise
#                  (only done when the record holds the running slurmctld).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

RECORD=$RNNLM_SLURM_DEFAULT_RECORD
CANCEL_JOBS=0
while [ $# -gt 0 ]; do
  case "$1" in
    --record) RECORD=$2; shift 2 ;;
    --cancel-jobs) CANCEL_JOBS=1; shift ;;
    *) echo "usage: $0 [--record FILE] [--cancel-jobs]" >&2; exit 2 ;;
  esac
done

if [ ! -s "$RECORD" ]; then
  echo "stop-slurm.sh: nothing recorded in $RECORD; no daemon of ours to stop"
  exit 0
fi

names=(); pids=()
while read -r name pid; do
  [ -n "$name" ] && [ -n "$pid" ] && { names+=("$name"); pids+=("$pid"); }
done <"$RECORD"

no_jobs_left() { [ -z "$(squeue -h -u "$(id -un)" -t PENDING,RUNNING,COMPLETING 2>/dev/null)" ]; }
if [ "$CANCEL_JOBS" = 1 ]; then
  for i in "${!names[@]}"; do
    if [ "${names[$i]}" = slurmctld ] && is_daemon "${pids[$i]}" slurmctld; then
      scancel --user "$(id -un)" 2>/dev/null || true
      wait_until 30 no_jobs_left || echo "stop-slurm.sh: jobs still queued after 30 s" >&2
      break
    fi
  done
fi

for (( i = ${#names[@]} - 1; i >= 0; i-- )); do
  if is_daemon "${pids[$i]}" "${names[$i]}"; then
    terminate "${pids[$i]}" "${names[$i]}"
  else
    echo "${names[$i]} (pid ${pids[$i]}) no longer running"
  fi
done
: >"$RECORD"

controller=$(pid_from_file "$RNNLM_SLURM_RUN_DIR/slurmctld.pid" || true)
if ! is_daemon "$controller" slurmctld && grep -qF "$RNNLM_SLURM_CONF_MARKER" "$RNNLM_SLURM_CONF" 2>/dev/null; then
  rm -f "$RNNLM_SLURM_CONF"
  echo "removed $RNNLM_SLURM_CONF (start-slurm.sh writes it again)"
fi
