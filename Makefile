# umps-agent: every target sets up what it needs (a .venv, and Debian packages when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The venv is rebuilt when pyproject.toml changes.
STAMP  := $(VENV)/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1)
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/sbin

.PHONY: help setup os-deps test test-all test-arm64 refresh-wheels bench demo install uninstall clean

help:
	@echo "make demo       run the agent against the emulated vehicle (rig)"
	@echo "make test       set up and run the whole test suite"
	@echo "make test-all   the same with the slow soak/load runs"
	@echo "make test-arm64 install and test in a Debian arm64 root under emulation (docs/platform.md)"
	@echo "make refresh-wheels  ask PyPI again which wheels a Pi takes (tests/data/arm64-wheels.json)"
	@echo "make bench      measure speed and memory, write docs/performance.md"
	@echo "                (BENCH_FLAGS=--soak: the 2-hour memory soak; --quick: shorter runs)"
	@echo "make install    install on a unit (DESTDIR=/dir to stage instead)"
	@echo "make uninstall  remove it again"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev,hil]'
	@rm -f $(VENV)/.stamp-* && touch $@

setup: os-deps $(STAMP)

os-deps:
	@scripts/os-deps.sh

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q --run-slow

# Not part of `make test`: it builds (once) and uses an arm64 root under QEMU.
test-arm64:
	bash scripts/test-arm64.sh

refresh-wheels: setup
	$(BIN)/python scripts/arm64_wheels.py --refresh

BENCH_FLAGS ?=

bench: setup
	$(BIN)/python -m bench $(BENCH_FLAGS)

demo: setup
	$(BIN)/umps-hil demo

install:
	DESTDIR="$(DESTDIR)" bash scripts/install.sh $(INSTALL_FLAGS)

uninstall:
	DESTDIR="$(DESTDIR)" bash scripts/uninstall.sh $(UNINSTALL_FLAGS)

clean:
	rm -rf $(VENV) test-artifacts hil-results .pytest_cache
