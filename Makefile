# umps-agent: every target sets up what it needs (a .venv, and Debian packages when missing).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# The venv is rebuilt when pyproject.toml changes.
STAMP  := $(VENV)/.stamp-$(shell cksum pyproject.toml | cut -d' ' -f1)
export PATH := $(CURDIR)/$(BIN):$(PATH):/usr/sbin:/sbin

.PHONY: help setup os-deps demo-deps test test-all test-arm64 refresh-wheels bench demo install uninstall clean

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

# What the tests need (CI: root, no terminal: installed as needed).
os-deps:
	@scripts/os-deps.sh test

# Only what the demo needs; a package that changes the host's services waits for a yes.
demo-deps:
	@scripts/os-deps.sh demo

# The suite runs on pytest-xdist workers: its tests mostly wait on sockets and processes
# (a broker, an agent, a browser), so more workers than the machine's cores.
TEST_WORKERS ?= 4
# Byte code is cached even where the environment asks Python not to write it
# (PYTHONDONTWRITEBYTECODE): otherwise every worker, and every agent and CLI process a
# test starts, compiles the whole package again. The caches are in __pycache__ (ignored by git).
PYTEST := env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n $(TEST_WORKERS)

test: setup
	$(PYTEST)

test-all: setup
	$(PYTEST) --run-slow

# Not part of `make test`: it builds (once) and uses an arm64 root under QEMU.
test-arm64:
	bash scripts/test-arm64.sh $(TESTS)

refresh-wheels: setup
	$(BIN)/python scripts/arm64_wheels.py --refresh

BENCH_FLAGS ?=

bench: setup
	$(BIN)/python -m bench $(BENCH_FLAGS)

demo: demo-deps $(STAMP)
	$(BIN)/umps-hil demo

install:
	DESTDIR="$(DESTDIR)" bash scripts/install.sh $(INSTALL_FLAGS)

uninstall:
	DESTDIR="$(DESTDIR)" bash scripts/uninstall.sh $(UNINSTALL_FLAGS)

clean:
	rm -rf $(VENV) test-artifacts hil-results .pytest_cache
