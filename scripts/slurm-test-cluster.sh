#!/usr/bin/env bash
# A real Slurm cluster with accounting and preemption on this machine, for the tests (root, no systemd): node
# <host> in every partition, and a second slurmd as node <host>-b in the partition `pair` (node-fault tests).
#
#   scripts/slurm-test-cluster.sh start               install if missing, configure, start; no-op when up
#   scripts/slurm-test-cluster.sh stop                stop every daemon this script started
#   scripts/slurm-test-cluster.sh status              exit 0 when the node answers in sinfo, else 1
#   scripts/slurm-test-cluster.sh conf                print the SLURM_CONF path clients must use
#   scripts/slurm-test-cluster.sh stop-controller     stop only slurmctld ("controller down" tests)
#   scripts/slurm-test-cluster.sh start-controller    start slurmctld again (jobs come back with their state)
#   scripts/slurm-test-cluster.sh restart-controller  both of the above
#   scripts/slurm-test-cluster.sh stop-slurmd         stop only <host>'s slurmd (node failure tests)
#   scripts/slurm-test-cluster.sh start-slurmd        start it again and wait for the node
#
# Self-contained: everything lives under $ORCH_SLURM_TEST_DIR (default /var/lib/orch-slurm-test): its own
# slurm.conf and slurmdbd.conf (clients and daemons are pointed at them with SLURM_CONF / -f), its own munged
# (own key and socket), its own MariaDB data directory, spool, state, logs, ports and cluster name. It never
# reads or rewrites /etc/slurm, /etc/munge or /var/lib/mysql and never uses a daemon it did not start.
#
# Accounting: slurmdbd backed by MariaDB, so sacct answers for real; limits are enforced
# (AccountingStorageEnforce=associations,limits,qos). Preemption: PreemptType=preempt/partition_prio with
#   debug      default partition, never preempted
#   low        PriorityTier=1, preempted jobs are requeued (same id)
#   lowcancel  PriorityTier=1, preempted jobs are cancelled (sacct: PREEMPTED)
#   high       PriorityTier=2, preempts low and lowcancel
#
# Every command is idempotent and serialised by a lock, so helpers and tests may call it concurrently.
set -euo pipefail

BASE=${ORCH_SLURM_TEST_DIR:-/var/lib/orch-slurm-test}
CONF_DIR=$BASE/etc
CONF=$CONF_DIR/slurm.conf
DBD_CONF=$CONF_DIR/slurmdbd.conf
LOG_DIR=$BASE/log
RUN_DIR=$BASE/run
CTLD_SPOOL=$BASE/spool/slurmctld
SLURMD_SPOOL=$BASE/spool/slurmd
HOST=$(hostname -s)
# A second node, `<host>-b`, from a second slurmd on this machine (Debian builds Slurm with multiple-slurmd support):
# only in the partition `pair`, so every other test sees the one node it always saw. Node faults are tested there.
NODE2=$HOST-b
MUNGE_DIR=$BASE/munge
MUNGE_SOCKET=$MUNGE_DIR/munge.socket
MUNGE_KEY=$MUNGE_DIR/munge.key
DB_DIR=$BASE/mysql
DB_SOCKET=$RUN_DIR/mysqld.sock
CTLD_PID=$RUN_DIR/slurmctld.pid
SLURMD_PID=$RUN_DIR/slurmd-$HOST.pid
SLURMD2_PID=$RUN_DIR/slurmd-$NODE2.pid
LEGACY_SLURMD_PID=$RUN_DIR/slurmd.pid  # a one-node cluster started by an older version of this script
DBD_PID=$RUN_DIR/slurmdbd.pid
MUNGE_PID=$MUNGE_DIR/munged.pid
DB_PID=$RUN_DIR/mariadbd.pid
JOBCOMP_LOG=$LOG_DIR/jobcomp.log
CLUSTER=orchtest
ACCOUNT=orchtest
PARTITION=debug
# Ports of our own, so a machine's own Slurm (6817-6819) or MariaDB (3306) is never reached.
CTLD_PORT=${ORCH_SLURM_TEST_PORT_BASE:-16817}
SLURMD_PORT=$((CTLD_PORT + 1))
DBD_PORT=$((CTLD_PORT + 2))
DB_PORT=$((CTLD_PORT + 3))
SLURMD2_PORT=$((CTLD_PORT + 4))
DB_USER=slurm
DB_PASS=orchtest
SLURMD_TIMEOUT=10  # seconds a silent slurmd is given before its node is down (NODE_FAIL tests)
CRED_EXPIRE=10
NODE_CPUS=8
NODE_GPUS=8  # fake devices: GPU requests are scheduled and accounted, nothing runs on them
READY_TIMEOUT_SECS=${SLURM_TEST_READY_TIMEOUT:-60}
LOCK=$BASE/cluster.lock

