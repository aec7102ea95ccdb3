#!/usr/bin/env bash
# Stop what ci/slurm-up.sh started, each daemon by its own PID file (never by
# name), in reverse start order. Exits 0 when nothing was running.
# State, logs and the accounting database stay in $S for the next slurm-up.
set -uo pipefail
S=/var/lib/dynsim-slurm
t0=$SECONDS
rc=0

stop() {  # stop PIDFILE: TERM the recorded process and wait up to 10 s for it to exit
  [ -s "$1" ] || return 0
  local pid; pid=$(cat "$1")
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid"
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.2; done
  echo "still running: $1 ($pid)" >&2; rc=1
}

stop $S/slurmd.pid
stop $S/slurmctld.pid
stop $S/slurmdbd.pid
stop /run/mysqld/mysqld.pid
stop /run/munge/munged.pid
echo "slurm-down: $((SECONDS - t0))s"
exit $rc
