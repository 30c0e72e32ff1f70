# tsh-infra developer entry points. `make test` is the README's test command and what CI runs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV ?= .venv
PYTHON ?= python3
BIN := $(VENV)/bin
export PATH := $(CURDIR)/$(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

# Scenarios in the order they start, two at a time (TSH_MOLECULE_JOBS); the longest first.
SCENARIOS ?= bluegreen multihost site acme_sh pitr backups postgres nginx ufw base

.PHONY: help host up down setup images apt-cache lint unit molecule test mitogen clean

help:
	@echo "make up        a local container standing in for the droplet, provisioned with site.yml"
	@echo "               (prepares this machine first: make host)"
	@echo "make down      remove it"
	@echo "make host      install and start what the test bed needs (Docker engine, debootstrap,"
	@echo "               apt-cacher-ng, python3-venv) on Debian/Ubuntu as root; elsewhere name them"
	@echo "make setup     create $(VENV) with the pinned tools (requirements.txt)"
	@echo "make images    build the Debian 12/13 systemd test images (bare and stack) when missing"
	@echo "make lint      yamllint + ansible-lint (production profile) + shellcheck"
	@echo "make unit      unit tests (pytest tests/unit)"
	@echo "make molecule  every molecule scenario: $(SCENARIOS)"
	@echo "make test      host + setup + lint + unit + molecule, with each phase's time; non-zero on any failure"
	@echo "make mitogen   opt-in: install Mitogen into $(VENV) and print how to switch it on"

$(BIN)/molecule: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

setup: $(BIN)/molecule

host:
	tests/bed/host.sh

images: host
	tests/bed/images.sh

apt-cache: host
	tests/bed/apt-cache.sh

lint: setup
	$(BIN)/yamllint --strict .
	$(BIN)/ansible-lint --profile production
	$(BIN)/shellcheck .ci/run tests/bed/*.sh bench/backup bench/provision bench/security bench/*.sh

unit: setup
	$(BIN)/pytest tests/unit

molecule: setup apt-cache images
	tests/bed/molecule.sh $(SCENARIOS)

# One script so that a fresh machine is prepared before the venv is made (tests/bed/test.sh).
test:
	tests/bed/test.sh $(SCENARIOS)

# Opt-in: Mitogen's strategy halves an idempotent site.yml over SSH here (bench/provision);
# nothing uses it unless ANSIBLE_STRATEGY says so.
mitogen: setup
	$(BIN)/pip install --quiet mitogen==0.3.54
	@echo "export ANSIBLE_STRATEGY_PLUGINS=$$($(BIN)/python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy ANSIBLE_STRATEGY=mitogen_linear"

up: host
	@$(MAKE) --no-print-directory setup
	tests/bed/local.sh up

down:
	tests/bed/local.sh down

clean:
	rm -rf .molecule-logs .pytest_cache
