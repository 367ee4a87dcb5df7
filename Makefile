# Everything installs into .venv; the two targets at the top of the README need nothing else.
PYTHON ?= python3
VENV ?= .venv
# torch first, pinned: an unpinned torch (or a range excluding this version) pulls the CUDA
# wheels. On a GPU machine with internet, the same pin installs the CUDA build from PyPI.
TORCH ?= torch==2.13.0
BIN := $(VENV)/bin
# Ray otherwise advertises the machine's eth0 address, not loopback (see the conftest).
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER ?= 0

.PHONY: install demo test lint format unit compat bench bench-gpu bench-smoke bench-feed clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

## Build the demo corpus and tiny random-init models (once), then run jobs/demo.yaml afresh.
demo: install
	$(BIN)/audiobatch demo-assets .demo
	rm -rf .demo/out
	$(BIN)/audiobatch run jobs/demo.yaml

## The whole suite: lint, format check, schemas in sync, every test that runs on a CPU.
test: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/audiobatch schema --check schemas
	$(BIN)/pytest -m "not gpu" -q -ra

## Fast unit tests only (no Ray cluster, no S3 emulator).
unit: install
	$(BIN)/pytest -m "not gpu and not integration" -q

## The stage and model unit tests under transformers 5.17, what the GPU machine runs
## (installed beside the venv in .cache/, not into it). Parakeet's tests are left out: their
## reference, 5.17's ParakeetFeatureExtractor, needs librosa (our adapter does not use it).
COMPAT := .cache/transformers-5.17
compat: install
	test -d $(COMPAT)/transformers || $(BIN)/python -m pip install -q --no-deps --target $(COMPAT) \
		transformers==5.17.0 "huggingface_hub>=1.5,<2" httpx httpcore h11 anyio sniffio certifi idna
	PYTHONPATH=$(COMPAT) $(BIN)/pytest -m "not gpu and not integration" -q -p no:cacheprovider \
		tests/stages tests/models tests/testing --deselect tests/models/test_parakeet.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: install
	$(BIN)/python benchmarks/bench_ctc_cpu.py

## Every GPU benchmark in one run (< 8 min on one H200), one table written to $(TABLE).
## Run on the GPU machine with .devcarry packed (benchmarks/gpu_suite.py says how);
## it needs no .venv there.
TABLE ?= gpu_suite.md
bench-gpu:
	if [ -f .devcarry/unpack.py ]; then $(PYTHON) .devcarry/unpack.py; fi
	PYTHONPATH=/tmp/site:$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH} $(PYTHON) benchmarks/gpu_suite.py --out $(TABLE)

## What feeding a GPU costs the CPUs: the pipeline with a model that costs nothing.
bench-feed: install
	$(BIN)/python benchmarks/bench_feed_cpu.py

## The same suite with tiny models on the CPU, in-process: catches typos before GPU time.
bench-smoke: install
	$(BIN)/python benchmarks/gpu_suite.py --smoke --out .cache/bench-smoke.md

clean:
	rm -rf $(VENV) .demo .pytest_cache .ruff_cache
