# ggvision — two commands on a fresh Debian/Ubuntu machine: `make run` and `make test`.
# Every target installs what it needs first (virtualenv, pinned pip packages, Debian packages).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
ROOT   ?= .ggvision/root
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
DEB_PACKAGES := mosquitto libfaketime prometheus prometheus-alertmanager ffmpeg python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad chromium chromium-driver

.PHONY: run test faults lint bench deps build publish component-build models clean distclean dashboard screenshots

deps: $(STAMP)

# Debian packages only when missing (apt-get update once, then install).
.deb-stamp: Makefile
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	@touch $@

$(STAMP): pyproject.toml .deb-stamp
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 10), "ggvision needs Python >= 3.10"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,cpu,dashboard,tools]'
	@touch $@

## run: build the suite, then run it under the local Greengrass runtime with the IoT Core stand-in and a live view (Ctrl-C stops)
run: build
	$(BIN)/ggvision run --root $(ROOT) --build greengrass-build

## dashboard: the dashboard (Streamlit, docs/dashboard.md) on `make run`'s data, on loopback (http://127.0.0.1:8501)
dashboard: $(STAMP)
	$(BIN)/ggvision dashboard --root $(ROOT)

## screenshots: re-take the dashboard screenshots the docs link (docs/img/dashboard/, headless chromium)
screenshots: $(STAMP)
	$(BIN)/python bench/screenshots.py

## test: lint, then the whole test suite
test: $(STAMP) lint
	$(BIN)/python -m pytest -q

## faults: the long fault rehearsals (docs/reliability.md), minutes each; the fast ones run in `make test`
faults: $(STAMP)
	$(BIN)/python -m pytest -q -s -m slowfault tests

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports --no-cache  # the import rule between the wings (pyproject.toml [tool.importlinter])

## build: every component into greengrass-build/ the way `gdk component build` lays it out
build: $(STAMP)
	$(BIN)/ggvision build

## publish: what `gdk component publish` does, for every component in dependency order (needs AWS credentials)
publish: build
	$(BIN)/ggvision publish

# A component's own gdk custom build command (gdk runs it in the component folder).
component-build: $(STAMP)
	$(BIN)/python components/$(COMPONENT)/build_component.py

## bench: every benchmark (figures go in docs/performance.md; several need ../shared's test data)
bench: $(STAMP)
	$(BIN)/python bench/ipc.py
	$(BIN)/python bench/framebus.py
	$(BIN)/python bench/capture.py
	$(BIN)/python bench/health_cost.py
	$(BIN)/python bench/inference.py
	$(BIN)/python bench/bandwidth.py
	$(BIN)/python bench/uplink.py

## models: re-train the demo models into components/com.ggvision.Model.*/ (needs the train extra; ~8 + 4 min on 2 free cores)
models: $(STAMP)
	$(BIN)/python -m pip install -q -e '.[train]'
	$(BIN)/python -m model_registry.demo.train_detector
	$(BIN)/python -m model_registry.demo.train_fire_risk

clean:
	rm -rf .ggvision .pytest_cache .ruff_cache greengrass-build zip-build components/*/greengrass-build components/*/zip-build

distclean: clean
	rm -rf $(VENV) .deb-stamp
