# Two entry points that do all the set-up on a fresh machine (see README.md):
#   make demo   build + validate the embedded demo dataset into build/demo
#   make test   run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint clean au-head

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

# The default AU head (schemas/au_head.json), learned from CK+ FACS codes with the knowledge head
# (schemas/au_head_prior.json) as its prior and CK+ first frames as neutral negatives. Deterministic;
# needs the CK+ release layout (research use) and a csv corpus of photos (labels.csv + images/) whose faces, as
# taken and cut down to 48 px grey, show the head what a change of resolution does (no labels read):
# make au-head CKPLUS=path/to/ckplus WILD=path/to/photos
CKPLUS ?= ../shared/corpora/ckplus48-facs-even
WILD ?= ../shared/corpora/faces-in-the-wild-sample
PRIOR_BUILD = $(BIN)/fea build --no-progress --set dedup.enabled=false --set au.head=schemas/au_head_prior.json
au-head: $(STAMP)
	$(PRIOR_BUILD) --source "ckplus:$(CKPLUS),neutral_first_frame=true" -o build/au-head/ckplus
	$(BIN)/python benchmarks/derived.py fer48 $(WILD) build/au-head/wild48-corpus
	$(PRIOR_BUILD) --source "csv:$(WILD),image_dir=images" -o build/au-head/wild
	$(PRIOR_BUILD) --source "csv:build/au-head/wild48-corpus,image_dir=images" -o build/au-head/wild48
	$(BIN)/fea calibrate build/au-head/ckplus --base schemas/au_head_prior.json --name fea-ckplus \
		--views build/au-head/wild build/au-head/wild48 \
		--terms "learned from CK+ FACS codes (Lucey et al. 2010), research use" -o schemas/au_head.json
