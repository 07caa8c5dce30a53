#!/usr/bin/env bash
# GPU check: what hf-arith's recipes do on one GPU, in at most 8 minutes, as one markdown table
# ready to paste into BENCHMARKS.md.
#
#   bash benchmarks/gpu_check.sh                              # on a machine with one GPU
#   HF_ARITH_GPU_CHECK_TINY=1 bash benchmarks/gpu_check.sh    # anywhere: tiny models (tests/test_benchmarks.py)
#   bash benchmarks/gpu_check.sh --download-wheels            # here, before going to an offline GPU box
#
# Parts, each with its own time limit (cut to what is left of HF_ARITH_GPU_CHECK_BUDGET_S,
# 450 s by default, after a setup of at most 60 s):
#   1. the quickstart recipe (recipes/abacus/addition_cpu.yaml) in bf16, 300 steps      (limit 80 s)
#   2. the paper recipe (recipes/abacus/addition_paper.yaml) in bf16, 30 full steps of
#      8,192 examples (schedule_clock=steps, batch_ramp=0)                                (limit 140 s)
#   3. the quickstart recipe under recipes/accelerate/fsdp.yaml on 1 process, bf16     (limit 80 s)
#   4. one OLMo-1B training step (recipes/olmo/olmo_1b.yaml's model, bf16, 2048 tokens,
#      random token ids: no data, no Hub tokenizer), micro-batch 8, else 4, 2, 1      (limit 120 s)
# Parts 1-3 are `hf-arith train` itself, with train.time_budget_minutes=null, no evaluation, no
# checkpoints and no trackers; their examples/s and tokens/s are the trainer's own logged windows
# after the first. Model FLOPs: benchmarks/flops.py's count (benchmarks/gpu_check.py says how);
# the fraction is of the GPU's dense bf16 peak, looked up by name (H100 SXM / H200 989, H100 PCIe
# 756, A100 312 TFLOP/s, ...) or HF_ARITH_PEAK_TFLOPS. A part that fails or runs out of time is a
# row saying so; the others still run.
#
# Output: the table on stdout, and in $OUT/gpu_check.md when OUT is set, with the logs
# ($OUT/gpu_check.log), the Abacus runs' metrics.jsonl and the OLMo step's JSON.
#
# What the GPU box needs (NOT TESTED ON A GPU: none was available when this was written; the
# install below was rehearsed offline on a CPU, in a virtualenv lacking the three wheels): a
# python3 with CUDA torch, transformers >= 5 and accelerate. Written for a GPU image with Python
# 3.12, torch 2.11, transformers 5.17, accelerate 1.15, and pandas, pyarrow, xxhash, fsspec,
# matplotlib, tensorboard, peft, jinja2, setuptools, but no `datasets`, `dill`, `multiprocess`
# (or evaluate): hf-arith's training imports `datasets`, which needs the other two. The script installs hf-arith
# with `pip install --no-deps --no-build-isolation -e .` (nothing fetched) and those three from the
# wheels in ./.whl (HF_ARITH_WHEELS), else from the package index. The box cannot reach an index,
# so fetch the wheels here first and carry .whl along:
#   bash benchmarks/gpu_check.sh --download-wheels    # datasets, dill, multiprocess for Python 3.12
# Environment: PYTHON (default python3), HF_ARITH_GPU_CHECK_TINY, HF_ARITH_GPU_CHECK_BUDGET_S,
# HF_ARITH_GPU_CHECK_DIR (where runs go; default a new temporary folder), HF_ARITH_PEAK_TFLOPS,
# HF_ARITH_WHEELS (default .whl), HF_ARITH_OLMO_MICRO_BATCHES (default 8,4,2,1), OUT.

set -u -o pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TINY=${HF_ARITH_GPU_CHECK_TINY:-0}
BUDGET=${HF_ARITH_GPU_CHECK_BUDGET_S:-450}
WHEELS=${HF_ARITH_WHEELS:-.whl}
START=$SECONDS

