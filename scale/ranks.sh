#!/usr/bin/env bash
# Runs a command as N ranks of one distributed training on this machine, the way
# torchrun's workers run, with the rendezvous on the loopback only:
#   scale/ranks.sh N PORT command [args...]
# Each rank gets WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR=127.0.0.1 and MASTER_PORT.
# When a rank fails, the others are stopped; the exit status is the first failure's.
set -u
if [ $# -lt 3 ] || ! [[ $1 =~ ^[1-9][0-9]*$ ]] || ! [[ $2 =~ ^[0-9]+$ ]]; then
    echo "usage: scale/ranks.sh RANKS PORT command [args...]" >&2
    exit 2
fi
ranks=$1 port=$2
shift 2
pids=()
for ((rank = 0; rank < ranks; rank++)); do
    WORLD_SIZE=$ranks RANK=$rank LOCAL_RANK=$rank MASTER_ADDR=127.0.0.1 MASTER_PORT=$port "$@" &
    pids+=($!)
done
trap 'kill "${pids[@]}" 2>/dev/null' INT TERM
status=0
for ((left = ranks; left > 0; left--)); do
    wait -n
    code=$?
    if [ "$code" -ne 0 ] && [ "$status" -eq 0 ]; then
        status=$code
        kill "${pids[@]}" 2>/dev/null
    fi
done
exit "$status"
