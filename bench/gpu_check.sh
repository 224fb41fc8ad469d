#!/usr/bin/env bash
# The GPU check: three measurements on one CUDA GPU in at most 8 minutes, one JSON line per figure.
#
#   bench/gpu_check.sh             on a machine with a GPU: figures to bench/results/gpu_check.jsonl
#   bench/gpu_check.sh --dry-run   anywhere, on the CPU, tiny sizes (about two minutes on 2 cores):
#                                  proves the path, figures to bench/results/gpu_check-dry-run.jsonl
#
# Parts (bench/gpu_check.py says what each times): label (`zhkd build` labelling 100k reviews with a
# BERT-base-shaped teacher in bf16, against transformers.pipeline() on the same rows), train (student
# steps/s in bf16 autocast and float32) and finetune (the demo's full-scale teacher fine-tuning, a few
# hundred steps). Each part has a time limit; a part that fails or runs out is reported and the others go on.
#
# Environment: no network is assumed. The script uses, in this order, $ZHKD_PYTHON, this checkout's .venv,
# or python3 (on the lent GPU machines, the image's Python with a CUDA build of torch). When a module is
# missing there, the wheels in .whl/ are installed into a private folder (bench/gpu_wheels.sh downloads the
# ones such an image lacks, on a machine with the package registry), then the project itself from this
# checkout. It stops at once, naming what is missing, when a module or (without --dry-run) CUDA is not there.
#
# Knobs (environment): GPU_CHECK_ROWS (default 100000), GPU_CHECK_BUILD_FLAGS (extra `zhkd build`
# arguments, e.g. a Beam runner), GPU_CHECK_RESULTS (the JSON lines file), GPU_CHECK_WORK (scratch folder).
set -uo pipefail
cd "$(dirname "$0")/.."

mode=gpu
case "${1:-}" in
  "") ;;
  --dry-run) mode=dry-run ;;
  *) echo "usage: bench/gpu_check.sh [--dry-run]" >&2; exit 2 ;;
esac

fail() { echo "gpu_check: $*" >&2; exit 3; }

python=${ZHKD_PYTHON:-}
if [[ -z $python ]]; then
  if [[ -x .venv/bin/python ]]; then python=.venv/bin/python; else python=python3; fi
fi
command -v "$python" >/dev/null || fail "no Python interpreter '$python'"

site=${TMPDIR:-/tmp}/zhkd-gpu-check-site
missing_modules() {
  "$python" - <<'EOF'
modules = ["torch", "transformers", "tokenizers", "safetensors", "pyarrow", "numpy", "apache_beam", "jieba",
           "opencc", "pypinyin", "yaml", "tqdm", "matplotlib", "zhkd.distill.train", "zhkd.pipelines.build"]
missing = []
for name in modules:
    try:
        __import__(name)
    except Exception as err:  # an import error deep inside a package counts as missing too
        missing.append(f"{name} ({type(err).__name__}: {err})")
print("; ".join(missing))
EOF
}
use_site() { export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"; }
missing=$(missing_modules)
if [[ -n $missing ]] && compgen -G ".whl/*" >/dev/null; then
  # Only when something is missing: wheels made for another machine's Python must not break a working one.
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$site" .whl/* \
    || fail "could not install the wheels in .whl/ (missing: $missing)"
  use_site
  missing=$(missing_modules)
fi
if [[ $missing == *zhkd.* ]]; then
  # The project from this checkout, without its dependencies (those come from the environment or .whl/).
  "$python" -m pip install -q --no-index --no-deps --no-build-isolation --target "$site" . \
    || fail "could not install zhkd from $(pwd) (needs setuptools in $python's environment)"
  use_site
  missing=$(missing_modules)
fi
[[ -z $missing ]] || fail "missing in $python's environment: $missing. Install the project (make .venv/.installed-dev) \
or carry wheels: run bench/gpu_wheels.sh where PyPI is reachable, then bring .whl/ along."

export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_PROGRESS_BARS=1 TOKENIZERS_PARALLELISM=true PYTHONUNBUFFERED=1
if [[ $mode == gpu ]]; then
  "$python" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" \
    || fail "torch $("$python" -c 'import torch; print(torch.__version__)') sees no CUDA device: this script \
measures a GPU. Run it where one is, or with --dry-run for the CPU smoke test."
  results=${GPU_CHECK_RESULTS:-bench/results/gpu_check.jsonl}
  # name  limit(s)  arguments
  parts=("label 250 --rows ${GPU_CHECK_ROWS:-100000}"
         "train 110 --steps 200 --rounds 2 --batch-size 64 --max-length 128"
         "finetune 90 --steps 300 --mlm-steps 50")
else
  # One thread per process: on a small shared CPU, torch's spinning threads make each step ten times slower.
  export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
  results=${GPU_CHECK_RESULTS:-bench/results/gpu_check-dry-run.jsonl}
  parts=("label 300 --rows ${GPU_CHECK_ROWS:-200} --batch-tokens 4096 --pipeline-batches 8,32 --pipeline-sample 64"
         "train 300 --steps 20 --rounds 1 --batch-size 8 --max-length 64"
         "finetune 300 --steps 3 --mlm-steps 2")
fi

work=${GPU_CHECK_WORK:-$(mktemp -d "${TMPDIR:-/tmp}/zhkd-gpu-check-XXXXXX")}
mkdir -p "$work" "$(dirname "$results")"
: >"$results"
"$python" - "$results" "$mode" <<'EOF'
import json, platform, subprocess, sys
import apache_beam, pyarrow, torch, transformers
commit = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or None
gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
line = json.dumps({"check": "environment", "mode": sys.argv[2], "gpu": gpu, "torch": torch.__version__,
                   "cuda": torch.version.cuda, "python": platform.python_version(), "commit": commit,
                   "transformers": transformers.__version__, "apache_beam": apache_beam.__version__,
                   "pyarrow": pyarrow.__version__})
print(line)
open(sys.argv[1], "a").write(line + "\n")
EOF

status=0
for part in "${parts[@]}"; do
  read -r name limit args <<<"$part"
  echo "gpu_check: $name (at most ${limit} s)" >&2
  # shellcheck disable=SC2086  # the arguments are split on purpose
  timeout -k 10 "$limit" "$python" bench/gpu_check.py "$name" --work "$work" --results "$results" --scale "$mode" $args \
    ${GPU_CHECK_BUILD_FLAGS:+$(for f in $GPU_CHECK_BUILD_FLAGS; do printf -- '--build-flag=%s ' "$f"; done)}
  code=$?
  if [[ $code -ne 0 ]]; then
    status=1
    echo "{\"check\": \"$name\", \"failed\": $code, \"timed_out\": $([[ $code -eq 124 ]] && echo true || echo false)}" \
      | tee -a "$results"
  fi
done
echo "gpu_check: figures in $results (scratch: $work)" >&2
exit $status
