# Clinic MFA: `make run` serves the app on http://127.0.0.1:5000, `make test` runs the checks.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FLASK := $(BIN)/flask --app app

.PHONY: run test lint format bench soak clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Development: SQLite in instance/, a generated SECRET_KEY, mail and SMS printed to the console.
run: $(STAMP)
	MFA_ENV=development $(FLASK) db upgrade
	MFA_ENV=development $(FLASK) bootstrap
	MFA_ENV=development $(FLASK) run --host 127.0.0.1 --port 5000

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run

# The bench plus a memory soak: SOAK_SECONDS of sign-ins, worker RSS read every 10 s.
SOAK_SECONDS ?= 90
soak: $(STAMP)
	$(BIN)/python -m bench.run --soak $(SOAK_SECONDS)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
