# The README's two commands: `make demo` and `make test`. Each bootstraps .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests use (installed only when run as root; others must install them by hand).
# openssh-server: the playbook tests start their own sshd on 127.0.0.1 (remotehands.lab.openssh); when this
# target installs the package it first creates /etc/ssh/sshd_not_to_be_run, Debian's switch that keeps its
# init script and systemd units from starting a system sshd on port 22.
DEB_PACKAGES := ipmitool freeipmi-tools openipmi openssh-server

.PHONY: demo test lint typecheck unit deb-packages clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

deb-packages:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    case " $$missing " in *" openssh-server "*) mkdir -p /etc/ssh && touch /etc/ssh/sshd_not_to_be_run;; esac; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "note: not root; install these Debian packages for the full suite:$$missing"; fi; \
	fi

demo: $(STAMP)
	$(BIN)/remotehands demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy remotehands

# The suite waits on simulated equipment far more than it computes, so the network, IP-plan, NetBox, storage,
# Ansible, Celery and reimage-crash tests (SSH sessions, HTTPS arrays, ansible-playbook runs, worker
# subprocesses) run in a second pytest beside the rest, each with its own lab; the rest keep one process in
# file order (spread over two, pyghmi-timed IPMI tests turned flaky on 2 cores). The #9 scale-out campaign
# (worker processes SIGKILLed for three minutes, about 4 CPU-minutes) runs after the first pytest, not beside
# all of it: run across the whole suite it stretched the other process from 10 to 14.5 minutes.
CAMPAIGN := tests/test_celery_campaign.py
SIDE_TESTS := $(filter-out $(CAMPAIGN),$(sort $(wildcard tests/test_*network*.py tests/test_*ipam*.py tests/test_*storage*.py tests/test_*ansible*.py tests/test_*celery*.py tests/test_reimage_crash*.py)))
unit: $(STAMP)
	@$(BIN)/pytest -q -p no:cacheprovider $(SIDE_TESTS) > .side-tests.log 2>&1 & side=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider $(addprefix --ignore=,$(SIDE_TESTS) $(CAMPAIGN)); main=$$?; \
	$(BIN)/pytest -q -p no:cacheprovider $(CAMPAIGN); campaign=$$?; \
	wait $$side; other=$$?; echo "--- tests run beside the others:"; cat .side-tests.log; \
	test $$main -eq 0 -a $$campaign -eq 0 -a $$other -eq 0

test: $(STAMP) deb-packages lint typecheck unit

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
