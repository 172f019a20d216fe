# Each target makes its own virtual environment; a fresh machine needs only Python 3.11+.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8080
# The console user `make run` creates on first run (its password is printed once).
DEMO_USER ?= demo@demo-clinic.example

.PHONY: run test install browser clean

$(BIN)/hub: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# setuptools' notes about editable installs are for its own developers, not for someone running the hub.
	PYTHONWARNINGS=ignore::UserWarning $(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(BIN)/hub

install: $(BIN)/hub

run: install
	$(BIN)/hub serve --host $(HOST) --port $(PORT) --demo-user $(DEMO_USER)

# The browser tests drive Debian's Chromium (through Playwright, which downloads no browser of its own).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; }

test: install browser
	$(BIN)/mypy
	$(BIN)/python -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) hub.db
