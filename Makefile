# Thin wrappers over uv; each target works from a clean clone (uv is installed if missing).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
export DEBUG ?= true

.PHONY: run test test-fast lint fmt migrations bench uv

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

run: uv  ## SQLite, local cache, simulator; web, worker and beat on 127.0.0.1:8000
	$(UV) sync --frozen --quiet
	$(UV) run python manage.py migrate --no-input -v 0
	$(UV) run python manage.py quickstart
	$(UV) run honcho -f Procfile.dev start

test: uv  ## the whole suite against PostgreSQL and Redis
	DEBUG=false $(UV) sync --frozen --quiet
	DEBUG=false $(UV) run pytest

lint: uv
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run python manage.py makemigrations --check --dry-run

fmt: uv
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

migrations: uv
	$(UV) run python manage.py makemigrations

bench: uv  ## gateway vs direct-to-simulator, printed as a table
	DEBUG=false $(UV) run python -m tests.load.bench
