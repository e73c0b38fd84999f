# Quick start: `make demo` and `make test`. Each builds its own virtual environment from nothing.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# A CPU build of torch by default (these machines keep one on disk); CUDA users: make TORCH_SPEC='torch' test
TORCH_SPEC ?= torch==2.13.0
EXTRAS ?= dev,mlflow,wandb
comma := ,
STAMP := $(VENV)/.installed-$(subst $(comma),_,$(EXTRAS))

.PHONY: install test demo bench clean chromium

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	@# a .venv made before the rename still holds the old distribution: drop it so only one owns the package
	$(PY) -m pip uninstall -q -y forecaster 2>/dev/null || true
	rm -rf forecaster.egg-info
	$(PY) -m pip install -q -e ".[$(EXTRAS)]"
	touch $@

# the browser test drives Debian's Chromium (no browser download); installed here when missing and root
chromium:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || \
		echo "chromium not installed: the MLflow UI browser test will be skipped"

# the public API's modules, type-checked on every `make test`
TYPED := forecaster/__init__.py forecaster/results.py forecaster/inputs.py forecaster/params.py \
	forecaster/histories.py forecaster/forecast.py forecaster/backtest.py

test: $(STAMP) chromium
	$(PY) -m mypy $(TYPED)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) examples/demo.py

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) build dist *.egg-info
