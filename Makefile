# dra-harness: `make e2e` (the main job) and `make test` (the project's own tests) work on a
# fresh machine; everything they need is installed by the targets they depend on.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
K8S_VERSION ?=
export K8S_VERSION
BACKEND ?= local
# Debian packages the tests use as independent consumers of fake trees, openssl for PKI, and
# chromium to render the platform report headless, busybox-static and debootstrap for images
# made without a registry.
APT_PACKAGES := pciutils hwloc umockdev libumockdev0 openssl chromium busybox-static debootstrap graphviz
DEB_STAMP := $(VENV)/.debs

.PHONY: help install debs bins test test-fast bench e2e clean protos kind-configs test-dranet

help:
	@echo "make e2e [BACKEND=local|kind|existing] [K8S_VERSION=1.36]  boot a cluster, run e2e/, tear down"
	@echo "make test                                                the project's own test suite"
	@echo "make bench                                               benchmarks (render, discovery, cluster)"
	@echo "make bins [K8S_VERSION=1.35]                             build control-plane binaries into the cache"
	@echo "make install                                             virtualenv + Debian packages"
	@echo "make test-dranet DRANET_SRC=DIR                          DRANET from its source and chart on kind"

GEN_STAMP := kubeletapi/gen/.generated

install: $(STAMP) $(GEN_STAMP) $(DEB_STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $@

# The kubelet protos' Python stubs, regenerated whenever a proto changes.
$(GEN_STAMP): $(STAMP) kubeletapi/build.py $(wildcard kubeletapi/protos/*/api.proto)
	$(PY) -m kubeletapi.build
	touch $@

$(DEB_STAMP): | $(STAMP)
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "make: missing Debian packages:$$missing (run as root or install them; tests needing them will skip)"; fi; \
	fi
	touch $@

debs: $(DEB_STAMP)

protos: $(GEN_STAMP)

bins:
	clusters/local/build-bins.sh $(K8S_VERSION)

# Test trees live on a tmpfs when there is one (tens of thousands of small files each).
TEST_TMP := $(shell [ -w /dev/shm ] && echo /dev/shm || echo /tmp)/dra-harness-tests-$(shell id -u)

test: install bins
	rm -rf $(TEST_TMP); $(PY) -m pytest tests -q -p no:cacheprovider --basetemp=$(TEST_TMP) $(PYTEST_ARGS); \
	  rc=$$?; rm -rf $(TEST_TMP); exit $$rc

test-fast: install
	rm -rf $(TEST_TMP); $(PY) -m pytest tests -q -m "not slow" --basetemp=$(TEST_TMP) $(PYTEST_ARGS); \
	  rc=$$?; rm -rf $(TEST_TMP); exit $$rc

# DRANET from a checkout of its own (not vendored): built, made an image, installed from its chart on kind.
test-dranet: install bins
	@[ -d "$(DRANET_SRC)/cmd/dranet" ] || { echo "make test-dranet DRANET_SRC=<a checkout of github.com/kubernetes-sigs/dranet>"; exit 2; }
	DRA_HARNESS_DRANET_SRC=$(abspath $(DRANET_SRC)) $(PY) -m pytest tests/test_dranet_kind.py -q -p no:cacheprovider $(PYTEST_ARGS)

bench: install bins
	$(PY) -m harness.bench $(BENCH_ARGS)

NODES ?= trn1.32xlarge,trn2.48xlarge

e2e: install $(if $(filter local,$(BACKEND)),bins)
	$(PY) -m harness.cli e2e --backend $(BACKEND) --nodes $(NODES) $(if $(K8S_VERSION),--k8s-version $(K8S_VERSION)) $(E2E_ARGS)

kind-configs: install
	$(PY) -m harness.backends.kind.config clusters/kind

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache kubeletapi/gen
