#!/usr/bin/env bash
# One short GPU lease's checks and timings (issue 17, 18), run from the repo root
# (GPU_STEPS="gpu_suite pool_speed ..." picks the steps; see the s_* functions below):
#   carry .whl (wheels of what the GPU image lacks) and .gpudata (Fashion-MNIST's four .gz files),
#   both made beforehand, here, by `bash benchmarks/gpu_prepare.sh`.
# Each step has its own time limit; logs and each run's summary/config/metrics go to $LOGS,
# packed after every step into $OUT/session.tgz (a lease returns only a few files, so one
# archive: a step cut off by the lease loses nothing done before it). Last lines: a summary.
set -u
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_out}; mkdir -p "$OUT"
LOGS=/tmp/gpu_logs; rm -rf "$LOGS"; mkdir -p "$LOGS"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD CNN_JAX_DATA=$PWD/.gpudata TFDS_DATA_DIR=/tmp/tfds
export JAX_PLATFORMS=cuda
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$LOGS/gpu.txt"
python3 -c "import jax, flax, optax; print('jax', jax.__version__, 'flax', flax.__version__, 'optax', optax.__version__, jax.devices())" | tee -a "$LOGS/gpu.txt"
git log --oneline -1 2>/dev/null | tee -a "$LOGS/gpu.txt"
DEADLINE=$((SECONDS + ${GPU_SESSION_SECONDS:-560}))  # every step ends before the lease's call does
W=/tmp/w
collect() {  # each run's summary, config and metrics (checkpoints stay behind), then pack
  for d in $W/*/; do
    [ -f "$d/config.json" ] || continue
    n=$(basename "$d"); mkdir -p "$LOGS/runs/$n"
    cp "$d"/summary.json "$d"/config.json "$d"/metrics.jsonl "$LOGS/runs/$n/" 2>/dev/null
  done
  # A suite's records and its runs' summaries (runs/EXP/seed_S/{result.json,train/*.json*}).
  if [ -d $W/fvl_fm/runs ]; then
    mkdir -p "$LOGS/fvl_fm"
    (cd $W/fvl_fm && find runs \( -name result.json -o -name summary.json -o -name config.json \
      -o -name metrics.jsonl \) -print | tar cf - -T - | tar xf - -C "$LOGS/fvl_fm")
  fi
  tar czf "$OUT/session.tgz.tmp" -C "$LOGS" . && mv "$OUT/session.tgz.tmp" "$OUT/session.tgz"
}
step() {  # step NAME SECONDS COMMAND...: timed, logged to $LOGS/NAME.log; skipped near the deadline
  local name=$1 limit=$2; shift 2
  local left=$((DEADLINE - SECONDS))
  if [ "$left" -lt 30 ]; then echo "$name skipped: ${left}s left" | tee -a "$LOGS/steps.txt"; return; fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t0=$EPOCHREALTIME
  timeout "$limit" "$@" > "$LOGS/$name.log" 2>&1
  local rc=$?
  printf '%-28s rc=%-4s %6.1f s wall\n' "$name" "$rc" "$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN{print b-a}')" | tee -a "$LOGS/steps.txt"
  collect
}
mkdir -p $W
M="python3 -m experiments.main"
SR="--config=configs/speedrun_fashion_mnist.py"
# The steps, by name; GPU_STEPS picks which run and in what order (the default: what the
# last lease left open, most important first). Data are prepared first, untimed.
s_prepare() { step prepare 120 python3 -c "from cnn_jax import data; [data.load_split('fashion_mnist', s) for s in ('train', 'test')]"; }
# The suite on the GPU (issue 17 item 5), with each test's outcome as it ends (-v), so a
# run cut off by the lease still names its failures.
s_gpu_suite() {
  step gpu_suite 330 env XLA_PYTHON_CLIENT_PREALLOCATE=false python3 -m pytest -p no:cacheprovider \
    -n 12 -m 'not slow' -v -rf -o addopts=""
  grep -E "FAILED|ERROR" "$LOGS/gpu_suite.log" | sort | uniq | head -80 > "$LOGS/gpu_suite_failures.txt"; collect
}
# The speed run without the deterministic flag: a first run fills the compilation cache, a
# second one is the warm wall time against the 10 s target.
s_speedrun_nondet_warm() {
  step speedrun_nd_cold 90 $M $SR --workdir=$W/speedrun_nd_cold --config.deterministic=False
  step speedrun_nd_warm 60 $M $SR --workdir=$W/speedrun_nd_warm --config.deterministic=False
}
# Max pooling: reduce-window against the tiled formulation (Pool takes it on the CPU only).
s_pool_speed() { step pool_speed 90 python3 benchmarks/pool_speed.py --out "$LOGS/pool_speed_gpu.txt"; }
# The speed-run row of the Fashion-MNIST features_vs_learned table, 3 seeds, as the suite
# runs it (records name the device). Not a default step: the committed table is computed on
# the CPU, bit for bit reproducible there, and its speedrun row with it.
s_fvl_speedrun() {
  step fvl_speedrun 150 python3 -m experiments.benchmark --dataset=fashion_mnist --seeds=3 \
    --only=speedrun --workdir=$W/fvl_fm
}
s_speedrun_seeds() { for s in 0 1 2; do step speedrun_s$s 120 $M $SR --workdir=$W/speedrun_s$s --config.seed=$s; done; }
s_det_resume() { step det_resume 200 python3 -m pytest -p no:cacheprovider -q -x tests/test_checkpoint.py -k sigkill; }
s_resnet18_aug() {
  step resnet18_aug 300 $M --config=configs/resnet18_fashion_mnist.py --workdir=$W/resnet18_aug \
    --config.dtype=bfloat16 --config.tensorboard=False --config.checkpoint_every_steps=0 \
    "--config.data.augment=('random_crop(pad=4)', 'flip_lr')"
}
# The step and loop rates, and the loop once more under cProfile (where the host spends a
# step: the loop ran at half its step's rate with K=1 on the last lease). ResNet-50's and
# batch 1024's figures are committed (train_speed_gpu.txt); the acceptance is at batch 128.
s_train_speed() {
  step train_speed 200 python3 benchmarks/train_speed.py --quick --loop-steps-per-call=1,8 \
    --workloads=simple_cnn_b128,lenet5_b128 \
    --loop-interval=200 --loop-intervals=2 --out "$LOGS/train_speed_gpu.txt" \
    --profile-loop "$LOGS/loop_profile_gpu.txt"
}
# The loop's own host time per step around a null step, metric reads stacked on the device
# against one read per scalar (the loop before bcdbdc7): the suspect for the K=1 gap.
s_loop_overhead() {
  step loop_overhead 90 python3 benchmarks/loop_overhead.py --steps=1000 --repeats=3 \
    --out "$LOGS/loop_overhead_gpu.txt"
}
# Start-up of the speed run, command to the end of its first step, by phase (imports, CUDA,
# data, init, compile; warm = from the compilation cache): the warm speed run spent ~7 of
# its 12.6 s before its first log line.
s_startup() {
  step startup 120 python3 benchmarks/startup.py --config=configs/speedrun_fashion_mnist.py \
    --runs=2 --modes=cold,warm -- --config.deterministic=False
}
s_speedrun_variants() {
  step speedrun_s0_nondet 90 $M $SR --workdir=$W/speedrun_s0_nondet --config.deterministic=False
  step speedrun_s0_k13 120 $M $SR --workdir=$W/speedrun_s0_k13 --config.steps_per_call=13
  step speedrun_s0_e16 90 $M $SR --workdir=$W/speedrun_s0_e16 --config.num_epochs=16
}
for name in prepare ${GPU_STEPS:-gpu_suite train_speed loop_overhead startup speedrun_nondet_warm pool_speed}; do
  "s_$name"
done
echo "== steps"; cat "$LOGS/steps.txt"
echo "== summaries"
for f in "$LOGS"/runs/*/summary.json; do
  python3 -c "import json,sys; s=json.load(open(sys.argv[1])); print(sys.argv[1].split('/')[-2], 'acc', s['test_accuracy'], 'train_time_s', round(s['train_time_s'],2), 'img/s', round(s['images_per_s']), 'det', s.get('xla_deterministic_ops'))" "$f"
done
tail -5 "$LOGS/det_resume.log" 2>/dev/null
cat "$LOGS/gpu_suite_failures.txt" 2>/dev/null | head -40
cat "$LOGS/pool_speed_gpu.txt" 2>/dev/null
tail -30 "$LOGS/train_speed_gpu.txt" 2>/dev/null
grep -A12 "^# " "$LOGS/loop_profile_gpu.txt" 2>/dev/null | head -40
tail -15 "$LOGS/startup.log" 2>/dev/null
