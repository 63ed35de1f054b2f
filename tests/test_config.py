from pathlib import Path

import pytest

from prefcurate.core.config import ConfigError, PrefcurateConfig, load_config

EXAMPLE = Path(__file__).parent.parent / "examples" / "prefcurate.yaml"


def test_defaults_need_no_file():
    config = load_config(None)
    assert config.store.path == Path("prefcurate.duckdb")
    assert config.generate.backend.kind == "transformers"


def test_example_config_spells_out_exactly_the_defaults():
    assert load_config(EXAMPLE) == PrefcurateConfig()


def test_yaml_and_toml_give_the_same_config(tmp_path):
    (tmp_path / "c.yaml").write_text("generate:\n  n_candidates: 6\npairs:\n  max_pairs_per_prompt: 2\n")
    (tmp_path / "c.toml").write_text("[generate]\nn_candidates = 6\n[pairs]\nmax_pairs_per_prompt = 2\n")
    assert load_config(tmp_path / "c.yaml") == load_config(tmp_path / "c.toml")
    assert load_config(tmp_path / "c.yaml").generate.n_candidates == 6


@pytest.mark.parametrize("text, field, reason", [
    ("generate:\n  n_candidates: 0\n", "generate.n_candidates", "greater than 0"),
    ("curate:\n  min_agreement: 1.5\n", "curate.min_agreement", "less than or equal to 1"),
    ("judge:\n  panel:\n    - backend:\n        kind: vllm\n", "judge.panel.0.backend.kind", "'transformers', 'openai', 'openai_batch' or 'batch_files'"),
    ("pairs:\n  stratgy: all\n", "pairs.stratgy", "unknown field"),
    ("curate:\n  splits:\n    validation: 0.5\n    test: 0.5\n", "curate.splits", "below 1"),
    ("judge:\n  panel:\n    - backend:\n        kind: openai\n", "judge.panel.0.backend", "needs the served model's name"),
    ("judge:\n  panel: []\n", "judge.panel", "at least 1 item"),
    ("judge:\n  panel:\n    - {backend: {kind: openai, model: m}}\n    - {backend: {kind: openai, model: m}, temperature: 1}\n",
     "judge", "need distinct `name`s"),
    ("curate:\n  length:\n    max_ratio: 0.5\n", "curate.length.max_ratio", "greater than or equal to 1"),
    ("curate:\n  dedup:\n    near:\n      threshold: 0\n", "curate.dedup.near.threshold", "greater than 0"),
    ("curate:\n  dedup:\n    near:\n      shingle: sentence\n", "curate.dedup.near.shingle", "'word' or 'char'"),
    ("curate:\n  max_pairs_per_prompt: 0\n", "curate.max_pairs_per_prompt", "greater than or equal to 1"),
    ("curate:\n  pair_selection: best\n", "curate.pair_selection", "'confidence', 'margin' or 'random'"),
    ("curate:\n  decontamination:\n    benchmarks:\n      - {path: b.jsonl}\n", "curate.decontamination.benchmarks.0.name",
     "Field required"),
    ("store:\n  memory_limit: lots\n", "store.memory_limit", "should match pattern"),
    ("judge:\n  principle_sampling: some\n", "judge.principle_sampling", "'all', 'random' or 'per_axis'"),
    ("judge:\n  prices:\n    gpt: {input_per_million: -1, output_per_million: 1}\n", "judge.prices.gpt.input_per_million",
     "greater than or equal to 0"),
])
def test_invalid_values_name_the_field_and_reason(tmp_path, text, field, reason):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert str(path) in message
    assert field in message
    assert reason in message


def test_unreadable_files_are_refused_clearly(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.yaml")
    (tmp_path / "c.json").write_text("{}")
    with pytest.raises(ConfigError, match="must end in"):
        load_config(tmp_path / "c.json")
    (tmp_path / "broken.yaml").write_text("generate: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "broken.yaml")


def test_the_example_config_spells_out_every_field():
    """Equal to the defaults is not enough: a field left out of the example is a field nobody reads
    about. Every field of every section (and of the first panel member) is written there."""
    from typing import get_origin

    import yaml
    from pydantic import BaseModel

    written = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    missing = []

    def walk(model: type[BaseModel], data, path: str) -> None:
        for name, field in model.model_fields.items():
            where = f"{path}.{name}" if path else name
            if not isinstance(data, dict) or name not in data:
                missing.append(where)
                continue
            value, annotation = data[name], field.annotation
            if get_origin(annotation) is dict:  # a mapping of named entries (prices, schedules): any keys
                continue
            nested = [arg for arg in getattr(annotation, "__args__", (annotation,))
                      if isinstance(arg, type) and issubclass(arg, BaseModel)]
            if nested and isinstance(value, dict):
                walk(nested[0], value, where)
            elif nested and isinstance(value, list) and value and isinstance(value[0], dict):
                walk(nested[0], value[0], f"{where}[0]")

    walk(PrefcurateConfig, written, "")
    assert not missing, f"examples/prefcurate.yaml does not spell out: {missing}"
