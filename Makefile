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

test: setup
	bash scripts/setup_test_services.sh
	$(VENV)/python -m pytest -m "slow or not slow" --durations=25

test-fast: setup
	$(VENV)/python -m pytest

clean:
	rm -rf prefcurate_out prefcurate.duckdb prefcurate.duckdb.wal
