# The two commands a newcomer needs: `make run` (the whole platform on embedded defaults)
# and `make test` (the whole test suite). Both create the virtual environment first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
STAMP := $(VENV)/.installed
# `make run SIMULATE=1` adds a simulated AI bot that escalates a few conversations a minute.
PROCESSES := web router webhooks beat $(if $(SIMULATE),bot)

.PHONY: run test install lint clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

run: export DEBUG ?= 1
run: export DISPATCH_URL = http://127.0.0.1:$(PORT)
run: $(STAMP)
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py seed_demo
	@echo ""
	@echo "  Portal:    http://127.0.0.1:$(PORT)/"
	@echo "  Admin:     http://127.0.0.1:$(PORT)/admin/"
	@echo "  Board:     http://127.0.0.1:$(PORT)/board/"
	@echo "  API docs:  http://127.0.0.1:$(PORT)/api/docs/"
	@echo "  Ctrl-C stops every process."
	@echo ""
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m dispatch.embedded_redis $(BIN)/honcho start --port $(PORT) $(PROCESSES)

test: $(STAMP)
	$(BIN)/python -m dispatch.embedded_redis $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) db.sqlite3* staticfiles artifacts
