#!/usr/bin/env bash
# Start the Debian PostgreSQL cluster and make sure the role and database the tests use exist.
set -euo pipefail

version=$(ls /usr/lib/postgresql | sort -V | tail -n 1)
if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -q "^$version main$"; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || true
for _ in $(seq 1 50); do
    su postgres -c "psql -qAtc 'select 1'" >/dev/null 2>&1 && break
    sleep 0.2
done
su postgres -c "psql -qAtc \"select 1 from pg_roles where rolname='ivfarm'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"create role ivfarm login password 'ivfarm'\""
su postgres -c "psql -qAtc \"select 1 from pg_database where datname='ivfarm_test'\"" | grep -q 1 ||
    su postgres -c "createdb -O ivfarm ivfarm_test"
echo "PostgreSQL $version is running (database ivfarm_test)"
