#!/bin/sh
# SPDX-License-Identifier: GPL-2.0-or-later
#
# Run a command inside cgroup v1 groups (used by bench/run.sh for the
# "stock" scenario: QEMU in a memory cgroup with host swap).
#
#   bench/cgroup-exec.sh CGROUP-DIR[,CGROUP-DIR...] COMMAND [ARGS...]
#
# Moves itself into every listed cgroup directory (each must contain
# cgroup.procs), then execs COMMAND, so COMMAND's pid is this script's.
set -e
dirs=$1
shift
IFS=,
for d in $dirs; do
    echo $$ > "$d/cgroup.procs"
done
unset IFS
exec "$@"
