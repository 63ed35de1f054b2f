# `make run` sets up and runs the whole pipeline on the embedded defaults;
# `make test` sets up and runs every test (slow ones included). CI runs `make test`.
VENV := .venv/bin
STAMP := .venv/.prefcurate-installed

.PHONY: setup run test test-fast clean
setup: $(STAMP)

$(STAMP): pyproject.toml scripts/setup.sh
	bash scripts/setup.sh
	touch $@

run: setup
	$(VENV)/prefcurate run $(if $(CONFIG),--config $(CONFIG))

# Test files are spread over TEST_WORKERS processes (pytest-xdist), each file kept on one worker so its
# module fixtures (servers, clusters) start once; `make test TEST_WORKERS=0` runs them in this process.
TEST_WORKERS ?= 2
test: setup
	bash scripts/setup_test_services.sh
	$(VENV)/python -m pytest -m "slow or not slow" -n $(TEST_WORKERS) --dist loadfile --durations=25

test-fast: setup
	$(VENV)/python -m pytest

clean:
	rm -rf prefcurate_out prefcurate.duckdb prefcurate.duckdb.wal