export SLURM_CONF=$CONF

log() { echo "slurm-test-cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

# The pid in a pid file, when that process is alive and runs the program the caller names
# (a stale pid file may name a pid reused by another program).
live_pid() {
    local file=$1 program=$2 pid comm
    [[ -s $file ]] || return 1
    pid=$(cat "$file" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
    comm=$(cat "/proc/$pid/comm" 2>/dev/null) || return 1
    [[ $comm == "$program" ]] || return 1
    echo "$pid"
}

install_packages() {
    local missing=() cmd
    for cmd in slurmctld slurmd sbatch sacct munged slurmdbd mariadbd mariadb-install-db; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [[ ${#missing[@]} == 0 ]] && return
    [[ $(id -u) == 0 ]] || die "missing ${missing[*]}; installing them needs root"
    log "installing slurmctld slurmd slurm-client slurmdbd munge mariadb-server (apt-get)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    # policy-rc.d 101: the packages' scripts must not try to start services (no init system here).
    local policy=/usr/sbin/policy-rc.d created_policy=0
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created_policy=1
    fi
    apt-get install -y -qq slurmctld slurmd slurm-client slurmdbd munge mariadb-server >/dev/null
    if [[ $created_policy == 1 ]]; then rm -f "$policy"; fi
    command -v slurmdbd >/dev/null || die "apt-get did not install slurmdbd"
}

make_dirs() {
    install -d -m 755 "$BASE" "$CONF_DIR" "$LOG_DIR" "$RUN_DIR" "$BASE/spool" "$CTLD_SPOOL" "$SLURMD_SPOOL-$HOST" "$SLURMD_SPOOL-$NODE2"
    install -d -o munge -g munge -m 700 "$MUNGE_DIR"
}

# ---------------------------------------------------------------- munge (our own key and socket)

munge_ok() { munge -S "$MUNGE_SOCKET" -n </dev/null 2>/dev/null | unmunge -S "$MUNGE_SOCKET" >/dev/null 2>&1; }

start_munge() {
    if live_pid "$MUNGE_PID" munged >/dev/null && munge_ok; then return; fi
    if [[ ! -s $MUNGE_KEY ]]; then
        dd if=/dev/urandom of="$MUNGE_KEY" bs=1024 count=1 status=none
    fi
    chown munge:munge "$MUNGE_KEY"; chmod 400 "$MUNGE_KEY"
    log "starting munged (socket $MUNGE_SOCKET)"
    runuser -u munge -- /usr/sbin/munged --force --socket="$MUNGE_SOCKET" --key-file="$MUNGE_KEY" \
        --pid-file="$MUNGE_PID" --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed" 9>&-
    local i
    for i in $(seq 50); do munge_ok && return; sleep 0.1; done
    die "munged did not answer (see $MUNGE_DIR/munged.log)"
}

# ---------------------------------------------------------------- MariaDB (our own data directory)

db() { mariadb --no-defaults -S "$DB_SOCKET" -u root "$@"; }

start_mariadb() {
    if live_pid "$DB_PID" mariadbd >/dev/null && db -e 'SELECT 1' >/dev/null 2>&1; then return; fi
    if [[ ! -d $DB_DIR/mysql ]]; then
        log "initialising MariaDB in $DB_DIR"
        install -d -o mysql -g mysql -m 750 "$DB_DIR"
        mariadb-install-db --no-defaults --user=mysql --datadir="$DB_DIR" --auth-root-authentication-method=socket \
            >"$LOG_DIR/mariadb-install.log" 2>&1 || die "mariadb-install-db failed (see $LOG_DIR/mariadb-install.log)"
    fi
    chown mysql:mysql "$RUN_DIR" "$LOG_DIR"
    log "starting mariadbd (port $DB_PORT)"
    mariadbd --no-defaults --user=mysql --datadir="$DB_DIR" --socket="$DB_SOCKET" --pid-file="$DB_PID" \
        --port="$DB_PORT" --bind-address=127.0.0.1 --log-error="$LOG_DIR/mariadb.log" \
        --innodb-buffer-pool-size=64M 9>&- >/dev/null 2>&1 &
    local i
    for i in $(seq 150); do
        if db -e 'SELECT 1' >/dev/null 2>&1; then
            db -e "CREATE USER IF NOT EXISTS '$DB_USER'@'localhost' IDENTIFIED BY '$DB_PASS';
                   CREATE USER IF NOT EXISTS '$DB_USER'@'127.0.0.1' IDENTIFIED BY '$DB_PASS';
                   GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'localhost';
                   GRANT ALL ON slurm_acct_db.* TO '$DB_USER'@'127.0.0.1';"
            return
        fi
        sleep 0.2
    done
    die "MariaDB did not answer (see $LOG_DIR/mariadb.log)"
}

# ---------------------------------------------------------------- configuration

# Writes $2 from stdin when its text differs; returns 0 when it changed.
write_if_changed() {
    local target=$1 mode=$2 tmp
    tmp=$(mktemp "$CONF_DIR/.new.XXXXXX")
    cat >"$tmp"
    chmod "$mode" "$tmp"
    if [[ -f $target ]] && cmp -s "$tmp" "$target"; then rm -f "$tmp"; return 1; fi
    mv -f "$tmp" "$target"
    log "wrote $target"
}

write_dbd_config() {
    write_if_changed "$DBD_CONF" 600 <<EOF
# Written by scripts/slurm-test-cluster.sh (orch's test cluster). Edits are overwritten.
AuthType=auth/munge
AuthInfo=socket=$MUNGE_SOCKET
DbdHost=localhost
DbdPort=$DBD_PORT
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=$DB_USER
StoragePass=$DB_PASS
StorageLoc=slurm_acct_db
PidFile=$DBD_PID
LogFile=$LOG_DIR/slurmdbd.log
EOF
}

write_config() {
    local node_line host=$HOST memory
    # `slurmd -C` prints this machine's real node line; its memory is kept, its CPUs are not: with
    # preemption configured Slurm no longer lets jobs share a CPU (OverSubscribe), so the node declares
    # NODE_CPUS CPUs (SlurmdParameters=config_overrides accepts more than the machine has) and the tests'
    # small jobs run side by side as they would on a real cluster's nodes.
    node_line=$(slurmd -C | grep '^NodeName=')
    [[ -n $node_line ]] || die "slurmd -C printed no NodeName line"
    memory=$(sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p' <<<"$node_line")
    node_line="CPUs=$NODE_CPUS Boards=1 SocketsPerBoard=1 CoresPerSocket=$NODE_CPUS ThreadsPerCore=1 RealMemory=${memory:-1000} Gres=gpu:$NODE_GPUS"
    # GPUs for GPU-hour accounting: plain files stand in for the device files (TaskPlugin=task/none
    # constrains no devices), so --gres/--gpus requests are scheduled and sacct's AllocTRES has gres/gpu.
    mkdir -p "$BASE/dev"
    for ((i = 0; i < NODE_GPUS; i++)); do : >"$BASE/dev/gpu$i"; done
    write_if_changed "$CONF_DIR/gres.conf" 644 <<EOF || true
# Written by scripts/slurm-test-cluster.sh. Fake devices: see write_config.
NodeName=$host,$NODE2 Name=gpu File=$BASE/dev/gpu[0-$((NODE_GPUS - 1))]
EOF
    write_if_changed "$CONF" 644 <<EOF
# Written by scripts/slurm-test-cluster.sh (orch's test cluster). Edits are overwritten.
ClusterName=$CLUSTER
SlurmctldHost=$host
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=root
AuthType=auth/munge
# cred_expire: a requeued job waits this long + 1 s before it may run again (Slurm's default: 120 s).
AuthInfo=socket=$MUNGE_SOCKET,cred_expire=$CRED_EXPIRE
CredType=cred/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$DBD_PORT
# For slurmdbd connections the munge socket is named here, not by AuthInfo (slurm.conf(5)).
AccountingStoragePass=$MUNGE_SOCKET
AccountingStorageEnforce=associations,limits,qos
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP_LOG
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
GresTypes=gpu
AccountingStorageTRES=gres/gpu
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
# Finished jobs stay visible to squeue -t all / scontrol for 5 minutes.
MinJobAge=300
# Without a default a job takes all memory of the node and jobs run one at a time.
DefMemPerCPU=100
ReturnToService=2
SlurmdTimeout=$SLURMD_TIMEOUT
SlurmdParameters=config_overrides
StateSaveLocation=$CTLD_SPOOL
# %n: each slurmd (one per node name) has its own spool, pid file and log.
SlurmdSpoolDir=$SLURMD_SPOOL-%n
SlurmctldPidFile=$CTLD_PID
SlurmdPidFile=$RUN_DIR/slurmd-%n.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd-%n.log
SchedulerType=sched/backfill
# Small, so the job-array tests meet the cap a real cluster sets (index values 0-4; the default is 1001).
MaxArraySize=5
NodeName=$host $node_line State=UNKNOWN
NodeName=$NODE2 NodeHostname=$host Port=$SLURMD2_PORT $node_line State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=OFF
PartitionName=low Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=REQUEUE
PartitionName=lowcancel Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=CANCEL
PartitionName=high Nodes=$host MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=2 PreemptMode=OFF
PartitionName=pair Nodes=$host,$NODE2 MaxTime=INFINITE State=UP OverSubscribe=NO PriorityTier=1 PreemptMode=OFF
EOF
}

# ---------------------------------------------------------------- Slurm daemons

start_slurmdbd() {
    if live_pid "$DBD_PID" slurmdbd >/dev/null; then return; fi
    log "starting slurmdbd (port $DBD_PORT)"
    slurmdbd 9>&- >/dev/null 2>&1
    local deadline=$((SECONDS + 30))
    while ((SECONDS < deadline)); do
        timeout 10 sacctmgr -n -P list cluster format=cluster >/dev/null 2>&1 && return
        sleep 0.2
    done
    die "slurmdbd did not answer (see $LOG_DIR/slurmdbd.log)"
}

register_cluster() {
    # The cluster, an account and this user must exist before slurmctld enforces associations.
    local user
    user=$(id -un)
    sacctmgr -n -P list cluster format=cluster | grep -qx "$CLUSTER" || sacctmgr -i add cluster "$CLUSTER" >/dev/null
    sacctmgr -n -P list account format=account | grep -qx "$ACCOUNT" \
        || sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" >/dev/null
    sacctmgr -n -P list user format=user | grep -qx "$user" \
        || sacctmgr -i add user "$user" account="$ACCOUNT" defaultaccount="$ACCOUNT" cluster="$CLUSTER" >/dev/null
}

start_controller() {
    live_pid "$CTLD_PID" slurmctld >/dev/null && return
    local args=()
    # -i on a first start only: later starts must recover the saved jobs with their state.
    [[ -e $CTLD_SPOOL/node_state ]] || args+=(-i)
    log "starting slurmctld ${args[*]}"
    slurmctld -f "$CONF" "${args[@]}" 9>&-
}

start_slurmd() {
    live_pid "$SLURMD_PID" slurmd >/dev/null && return
    log "starting slurmd ($HOST)"
    slurmd -f "$CONF" -N "$HOST" 9>&-
}

start_slurmd2() {
    live_pid "$SLURMD2_PID" slurmd >/dev/null && return
    log "starting slurmd ($NODE2)"
    slurmd -f "$CONF" -N "$NODE2" 9>&-
}

stop_pidfile() {
    local program=$1 file=$2 pid i
    pid=$(live_pid "$file" "$program") || return 0
    log "stopping $program (pid $pid)"
    kill "$pid" 2>/dev/null || true
    for i in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
}

node_state() {  # node_state [NODE]
    timeout 15 sinfo -h -N -n "${1:-$HOST}" -o '%T' 2>/dev/null | head -n1
}

wait_ready() {  # wait_ready [NODE...]: every node named (default: the first) takes jobs
    local deadline=$((SECONDS + READY_TIMEOUT_SECS)) state="" node
    local nodes=("${@:-$HOST}")
    for node in "${nodes[@]}"; do
        while ((SECONDS < deadline)); do
            state=$(node_state "$node" || true)
            case $state in
                idle|mixed|allocated|completing) log "node $node is $state"; continue 2 ;;
                down*|drain*|drained*|fail*)
                    # A node marked down by an earlier stop comes back once slurmd is up again.
                    scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true ;;
            esac
            sleep 0.5
        done
        die "node $node not ready after ${READY_TIMEOUT_SECS}s (sinfo says '${state:-nothing}'); see $LOG_DIR/slurmctld.log and $LOG_DIR/slurmd-$node.log"
    done
}

cmd_start() {
    install_packages
    make_dirs
    start_munge
    start_mariadb
    local dbd_changed=0 conf_changed=0
    write_dbd_config && dbd_changed=1
    write_config && conf_changed=1
    if ((dbd_changed)); then stop_pidfile slurmdbd "$DBD_PID"; fi
    start_slurmdbd
    register_cluster
    if ((conf_changed)); then
        # A new config: daemons started with an older one must re-read it (a restart, not a reconfigure,
        # is what makes slurmctld pick up AccountingStorageEnforce).
        stop_pidfile slurmd "$SLURMD_PID"
        stop_pidfile slurmd "$SLURMD2_PID"
        stop_pidfile slurmd "$LEGACY_SLURMD_PID"
        stop_pidfile slurmctld "$CTLD_PID"
    fi
    start_controller
    start_slurmd
    start_slurmd2
    wait_ready "$HOST" "$NODE2"
}

cmd_stop() {
    stop_pidfile slurmd "$SLURMD_PID"
    stop_pidfile slurmd "$SLURMD2_PID"
    stop_pidfile slurmd "$LEGACY_SLURMD_PID"
    stop_pidfile slurmctld "$CTLD_PID"
    stop_pidfile slurmdbd "$DBD_PID"
    stop_pidfile mariadbd "$DB_PID"
    stop_pidfile munged "$MUNGE_PID"
}

cmd_status() {
    local what pid
    for what in "munged:$MUNGE_PID" "mariadbd:$DB_PID" "slurmdbd:$DBD_PID" "slurmctld:$CTLD_PID" "slurmd:$SLURMD_PID" "slurmd:$SLURMD2_PID"; do
        pid=$(live_pid "${what#*:}" "${what%%:*}") || pid="not running"
        echo "${what%%:*}: $pid"
    done
    local state
    state=$(node_state || true)
    echo "node: ${state:-unreachable}"
    case $state in idle|mixed|allocated|completing) return 0 ;; *) return 1 ;; esac
}

main() {
    local cmd=${1:-}
    case $cmd in
        start|stop|status|conf|stop-controller|start-controller|restart-controller|stop-slurmd|start-slurmd) ;;
        *) echo "usage: $0 {start|stop|status|conf|stop-controller|start-controller|restart-controller|stop-slurmd|start-slurmd}" >&2
           exit 2 ;;
    esac
    [[ $cmd == conf ]] && { echo "$CONF"; return; }
    [[ $cmd == status ]] && { cmd_status; return; }
    mkdir -p "$BASE"
    # fd 9 holds the lock; the daemons are started with it closed (`9>&-`) so they do not keep it.
    exec 9>"$LOCK"
    flock -w 300 9 || die "another slurm-test-cluster.sh held the lock for 300s"
    case $cmd in
        start) cmd_start ;;
        stop) cmd_stop ;;
        stop-controller) stop_pidfile slurmctld "$CTLD_PID" ;;
        start-controller) start_controller; wait_ready ;;
        restart-controller) stop_pidfile slurmctld "$CTLD_PID"; start_controller; wait_ready ;;
        stop-slurmd) stop_pidfile slurmd "$SLURMD_PID" ;;
        start-slurmd) start_slurmd; wait_ready ;;
    esac
}

main "$@"
