#!/usr/bin/env bash
# A real, single-node Slurm (with slurmdbd accounting) and an sshd for the test suite.
#
#   loopback_cluster.sh start        start everything from nothing; prints the state directory
#                                    (env DC2_LOOPBACK_ACCOUNTING=0: without slurmdbd)
#   loopback_cluster.sh env [DIR]    print the connection settings as KEY=VALUE lines
#   loopback_cluster.sh stop [DIR]   stop everything that `start` started, by pid, and remove DIR
#
# Why it looks like this (see shared/notes/loopback-slurm.md for the facts behind it):
# - slurmdbd 22.05 binds 0.0.0.0 whatever DbdAddr says, so the whole Slurm stack (munge, MariaDB,
#   slurmdbd, slurmctld, slurmd) and the sshd run inside a network namespace this script makes. Slurm
#   needs a non-loopback IPv4 address to be happy, so the namespace gets a veth pair of its own.
# - The tests reach that sshd through a socat forwarder bound to 127.0.0.1 on the host that enters
#   the namespace per connection. So nothing listens on any host interface except 127.0.0.1.
# - Logins use an OpenSSH user certificate (like NERSC's sshproxy `<key>-cert.pub`), not an
#   authorized key, so a client that ignores the certificate cannot log in.
# - The node claims 8 CPUs (config_overrides) on a 2-core machine: test jobs mostly wait on Slurm,
#   not on the CPU, and 8 slots keep a 20-element array test short.
# - Perlmutter's names stand in where the shipped run files ask for them: the node has the feature
#   `cpu` (`--constraint=cpu`), the qos `regular` exists.
# - Every daemon is started in its own session with setsid; `stop` kills those process groups by
#   the pids recorded under DIR/pids, then any process left in the namespace (job steps), then the
#   namespace holder.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
LAST_FILE=/tmp/dc2-loopback-cluster.last
TEST_USER="${DC2_LOOPBACK_USER:-dc2test}"
# Another account of the same cluster (no SSH login; the tests submit as it with runuser), to show
# that its jobs are never taken for ours however they are named or commented.
OTHER_USER="${DC2_LOOPBACK_OTHER_USER:-dc2other}"
CLUSTER_NAME=test
# DC2_LOOPBACK_ACCOUNTING=0: no MariaDB/slurmdbd (sacct then says accounting is disabled), to test
# the client's squeue/scontrol fallback. DC2_LOOPBACK_CGROUP=0: no cgroups (use it for a second
# cluster running beside the first, whose slurmd owns the cgroup hierarchy).
ACCOUNTING="${DC2_LOOPBACK_ACCOUNTING:-1}"
INNER_SSH_PORT=2222
NS_ADDR_A=10.254.254.1
NS_ADDR_B=10.254.254.2

