# Quick start: `make demo` runs the main job, `make test` the tests; each sets up .venv first.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-slow test-long bench lint clean compile uncompile

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pvspin demo

test: $(STAMP)
	$(BIN)/pytest -n 2 -q

test-slow: $(STAMP)
	$(BIN)/pytest -n 2 -q -m slow || [ $$? -eq 5 ]

# Not in CI, an hour or more each here: Dat3M's 4,008 LKMM tests per model version (needs
# ../shared/litmus), pvticket 3 x 2.
test-long: $(STAMP)
	$(BIN)/pytest -n 2 -q -m long || [ $$? -eq 5 ]

bench: $(STAMP)
	$(BIN)/python benchmarks/bench_engine.py
	$(BIN)/python benchmarks/bench_unlock.py
	$(BIN)/python benchmarks/bench_check.py --budget 120
	$(BIN)/python benchmarks/bench_pct.py

# Optional: the simulator's hot modules compiled with mypyc (needs a C compiler and Python headers;
# see pvspin/sim/_compiled.py); the pure-Python engine gives the same results, byte for byte, and
# is what runs without this.  The digest test checks the compiled engine against the recorded results.
compile: $(STAMP) uncompile
	$(BIN)/pip install --quiet 'mypy>=1.10' 'setuptools>=77'
	$(BIN)/python -m pvspin.sim._compiled
	$(BIN)/pytest -q -p no:cacheprovider tests/test_sim_digest.py

uncompile:
	rm -rf src/build src/*__mypyc*.so src/pvspin/sim/*.so src/pvspin/sim/.compiled

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks

clean: uncompile
	rm -rf $(VENV) build *.egg-info src/*.egg-info
