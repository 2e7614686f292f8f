#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, with accounting, for ftmatrix's Slurm tests.
#
#   scripts/slurm-local.sh start    install what is missing (Debian packages), start it
#   scripts/slurm-local.sh status   say whether it answers (exit 0) or not (exit 1)
#   scripts/slurm-local.sh stop     stop every daemon it started
#   scripts/slurm-local.sh wipe     stop, then remove its state (job ids restart at 1)
#
# Needs root and no systemd: munged, mariadbd, slurmdbd, slurmctld and slurmd are run
# directly. Everything it writes lives under $FTMATRIX_SLURM_DIR (default
# /var/tmp/ftmatrix-slurm), except /etc/slurm/slurm.conf, a link to its own config that it
# creates only where no slurm.conf exists (so `sbatch`, `squeue` and `sacct` find it with
# no environment). Idempotent: `start` on a running cluster only checks it.
#
# Why accounting: submitit reads job states through `sacct`; without slurmdbd a finished
# or cancelled job is never seen as finished.
set -euo pipefail

DIR="${FTMATRIX_SLURM_DIR:-/var/tmp/ftmatrix-slurm}"
CONF="$DIR/etc/slurm.conf"
export SLURM_CONF="$CONF"  # daemons and clients; slurmdbd.conf is read from beside it
NODE="$(hostname -s)"
PACKAGES=(slurm-wlm slurmdbd munge mariadb-server)

log() { echo "slurm-local: $*" >&2; }

install() {
    local missing=()
    for cmd in slurmctld slurmd slurmdbd munged mariadbd sbatch sacct; do
        command -v "$cmd" >/dev/null || missing+=("$cmd")
    done
    [ ${#missing[@]} -eq 0 ] && return
    log "installing ${PACKAGES[*]} (missing: ${missing[*]})"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${PACKAGES[@]}" >/dev/null
}

configure() {
    mkdir -p "$DIR"/{etc,log,run,state,spool,mysql}
    local cpus mem
    cpus="$(nproc)"
    # leave the OS some memory: Slurm refuses a node that reports less than configured
    mem=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) * 9 / 10 ))
    cat >"$CONF" <<EOF
# written by scripts/slurm-local.sh: a one-node cluster for ftmatrix's tests
ClusterName=ftmatrix
SlurmctldHost=$NODE
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/run/slurmctld.pid
SlurmdPidFile=$DIR/run/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ReturnToService=2
MinJobAge=60
KillWait=5
SchedulerParameters=sched_interval=2
MailProg=/bin/true
DefMemPerCPU=$((mem / cpus))
NodeName=$NODE CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=root
StorageLoc=slurm_acct_db
PidFile=$DIR/run/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    if [ ! -e /etc/slurm/slurm.conf ]; then
        mkdir -p /etc/slurm
        ln -s "$CONF" /etc/slurm/slurm.conf
    fi
}

pidfile() {  # mariadbd runs as mysql and writes into its own folder
    if [ "$1" = mariadbd ]; then echo "$DIR/mysql/mariadbd.pid"; else echo "$DIR/run/$1.pid"; fi
}

running() { [ -f "$(pidfile "$1")" ] && kill -0 "$(cat "$(pidfile "$1")")" 2>/dev/null; }

wait_for() {  # wait_for SECONDS DESCRIPTION COMMAND...
    local seconds=$1 what=$2
    shift 2
    for _ in $(seq $((seconds * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$what did not come up; logs in $DIR/log"
    return 1
}

start_munge() {
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
    if ! pgrep -x munged >/dev/null; then
        runuser -u munge -- munged
    fi
    wait_for 10 munged munge -n
}

start_mariadb() {
    if running mariadbd; then return; fi
    chown -R mysql:mysql "$DIR/mysql"
    if [ ! -d "$DIR/mysql/mysql" ]; then
        mariadb-install-db --user=mysql --datadir="$DIR/mysql" --skip-test-db >"$DIR/log/mariadb-install.log" 2>&1
    fi
    mkdir -p /run/mysqld
    chown mysql:mysql /run/mysqld
    # the default socket: the client library slurmdbd uses connects to it for localhost
    mariadbd --user=mysql --datadir="$DIR/mysql" --socket=/run/mysqld/mysqld.sock \
        --skip-networking --pid-file="$(pidfile mariadbd)" \
        --log-error="$DIR/mysql/mariadb.log" >/dev/null 2>&1 &
    wait_for 30 mariadbd mariadb --socket=/run/mysqld/mysqld.sock -e "select 1"
}

start_slurm() {
    if ! running slurmdbd; then
        slurmdbd
        wait_for 30 slurmdbd sacctmgr -i show cluster
    fi
    # the cluster must be known to the database before slurmctld registers with it
    if ! sacctmgr -n show cluster format=cluster | grep -qw ftmatrix; then
        sacctmgr -i add cluster ftmatrix >/dev/null
    fi
    if ! running slurmctld; then
        slurmctld -f "$CONF"
    fi
    if ! running slurmd; then
        slurmd -f "$CONF"
    fi
    wait_for 60 "the node" bash -c "sinfo -h -N -o %T | grep -Eq '^(idle|mixed|allocated)'"
}

status() {
    sinfo -h -N -o "%N %T %c cpus %m MB" 2>/dev/null | grep -Eq "idle|mixed|allocated" \
        && sacct -n -X -S now-1minute >/dev/null 2>&1
}

stop() {
    for daemon in slurmd slurmctld slurmdbd mariadbd; do
        if running "$daemon"; then
            kill "$(cat "$(pidfile "$daemon")")" 2>/dev/null || true
        fi
    done
    for daemon in slurmd slurmctld slurmdbd mariadbd; do
        for _ in $(seq 50); do running "$daemon" || break; sleep 0.2; done
    done
}

case "${1:-}" in
    start)
        [ "$(id -u)" -eq 0 ] || { log "needs root (it installs packages and starts daemons)"; exit 1; }
        install
        configure
        start_munge
        start_mariadb
        start_slurm
        status || { log "the cluster does not answer; logs in $DIR/log"; exit 1; }
        log "up: one node ($NODE, $(nproc) CPUs), accounting on; config $CONF"
        ;;
    status)
        if status; then
            sinfo -N -o "%N %T %c %m"
        else
            log "not running (start it with: sudo scripts/slurm-local.sh start)"
            exit 1
        fi
        ;;
    stop)
        stop
        log "stopped"
        ;;
    wipe)
        stop
        rm -rf "$DIR"
        if [ -L /etc/slurm/slurm.conf ] && [ "$(readlink /etc/slurm/slurm.conf)" = "$CONF" ]; then
            rm /etc/slurm/slurm.conf
        fi
        log "wiped $DIR"
        ;;
    *)
        sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
        exit 2
        ;;
esac
