#!/usr/bin/env bash
# benchmarks/gpu_check.sh -- is this machine's CUDA GPU ready for rnnlm-workflow? One command, < 5 min.
#
#   1. pip installs the project with the `gpu` extra (CuPy for CUDA 12) and the test tools, unless
#      CuPy, pytest and Snakemake already import
#   2. runs tests/test_gpu.py: CPU/GPU parity of every cell (rnn tanh/relu, gru, lstm) and output
#      layer (full, class) in float64 and float32; RNNLM_REQUIRE_GPU=1 makes a missing device fail
#   3. `rnnlm bench --launches` (kernel launches, tokens per launch and host syncs per training batch
#      of config.yaml's models, counted on the CPU, with docs/engine.md's estimate) and
#      `rnnlm bench --device gpu` (training tokens/s of the engine on the GPU, and of config.yaml's
#      models with their own settings and at the device batch sizes 256 and 512)
#   4. the default pipeline (config.yaml, built-in corpus, every stage) with `device: gpu`, its
#      models capped at GPU_CHECK_EPOCHS epochs (default 2) to fit the time budget
#   5. prints a one-screen summary; every step's full output is kept under the output directory
#
# usage: benchmarks/gpu_check.sh [OUTPUT_DIR]      (default: gpu-check-<UTC time>, beside the repo)
# environment: GPU_CHECK_EPOCHS (2), GPU_CHECK_SKIP_INSTALL=1 (use the installed environment),
#              PYTHON (python3)
# Exit status: 0 when every step passed, 1 otherwise.
set -uo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
OUT=$(realpath -m "${1:-$REPO/../gpu-check-$(date -u +%Y%m%dT%H%M%SZ)}")
PYTHON=${PYTHON:-python3}
EPOCHS=${GPU_CHECK_EPOCHS:-2}
mkdir -p "$OUT"
cd "$REPO" || exit 1

started=$(date +%s)
declare -a SUMMARY=()
failed=0

# step NAME COMMAND...: run COMMAND with its output in $OUT/NAME.log; record status and seconds.
step() {
  local name=$1; shift
  local begin rc
  begin=$(date +%s)
  printf '[gpu_check %4ds] %s ...\n' $((begin - started)) "$name"
  "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  SUMMARY+=("$(printf '%-10s %-4s %4ds  %s' "$name" "$([ $rc -eq 0 ] && echo ok || echo FAIL)" $(($(date +%s) - begin)) "$OUT/$name.log")")
  if [ $rc -ne 0 ]; then
    failed=1
    tail -n 15 "$OUT/$name.log" | sed 's/^/    /'
  fi
  return $rc
}

device_info() {
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version,compute_cap --format=csv,noheader
  fi
  "$PYTHON" - <<'EOF'
import sys
from rnnlm.backend import get_backend
from rnnlm.io import RnnlmError
try:
    cupy = get_backend("gpu").xp
except RnnlmError as exc:  # the reason: CuPy missing or broken, no device, driver too old
    sys.exit(str(exc))
properties = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
print(f"CuPy {cupy.__version__}, CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, "
      f"device {properties['name'].decode()}, {properties['totalGlobalMem'] / 2**30:.0f} GiB")
EOF
}

pipeline() {
  local work=$OUT/pipeline
  mkdir -p "$work"
  cp config.yaml "$work/config.yaml"
  # A --configfile merges key by key: only device and each default model's epochs change.
  "$PYTHON" - "$work/gpu.yaml" "$EPOCHS" <<'EOF'
import sys, yaml
config = yaml.safe_load(open("config.yaml", encoding="utf-8"))
override = {"device": "gpu", "models": {name: {"epochs": int(sys.argv[2])} for name in config["models"]}}
open(sys.argv[1], "w", encoding="utf-8").write(yaml.safe_dump(override))
EOF
  timeout -s KILL 240 "$PYTHON" -m snakemake --snakefile "$REPO/Snakefile" --directory "$work" \
    --configfile "$work/gpu.yaml" --cores all
}

install() {
  # A machine that already has CuPy and pytest (e.g. one without network) needs no pip run.
  if "$PYTHON" -c "import cupy, pytest, snakemake" 2>/dev/null; then
    echo "CuPy, pytest and Snakemake are already installed; pip not run"
    return 0
  fi
  "$PYTHON" -m pip install --quiet --progress-bar off -e ".[gpu,test]"
}

if [ "${GPU_CHECK_SKIP_INSTALL:-0}" != 1 ]; then
  step install install
