#!/usr/bin/env bash
# Start munge, MariaDB + slurmdbd, slurmctld, slurmd, then sshd in the foreground.
# First start only: make the munge key, the accounting database, the SSH host keys, and one client
# key per account in /ssh-shared (read by the Airflow containers: id_dc2prod, id_desc, known_hosts).
set -euo pipefail

log() { echo "login-node: $*" >&2; }
wait_for() {
    local what="$1"; shift
    for _ in $(seq 1 120); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.5
    done
    log "timed out waiting for $what"; exit 1
}

mkdir -p /var/log/slurm /var/spool/slurmctld /var/spool/slurmd /run/munge /run/mysqld /run/sshd
chown slurm:slurm /var/log/slurm /var/spool/slurmctld
chown munge:munge /run/munge
chown mysql:mysql /run/mysqld

if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
fi
runuser -u munge -- munged
wait_for munge munge -n

if [ ! -d /var/lib/mysql/mysql ]; then
    mariadb-install-db --user=mysql --datadir=/var/lib/mysql >/dev/null
fi
runuser -u mysql -- mariadbd --datadir=/var/lib/mysql --bind-address=127.0.0.1 &
wait_for mariadb mariadb -e "select 1"
# slurmdbd's database password: new at every start, in a 0600 file of SlurmUser's, given to MariaDB
# on standard input (a command line is readable by every process in the container)
dc2-slurmdbd-conf /etc/slurm/slurmdbd.conf.template /etc/slurm/slurmdbd.conf slurm
storage_pass="$(sed -n 's/^StoragePass=//p' /etc/slurm/slurmdbd.conf)"
mariadb <<SQL
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost';
ALTER USER 'slurm'@'localhost' IDENTIFIED BY '$storage_pass';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL
unset storage_pass

slurmdbd
wait_for slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster dc2local >/dev/null 2>&1 || true
sacctmgr -i add account desc Cluster=dc2local >/dev/null 2>&1 || true
sacctmgr -i add user dc2prod Account=desc >/dev/null 2>&1 || true
slurmctld
slurmd
wait_for "an idle node" bash -c 'sinfo -h -o %T | grep -qx idle'

# Shared directories: the producer's scratch, and the central area owned by the collaboration account.
mkdir -p /scratch /central
chown dc2prod:lsst /scratch
chown desc:lsst /central
chmod 2775 /scratch
chmod 2755 /central  # only desc writes here: dc2 install refuses a directory others could change

ssh-keygen -A >/dev/null
mkdir -p /ssh-shared /etc/ssh/authorized_keys
for user in dc2prod desc; do
    key="/ssh-shared/id_$user"
    [ -s "$key" ] || ssh-keygen -q -t ed25519 -N "" -C "airflow-$user" -f "$key"
    cp "$key.pub" "/etc/ssh/authorized_keys/$user"
    chmod 644 "/etc/ssh/authorized_keys/$user"
done
echo "login-node $(cat /etc/ssh/ssh_host_ed25519_key.pub | cut -d' ' -f1,2)" > /ssh-shared/known_hosts
# the Airflow image runs as uid AIRFLOW_UID (default 50000): let it read the client keys, no one else
chown "${AIRFLOW_UID:-50000}" /ssh-shared/id_dc2prod /ssh-shared/id_desc
chmod 600 /ssh-shared/id_dc2prod /ssh-shared/id_desc

log "ready: slurm $(sinfo -V), sshd on port 22"
exec /usr/sbin/sshd -D -e
