#!/usr/bin/env bash
# A real one-node Slurm cluster on this machine, for the tests (root, no systemd).
#
#   scripts/slurm-test-cluster.sh start               install if missing, configure, start; no-op when up
#   scripts/slurm-test-cluster.sh stop                stop slurmd, slurmctld and munged
#   scripts/slurm-test-cluster.sh status              exit 0 when the node answers in sinfo, else 1
#   scripts/slurm-test-cluster.sh stop-controller     stop only slurmctld ("controller down" tests)
#   scripts/slurm-test-cluster.sh start-controller    start slurmctld again (jobs come back with their state)
#   scripts/slurm-test-cluster.sh restart-controller  both of the above
#
# Every command is idempotent and serialised by a lock, so helpers and tests may call it concurrently.
# See /work/shared/notes/slurm-on-one-machine.md for what was measured here.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
LOG_DIR=/var/log/slurm
CTLD_SPOOL=/var/spool/slurmctld
SLURMD_SPOOL=/var/spool/slurmd
CTLD_PID=/run/slurmctld.pid
SLURMD_PID=/run/slurmd.pid
MUNGE_PID=/run/munge/munged.pid
JOBCOMP_LOG=$LOG_DIR/jobcomp.log
PARTITION=debug
READY_TIMEOUT_SECS=${SLURM_TEST_READY_TIMEOUT:-60}
LOCK=/run/lock/orch-slurm-test-cluster.lock

log() { echo "slurm-test-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The pid in a pid file, when that process is alive and is the daemon the file is named after
# (a stale pid file may name a pid reused by another program).
live_pid() {
    local file=$1 pid comm
    [[ -s $file ]] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$(basename "$file" .pid)" ]] || return 1
    echo "$pid"
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null \
        && command -v sbatch >/dev/null && command -v munged >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || die "Slurm is not installed and installing it needs root"
    log "installing slurmctld slurmd slurm-client munge (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d 101: the packages' scripts must not try to start services (no init system here).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
    fi
    apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
    if [[ $created_policy == 1 ]]; then rm -f "$policy"; fi
    command -v slurmctld >/dev/null || die "apt-get did not install slurmctld"
}

setup_munge() {
    install -d -o munge -g munge -m 700 /etc/munge
    install -d -o munge -g munge -m 711 /var/lib/munge
    install -d -o munge -g munge -m 700 /var/log/munge
    install -d -o munge -g munge -m 755 /run/munge
    if [[ ! -s /etc/munge/munge.key ]]; then
        dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
}

start_munge() {
    if live_pid "$MUNGE_PID" >/dev/null && munge -n </dev/null | unmunge >/dev/null 2>&1; then
        return
    fi
    log "starting munged"
    runuser -u munge -- /usr/sbin/munged --force 9>&-
    local i
    for i in $(seq 50); do
        munge -n </dev/null | unmunge >/dev/null 2>&1 && return
        sleep 0.1
    done
    die "munged did not answer (see /var/log/munge/munged.log)"
}

write_config() {
    local node_line host tmp
    host=$(hostname -s)
    # `slurmd -C` prints this machine's real node line (CPUs, sockets, memory); keep only that line.
    node_line=$(slurmd -C | grep '^NodeName=')
    [[ -n $node_line ]] || die "slurmd -C printed no NodeName line"
    install -d -m 755 "$CONF_DIR" "$LOG_DIR" "$CTLD_SPOOL" "$SLURMD_SPOOL"
    tmp=$(mktemp "$CONF_DIR/.slurm.conf.XXXXXX")
    cat >"$tmp" <<EOF
# Written by scripts/slurm-test-cluster.sh (orch's one-node test cluster). Edits are overwritten.
ClusterName=orchtest
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP_LOG
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
# Finished jobs stay visible to squeue -t all / scontrol for 5 minutes.
MinJobAge=300
# Without a default a job takes all memory of the node and jobs run one at a time.
DefMemPerCPU=100
ReturnToService=2
StateSaveLocation=$CTLD_SPOOL
SlurmdSpoolDir=$SLURMD_SPOOL
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$SLURMD_PID
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
SchedulerType=sched/backfill
$node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
EOF
    chmod 644 "$tmp"
    if [[ -f $CONF ]] && cmp -s "$tmp" "$CONF"; then
        rm -f "$tmp"
        return 1  # unchanged
    fi
    mv -f "$tmp" "$CONF"
    log "wrote $CONF"
    return 0
}

start_controller() {
    live_pid "$CTLD_PID" >/dev/null && return
    local args=()
    # -i on a first start only: later starts must recover the saved jobs with their state.
    [[ -e $CTLD_SPOOL/node_state ]] || args+=(-i)
    log "starting slurmctld ${args[*]}"
    slurmctld "${args[@]}" 9>&-
}

start_slurmd() {
    live_pid "$SLURMD_PID" >/dev/null && return
    log "starting slurmd"
    slurmd 9>&-
}

stop_pidfile() {
    local name=$1 file=$2 pid i
    pid=$(live_pid "$file") || return 0
    log "stopping $name (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

node_state() {
    timeout 15 sinfo -h -N -p "$PARTITION" -o '%T' 2>/dev/null | head -n1
}

wait_ready() {
    local deadline=$((SECONDS + READY_TIMEOUT_SECS)) state=""
    while ((SECONDS < deadline)); do
        state=$(node_state || true)
        case $state in
            idle|mixed|allocated|completing) log "node is $state"; return 0 ;;
            down*|drain*|drained*|fail*)
                # A node marked down by an earlier stop comes back once slurmd is up again.
                scontrol update NodeName="$(hostname -s)" State=RESUME >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    die "node not ready after ${READY_TIMEOUT_SECS}s (sinfo says '${state:-nothing}'); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd.log"
}

cmd_start() {
    install_packages
    setup_munge
    start_munge
    if write_config; then
        # A new config: daemons started with an older one must re-read it.
        stop_pidfile slurmd "$SLURMD_PID"
        stop_pidfile slurmctld "$CTLD_PID"
    fi
    start_controller
    start_slurmd
    wait_ready
}

cmd_stop() {
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile munged "$MUNGE_PID"
}

cmd_status() {
    local what pid
    for what in "munged:$MUNGE_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID"; do
        pid=$(live_pid "${what#*:}") || pid="not running"
        echo "${what%%:*}: $pid"
    done
    local state
    state=$(node_state || true)
    echo "node: ${state:-unreachable}"
    case $state in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

main() {
    local cmd=${1:-}
    case $cmd in start|stop|status|stop-controller|start-controller|restart-controller) ;;
        *) echo "usage: $0 {start|stop|status|stop-controller|start-controller|restart-controller}" >&2; exit 2 ;;
    esac
    [[ $cmd == status ]] && { cmd_status; return; }
    mkdir -p "$(dirname "$LOCK")"
    # fd 9 holds the lock; the daemons are started with it closed (`9>&-`) so they do not keep it.
    exec 9>"$LOCK"
    flock -w 300 9 || die "another slurm-test-cluster.sh held the lock for 300s"
    case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        stop-controller) stop_pidfile slurmctld "$CTLD_PID" ;;
        start-controller) start_controller; wait_ready ;;
        restart-controller) stop_pidfile slurmctld "$CTLD_PID"; start_controller; wait_ready ;;
    esac
}

main "$@"
