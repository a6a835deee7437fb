# Two entry points that do all the set-up on a fresh machine (see README.md):
#   make demo   build + validate the embedded demo dataset into build/demo
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fea build
	$(BIN)/fea report build/demo --output reports/demo/report.html
	@echo ""
	@echo "Produced:"
	@echo "  build/demo/                          the dataset: data/*.parquet, rejects/, manifest.json, README.md (card)"
	@echo "  build/demo/validation/report.html    the Great Expectations result"
	@echo "  reports/demo/report.html             labels, AU frequencies, sample faces: open file://$(CURDIR)/reports/demo/report.html"
	@echo "Next:"
	@echo "  source $(VENV)/bin/activate"
	@echo "  fea inspect build/demo                                  counts, labels, sample conversations"
	@echo "  fea validate build/demo                                 the validation suite again (exit 1 if it fails)"
	@echo "  fea export build/demo --format llava -o exports/llava   or sharegpt | openai | hf"
	@echo "  make test                                               the test suite"

test: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks

clean:
	rm -rf build $(VENV)
