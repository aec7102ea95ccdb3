#!/usr/bin/env bash
# Bring up a single-node SLURM cluster with accounting, on loopback only.
#
#   munged -> mariadbd -> slurmdbd -> slurmctld -> slurmd
#
# Works without systemd: each daemon is started directly and recorded by a PID
# file, so ci/slurm-down.sh can stop exactly what was started here.
# Safe to run twice: a daemon whose PID file names a live process is skipped.
# Needs root (Debian 12). See docs note "distributed.md", section 2.
set -euo pipefail

S=/var/lib/dynsim-slurm          # all state, spool, logs and the MariaDB datadir
CLUSTER=ci
t0=$SECONDS

# alive PIDFILE: true when PIDFILE exists and names a live process.
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_for SECONDS CMD...: retry CMD once a second until it succeeds.
wait_for() {
  local n=$1; shift
  for _ in $(seq "$n"); do "$@" >/dev/null 2>&1 && return 0; sleep 1; done
  echo "timed out waiting for: $*" >&2; return 1
}

# --- 1. Packages ------------------------------------------------------------
# Install only when missing. --no-install-recommends keeps it small (~30 MB)
# and pulls in no systemd; apt starts no daemon here (no systemd as PID 1).
if ! command -v slurmctld >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  PKGS="munge slurmctld slurmd slurm-client slurmdbd mariadb-server"
  # Refresh the package lists only when apt cannot see the packages yet.
  # shellcheck disable=SC2086
  apt-get install -y --no-install-recommends -s $PKGS >/dev/null 2>&1 || apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
fi
t_install=$((SECONDS - t0)); t1=$SECONDS

mkdir -p $S/state $S/spool $S/log $S/mysql
H=$(hostname -s)
NODE=$(slurmd -C | head -n1)     # NodeName=... CPUs=... RealMemory=... (real hardware)
echo "node: $NODE"

# --- 2. munge: authentication between all SLURM components -----------------
install -d -o munge -g munge -m 0755 /run/munge
[ -f /etc/munge/munge.key ] || { mungekey -c && chown munge:munge /etc/munge/munge.key; }
alive /run/munge/munged.pid || runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
munge -n | unmunge >/dev/null && echo "munge: ok"

# --- 3. MariaDB for accounting: private datadir, loopback only --------------
# sacct is load-bearing for submitit (job states), so accounting is not optional.
# The PID file lives in /run/mysqld because the mysql user must be able to write it.
chown -R mysql:mysql $S/mysql
[ -d $S/mysql/mysql ] || mariadb-install-db --user=mysql --datadir=$S/mysql >/dev/null 2>&1
install -d -o mysql -g mysql /run/mysqld
if ! alive /run/mysqld/mysqld.pid; then
  runuser -u mysql -- mariadbd --datadir=$S/mysql --bind-address=127.0.0.1 \
    --socket=/run/mysqld/mysqld.sock --pid-file=/run/mysqld/mysqld.pid \
    --skip-networking=0 >>$S/log/mysqld.log 2>&1 &
fi
wait_for 30 mariadb -e "select 1"
mariadb -e "CREATE DATABASE IF NOT EXISTS slurm_acct_db;
  CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'ci';
  GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';"
echo "mariadb: ok"

# --- 4. Configs ---------------------------------------------------------------
# slurmdbd stores accounting in MariaDB; only root may read its password.
# NoInAddrAny: listen on 127.0.0.1 only (DbdHost resolves to loopback).
cat > /etc/slurm/slurmdbd.conf <<EOC
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
CommunicationParameters=NoInAddrAny
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=ci
StorageLoc=slurm_acct_db
LogFile=$S/log/slurmdbd.log
PidFile=$S/slurmdbd.pid
EOC
chmod 600 /etc/slurm/slurmdbd.conf

# slurm.conf notes:
#  - CommunicationParameters: the SLURM daemons bind to what the host name
#    resolves to (127.0.0.1 here), not to every address; loopback only.
#  - proctrack/linuxproc + task/none: the cgroup hierarchy is not ours to use.
#  - CR_Core (not CR_Core_Memory): jobs without --mem must not take all memory.
#  - JobRequeue=1 + preempt_send_user_signal: submitit's checkpoint path
#    (USR2 -> checkpoint -> "scontrol requeue") works, also when faked with
#    "scancel --signal=USR2 <jobid>".
#  - AuthInfo=cred_expire=10: a requeued job may only restart once its old
#    credential expired; the default (120 s) makes every requeue test wait 2+ min.
#  - SchedulerParameters: look at pending jobs every 2 s (defaults: 60 s main
#    loop, 30 s backfill), so a requeued job restarts within seconds.
#  - GresTypes=gpu (and no GPU on the node): sbatch passes GPU requests on and
#    slurmctld itself refuses them, as on a real cluster; without it sbatch
#    rejects them locally before the controller sees them.
#  - KillWait=5: a cancelled job is killed 5 s after its SIGTERM (default 30 s,
#    which submitit's jobs, ignoring SIGTERM, sit out while the node takes no job).
#  - MaxTime=120 minutes (dynsim's jobs ask for 60 by default), and
#    EnforcePartLimits=ALL: a job over a limit is refused at submission, as on
#    many clusters, instead of pending forever (reason PartitionTimeLimit).
cat > /etc/slurm/slurm.conf <<EOC
ClusterName=$CLUSTER
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
StateSaveLocation=$S/state
SlurmdSpoolDir=$S/spool
SlurmctldPidFile=$S/slurmctld.pid
SlurmdPidFile=$S/slurmd.pid
SlurmctldLogFile=$S/log/slurmctld.log
SlurmdLogFile=$S/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MinJobAge=600
JobRequeue=1
EnforcePartLimits=ALL
KillWait=5
GresTypes=gpu
SchedulerParameters=bf_interval=2,sched_interval=2
SlurmctldParameters=preempt_send_user_signal
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
$NODE NodeAddr=127.0.0.1 State=UNKNOWN
PartitionName=ci Nodes=ALL Default=YES MaxTime=120 State=UP
EOC

# --- 5. SLURM daemons -----------------------------------------------------------
# slurmdbd first, then register the cluster (idempotent: ignore "already exists"),
# then the controller and the node daemon. Each writes its own PID file.
alive $S/slurmdbd.pid || slurmdbd
wait_for 30 sacctmgr -n list cluster
sacctmgr -i add cluster $CLUSTER >/dev/null 2>&1 || true
if alive $S/slurmctld.pid; then
  scontrol reconfigure     # already running: make it re-read the rewritten config
else
  slurmctld
fi
alive $S/slurmd.pid || slurmd

# --- 6. Wait until usable: node up (idle, or busy on a re-run) and sacct answering
wait_for 60 bash -c 'sinfo -h -o %T | grep -qxE "idle|mixed|allocated|completing"'
wait_for 30 sacct -n -X
t_start=$((SECONDS - t1))

# --- 7. Smoke test: one job step, then its accounting record -----------------------
sinfo
# srun runs "hostname" as a job step; it also echoes its job id so that we can
# wait for exactly this job's record in the accounting database (it lags a little).
read -r host jid < <(srun -n1 -J slurm-up-check sh -c 'echo "$(hostname) $SLURM_JOB_ID"')
echo "srun: job $jid ran on $host"
wait_for 15 bash -c "sacct -n -X -j $jid -o State | grep -q COMPLETED"
sacct -X -j "$jid" -o JobID,State,ExitCode,NodeList

echo "slurm-up: install ${t_install}s, start ${t_start}s (state and logs in $S)"
