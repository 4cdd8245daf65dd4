#!/usr/bin/env bash
# Runs benchmarks/learn.py for SOM and SAC on several tasks and seeds at once, one process per run
# (one CPU thread each), each stopped after SECONDS of wall time; every run keeps the checkpoints it
# reached (OUT_DIR/<algo>_<env>_<seed>.jsonl). Then writes the table and the curves.
#
#   bash benchmarks/learn_grid.sh OUT_DIR SECONDS TIMESTEPS "ENV ..." "SEED ..." [SOM_DEVICE] [SAC_DEVICE]
#
# EVAL_EVERY (default 2500) and EVAL_EPISODES (default 5) set the checkpoints.
# CHECKPOINT_EVERY=N makes the runs resumable: each saves its state every N steps under
# runs/checkpoints/<basename OUT_DIR>/<algo>_<env>_<seed>, and the same command run again continues every run
# from its latest checkpoint, appending to the same curves.
set -u
out=$1 seconds=$2 timesteps=$3 envs=$4 seeds=$5 som_device=${6:-cpu} sac_device=${7:-cpu}
here=$(dirname "$0")
mkdir -p "$out"
resume=()
for env in $envs; do
  for seed in $seeds; do
    for algo in som sac; do
      device=$som_device
      [ "$algo" = sac ] && device=$sac_device
      [ -n "${CHECKPOINT_EVERY:-}" ] && resume=(--checkpoint-every "$CHECKPOINT_EVERY"
        --checkpoint-dir "runs/checkpoints/$(basename "$out")/${algo}_${env}_${seed}")
      OMP_NUM_THREADS=1 timeout "$seconds" python3 "$here/learn.py" run --algo "$algo" --env "$env" --seed "$seed" \
        --timesteps "$timesteps" --eval-every "${EVAL_EVERY:-2500}" --eval-episodes "${EVAL_EPISODES:-5}" \
        --device "$device" --out "$out/${algo}_${env}_${seed}.jsonl" "${resume[@]}" >> "$out/${algo}_${env}_${seed}.log" 2>&1 &
    done
  done
done
wait
python3 "$here/learn.py" report "$out"/*.jsonl --table "$out/table.md" --png "$out/curves.png"
