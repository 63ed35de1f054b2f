"""The constitution: versioned principles a judge applies, and how they are sampled per pair."""

from __future__ import annotations

import random
from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator


class ConstitutionError(ValueError):
    pass


class Principle(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    axis: str = "general"
    weight: float = Field(default=1.0, gt=0)


class Constitution(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    version: str = Field(min_length=1)
    principles: list[Principle] = Field(min_length=1)

    @field_validator("principles")
    @classmethod
    def _unique_ids(cls, principles: list[Principle]) -> list[Principle]:
        ids = [p.id for p in principles]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise ValueError(f"principle ids must be unique; repeated: {duplicates}")
        return principles

    @property
    def axes(self) -> list[str]:
        return sorted({p.axis for p in self.principles})

    def sample(self, pair_key: str, k: int, seed: int = 0) -> list[Principle]:
        """k principles without replacement, weighted, fixed for a given pair and seed."""
        return _weighted_sample(self.principles, k, random.Random(f"{seed}:{pair_key}"))

    def per_axis(self, pair_key: str, seed: int = 0) -> list[Principle]:
        """One principle per axis (weighted within the axis), fixed for a given pair and seed."""
        rng = random.Random(f"{seed}:{pair_key}")
        return [_weighted_sample([p for p in self.principles if p.axis == axis], 1, rng)[0] for axis in self.axes]

    def select(self, pair_key: str, mode: str, k: int = 1, seed: int = 0) -> list[Principle]:
        """The principles a pair is judged under: mode is all / random (k of them) / per_axis."""
        if mode == "all":
            return list(self.principles)
        if mode == "per_axis":
            return self.per_axis(pair_key, seed)
        if mode == "random":
            return self.sample(pair_key, k, seed)
        raise ValueError(f"unknown principle sampling mode {mode!r} (all, random, per_axis)")


def _weighted_sample(principles: list[Principle], k: int, rng: random.Random) -> list[Principle]:
    if k >= len(principles):
        return list(principles)
    # Efraimidis-Spirakis: the k largest u^(1/w) are a weighted sample without replacement.
    return sorted(principles, key=lambda p: rng.random() ** (1.0 / p.weight), reverse=True)[:k]


SHIPPED = "shipped:"  # judge.constitution: shipped:<name> names a constitution shipped with prefcurate


def shipped_constitution_path(name: str = "default") -> Path:
    return Path(str(resources.files("prefcurate.curation.judging").joinpath(f"constitutions/{name}.yaml")))


def default_constitution_path() -> Path:
    return shipped_constitution_path("default")


def load_constitution(path: str | Path | None) -> Constitution:
    """A constitution file, a shipped one (shipped:default, shipped:ultrafeedback), or (None) the default."""
    if path is not None and str(path).startswith(SHIPPED):
        name = str(path)[len(SHIPPED):]
        path = shipped_constitution_path(name)
        if not path.is_file():
            shipped = sorted(p.stem for p in path.parent.glob("*.yaml"))
            raise ConstitutionError(f"no shipped constitution {name!r}; shipped: {', '.join(shipped)}")
    path = Path(path) if path else default_constitution_path()
    if not path.is_file():
        raise ConstitutionError(f"constitution file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConstitutionError(f"{path}: not valid YAML: {error}") from None
    try:
        return Constitution.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        raise ConstitutionError(f"{path}: {problems}") from None