fi
if step device device_info; then
  step tests env RNNLM_REQUIRE_GPU=1 CUPY_TF32=0 "$PYTHON" -m pytest -q -rs -p no:cacheprovider tests/test_gpu.py
  step launches "$PYTHON" -m rnnlm.cli bench --launches
  sed -n '/^{/,/^}/p' "$OUT/launches.log" >"$OUT/launches.json"
  step bench "$PYTHON" -m rnnlm.cli bench --device gpu --skip-torch --repeats 2 --batch-sizes 32 128 512 \
    --model-batch-sizes 256 512
  # The JSON goes to its own file; the log keeps both streams.
  sed -n '/^{/,/^}/p' "$OUT/bench.log" >"$OUT/bench.json"
  step pipeline pipeline
fi

total=$(($(date +%s) - started))
"$PYTHON" - "$OUT" "$total" "$failed" "${SUMMARY[@]}" <<'EOF'
import csv, json, re, sys
from pathlib import Path

out, total, failed, steps = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4:]
print("=" * 100)
print(f"rnnlm-workflow GPU check: {'FAILED' if failed else 'READY'} in {total} s "
      f"({'within' if total < 300 else 'OVER'} the 5-minute budget)")
device = out / "device.log"
if device.exists():
    for line in device.read_text().splitlines()[-2:]:
        print(f"  {line}")
print("steps:")
for line in steps:
    print(f"  {line}")
tests = out / "tests.log"
if tests.exists():
    counts = re.findall(r"\d+ (?:passed|failed|skipped|errors?)", tests.read_text())
    print(f"parity tests: {', '.join(counts) if counts else 'no result line'}")
bench = out / "bench.json"
if bench.exists() and bench.stat().st_size:
    report = json.loads(bench.read_text())
    results, settings = report["results"], report["settings"]
    print(f"bench (float32, C={settings['vocab_size']}, H={settings['hidden_size']}, training tokens/s):")
    print("  " + "  ".join(f"{name.removeprefix('ours_')}={value['tokens_per_s']:,}" for name, value in results.items()
                           if name.startswith("ours_")))
    models = {name: value for name, value in results.items() if name.startswith("model_") and "reference" not in name}
    if models:  # config.yaml's models with their own batch size, clipping and dropout
        print("  config.yaml models: " + "  ".join(f"{name.removeprefix('model_')}={value['tokens_per_s']:,}"
                                                   for name, value in models.items()))
launches = out / "launches.json"
if launches.exists() and launches.stat().st_size:
    report = json.loads(launches.read_text())
    measured = {}
    if bench.exists() and bench.stat().st_size:
        for name, value in json.loads(bench.read_text())["results"].items():
            match = re.fullmatch(r"model_(.+?)(?:_b(\d+))?", name)
            if match and "reference" not in name:
                size = int(match.group(2)) if match.group(2) else value["settings"].get("batch_size")
                measured[(match.group(1), size)] = value["tokens_per_s"]
    print(f"per training batch (launches counted on the CPU, C={report['settings']['vocab_size']}; estimate: "
          f"{report['device_model']['name']}; measured: this GPU, bench's C and sentence length):")
    for name, rows in report["models"].items():
        for row in rows:
            got = measured.get((name, row["batch_size"]))
            print(f"  {name:>6} B={row['batch_size']:<4} {row['launches_per_batch']:5.0f} launches "
                  f"{row['tokens_per_launch']:5.1f} tokens/launch {row['syncs_per_batch']:.0f} sync  "
                  f"estimated {row['estimated_tokens_per_s']:>10,} tokens/s  "
                  f"measured {'-' if got is None else f'{got:,}'}")
models = out / "pipeline" / "results" / "models"
if models.exists():
    print("default pipeline, device: gpu (epochs capped):")
    for model in sorted(path for path in models.iterdir() if path.is_dir()):
        rows = list(csv.DictReader(open(model / "train_log.csv"))) if (model / "train_log.csv").exists() else []
        rates = [float(row["tokens_per_s"]) for row in rows[1:] if row["tokens_per_s"]]
        metrics = json.loads((model / "metrics.json").read_text()) if (model / "metrics.json").exists() else {}
        test = metrics.get("test", {}).get("perplexity")
        print(f"  {model.name:>8}: {len(rows) - 1} epochs, {max(rates, default=0):,.0f} training tokens/s, "
              f"test perplexity {test if test is None else round(test, 1)}")
print(f"all logs: {out}")
print("=" * 100)
EOF
exit $failed
