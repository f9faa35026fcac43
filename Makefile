# The two commands of README.md for a fresh clone:
#   make course   set up .venv, then run the notebook series (quick profile on CPU, full on a GPU)
#   make test     set up .venv, then run the tests (the notebook run included)
# Overrides: make test VENV=/path/to/venv PYTHON=python3.11 PYTEST_ARGS='-m "not notebooks"'
#            make course DATASET=cifar100 OUT=build/course100
#            make install TORCH_INDEX=https://download.pytorch.org/whl/cpu   (CPU-only torch, no CUDA libraries)

PYTHON ?= python3
VENV ?= .venv
OUT ?= build/course
DATASET ?= cifar10
PYTEST_ARGS ?=
TORCH_INDEX ?=

BIN := $(VENV)/bin
# Written after a successful install, so the install runs once (and again when the pins change).
STAMP := $(VENV)/.dirackit-installed

.PHONY: course test install

course: $(STAMP)
	$(BIN)/python ci/run_notebooks.py --profile auto --dataset $(DATASET) --out $(OUT)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

install: $(STAMP)

$(STAMP): pyproject.toml requirements/torch.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install -r requirements/torch.txt --index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -r requirements/torch.txt -e ".[notebooks,test]"
	touch $@
