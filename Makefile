# make demo: set up, simulate a day of 200 hosts, hunt it.  make test: set up, run every check.
# Setup installs the Spark extra too, so the DuckDB/Spark parity tests run wherever Java is.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: setup demo test lint bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip==26.3
	$(BIN)/pip install --quiet -e '.[dev,spark]'
	touch $(STAMP)

demo: $(STAMP)
	rm -rf demo
	$(BIN)/homecall simulate --out demo/logs --hosts 200 --days 1 --seed 7
	printf '[detectors.young-domain]\nnrd_file = "demo/logs/nrd.txt"\n' > demo/homecall.toml
	$(BIN)/homecall hunt demo/logs --store demo/store --config demo/homecall.toml \
		--json demo/findings.jsonl --top 25

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts
	$(BIN)/mypy
	$(BIN)/lint-imports

# The Spark parity tests wait mostly on Spark's scheduling: they run beside the others (two
# processes for the two cores), their report printed after the others'; both must pass.
test: $(STAMP) lint
	@$(BIN)/pytest -m spark > .spark-tests.log 2>&1 & spark=$$!; \
	$(BIN)/pytest -m "not spark"; plain=$$?; \
	wait $$spark; on_spark=$$?; \
	echo "--- Spark parity tests (pytest -m spark) ---"; cat .spark-tests.log; \
	test $$plain -eq 0 && test $$on_spark -eq 0

bench: $(STAMP)
	PYTHONPATH=. $(BIN)/python benchmarks/ingest.py
	PYTHONPATH=. $(BIN)/python benchmarks/beacon_grid.py
	PYTHONPATH=. $(BIN)/python benchmarks/beacon_speed.py
	PYTHONPATH=. $(BIN)/python benchmarks/web_speed.py
	PYTHONPATH=. $(BIN)/python benchmarks/dga_eval.py
	PYTHONPATH=. $(BIN)/python benchmarks/pcap_speed.py
	PYTHONPATH=. $(BIN)/python benchmarks/pcap_search.py

clean:
	rm -rf $(VENV) demo homecall-store .pytest_cache .mypy_cache .ruff_cache
