#!/usr/bin/env bash
# A real single-node Slurm (Debian's slurmctld, slurmd, munge) for the Slurm
# executor's tests. Needs root; no systemd, no cgroups.
#   bash scripts/slurm.sh up     install (apt), configure under $SLURM_DIR, start, wait until idle
#   bash scripts/slurm.sh down   stop the daemons (by their PID files)
# SLURM_DIR defaults to target/slurm. After `up`: export SLURM_CONF=$SLURM_DIR/slurm.conf.
#
# The node declares 8 CPUs and 2 GPUs whatever the machine has
# (SlurmdParameters=config_overrides; the GPUs are placeholder device files):
# the tests run several small jobs at once and ask for GPUs the way a
# training stage does, and nothing here computes on a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
D=${SLURM_DIR:-$PWD/target/slurm}

down() {
  for f in slurmd.pid slurmctld.pid munge/munged.pid; do
    [ -f "$D/$f" ] || continue
    p=$(cat "$D/$f"); kill "$p" 2>/dev/null || true
    for _ in $(seq 40); do kill -0 "$p" 2>/dev/null || break; sleep 0.25; done
    rm -f "$D/$f"
  done
}

up() {
  [ "$(id -u)" = 0 ] || { echo "slurm.sh: needs root (installs packages, starts daemons)" >&2; exit 1; }
  if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v munged >/dev/null || ! command -v sbatch >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
  fi
  down
  rm -rf "$D"; mkdir -p "$D"/{munge,state,spool,log,dev}; chmod 755 "$D/munge"
  dd if=/dev/urandom of="$D/munge/munge.key" bs=1024 count=1 status=none; chmod 400 "$D/munge/munge.key"
  local ms="$D/munge/munge.socket"
  munged --force --key-file="$D/munge/munge.key" --socket="$ms" --pid-file="$D/munge/munged.pid" \
         --log-file="$D/munge/munged.log" --seed-file="$D/munge/munged.seed"
  for i in 0 1; do mknod "$D/dev/nvidia$i" c 1 3 2>/dev/null || touch "$D/dev/nvidia$i"; done
  echo "NodeName=localhost Name=gpu File=$D/dev/nvidia[0-1]" > "$D/gres.conf"
  cat > "$D/slurm.conf" <<CONF
ClusterName=tailor
SlurmctldHost=localhost
SlurmUser=root
SlurmctldPort=16817
SlurmdPort=16818
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$ms
StateSaveLocation=$D/state
SlurmdSpoolDir=$D/spool
SlurmctldPidFile=$D/slurmctld.pid
SlurmdPidFile=$D/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=1
DependencyParameters=kill_invalid_depend
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
OverTimeLimit=0
JobCompType=jobcomp/filetxt
JobCompLoc=$D/log/jobcomp.txt
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
GresTypes=gpu
NodeName=localhost CPUs=8 RealMemory=16000 Gres=gpu:2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
  export SLURM_CONF="$D/slurm.conf"
  slurmctld
  slurmd -N localhost
  for _ in $(seq 120); do
    case "$(sinfo -h -o %T 2>/dev/null)" in idle|mixed|allocated) echo "slurm up: SLURM_CONF=$SLURM_CONF"; return 0;; esac
    sleep 0.5
  done
  echo "slurm.sh: the node did not become idle; see $D/log/" >&2; sinfo >&2 || true; exit 1
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
