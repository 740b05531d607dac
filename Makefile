# Multimodal AI, executable - the two commands a reader needs are `make book` and `make test`.
# Every target sets itself up: it creates or repairs .venv and installs what it needs.

VENV    := .venv
BIN     := $(VENV)/bin
PYTHON  ?= python3
CHAPTER ?=
# Notebooks executed by the book's tooling hide progress bars and keep one summary line.
export MMBOOK_EXECUTE := 1
export PYTHONHASHSEED := 0

.PHONY: help setup book test lint unit notebooks site colab-check lab execute bench clean

help:
	@echo "make book     build the site from the stored notebook outputs into _build/html"
	@echo "make test     lint, unit tests, notebook regression (nbval), book build, browser check, Colab check"
	@echo "make colab-check  setup cells, solutions and real-thing cells under Colab's package versions"
	@echo "make lab      open JupyterLab on the lessons"
	@echo "make execute  re-run the lessons and store their outputs (CHAPTER=01 for one)"
	@echo "make bench    time every lesson in a fresh kernel and write book/runtimes.md"

setup:
	@PYTHON=$(PYTHON) scripts/setup_env.sh

book: setup
	@$(BIN)/python scripts/vendor_static.py
	$(BIN)/jupyter-book build . --warningiserror --keep-going --quiet
	@echo "The book is built: $(CURDIR)/_build/html/index.html"

lint: setup
	$(BIN)/ruff check utils tests scripts
	@# Notebook code must fit the rendered page: 100 characters (tests/site checks the page itself).
	$(BIN)/ruff check --select E501 --line-length 100 lessons solutions

unit: setup
	$(BIN)/pytest tests --ignore=tests/site -q

notebooks: setup
	@scripts/ensure_debian.sh tesseract-ocr:tesseract
	$(BIN)/pytest --nbval-lax --nbval-current-env -p no:cacheprovider -q lessons solutions

site: setup
	@scripts/ensure_debian.sh chromium:chromium chromium-driver:chromedriver
	$(BIN)/pytest tests/site -q

colab-check: setup
	@PYTHON=$(PYTHON) scripts/colab_env.sh
	.venv-colab/bin/python scripts/colab_check.py
	.venv-colab/bin/python -m pytest tests/test_hub.py -q -p no:cacheprovider

test: setup
	@MAKE="$(MAKE)" scripts/stage_times.sh lint unit notebooks book site colab-check
	@echo "make test: all stages passed"

lab: setup
	@scripts/ensure_debian.sh tesseract-ocr:tesseract
	$(BIN)/jupyter lab lessons

execute: setup
	@scripts/ensure_debian.sh tesseract-ocr:tesseract
	$(BIN)/python scripts/sync_repository.py
	$(BIN)/python scripts/notebooks.py execute $(CHAPTER)

bench: setup
	@scripts/ensure_debian.sh tesseract-ocr:tesseract
	$(BIN)/python scripts/notebooks.py bench $(CHAPTER)

clean:
	rm -rf _build _vendor _vendor_root utils/_solutions