# The wheels an offline GPU box needs beyond its image, at the versions constraints.txt pins.
EXTRA_WHEELS="datasets dill multiprocess"
pinned() { for name in $EXTRA_WHEELS; do grep -i "^$name==" constraints.txt || echo "$name"; done; }

if [ "${1:-}" = "--download-wheels" ]; then
    mkdir -p "$WHEELS"
    # shellcheck disable=SC2046
    exec "$PYTHON" -m pip download --no-deps --only-binary=:all: --python-version "${GPU_PYTHON_VERSION:-3.12}" \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d "$WHEELS" $(pinned)
fi

WORK=${HF_ARITH_GPU_CHECK_DIR:-$(mktemp -d -t hf_arith_gpu_check.XXXXXX)}
mkdir -p "$WORK"
: > "$WORK/parts.tsv"
export TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 PYTHONUNBUFFERED=1
echo "gpu_check: runs and logs in $WORK" >&2

# ---------------------------------------------------------------------------------------------
# Setup: hf-arith from this checkout, and what its imports need.

setup() {
    if ! "$PYTHON" -c "import datasets" 2>/dev/null; then
        if compgen -G "$WHEELS/*.whl" > /dev/null; then
            "$PYTHON" -m pip install -q --no-index --no-deps --no-compile "$WHEELS"/*.whl || return 1
        else
            # shellcheck disable=SC2046
            "$PYTHON" -m pip install -q $(pinned) || return 1
        fi
    fi
    local here
    here=$("$PYTHON" -c "import hf_arith.modeling, os; print(os.path.dirname(hf_arith.__file__))" 2>/dev/null)
    if [ "$here" != "$PWD/hf_arith" ]; then
        "$PYTHON" -m pip install -q --no-deps --no-build-isolation -e . || return 1
    fi
    "$PYTHON" -c "import hf_arith.training.trainer, hf_arith.modeling; print('hf-arith imports')"
}

# run_part NAME LIMIT_S DISPLAYED_COMMAND -- COMMAND...: runs COMMAND under its limit (cut to what is
# left of the budget, keeping 20 s for the report), logs to $WORK/NAME.log, records the outcome.
run_part() {
    local name=$1 limit=$2 shown=$3
    shift 4
    local left=$(( BUDGET - (SECONDS - START) - 20 ))
    (( limit > left )) && limit=$left
    if (( limit < 10 )); then
        echo "gpu_check: $name skipped, out of time" >&2
        return
    fi
    echo "gpu_check: $name (limit ${limit} s): $shown" >&2
    local began=$SECONDS rc
    timeout --kill-after=10 "$limit" "$@" > "$WORK/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\t%s\t%s\n' "$name" "$rc" "$(( SECONDS - began ))" "$limit" "$shown" >> "$WORK/parts.tsv"
    echo "gpu_check: $name exit $rc after $(( SECONDS - began )) s" >&2
}

free_port() { "$PYTHON" -c "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); print(s.getsockname()[1])"; }

if [ "$TINY" = "1" ]; then
    Q_STEPS=6; Q_LOG=2; P_STEPS=4; P_LOG=2; F_STEPS=4; F_LOG=2
    SMALL=(--set model.config.hidden_size=32 --set model.config.num_attention_heads=2
           --set model.config.intermediate_size=32 --set train.micro_batch_size=4 --set train.global_batch_size=16)
    P_SMALL=("${SMALL[@]}" --set model.config.num_hidden_layers=2)
    OLMO=(--tiny --steps 2 --warmup 1)
    TINY_FLAG=(--tiny)
else
    Q_STEPS=300; Q_LOG=50; P_STEPS=30; P_LOG=10; F_STEPS=100; F_LOG=25
    SMALL=(); P_SMALL=(); OLMO=(); TINY_FLAG=()
fi
# The recipe as it is, timed: bf16, a fixed number of steps, no budget, no evaluation or saving.
COMMON=(--set train.mixed_precision=bf16 --set train.time_budget_minutes=null --set train.eval_every=0
        --set eval.at_end=false --set train.save_every=0 --set "train.report_to=[]" --set train.progress_bar=false)

part_setup() {
    local began=$SECONDS rc
    echo "gpu_check: setup" >&2
    export -f setup pinned
    export PYTHON WHEELS EXTRA_WHEELS
    timeout 60 bash -c setup > "$WORK/setup.log" 2>&1
    rc=$?
    echo "$rc" > "$WORK/setup.status"
    echo "gpu_check: setup exit $rc after $(( SECONDS - began )) s" >&2
    return $rc
}

if part_setup; then
    args=(recipes/abacus/addition_cpu.yaml --output-dir "$WORK/quickstart" --max-steps $Q_STEPS
          --set train.log_every=$Q_LOG "${COMMON[@]}" "${SMALL[@]}")
    run_part quickstart 80 "hf-arith train ${args[*]}" -- "$PYTHON" -m hf_arith train "${args[@]}"

    args=(recipes/abacus/addition_paper.yaml --output-dir "$WORK/paper" --max-steps $P_STEPS
          --set train.log_every=$P_LOG --set train.schedule_clock=steps --set train.batch_ramp=0
          "${COMMON[@]}" "${P_SMALL[@]}")
    run_part paper 140 "hf-arith train ${args[*]}" -- "$PYTHON" -m hf_arith train "${args[@]}"

    port=$(free_port)
    args=(recipes/abacus/addition_cpu.yaml --output-dir "$WORK/fsdp" --max-steps $F_STEPS
          --set train.log_every=$F_LOG "${COMMON[@]}" "${SMALL[@]}")
    launch=(--config_file recipes/accelerate/fsdp.yaml --num_processes 1 --main_process_port "$port")
    run_part fsdp 80 "accelerate launch ${launch[*]} -m hf_arith train ${args[*]}" -- \
        "$PYTHON" -m accelerate.commands.launch "${launch[@]}" -m hf_arith train "${args[@]}"

    args=(olmo1b --out "$WORK/olmo1b.json" --micro-batches "${HF_ARITH_OLMO_MICRO_BATCHES:-8,4,2,1}" "${OLMO[@]}")
    run_part olmo1b 120 "python benchmarks/gpu_check.py ${args[*]}" -- "$PYTHON" benchmarks/gpu_check.py "${args[@]}"
else
    echo "gpu_check: setup failed; see $WORK/setup.log" >&2
    tail -n 5 "$WORK/setup.log" >&2
fi

"$PYTHON" benchmarks/gpu_check.py report --work "$WORK" "${TINY_FLAG[@]}" | tee "$WORK/gpu_check.md"
report_rc=$?
echo "gpu_check: done in $(( SECONDS - START )) s" >&2

if [ -n "${OUT:-}" ]; then
    mkdir -p "$OUT"
    cp "$WORK/gpu_check.md" "$OUT/" 2>/dev/null
    for log in setup quickstart paper fsdp olmo1b; do
        [ -f "$WORK/$log.log" ] && { echo "===== $log"; tail -c 2000000 "$WORK/$log.log"; }
    done > "$OUT/gpu_check.log"
    for run in quickstart paper fsdp; do
        [ -f "$WORK/$run/metrics.jsonl" ] && cp "$WORK/$run/metrics.jsonl" "$OUT/$run.metrics.jsonl"
    done
    [ -f "$WORK/olmo1b.json" ] && cp "$WORK/olmo1b.json" "$OUT/"
fi
# Exit 0 only when every part ran and the report was written.
failed=$(awk -F'\t' '$2 != 0' "$WORK/parts.tsv" | wc -l)
ran=$(wc -l < "$WORK/parts.tsv")
[ "$report_rc" = 0 ] && [ "$failed" = 0 ] && [ "$ran" = 4 ]
