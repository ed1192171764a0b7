# ivfarm: `make demo` sets up a single-host cloud with a demo farm; `make test` runs every test.
# Both run as root on Debian 12 and install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
GUEST_DIR ?= /var/lib/ivfarm-guest
PYTEST_ARGS ?=
export IVFARM_GUEST_DIR := $(GUEST_DIR)
# `make test` runs everything: a test that cannot run here fails instead of skipping.
test: export IVFARM_REQUIRE_ALL := 1
test: export IVFARM_TEST_POSTGRES_URL := postgresql+psycopg://ivfarm:ivfarm@127.0.0.1/ivfarm_test

APT_PACKAGES := libvirt-daemon-system libvirt-clients libvirt-dev pkg-config qemu-system-x86 qemu-utils \
	qemu-block-extra ebtables dnsmasq-base iptables iproute2 busybox-static cpio e2fsprogs genisoimage \
	openssh-server openssh-client rsync lvm2 parted cloud-init glusterfs-server glusterfs-client \
	libvirt-daemon-driver-storage-gluster postgresql python3-venv python3-dev gcc

JS_DIR := tests/e2e/js

.PHONY: demo demo-multi test deps venv services guest js clean-demo clean-demo-multi lint bench migration

demo: deps venv services guest
	scripts/demo.sh

test: deps venv services guest js
	scripts/start-postgres.sh
	$(VENV)/bin/pytest tests $(PYTEST_ARGS)

deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing: $$missing"; \
		apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: setup.cfg pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

# The AWS SDK for JavaScript v3 of tests/e2e/test_ec2_js_sdk.py, exactly as its lock file says.
js: $(JS_DIR)/node_modules/.installed

$(JS_DIR)/node_modules/.installed: $(JS_DIR)/package.json $(JS_DIR)/package-lock.json
	@node -e 'process.exit(Number(process.versions.node.split(".")[0]) < 20 ? 1 : 0)' 2>/dev/null && command -v npm >/dev/null || \
		{ echo "make js: needs node >= 20 and npm on PATH (Debian 12's own nodejs is 18)"; exit 1; }
	cd $(JS_DIR) && npm ci --no-audit --no-fund
	touch $@

services:
	scripts/start-services.sh

guest:
	images/build.sh $(GUEST_DIR)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy ivfarm drivers vrouter contextualization fileops
	$(VENV)/bin/lint-imports

# `make migration MSG="add hosts.note"`: the next schema migration, from the models' difference with head
migration: venv
	@test -n "$(MSG)" || { echo 'usage: make migration MSG="what changes"'; exit 2; }
	$(VENV)/bin/python -m ivfarm.store.migrations revision "$(MSG)"

bench: venv
	for b in bench/*.py; do echo "== $$b"; $(VENV)/bin/python $$b | tail -1; done

clean-demo:
	scripts/demo.sh --clean

# A farm over VXLAN across a three-host site of namespaced libvirtds on this machine (docs/multihost.md)
demo-multi: deps venv services guest
	scripts/demo-multi.sh

clean-demo-multi:
	scripts/demo-multi.sh --clean
