#!/usr/bin/env bash
# One unattended check on a machine with a GPU, under 8 minutes, one JSON line per result:
#   MoCo train-step throughput at batch 256 (full 12 x 5000, default encoder) in float32 and
#   mixed_float16; a 2-epoch paper-size run (37,000 synthetic ECGs an epoch, batch 256, two
#   augmented views) with its time and the 30 / 100-epoch estimate; then the step with XLA
#   (float32) and XLA + mixed_float16.
# Usage:  bash benchmarks/gpu_check.sh            (from anywhere; PYTHON=... to pick Python)
#         GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh   tiny sizes, on whatever device is
#                                                 there (the CPU test of every code path)
# Without a GPU (and without GPU_CHECK_TINY=1) it prints one "skipped" line and exits 0; with a
# GPU that TensorFlow cannot see (nvidia-smi lists one; TensorFlow missing or without its CUDA
# libraries) one "failed" line with the probe's log and exit 1. The Python it uses needs
# TensorFlow with GPU support (pip install 'tensorflow[and-cuda]'), keras, wfdb and this
# project (pip install -e .).
# Every part runs in its own process with its own time limit; the whole stays under
# GPU_CHECK_BUDGET_S (default 460 s). A part that fails or runs out of time prints a line
# with "status": "failed" / "timeout" and the last lines of its log; the others still run.
# TensorFlow's own output goes to log files in GPU_CHECK_LOGS (default: a temporary folder,
# named in the last line). GPU_CHECK_LIMIT_S: one time limit for every part (tests).
set -u
cd "$(dirname "$0")/.." || exit 1
ROOT=$(pwd)
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export TF_CPP_MIN_LOG_LEVEL=${TF_CPP_MIN_LOG_LEVEL:-2}
LOGS=${GPU_CHECK_LOGS:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$LOGS"
BUDGET=${GPU_CHECK_BUDGET_S:-460}
START=$(date +%s)
TINY=${GPU_CHECK_TINY:-0}

json_escape() {  # stdin -> one JSON string (no Python: it may be what is broken)
  tr -d '\000-\010\013\014\015\016-\037' | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/\t/\\t/g' \
    | awk 'BEGIN { printf "\"" } { if (NR > 1) printf "\\n"; printf "%s", $0 } END { printf "\"" }'
}

if [ "$TINY" != 1 ]; then
  GPUS=$(timeout 120 "$PY" -c "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))" 2>"$LOGS/probe.log" | tail -1)
  if ! [ "${GPUS:-0}" -gt 0 ] 2>/dev/null && nvidia-smi -L >/dev/null 2>&1; then
    # the machine has a GPU but this Python's TensorFlow cannot use it (not installed, no CUDA
    # libraries: pip install 'tensorflow[and-cuda]'): a failure, not a skip
    echo "{\"check\": \"gpu\", \"status\": \"failed\", \"reason\": \"nvidia-smi lists a GPU but TensorFlow in $PY sees none (install tensorflow[and-cuda], keras and this project there, or set PYTHON=...)\", \"nvidia_smi\": $(nvidia-smi -L 2>/dev/null | head -1 | json_escape), \"probe_log_tail\": $(tail -n 8 "$LOGS/probe.log" | json_escape)}"
    exit 1
  fi
  if ! [ "${GPUS:-0}" -gt 0 ] 2>/dev/null; then
    echo "{\"check\": \"gpu\", \"status\": \"skipped\", \"reason\": \"no GPU visible to TensorFlow ($PY); nothing measured\", \"logs\": \"$LOGS\"}"
    echo "gpu_check: no GPU found: nothing to measure (GPU_CHECK_TINY=1 runs the tiny CPU check)" >&2
    exit 0
  fi
  echo "{\"check\": \"gpu\", \"status\": \"ok\", \"gpus\": $GPUS, \"nvidia_smi\": $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1 | json_escape)}"
  STEP="--size=full --batch=256 --steps=20 --warmup=3"
  RUN="--size=full --batch=256 --ecgs=37000 --epochs=2 --pool=2048"
  LIMITS=(75 75 200 110 110)
else
  echo "{\"check\": \"gpu\", \"status\": \"tiny\", \"reason\": \"GPU_CHECK_TINY=1: tiny sizes on whatever device is present\"}"
  STEP="--size=tiny --batch=8 --steps=2 --warmup=1"
  RUN="--size=tiny --batch=8 --ecgs=48 --epochs=2 --pool=24"
  LIMITS=(120 120 150 150 150)   # (the CPU is slower; the budget is larger)
  BUDGET=${GPU_CHECK_BUDGET_S:-900}
fi

part() {  # name, limit, bench_distribute.py arguments...
  local name=$1 limit=$2; shift 2
  local left=$(( BUDGET - ($(date +%s) - START) ))
  if [ "$left" -lt 20 ]; then
    echo "{\"part\": \"$name\", \"status\": \"not run\", \"reason\": \"time budget of ${BUDGET} s used up\"}"
    return
  fi
  limit=${GPU_CHECK_LIMIT_S:-$limit}
  [ "$limit" -gt "$left" ] && limit=$left
  local log="$LOGS/$name.log" t0 rc line
  t0=$(date +%s)
  timeout --kill-after=10 "$limit" "$PY" "$ROOT/benchmarks/bench_distribute.py" "$@" \
    >"$LOGS/$name.json" 2>"$log"
  rc=$?
  line=$(tail -n 1 "$LOGS/$name.json")
  if [ "$rc" -eq 0 ] && [ "${line:0:1}" = "{" ]; then
    echo "{\"part\": \"$name\", \"status\": \"ok\", \"wall_s\": $(( $(date +%s) - t0 )), ${line:1}"
  else
    local status=failed partial=null
    { [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; } && status=timeout
    [ "${line:0:1}" = "{" ] && partial=$line       # e.g. the run's last finished epoch
    echo "{\"part\": \"$name\", \"status\": \"$status\", \"rc\": $rc, \"limit_s\": $limit, \"log\": \"$log\", \"partial\": $partial, \"log_tail\": $(tail -n 6 "$log" | json_escape)}"
  fi
}

# most wanted first: if time runs short, the XLA parts are the ones left out
part step_float32 "${LIMITS[0]}" step $STEP --precision=float32
part step_mixed_float16 "${LIMITS[1]}" step $STEP --precision=mixed_float16
part paper_size_run_2_epochs "${LIMITS[2]}" run $RUN --precision=float32
part step_xla "${LIMITS[3]}" step $STEP --precision=float32 --xla
part step_xla_mixed_float16 "${LIMITS[4]}" step $STEP --precision=mixed_float16 --xla
echo "{\"check\": \"done\", \"status\": \"done\", \"total_s\": $(( $(date +%s) - START )), \"logs\": \"$LOGS\"}"
exit 0
