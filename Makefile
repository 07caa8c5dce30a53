# Every target installs what it needs first, so each works on a fresh machine.
PYTHON ?= python3
# Installing the pinned CPU torch first keeps pip from pulling a multi-GB CUDA build.
TORCH_PIN ?= torch==2.13.0
export TORCH_PIN  # tests/installs.py (make test-wheel, make test-compat) installs the same torch
RUN_DIR ?= runs/addition_cpu

.PHONY: setup quickstart olmo test test-fast test-wheel test-compat lock bench

# constraints.txt pins every dependency to a tested set, so that a release made overnight cannot
# break these commands; `make lock` refreshes it on purpose, `make test-compat` tries the newest.
# The lock is resolved on Python 3.11 (some pinned releases need it); older Pythons resolve freely.
CONSTRAINTS = $(shell $(PYTHON) -c 'import sys; print("-c constraints.txt" if sys.version_info >= (3, 11) else "")')

setup:
	$(PYTHON) -m pip install -q $(TORCH_PIN)
	$(PYTHON) -m pip install -q $(CONSTRAINTS) -e ".[test]"

quickstart: setup
	hf-arith train recipes/abacus/addition_cpu.yaml --output-dir $(RUN_DIR)
	hf-arith eval $(RUN_DIR)/final --task addition --lengths 1-30 --samples 20 --out $(RUN_DIR)/eval
	hf-arith generate $(RUN_DIR)/final "123+4567"

olmo: setup
	hf-arith tokenizer train builtin --vocab-size 4096 --out data/olmo/tokenizer-4k
	hf-arith data prepare recipes/olmo/tiny_cpu.yaml
	hf-arith train recipes/olmo/tiny_cpu.yaml
	hf-arith data inspect runs/olmo_tiny_cpu --batch 0 | head -20
	hf-arith convert runs/olmo_tiny_cpu/final runs/olmo_tiny_native --to native

test: setup
	$(PYTHON) -m pytest -q

test-fast: setup
	$(PYTHON) -m pytest -q -m "not slow"

# The wheel as a user installs it: built as a release is, installed in a clean virtualenv outside the
# clone (the pinned torch, then the wheel under constraints.txt), each command run from outside it.
test-wheel: setup
	$(PYTHON) tests/wheel/run.py

# The Hub-facing checks and transformers' own common model tests (fetched from each release's
# source distribution) in clean virtualenvs (no hf_arith) with the oldest transformers that
# pyproject.toml allows and the newest one released.
test-compat: setup
	$(PYTHON) tests/compat/run.py

# Re-resolves today's releases in a clean virtualenv and writes them to constraints.txt.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv
	.lock-venv/bin/python -m pip install -q $(TORCH_PIN)
	.lock-venv/bin/python -m pip install -q -e ".[test]"
	( echo "# Tested dependency set for 'make setup' (made by 'make lock' on $$(date +%F)); torch comes from TORCH_PIN."; \
	  .lock-venv/bin/python -m pip freeze --exclude-editable | grep -v -i -e '^torch==' -e '^hf-arith' ) > constraints.txt
	rm -rf .lock-venv

# Each benchmark prints a markdown table (copied into BENCHMARKS.md); run on a quiet machine.
bench: setup
	mkdir -p benchmarks/results
	$(PYTHON) benchmarks/decode_kv_cache.py --configs quickstart --batch-size 32 | tee benchmarks/results/decode.md
	$(PYTHON) benchmarks/olmo_train_step.py | tee benchmarks/results/olmo_train_step.md
	$(PYTHON) benchmarks/olmo_train_step.py --compile --no-memory | tee benchmarks/results/olmo_train_step_compile.md
	$(PYTHON) benchmarks/abacus_train.py --micro 32 | tee benchmarks/results/abacus_train.md
	$(PYTHON) benchmarks/abacus_train.py --micro 32 --alpha 0 | tee benchmarks/results/abacus_train_full_depth.md
	$(PYTHON) benchmarks/data_pipeline.py | tee benchmarks/results/data_pipeline.md
	$(PYTHON) benchmarks/scaling.py --out benchmarks/results/scaling.png | tee benchmarks/results/scaling.md
