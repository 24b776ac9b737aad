# The two set-up commands: `make run` (server on the embedded default) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
INTEROP := tests/interop
DEMO := examples/todomvc
REFERENCE := bench/reference

.PHONY: run test lint docs test-sqlite test-postgres chaos matrix interop-deps demo bench bench-deps

$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

run: $(VENV)/.installed demo
	$(PY) manage.py migrate --noinput
	$(VENV)/bin/daphne -b 127.0.0.1 -p $(PORT) livesync_project.asgi:application

# Both Node projects of the real-client interop tests (LiveStore 0.3.1 and 0.4.0).
INTEROP_PROJECTS := $(INTEROP) $(INTEROP)/v04

# Node packages of the real-client interop tests; skipped (and said so) without npm.
interop-deps:
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: interop tests will be skipped"; \
	else for dir in $(INTEROP_PROJECTS); do \
		if [ ! -f $$dir/node_modules/.package-lock.json ] || [ $$dir/package-lock.json -nt $$dir/node_modules/.package-lock.json ]; then \
			(cd $$dir && npm ci --no-audit --no-fund --loglevel=error) || exit 1; \
		fi; \
	done; fi

# The TodoMVC demo daphne serves at /demo/: built when the build is missing or older than a source file or the
# lock file. Without npm, /demo/ says how to build it (and the browser tests skip, or fail under CI).
demo: $(DEMO)/dist/index.html

$(DEMO)/dist/index.html: $(DEMO)/package-lock.json $(DEMO)/index.html $(DEMO)/vite.config.js $(wildcard $(DEMO)/src/*)
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: the TodoMVC demo at /demo/ is not built"; \
	else cd $(DEMO) && \
		{ [ -f node_modules/.package-lock.json ] && [ ! package-lock.json -nt node_modules/.package-lock.json ] || \
			npm ci --no-audit --no-fund --loglevel=error; } && \
		npm run build --silent -- --logLevel=warn; fi

# First pass: everything on SQLite + the in-memory channel layer (interop tests start
# their own daphne processes, on PostgreSQL + Redis where a scenario needs them).
# Second pass: the protocol suite again on PostgreSQL + Redis.
test: test-sqlite test-postgres

test-sqlite: $(VENV)/.installed interop-deps demo
	$(PY) -m pytest

test-postgres: $(VENV)/.installed
	LIVESYNC_TEST_BACKEND=postgres $(PY) -m pytest -m protocol

# Lint, format and types: ruff's rule set and formatter (pyproject.toml), and mypy with django-stubs over syncapp.
lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The documentation site (mkdocs.yml, docs/) into site/, offline; strict: a warning or a broken link or anchor fails it.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# The version matrix (noxfile.py): every supported (Python, Django) pair. pyenv's interpreters are put on the
# PATH where pyenv has them.
matrix: $(VENV)/.installed interop-deps
	PYENV_VERSION="$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.1[123]\.[0-9]+$$' | tr '\n' ':')" \
		$(VENV)/bin/nox

# The production topologies alone (part of `make test` too): nginx over several daphne processes with one
# SIGKILLed under real clients, PgBouncer in transaction mode, two Redis shards with one restarted, Sentinel
# failover. Needs Debian's nginx-light, pgbouncer and redis-server (.ci/run installs them).
chaos: $(VENV)/.installed interop-deps
	$(PY) -m pytest -m chaos

# The reference sync server's Node packages (wrangler, workerd, @livestore/sync-cf 0.3.1); without npm the
# bench reports the reference as unavailable.
bench-deps:
	@if ! command -v npm >/dev/null 2>&1; then echo "npm not found: the bench will skip the reference"; \
	elif [ ! -f $(REFERENCE)/node_modules/.package-lock.json ] || [ $(REFERENCE)/package-lock.json -nt $(REFERENCE)/node_modules/.package-lock.json ]; then \
		cd $(REFERENCE) && npm ci --no-audit --no-fund --loglevel=error; fi

# livesync (SQLite; PostgreSQL + Redis) against the reference, alternating, driven by the Python and the Node load
# generators (the Node one loads `ws` from the interop installs); BENCH_ARGS=--large for the large sizes.
bench: $(VENV)/.installed interop-deps bench-deps
	$(PY) -m bench --compare --ceilings --stores --client python,node $(BENCH_ARGS)
