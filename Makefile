# The README's two commands: `make demo` and `make test`. Each bootstraps .venv itself.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests use (installed only when run as root; others must install them by hand).
# openssh-server: the playbook tests start their own sshd on 127.0.0.1 (remotehands.lab.openssh); when this
# target installs the package it first creates /etc/ssh/sshd_not_to_be_run, Debian's switch that keeps its
# init script and systemd units from starting a system sshd on port 22.
# chromium and a font: the browser tests (tests/test_browser_*.py) drive Debian's Chromium with Playwright.
DEB_PACKAGES := ipmitool freeipmi-tools openipmi openssh-server chromium fonts-liberation

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

# The suite waits on simulated equipment far more than it computes, so it runs in three pytest processes,
# each with its own lab: the network, IP-plan, NetBox, storage, Ansible and Celery tests (SSH sessions, HTTPS
# arrays, ansible-playbook runs), followed by the #9 scale-out campaign (workers SIGKILLed for three minutes,
# about 4 CPU-minutes, niced); the reimage crash tests (worker subprocesses killed at step boundaries); and
# the rest, in one process in file order (spread over more, pyghmi-timed IPMI tests turned flaky on 2 cores).
CAMPAIGN := tests/test_celery_campaign.py
CRASH_TESTS := $(sort $(wildcard tests/test_reimage_crash*.py))
BROWSER_TESTS := $(sort $(wildcard tests/test_browser*.py))
SIDE_TESTS := $(filter-out $(CAMPAIGN),$(sort $(wildcard tests/test_*network*.py tests/test_*ipam*.py tests/test_*storage*.py tests/test_*ansible*.py tests/test_*celery*.py)))
unit: $(STAMP)
	@( $(BIN)/pytest -q -p no:cacheprovider $(SIDE_TESTS) && $(BIN)/pytest -q -p no:cacheprovider $(CAMPAIGN) ) \
		> .side-tests.log 2>&1 & side=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider $(CRASH_TESTS) $(BROWSER_TESTS) > .crash-tests.log 2>&1 & crash=$$!; \
	$(BIN)/pytest -q -p no:cacheprovider $(addprefix --ignore=,$(SIDE_TESTS) $(CAMPAIGN) $(CRASH_TESTS) $(BROWSER_TESTS)); main=$$?; \
	wait $$side; other=$$?; wait $$crash; crashed=$$?; \
	echo "--- network, storage, Ansible and Celery tests, then the campaign (run beside the others):"; \
	cat .side-tests.log; echo "--- reimage crash tests and browser tests (run beside the others):"; cat .crash-tests.log; \
	test $$main -eq 0 -a $$other -eq 0 -a $$crashed -eq 0

test: $(STAMP) deb-packages lint typecheck unit

clean:
	rm -rf $(VENV) .demo .mypy_cache .ruff_cache .pytest_cache