log() { echo "loopback_cluster: $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

resolve_dir() {
    local dir="${1:-}"
    if [ -z "$dir" ]; then
        [ -f "$LAST_FILE" ] || die "no DIR given and no $LAST_FILE"
        dir="$(cat "$LAST_FILE")"
    fi
    [ -d "$dir" ] || die "no such directory: $dir"
    echo "$dir"
}

# Run a command inside the namespace with the cluster's SLURM_CONF.
ns() { SLURM_CONF="$DIR/etc/slurm.conf" nsenter -t "$(cat "$DIR/pids/netns.pid")" -n -- "$@"; }

# Start a long-running foreground daemon in its own session inside the namespace; record its pid.
spawn() {
    local name="$1"; shift
    SLURM_CONF="$DIR/etc/slurm.conf" setsid nsenter -t "$(cat "$DIR/pids/netns.pid")" -n -- "$@" \
        </dev/null >>"$DIR/log/$name.out" 2>&1 &
    echo $! >"$DIR/pids/$name.pid"
}

wait_for() {
    local what="$1" tries="$2"; shift 2
    local i
    for ((i = 0; i < tries; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    die "timed out waiting for $what (logs in $DIR/log)"
}

port_free() { ! ss -Hltn "sport = :$1" | grep -q .; }

pick_port() {
    local p="$1"
    while ! port_free "$p"; do p=$((p + 1)); done
    echo "$p"
}

cgroup_v1_writable() {
    local probe="/sys/fs/cgroup/memory/dc2-loopback-probe.$$"
    [ -d /sys/fs/cgroup/memory ] && [ -d /sys/fs/cgroup/freezer ] && mkdir "$probe" 2>/dev/null \
        && rmdir "$probe"
}

write_configs() {
    local host="$1"
    local sock="$DIR/munge/munge.socket"
    # With writable cgroup v1 controllers, task/cgroup makes the kernel enforce --mem, and Slurm
    # reports OUT_OF_MEMORY. Without it, jobacct_gather's OverMemoryKill kills the job by polling
    # and Slurm 22.05 reports that as FAILED with signal 9, not OUT_OF_MEMORY.
    local ACCOUNTING_LINES="AccountingStorageType=accounting_storage/none"
    if [ "$ACCOUNTING" = 1 ]; then
        ACCOUNTING_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819
AccountingStoragePass=$sock
AccountingStoreFlags=job_comment"
    fi
    local PROCTRACK=proctrack/linuxproc TASKPLUGIN=task/none GATHERPARAMS=OverMemoryKill
    if [ "${DC2_LOOPBACK_CGROUP:-auto}" != 0 ] && cgroup_v1_writable; then
        PROCTRACK=proctrack/cgroup TASKPLUGIN=task/cgroup GATHERPARAMS=NoOverMemoryKill
        cat >"$DIR/etc/cgroup.conf" <<EOF
CgroupPlugin=cgroup/v1
CgroupMountpoint=/sys/fs/cgroup
CgroupAutomount=no
ConstrainRAMSpace=yes
ConstrainSwapSpace=yes
AllowedSwapSpace=0
EOF
    fi
    cat >"$DIR/etc/slurm.conf" <<EOF
ClusterName=$CLUSTER_NAME
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
SlurmctldPort=6817
SlurmdPort=6818
CommunicationParameters=NoInAddrAny,NoCtldInAddrAny
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/state/slurmctld.pid
SlurmdPidFile=$DIR/spool/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
ProctrackType=$PROCTRACK
TaskPlugin=$TASKPLUGIN
MpiDefault=none
SwitchType=switch/none
MailProg=/bin/true
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=200
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=2
JobAcctGatherParams=$GATHERPARAMS
$ACCOUNTING_LINES
Licenses=scratch:4
SlurmdParameters=config_overrides
NodeName=$host NodeAddr=127.0.0.1 CPUs=8 RealMemory=4000 Features=cpu State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    cat >"$DIR/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
PidFile=$DIR/state/slurmdbd.pid
LogFile=$DIR/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=3306
StorageUser=slurm
StoragePass=slurmtest
StorageLoc=slurm_acct_db
EOF
    chmod 600 "$DIR/etc/slurmdbd.conf"
    cat >"$DIR/etc/sshd_config" <<EOF
Port $INNER_SSH_PORT
ListenAddress 127.0.0.1
HostKey $DIR/ssh/host_ed25519
HostCertificate $DIR/ssh/host_ed25519-cert.pub
PidFile $DIR/ssh/sshd.pid
AuthorizedKeysFile none
TrustedUserCAKeys $DIR/ssh/user_ca.pub
AllowUsers $TEST_USER
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin no
MaxStartups 100:30:200
MaxSessions 100
SetEnv SLURM_CONF=$DIR/etc/slurm.conf
EOF
    cat >"$DIR/ssh/ns-connect.sh" <<EOF
#!/bin/sh
exec nsenter -t $(cat "$DIR/pids/netns.pid") -n -- socat STDIO TCP:127.0.0.1:$INNER_SSH_PORT
EOF
    chmod 755 "$DIR/ssh/ns-connect.sh"
}

make_user() {
    if ! id "$TEST_USER" >/dev/null 2>&1; then
        useradd --no-create-home --home-dir "$DIR/home/$TEST_USER" --shell /bin/sh "$TEST_USER"
    fi
    # '*' (not '!'): sshd without PAM refuses accounts whose password field says "locked".
    if ! usermod --home "$DIR/home/$TEST_USER" --password '*' "$TEST_USER" 2>"$DIR/usermod.err"; then
        # Another loopback cluster's sessions run as the user (usermod refuses then): its entry
        # will do if it can log in (the home in passwd only matters for the login's first chdir).
        [ "$(getent shadow "$TEST_USER" | cut -d: -f2)" = '*' ] || die "usermod: $(cat "$DIR/usermod.err")"
        log "$TEST_USER is in use by another cluster; keeping its passwd entry"
    fi
    # (two clusters may start at once: the loser of a useradd race finds the user made)
    id "$OTHER_USER" >/dev/null 2>&1 || useradd --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$OTHER_USER" || id "$OTHER_USER" >/dev/null
    mkdir -p "$DIR/home/$TEST_USER"
    chown "$TEST_USER:" "$DIR/home/$TEST_USER"
    chmod 755 "$DIR/home/$TEST_USER"
}

make_keys() {
    ssh-keygen -q -t ed25519 -N '' -C dc2-loopback-host -f "$DIR/ssh/host_ed25519"
    ssh-keygen -q -t ed25519 -N '' -C dc2-loopback-user-ca -f "$DIR/ssh/user_ca"
    ssh-keygen -q -t ed25519 -N '' -C "$TEST_USER@dc2-loopback" -f "$DIR/client/id_ed25519"
    ssh-keygen -q -s "$DIR/ssh/user_ca" -I "$TEST_USER" -n "$TEST_USER" -V -5m:+12h \
        "$DIR/client/id_ed25519.pub"
    # The host key is also signed by a host CA, as NERSC does (principals: see write_known_hosts).
    ssh-keygen -q -t ed25519 -N '' -C dc2-loopback-host-ca -f "$DIR/ssh/host_ca"
    ssh-keygen -q -s "$DIR/ssh/host_ca" -I dc2-loopback-host -h -n 127.0.0.1,localhost -V -5m:+12h \
        "$DIR/ssh/host_ed25519.pub"
    chmod 644 "$DIR/client/id_ed25519-cert.pub"
}

# Once the forwarder's port is known. A client checks the host certificate's principals against the
# name it dials (127.0.0.1, without the port), and looks the CA up in known_hosts as
# `[127.0.0.1]:PORT` (falling back to `127.0.0.1`). A client pinning the plain key (known_hosts)
# still gets the plain key: it offers only that key's algorithms.
write_known_hosts() {
    echo "[127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$DIR/ssh/host_ed25519.pub")" >"$DIR/client/known_hosts"
    echo "@cert-authority [127.0.0.1]:$SSH_PORT $(cut -d' ' -f1,2 "$DIR/ssh/host_ca.pub")" \
        >"$DIR/client/ca_known_hosts"
    chmod 644 "$DIR/client/known_hosts" "$DIR/client/ca_known_hosts"
}

start_netns() {
    # A holder process owns the namespace; its pid is how everything else enters it.
    setsid unshare --net -- sh -c "echo \$\$ >'$DIR/pids/netns.pid'; exec sleep infinity" \
        </dev/null >/dev/null 2>&1 &
    wait_for "namespace holder" 20 test -s "$DIR/pids/netns.pid"
    local h
    h="$(cat "$DIR/pids/netns.pid")"
    nsenter -t "$h" -n -- ip link set lo up
    nsenter -t "$h" -n -- ip link add v0 type veth peer name v1
    nsenter -t "$h" -n -- ip addr add "$NS_ADDR_A/30" dev v0
    nsenter -t "$h" -n -- ip addr add "$NS_ADDR_B/30" dev v1
    nsenter -t "$h" -n -- ip link set v0 up
    nsenter -t "$h" -n -- ip link set v1 up
}

start_munge() {
    dd if=/dev/urandom bs=1 count=1024 of="$DIR/munge/munge.key" status=none
    chmod 400 "$DIR/munge/munge.key"
    spawn munged munged -F --force --key-file="$DIR/munge/munge.key" \
        --socket="$DIR/munge/munge.socket" --pid-file="$DIR/munge/munged.pid" \
        --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed"
    wait_for munged 40 test -S "$DIR/munge/munge.socket"
}

start_mariadb() {
    mkdir -p "$DIR/mysql/data"
    chown -R mysql:mysql "$DIR/mysql"
    mariadb-install-db --no-defaults --datadir="$DIR/mysql/data" --user=mysql \
        --auth-root-authentication-method=socket --skip-test-db >>"$DIR/log/mariadb-install.out" 2>&1
    spawn mariadb mariadbd --no-defaults --user=mysql --datadir="$DIR/mysql/data" \
        --socket="$DIR/mysql/mysql.sock" --bind-address=127.0.0.1 --port=3306 \
        --pid-file="$DIR/mysql/mariadb.pid" --log-error="$DIR/log/mariadb.log" \
        --innodb-buffer-pool-size=64M --skip-name-resolve
    wait_for mariadb 120 mariadb-admin --no-defaults -S "$DIR/mysql/mysql.sock" -u root ping
    mariadb --no-defaults -S "$DIR/mysql/mysql.sock" -u root <<'EOF'
CREATE USER 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmtest';
CREATE USER 'slurm'@'localhost' IDENTIFIED BY 'slurmtest';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
EOF
}

start_slurm() {
    if [ "$ACCOUNTING" = 1 ]; then
        spawn slurmdbd slurmdbd -D
        wait_for slurmdbd 120 ns sacctmgr -n list cluster
        ns sacctmgr -i add cluster "$CLUSTER_NAME" >>"$DIR/log/sacctmgr.out" 2>&1
        ns sacctmgr -i add qos regular >>"$DIR/log/sacctmgr.out" 2>&1
        ns sacctmgr -i add account dc2 cluster="$CLUSTER_NAME" >>"$DIR/log/sacctmgr.out" 2>&1
        ns sacctmgr -i add user "$TEST_USER" account=dc2 cluster="$CLUSTER_NAME" >>"$DIR/log/sacctmgr.out" 2>&1
        ns sacctmgr -i add user "$OTHER_USER" account=dc2 cluster="$CLUSTER_NAME" >>"$DIR/log/sacctmgr.out" 2>&1
    fi
    spawn slurmctld slurmctld -D -f "$DIR/etc/slurm.conf"
    wait_for slurmctld 120 ns scontrol ping
    spawn slurmd slurmd -D -f "$DIR/etc/slurm.conf"
    wait_for "slurmd idle" 120 sh -c "SLURM_CONF='$DIR/etc/slurm.conf' nsenter -t \
        $(cat "$DIR/pids/netns.pid") -n -- sinfo -h -o %T | grep -qx idle"
}

start_sshd() {
    mkdir -p /run/sshd
    spawn sshd /usr/sbin/sshd -D -f "$DIR/etc/sshd_config" -E "$DIR/log/sshd.log"
    wait_for sshd 40 ns sh -c "ss -Hltn 'sport = :$INNER_SSH_PORT' | grep -q ."
    # Clusters starting at once may pick the same free port: only a port OUR socat listens on counts
    # (else the tests would talk to another cluster's sshd); if its bind failed, try the next port.
    local tries pid i
    SSH_PORT="$(pick_port "${DC2_LOOPBACK_SSH_PORT:-2222}")"
    for ((tries = 0; tries < 20; tries++)); do
        setsid socat "TCP-LISTEN:$SSH_PORT,bind=127.0.0.1,reuseaddr,fork" "EXEC:$DIR/ssh/ns-connect.sh" \
            </dev/null >>"$DIR/log/forwarder.out" 2>&1 &
        pid=$!
        echo "$pid" >"$DIR/pids/forwarder.pid"
        for ((i = 0; i < 50; i++)); do
            alive "$pid" && ! ss -Hltnp "sport = :$SSH_PORT" | grep -q "pid=$pid," || break
            sleep 0.2
        done
        if alive "$pid" && ss -Hltnp "sport = :$SSH_PORT" | grep -q "pid=$pid,"; then
            echo "$SSH_PORT" >"$DIR/ssh_port"
            write_known_hosts
            return 0
        fi
        kill "$pid" 2>/dev/null || true
        SSH_PORT="$(pick_port $((SSH_PORT + 1)))"
    done
    die "no free port for the ssh forwarder (log in $DIR/log/forwarder.out)"
}

on_start_exit() {
    [ "$1" -eq 0 ] && return 0
    log "start failed; stopping what was started (logs kept in $DIR/log)"
    tail -n 5 "$DIR"/log/*.log "$DIR"/log/*.out >&2 2>/dev/null || true
    DC2_LOOPBACK_KEEP=1 cmd_stop "$DIR" || true
}

cmd_start() {
    [ "$(id -u)" -eq 0 ] || die "must run as root"
    bash "$HERE/system-deps.sh"
    local t0=$SECONDS
    DIR="$(mktemp -d /tmp/dc2-loopback.XXXXXX)"
    chmod 755 "$DIR"
    echo "$DIR" >"$LAST_FILE"
    mkdir -p "$DIR"/{etc,state,spool,log,pids,munge,ssh,client,home}
    # If anything below fails, stop what was started so far.
    trap 'on_start_exit $?' EXIT
    make_user
    start_netns
    write_configs "$(hostname -s)"
    make_keys
    start_munge
    echo "$ACCOUNTING" >"$DIR/accounting"
    [ "$ACCOUNTING" = 1 ] && start_mariadb
    start_slurm
    start_sshd
    trap - EXIT
    log "up in $((SECONDS - t0)) s: $DIR (ssh 127.0.0.1:$SSH_PORT as $TEST_USER)"
    echo "$DIR"
}

cmd_env() {
    DIR="$(resolve_dir "${1:-}")"
    cat <<EOF
DC2_LOOPBACK_DIR=$DIR
DC2_SLURM_SSH_HOST=127.0.0.1
DC2_SLURM_SSH_PORT=$(cat "$DIR/ssh_port")
DC2_SLURM_SSH_USER=$TEST_USER
DC2_SLURM_OTHER_USER=$OTHER_USER
DC2_SLURM_SSH_KEY=$DIR/client/id_ed25519
DC2_SLURM_SSH_KNOWN_HOSTS=$DIR/client/known_hosts
DC2_SLURM_SSH_CA_KNOWN_HOSTS=$DIR/client/ca_known_hosts
DC2_SLURM_SSH_HOST_CA=$(cut -d' ' -f1,2 "$DIR/ssh/host_ca.pub")
DC2_SLURM_SSH_HOST_CA_KEY=$DIR/ssh/host_ca
DC2_SLURM_WORKDIR=$DIR/home/$TEST_USER
DC2_SLURM_CONF=$DIR/etc/slurm.conf
DC2_SLURM_NETNS_PID=$(cat "$DIR/pids/netns.pid" 2>/dev/null || true)
DC2_SLURM_ACCOUNTING=$(cat "$DIR/accounting")
DC2_SLURM_MEMORY_ENFORCEMENT=$([ -f "$DIR/etc/cgroup.conf" ] && echo cgroup || echo jobacct)
EOF
}

# True while PID runs (a zombie waiting for init to reap it counts as gone).
alive() {
    local st
    st="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
    [ -n "$st" ] && [ "$st" != Z ] && [ "$st" != X ]
}

# Kill the process group led by the pid in FILE (we started it with setsid), then wait for it.
stop_pidfile() {
    local file="$1" pid i
    [ -s "$file" ] || return 0
    pid="$(cat "$file")"
    if alive "$pid"; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < 100; i++)); do
            alive "$pid" || break
            sleep 0.1
        done
        if alive "$pid" && ss -Hltnp "sport = :$SSH_PORT" | grep -q "pid=$pid,"; then
            log "pid $pid ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    rm -f "$file"
}

# Every process whose network namespace is ours (job steps, ssh sessions), by pid.
ns_pids() {
    local holder="$1" target p
    target="$(readlink "/proc/$holder/ns/net" 2>/dev/null)" || return 0
    for p in /proc/[0-9]*; do
        p="${p#/proc/}"
        [ "$p" = "$holder" ] && continue
        [ "$(readlink "/proc/$p/ns/net" 2>/dev/null)" = "$target" ] && echo "$p"
    done
    return 0
}

cmd_stop() {
    DIR="$(resolve_dir "${1:-}")"
    local holder="" name p
    [ -s "$DIR/pids/netns.pid" ] && holder="$(cat "$DIR/pids/netns.pid")"
    if [ -n "$holder" ] && [ -s "$DIR/pids/slurmctld.pid" ]; then
        ns scancel --user="$TEST_USER" >/dev/null 2>&1 || true
        ns scancel --user="$OTHER_USER" >/dev/null 2>&1 || true
    fi
    for name in forwarder sshd slurmd slurmctld slurmdbd mariadb munged; do
        local t=$SECONDS
        stop_pidfile "$DIR/pids/$name.pid"
        [ $((SECONDS - t)) -gt 3 ] && log "$name took $((SECONDS - t)) s to stop"
    done
    if [ -n "$holder" ]; then
        for p in $(ns_pids "$holder"); do kill -KILL "$p" 2>/dev/null || true; done
        stop_pidfile "$DIR/pids/netns.pid"
    fi
    # slurmd's task/cgroup leaves an empty `slurm` hierarchy in each v1 controller; remove it.
    if [ -f "$DIR/etc/cgroup.conf" ]; then
        for p in /sys/fs/cgroup/*/slurm; do
            [ -d "$p" ] && find "$p" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        done
    fi
    if [ "${DC2_LOOPBACK_KEEP:-0}" = 1 ]; then
        log "stopped; kept $DIR"
    else
        rm -rf "$DIR"
        [ -f "$LAST_FILE" ] && [ "$(cat "$LAST_FILE")" = "$DIR" ] && rm -f "$LAST_FILE"
        log "stopped; removed $DIR"
    fi
}

case "${1:-}" in
    start) cmd_start ;;
    env) cmd_env "${2:-}" ;;
    stop) cmd_stop "${2:-}" ;;
    *) echo "usage: $0 start | env [DIR] | stop [DIR]" >&2; exit 2 ;;
esac
