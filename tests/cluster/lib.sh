# Shared helpers for start-slurm.sh and stop-slurm.sh (sourced, not executed).
#
# Daemons are identified by PID only, never by name matching. A PID is trusted only if
# /proc/PID/comm names the expected program and the process is not a zombie: /run is not a
# tmpfs on these machines (PID files outlive a reboot and PIDs get reused), and PID 1 reaps
# orphans late, so a dead daemon can linger as a zombie whose /proc entry still exists.

RNNLM_SLURM_RUN_DIR=/run/rnnlm-slurm
RNNLM_SLURM_DEFAULT_RECORD=$RNNLM_SLURM_RUN_DIR/started-daemons
RNNLM_SLURM_CONF=/etc/slurm/slurm.conf
# First line of the slurm.conf that start-slurm.sh writes; no other file is ever replaced or removed.
RNNLM_SLURM_CONF_MARKER="written by rnnlm-workflow tests/cluster/start-slurm.sh"

# process_state PID -> one-letter state from /proc/PID/stat (empty if there is no such process).
# The command name in field 2 may contain spaces and parentheses, so cut after the last ')'.
process_state() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 0
  stat=${stat##*) }
  printf '%s' "${stat%% *}"
}

# is_running PID: the process exists and has not exited (zombie Z or dead X).
is_running() {
  local state
  state=$(process_state "$1")
  [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# is_daemon PID NAME: PID is a running process of program NAME.
is_daemon() {
  [ -n "$1" ] && is_running "$1" && [ "$(cat "/proc/$1/comm" 2>/dev/null)" = "$2" ]
}

# pid_from_file FILE -> the PID it holds, or nothing.
pid_from_file() {
  [ -s "$1" ] && tr -dc '0-9' <"$1"
}

# wait_until SECONDS COMMAND...: poll COMMAND every 0.1 s until it succeeds or time runs out.
wait_until() {
  local deadline=$(( $(date +%s) + $1 )); shift
  until "$@"; do
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

is_gone() { ! is_daemon "$1" "$2"; }

# terminate PID NAME: SIGTERM that one PID, wait up to 10 s, then SIGKILL it.
terminate() {
  local pid=$1 name=$2
  is_daemon "$pid" "$name" || return 0
  kill -TERM "$pid" 2>/dev/null || return 0
  if wait_until 10 is_gone "$pid" "$name"; then
    echo "stopped $name (pid $pid)"
  else
    echo "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
  fi
}
