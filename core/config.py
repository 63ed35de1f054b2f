"""The one configuration model of prefcurate.

Every field has a default that works offline on a laptop, so `prefcurate run` needs no file at all.
A YAML or TOML file overrides any subset; unknown keys and bad values are rejected with the
field's dotted path and the reason.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

EMBEDDED_MODEL = "embedded:smollm2-135m-instruct"

Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]


class ConfigError(ValueError):
    """A configuration file or value that cannot be used."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class StoreConfig(_Section):
    path: Path = Path("prefcurate.duckdb")
    # DuckDB's memory limit, e.g. "2GB"; beyond it, big queries spill to a temporary directory.
    # None: DuckDB's default (80% of RAM).
    memory_limit: str | None = Field(default="2GB", pattern=r"^\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)$")
    # DuckDB allows one writing process per file. A flow that finds the store busy waits up to this
    # long for the other writer to finish its stage, then fails with a clear error.
    lock_timeout_s: Annotated[float, Field(ge=0)] = 600.0
    # Readers never wait for a writer: while a stage writes, a copy of the store, `<path>.snapshot`,
    # is republished every this many seconds (and when the stage ends). `prefcurate query` reads it
    # when the store is busy; point long-lived connections (notebooks, dashboards) at it. None: off.
    snapshot_every_s: Annotated[float, Field(gt=0)] | None = 5.0


class IngestConfig(_Section):
    # A JSONL/Parquet/CSV file, a `datasets` folder saved with save_to_disk, or a hub dataset name.
    # None means the prompts shipped with the package.
    source: str | None = None
    format: Literal["auto", "jsonl", "parquet", "csv", "datasets"] = "auto"
    split: str = "train"
    # Maps our field names to the source's column names.
    prompt_column: str = "prompt"
    id_column: str | None = None
    # What verifiers can check, read when the source has these columns (judge.panel[].kind: verifier):
    # a math reference answer, Python tests for code (asserts run after the response's code), and
    # instruction constraints (a JSON object: min_words, max_words, must_include, format, ...).
    reference_answer_column: str = "reference_answer"
    tests_column: str = "tests"
    constraints_column: str = "constraints"
    # A read that rejects more than this share of its rows fails (exit 1; the good rows and the
    # rejects are stored); one that keeps none always fails. Also for import-pairs and the gold import.
    max_reject_share: Fraction = 0.5


BATCH_KINDS = ("openai_batch", "batch_files")


class BackendConfig(_Section):
    """Where chat completions come from: a local transformers model or an OpenAI-compatible server."""

    # openai_batch: the same calls through the provider's batch API (OpenAI Batch protocol): about
    # half the price, answered within completion_window; `judge` submits and a later run collects.
    # batch_files: the same batches as files in batch_dir, for an offline runner (vLLM's run_batch).
    kind: Literal["transformers", "openai", "openai_batch", "batch_files"] = "transformers"
    # transformers: a local folder, a hub name, or `embedded:smollm2-135m-instruct`.
    # openai: the model name the server expects.
    model: str = EMBEDDED_MODEL
    base_url: str | None = None  # e.g. http://127.0.0.1:8000/v1 for vLLM or llama.cpp server
    # The API key is read from this environment variable, never from the config file.
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: PositiveInt = 16
    # A deadline for each attempt's whole answer (not per read: a server sending a byte now and then
    # still times out). A call makes at most 1 + max_retries attempts: with the defaults, about 5
    # minutes in all, plus backoff.
    timeout_s: Annotated[float, Field(gt=0)] = 60.0
    max_retries: Annotated[int, Field(ge=0)] = 4
    # A stage stops after this many calls in a row fail to reach the endpoint (each after the
    # client's retries), and at once when the endpoint refuses the key (401/403) or lacks the model (404).
    max_consecutive_failures: PositiveInt = 16
    # openai: a stage stops (exit 1, naming the endpoint) when the endpoint answers nothing at all for
    # this long while calls wait; what was answered is stored. At least timeout_s: one slow answer
    # is not a stall.
    stall_s: Annotated[float, Field(gt=0)] = 300.0
    # Client-side rate limits (openai only), so a big run stays under the provider's quota
    # instead of leaning on 429s. Tokens are estimated before sending (prompt chars / 4 + max_tokens).
    requests_per_minute: PositiveInt | None = None
    tokens_per_minute: PositiveInt | None = None
    # openai_batch only: the provider's limits per input file, and its completion window.
    batch_max_requests: PositiveInt = 50_000
    batch_max_bytes: PositiveInt = 190_000_000
    completion_window: str = "24h"
    batch_dir: Path | None = None  # batch_files: where requests are written and results read
    # How often a waiting run (--wait, `prefcurate run`) polls its batches, and how many times a call
    # that failed inside a batch is submitted before its failure stands.
    batch_poll_s: Annotated[float, Field(gt=0)] = 30.0
    batch_attempts: PositiveInt = 3
    # transformers only
    batch_size: PositiveInt = 8
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"

    @model_validator(mode="after")
    def _openai_needs_model_name(self) -> BackendConfig:
        if self.kind == "batch_files" and self.batch_dir is None:
            raise ValueError("batch_dir: a batch_files backend needs the folder its runner reads and writes")
        if self.kind != "transformers" and self.model.startswith("embedded:"):
            raise ValueError("model: an openai backend needs the served model's name, not an embedded model")
        if self.kind == "openai" and self.stall_s < self.timeout_s:
            raise ValueError(f"stall_s ({self.stall_s:g}) must be at least timeout_s ({self.timeout_s:g}): one answer "
                             "may take timeout_s without the endpoint being stuck")
        return self


class GenerateConfig(_Section):
    backend: BackendConfig = BackendConfig()
    n_candidates: PositiveInt = 4
    max_new_tokens: PositiveInt = 160
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.8
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = 0.95
    seed: int = 0
    system_prompt: str | None = None


# Pair strategies that read candidate scores (rating and ranking judges, rated imports, annotators'
# ratings) instead of drawing pairs blind.
SCORE_STRATEGIES = ("best_vs_worst", "best_vs_random_lower", "all_with_margin")


class PairingConfig(_Section):
    # all: every pair of distinct candidates; random: up to max_pairs_per_prompt, seeded per prompt.
    # From scores (candidate_score_summary: each candidate's mean score over its raters):
    #   best_vs_worst         the best-scored candidate against the worst (UltraFeedback binarized);
    #   best_vs_random_lower  the best against one scored lower, drawn with the seed (Tulu 3);
    #   all_with_margin       every pair whose scores differ by at least min_margin.
    # A prompt whose candidates have no scores yet gets no pair (the report counts them).
    strategy: Literal["all", "random", "best_vs_worst", "best_vs_random_lower", "all_with_margin"] = "random"
    max_pairs_per_prompt: PositiveInt = 3
    seed: int = 0
    # The score difference a pair from scores needs, on the scale `margin_scale` names: raw (the
    # judges' own scale, e.g. 1-5) or normalized (each rater's scores as z-scores, so a rater who gives
    # everything 4-5 does not count for more than one who spreads 1-5).
    min_margin: Annotated[float, Field(ge=0)] = 0.0
    margin_scale: Literal["raw", "normalized"] = "raw"
    # Equal scores make no pair unless ties are kept (stored as a pair the score raters call a tie).
    keep_ties: bool = False


class VerifierConfig(_Section):
    """A verifier member's checks (curation/verifiers/verify.py)."""

    domains: list[Literal["math", "code", "constraints"]] = ["math", "code", "constraints"]
    time_limit_s: Annotated[float, Field(gt=0)] = 10.0  # per response (code), and per math checker start
    memory_mb: PositiveInt = 1024  # the sandboxed process's address space
    parallel: PositiveInt = 2  # code checks run at once


class PanelJudgeConfig(_Section):
    """One member of the judge panel: a model, where it runs, and how it is asked; or a verifier."""

    # llm: a model asked for a verdict; verifier: checks (math answers, code tests, constraints) on
    # the pairs whose prompts declare them, labelling a pair only when exactly one response passes.
    kind: Literal["llm", "verifier"] = "llm"
    verifier: VerifierConfig = VerifierConfig()
    # How an LLM judge labels (curation/judging/modes.py):
    #   pairwise  two responses compared under one principle, in both orders (2 calls per pair and principle);
    #   rating    each candidate scored alone on every principle as an aspect, in one call
    #             (judge.rating: the scale); pairs and their labels then come from the scores;
    #   ranking   a prompt's candidates (up to judge.ranking.max_candidates) ranked in one call, asked
    #             again in the reverse order to cancel position bias.
    mode: Literal["pairwise", "rating", "ranking"] = "pairwise"

    # The judge's name in the store and reports; defaults to the backend's `model`. Members that
    # share a model (e.g. at two temperatures) need names of their own.
    name: str | None = Field(default=None, min_length=1)
    backend: BackendConfig = BackendConfig()
    max_new_tokens: PositiveInt = 64
    temperature: Annotated[float, Field(ge=0.0, le=2.0)] = 0.0
    # How the verdict is asked for:
    #   auto        json_schema on openai endpoints (falling back to text if the endpoint refuses it),
    #               closed-answer scoring of A/B/tie on local transformers models;
    #   json_schema / json_object   the `response_format` of the chat-completions API;
    #   text        free text, parsed robustly.
    output_format: Literal["auto", "json_schema", "json_object", "text"] = "auto"

    @model_validator(mode="after")
    def _batches_cannot_probe(self) -> PanelJudgeConfig:
        if self.kind == "llm" and self.backend.kind in BATCH_KINDS and self.output_format == "auto":
            raise ValueError("output_format: a batch judge (backend.kind openai_batch) needs json_schema, json_object "
                             "or text: auto decides by probing the endpoint with a few calls, which a batch cannot do")
        return self


class Price(_Section):
    """US dollars per million tokens."""

    input_per_million: Annotated[float, Field(ge=0)]
    output_per_million: Annotated[float, Field(ge=0)]
    # What a call through the provider's batch API costs, as a share of the online price (OpenAI: half).
    batch_share: Annotated[float, Field(gt=0, le=1)] = 0.5


def judge_name(judge: PanelJudgeConfig) -> str:
    return judge.name or ("verifier" if judge.kind == "verifier" else judge.backend.model)


class CascadeConfig(_Section):
    """A judge cascade (curation/judging/cascade.py): the first level's judge sees every pair, each
    next one only the pairs the levels before it were unsure of, humans the rest."""

    levels: list[str] = Field(min_length=1)  # panel member names, the cheapest first
    # Each level's threshold keeps the agreement of its accepted labels with gold at or above this,
    # with this confidence (a one-sided lower bound), or the level accepts nothing and says why.
    target_agreement: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.9
    confidence: Annotated[float, Field(gt=0.5, lt=1.0)] = 0.95
    min_gold: PositiveInt = 30  # gold pairs a level's judge must have labelled to fit its threshold
    humans: bool = True  # what no level accepts goes to annotators (argilla.push reason `cascade`)


class RatingConfig(_Section):
    """The scale rating judges score on."""

    scale_min: int = 1
    scale_max: int = 5

    @model_validator(mode="after")
    def _a_scale(self) -> RatingConfig:
        if not 2 <= self.scale_max - self.scale_min + 1 <= 10 or self.scale_min < 0:
            raise ValueError("scale_min..scale_max: 2 to 10 whole-number points from 0 up (one token each, so "
                             f"log-probabilities give the score's distribution); got {self.scale_min}..{self.scale_max}")
        return self


class RankingConfig(_Section):
    """How ranking judges see a prompt's candidates."""

    # Candidates ranked in one call; a prompt with more is ranked on a seeded sample of this many.
    max_candidates: Annotated[int, Field(ge=2, le=26)] = 8
    # The second call shows the candidates in the reverse order: averaging the two rankings cancels
    # a judge's preference for a position. False: one call (cheaper, and position bias stays in).
    both_orders: bool = True


class JudgeConfig(_Section):
    # Every pair is judged by every pairwise member of the panel; rating and ranking members score
    # every candidate of every prompt in the pool instead.
    panel: list[PanelJudgeConfig] = Field(default_factory=lambda: [PanelJudgeConfig()], min_length=1)
    # None means the constitution shipped with the package; shipped:ultrafeedback is UltraFeedback's
    # four rating aspects (helpfulness, honesty, instruction following, truthfulness).
    constitution: Path | None = None
    rating: RatingConfig = RatingConfig()
    ranking: RankingConfig = RankingConfig()
    # Which principles each pair is judged under: all of them; k at random (weighted, seeded by
    # the pair id); or one per axis (weighted, seeded by the pair id).
    principle_sampling: Literal["all", "random", "per_axis"] = "random"
    principles_per_pair: PositiveInt = 1  # k, for principle_sampling = random
    seed: int = 0
    # Price per model name (the backend's `model`), for cost estimates and the run report.
    prices: dict[str, Price] = Field(default_factory=dict)
    # Answers are committed to the store every this many (and every 5 s). Each answer also goes to
    # an append-only journal beside the store as it arrives (core/journal.py), replayed by the next
    # run: a killed run then loses only the calls in flight. journal: false loses up to commit_every.
    commit_every: PositiveInt = 256
    journal: bool = True
    # Calls per Prefect task: the unit of progress (and of retry) in the Prefect UI.
    calls_per_task: PositiveInt = 2000
    # Pairs (and, for rating and ranking judges, prompts to score) planned and asked at a time when
    # there are more (online judges, no cascade or budget): memory holds one page of texts and
    # calls, however many the store has.
    page_pairs: PositiveInt = 20000
    # Imported pairs already carry a label: the judges see a seeded sample of them, enough to measure
    # their agreement with it (judge_quality.gold_agreement) without paying for every pair. None: all.
    max_imported_pairs: Annotated[int, Field(ge=0)] | None = 32
    # A hard budget on what judging in this store spends (stored answers, calls waiting in batches,
    # and upper-bound estimates of new calls): calls that would pass it are not asked or submitted.
    # Needs a price for every judge's model. None: no budget.
    max_cost_usd: Annotated[float, Field(ge=0)] | None = None
    # A cheap judge first, a stronger one for what it is unsure of, humans last; None: every judge
    # judges every pair.
    cascade: CascadeConfig | None = None

    @model_validator(mode="after")
    def _unique_judge_names(self) -> JudgeConfig:
        names = [judge_name(judge) for judge in self.panel]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"panel: judges sharing a model need distinct `name`s; repeated: {repeated}")
        return self

    @model_validator(mode="after")
    def _cascade_levels_are_the_llm_judges(self) -> JudgeConfig:
        if self.cascade is None:
            return self
        llm = [judge_name(judge) for judge in self.panel if judge.kind == "llm"]
        if sorted(self.cascade.levels) != sorted(llm):
            raise ValueError(f"cascade.levels: every LLM judge of the panel once, cheapest first ({', '.join(llm)}); "
                             f"got {', '.join(self.cascade.levels)}")
        if any(judge.kind == "llm" and judge.backend.kind in BATCH_KINDS for judge in self.panel):
            raise ValueError("cascade: batch judges cannot be in a cascade (each level waits for the one before)")
        return self


class GoldConfig(_Section):
    """Human-labelled pairs `prefcurate run` imports next to the generated ones: they measure the
    judges against people, train the reward model on human labels and test it on held-out ones.
    The default is a seeded sample of the HH-RLHF harmless pairs shipped with the package."""

    # Any file `import-pairs` reads, or shipped:hh-rlhf-harmless; None: no gold.
    source: str | None = "shipped:hh-rlhf-harmless"
    sample: PositiveInt | None = 500  # rows drawn from a JSONL source (seeded); None: every row
    seed: int = 0
    # Generate candidates for the gold prompts too (by default they only measure judges and models).
    generate: bool = False


SPLITS = ("train", "validation", "test")  # the curated export's splits, in this order


class SplitConfig(_Section):
    validation: Fraction = 0.1
    test: Fraction = 0.2

    @model_validator(mode="after")
    def _leaves_room_for_train(self) -> SplitConfig:
        if self.validation + self.test >= 1.0:
            raise ValueError("validation + test must be below 1 so that some prompts train")
        return self


class NearDuplicateConfig(_Section):
    """Near-duplicate prompts by MinHash LSH; one representative per cluster is kept."""

    enabled: bool = True
    # Character 5-grams suit prompts: short texts where one changed word moves word shingles a lot.
    shingle: Literal["word", "char"] = "char"
    shingle_size: PositiveInt = 5  # characters or words per shingle
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.7  # estimated Jaccard similarity
    num_perm: Annotated[int, Field(ge=16, le=1024)] = 128
    seed: int = 0


class DedupConfig(_Section):
    # Exact: the same text once lower-cased with punctuation and spacing removed (ingest already
    # collapses texts equal after NFKC, case-folding and whitespace).
    exact: bool = True
    near: NearDuplicateConfig = NearDuplicateConfig()


class BenchmarkFile(_Section):
    name: str = Field(min_length=1)
    path: Path
    text_column: str = "prompt"


class DecontaminationConfig(_Section):
    """Drop prompts whose word n-grams overlap a benchmark's: overlap = share of the prompt's
    n-grams found in the benchmark (a prompt shorter than n words is one n-gram)."""

    benchmarks: list[BenchmarkFile] = Field(default_factory=list)
    ngram: PositiveInt = 8
    threshold: Annotated[float, Field(gt=0.0, le=1.0)] = 0.5


class LengthConfig(_Section):
    min_chars: Annotated[int, Field(ge=0)] = 1  # both responses at least this long (1: no empty ones)
    max_chars: PositiveInt | None = None
    # Longer response / shorter response, in characters; None: no bound.
    max_ratio: Annotated[float, Field(ge=1.0)] | None = None
    # Rebalance so that this share of pairs has the longer response chosen (None: report only).
    target_chosen_longer: Fraction | None = None


# The sources a pair's label can come from, in their default precedence, and the rules that make
# the judges' label (sql/views/21_label_labelled_pairs.sql has a column set for each rule).
LabelSource = Literal["verifier", "human", "import", "judges"]
LABEL_SOURCES: tuple[str, ...] = get_args(LabelSource)
LabelRule = Literal["balanced", "vote", "dawid_skene"]
LABEL_RULES: tuple[str, ...] = get_args(LabelRule)


class CurateConfig(_Section):
    # Which label wins where a pair has several, first to last: a verifier's (exactly one response
    # passed its check), human annotations, a label imported with the dataset, the judges'.
    label_precedence: list[LabelSource] = list(LABEL_SOURCES)
    # The judges' label: balanced: the sign of the mean preference logit over both shown orders where the judge gave
    # verdict probabilities (a constant position bias cancels), the majority vote elsewhere.
    # vote: the strict majority of verdicts.
    # dawid_skene: a label model that weighs every judge and annotator by its reliability, estimated
    # from the votes themselves (curation/label_model.py).
    label_rule: LabelRule = "balanced"

    @model_validator(mode="after")
    def _every_source_once(self) -> CurateConfig:
        if sorted(self.label_precedence) != sorted(LABEL_SOURCES):
            raise ValueError(f"label_precedence: each of {', '.join(LABEL_SOURCES)} once, in the order they win")
        return self
    ties: Literal["drop", "keep"] = "drop"  # keep: exported with tie = true (and skipped by BT training)
    # Keep only pairs whose every (judge, principle) comparison names the same winner in both orders.
    # Off by default because the embedded 135M judge almost never is; turn it on with a real judge.
    require_position_consistency: bool = False
    # Verdicts read from an answer the endpoint cut at the token limit (judgments.cut_answer):
    # keep them, or drop the judge labels that rest on any of them.
    cut_verdicts: Literal["keep", "drop"] = "keep"
    min_confidence: Fraction = 0.0
    min_agreement: Fraction = 0.5
    min_human_agreement: Fraction = 0.0  # where pairs have human votes
    drop_refusals: bool = False  # refusal-only responses are always flagged; drop them too?
    length: LengthConfig = LengthConfig()
    dedup: DedupConfig = DedupConfig()
    decontamination: DecontaminationConfig = DecontaminationConfig()
    max_pairs_per_prompt: Annotated[int, Field(ge=1, le=64)] = 6
    # Which pairs a prompt keeps under the cap: the most confident labels, the largest judge
    # margins, or a seeded random choice.
    pair_selection: Literal["confidence", "margin", "random"] = "confidence"
    splits: SplitConfig = SplitConfig()
    seed: int = 0
    samples_per_step: Annotated[int, Field(ge=0, le=100)] = 5  # dropped pairs kept per funnel step
    # Refresh rounds curate cumulatively: a pair from k rounds ago is kept with probability
    # older_round_weight ** k (seeded per pair); 1.0 keeps every round's data.
    older_round_weight: Fraction = 1.0
    # Pairs whose imported or judge label the out-of-fold reward models strongly contradict
    # (`prefcurate suspect`, the pair_suspicion view): keep them, drop them, flip their label, or
    # hold them out of the curated set for annotators (annotate push sends them with reason suspect).
    suspect_labels: Literal["keep", "drop", "flip", "push"] = "keep"


class LoraConfig(_Section):
    """LoRA adapters through peft; the score head is always trained in full."""

    enabled: bool = False
    r: PositiveInt = 16
    alpha: PositiveInt = 32
    dropout: Fraction = 0.05
    target_modules: list[str] | Literal["all-linear"] = "all-linear"


class EnsembleConfig(_Section):
    members: Annotated[int, Field(ge=1, le=16)] = 1
    # Each member trains on a bootstrap resample of the train split (and its own seed); else seeds only.
    bootstrap: bool = False


class HeadConfig(_Section):
    """train.method head: a linear Bradley-Terry head on a frozen backbone cut after `layer` blocks."""

    layer: PositiveInt = 18  # SmolLM2-135M has 30; its middle-upper blocks score best with a linear head
    l2: Annotated[float, Field(gt=0)] = 0.3


PLACEMENT_FIELDS = {"work_pool", "job_variables", "storage", "wait_for_worker_s"}


class TrainConfig(_Section):
    # finetune: the Trainer updates the model (top `trainable_layers` blocks, LoRA, or all); head: a
    # linear head fitted on a frozen backbone cut after head.layer blocks, in one forward pass over
    # the data (seconds to minutes on a CPU, and better than a short fine-tune on a few hundred human
    # labels); auto: head on a CPU, finetune on a GPU. Both give an ordinary HF checkpoint.
    method: Literal["auto", "finetune", "head"] = "auto"
    head: HeadConfig = HeadConfig()
    base_model: str = EMBEDDED_MODEL
    # Tokens per sequence; longer ones keep their end (the answer and the turns just before it).
    # 256 keeps CPU runs short; raise it on a GPU.
    max_length: PositiveInt = 256
    epochs: PositiveInt = 2
    batch_size: PositiveInt = 4  # pairs per device per step (chosen and rejected: twice the sequences)
    gradient_accumulation_steps: PositiveInt = 1
    learning_rate: Annotated[float, Field(gt=0)] = 2e-5
    weight_decay: Annotated[float, Field(ge=0)] = 0.0
    warmup_ratio: Fraction = 0.1
    # Bradley-Terry with a margin: loss = -log sigmoid(r_chosen - r_rejected - margin_scale * m), with m
    # the label's confidence (or judge agreement) mapped to [0, 1] as 2 * (value - 0.5), or (score) the
    # chosen and rejected responses' score difference as a share of the scale (rating judges' pairs).
    margin: Literal["none", "confidence", "agreement", "score"] = "none"
    margin_scale: Annotated[float, Field(ge=0)] = 1.0
    # Reward centering (Eisenstein et al. 2023): + coefficient * mean((r_chosen + r_rejected)^2).
    center_rewards_coefficient: Annotated[float, Field(ge=0)] = 0.0
    # Train only the top N transformer blocks and the score head (None: all). Keeps CPU runs short.
    trainable_layers: Annotated[int, Field(ge=0)] | None = 4
    lora: LoraConfig = LoraConfig()
    gradient_checkpointing: bool = False
    # bf16/fp16: mixed precision (fp32 master weights). auto: bf16 where the device multiplies it
    # natively (a GPU with bf16, an AMX or AVX512-BF16 CPU), else fp32.
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    # auto: flash_attention_2 when installed on a GPU, else sdpa.
    attn_implementation: Literal["auto", "sdpa", "eager", "flash_attention_2"] = "auto"
    # Packed batches: the pairs' sequences share rows back to back (position ids restart at each), so
    # almost no compute goes to padding. auto: on (off: padded, length-grouped batches).
    packing: Literal["auto", "on", "off"] = "auto"
    # Regional compilation: each transformer block is compiled once (torch.compile, dynamic shapes)
    # and reused by every layer: ~20 s of compiling buys fused norms, rotary and activations, ~1.3x
    # per step on CPU. auto: on for models of 50M parameters or more where inductor has its compiler
    # (a C++ compiler on CPU, triton on CUDA), falling back to eager if compiling fails.
    compile: Literal["auto", "on", "off"] = "auto"
    ensemble: EnsembleConfig = EnsembleConfig()
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    seed: int = 0
    # -- where training runs (not part of the recipe: the same training gets the same run id anywhere)
    # None: in this process, on the store's machine. A Prefect work pool (a GPU pool): the pipeline
    # and refresh rounds upload the curated export (and a local base model) to `storage`, run the
    # training deployment that `prefcurate deploy` registers on that pool, wait for it, and record
    # the checkpoint it writes back to `storage`. Needs a Prefect server (PREFECT_API_URL).
    work_pool: str | None = None
    # The pool's job variables for the training run (image, env, GPU requests, ...): they override
    # the pool's base job template. Secrets belong in the worker's environment, not here.
    job_variables: dict[str, Any] = {}
    # A folder both machines reach: s3://bucket/prefix (credentials and endpoint from the environment:
    # AWS_ACCESS_KEY_ID, AWS_ENDPOINT_URL, ...), gs://..., or a shared filesystem path.
    storage: str | None = None
    # Fail (and cancel the run) when no worker of the pool has started it after this long.
    wait_for_worker_s: PositiveInt = 600

    @model_validator(mode="after")
    def _placement_needs_storage(self):
        if self.work_pool and not self.storage:
            raise ValueError("train.work_pool needs train.storage: a location both machines reach "
                             "(s3://bucket/prefix, or a shared folder)")
        return self

    def recipe(self) -> dict:
        """The training recipe: every field but where it runs (run ids and records are made of this)."""
        return self.model_dump(mode="json", exclude=PLACEMENT_FIELDS)


class FeatureConfig(_Section):
    """Frozen-backbone features of a (prompt, response): the output of one transformer block,
    mean-pooled over the tokens and at the last token. Computed once per backbone and text, cached."""

    backbone: str = EMBEDDED_MODEL
    # The block whose output is read (SmolLM2-135M has 30; its middle-upper blocks carry the most
    # preference signal on HH-RLHF with a linear head: see bench/README.md).
    layer: PositiveInt = 18
    max_length: PositiveInt = 256  # tokens; longer texts keep their end (the answer and the turns before it)
    batch_size: PositiveInt = 16
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    cache_dir: Path | None = None  # default <workdir>/features


class SuspicionConfig(_Section):
    """Suspect labels: k reward models trained on k folds of the labelled pairs score the pairs
    they did not see; a label they strongly contradict is flagged (`prefcurate suspect`)."""

    # heads: linear Bradley-Terry heads on frozen-backbone features (cheap: CPU, many folds and
    # repeats); finetune: the train: recipe on each fold (a GPU's job).
    method: Literal["heads", "finetune"] = "heads"
    features: FeatureConfig = FeatureConfig()
    folds: Annotated[int, Field(ge=2, le=20)] = 5
    repeats: Annotated[int, Field(ge=1, le=20)] = 3  # fold assignments averaged (heads only)
    l2: Annotated[float, Field(gt=0)] = 0.3  # ridge penalty of the heads, on standardised features
    # Flag a pair when the models' out-of-fold probability of its label is at most this.
    max_label_probability: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.3
    seed: int = 0


class EvaluateConfig(_Section):
    """Evaluation and scoring (prefcurate evaluate / score)."""

    split: Literal["validation", "test"] = "test"
    batch_size: PositiveInt = 16
    # auto: bf16 where the device multiplies it natively, else fp32. bf16 is mixed precision as in
    # training (bf16 matmuls, fp32 norms and residual stream): rewards move by a few hundredths.
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    # Regional compilation as in training. auto: for models of 50M parameters or more scoring 1,024
    # sequences or more at once, where it repays its ~15 s.
    compile: Literal["auto", "on", "off"] = "auto"
    # Reward-hacking probes on the held-out chosen responses (rm/probes.py): which direction of the
    # reward change counts as hacking, per edit. On harmlessness data a refusal may rightly raise it.
    probes: dict[Literal["padding", "flattery", "markdown", "repetition", "refusal"],
                 Literal["increase", "decrease", "none"]] = Field(default_factory=lambda: {
                     "padding": "increase", "flattery": "increase", "markdown": "increase", "repetition": "increase",
                     "refusal": "none"})
    probe_responses: Annotated[int, Field(ge=0)] = 200  # held-out chosen responses probed (0: no probes)


class ArgillaAccount(_Section):
    """An Argilla user. Secrets are never in the config: only the names of the environment
    variables that hold them."""

    username: str = Field(min_length=1, pattern=r"^[a-z0-9._-]+$")
    password_env: str | None = None  # annotators sign in to the UI with this password
    api_key_env: str | None = None  # the owner's API key (annotators get theirs from Argilla)


class ArgillaServerConfig(_Section):
    """The argilla-server prefcurate starts (`prefcurate argilla start`)."""

    # Loopback unless you mean to expose it (then put TLS in front of it).
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=1, le=65535)] = 6900
    home: Path | None = None  # its database, logs and secrets; defaults to <workdir>/argilla
    # argilla-server pins libraries that clash with prefcurate's, so it gets a venv of its own.
    venv: Path | None = None  # defaults to ~/.cache/prefcurate/argilla-server-2.8.0
    # auto: a real redis-server when one is on PATH, else an in-process stand-in (fakeredis).
    # Or a redis:// URL of a Redis you run.
    redis: Literal["auto", "redis-server", "fakeredis"] | Annotated[str, Field(pattern=r"^rediss?://")] = "auto"
    # sql: prefcurate's engine that answers searches from Argilla's own database (offline, no
    # Elasticsearch). Production with big datasets: elasticsearch + elasticsearch_url.
    search_engine: Literal["sql", "elasticsearch", "opensearch"] = "sql"
    elasticsearch_url: str | None = None
    database_url: str | None = None  # None: SQLite in home; e.g. postgresql+asyncpg://... in production
    start_timeout_s: Annotated[float, Field(gt=0)] = 120.0


class AnnotationPushConfig(_Section):
    """Which pairs go to annotators."""

    # all: every labelled-or-not pair not pushed yet; uncertain: pairs the judges are unsure about.
    policy: Literal["all", "uncertain"] = "uncertain"
    # A pair is uncertain when any of these holds (each can be switched off with None/False).
    max_agreement: Fraction | None = 0.75  # judge votes agree at most this much
    max_confidence: Fraction | None = 0.7  # the judge label's confidence at most this
    position_inconsistent: bool = True  # some (judge, principle) flips with the shown order
    unjudged: bool = False  # pairs no judge has seen yet
    # RM ensemble members disagree on which response is better (after `prefcurate score` with an
    # ensemble): the mean reward margin |r_a - r_b| is below the sum of the two rewards' member std.
    ensemble_disagreement: bool = True
    suspect: bool = True  # pairs whose label `prefcurate suspect` flagged (reason: suspect)
    cascade: bool = True  # pairs no level of a judge cascade accepted (reason: cascade)
    max_records: PositiveInt | None = 500  # per push, most uncertain first
    seed: int = 0  # shown order (A/B) per record is random, seeded by this and the pair id


class ArgillaConfig(_Section):
    # Route uncertain pairs to annotators as part of refresh rounds.
    enabled: bool = False
    url: str | None = None  # an Argilla you run elsewhere; default: the server below
    server: ArgillaServerConfig = ArgillaServerConfig()
    workspace: str = Field(default="prefcurate", min_length=1)
    dataset: str = Field(default="preference-pairs", min_length=1)
    owner: ArgillaAccount = ArgillaAccount(
        username="owner", password_env="PREFCURATE_ARGILLA_OWNER_PASSWORD", api_key_env="PREFCURATE_ARGILLA_API_KEY"
    )
    annotators: list[ArgillaAccount] = Field(default_factory=list)
    # Each record stays in the queue until this many annotators submitted it, so agreement can be measured.
    min_submitted: Annotated[int, Field(ge=1, le=20)] = 2
    push: AnnotationPushConfig = AnnotationPushConfig()
    timeout_s: Annotated[float, Field(gt=0)] = 30.0
    # What annotators are asked. pairwise: which of two responses is better (records in `dataset`,
    # pairs chosen by push.policy). rating / ranking: one prompt per record with up to
    # `responses_per_record` of its candidates (distinct texts, seeded order), each rated on
    # `rating`'s scale per aspect (`rating_dataset`), or ranked (`ranking_dataset`); every prompt
    # not sent yet goes (push.max_records at most), and the scores vote on each stored pair of them.
    label_mode: Literal["pairwise", "rating", "ranking"] = "pairwise"
    # Argilla wants every option of a ranking ranked, so a ranking record shows exactly this many
    # responses: prompts with fewer distinct candidates wait for ranking (rating takes 2 and up).
    responses_per_record: Annotated[int, Field(ge=2, le=10)] = 4
    rating: RatingConfig = RatingConfig()
    rating_aspects: list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]] = Field(
        default_factory=lambda: ["overall"], min_length=1)
    rating_dataset: str = Field(default="candidate-ratings", min_length=1)
    ranking_dataset: str = Field(default="candidate-rankings", min_length=1)

    @property
    def dataset_for_mode(self) -> str:
        """The Argilla dataset label_mode's records go to."""
        return {"pairwise": self.dataset, "rating": self.rating_dataset, "ranking": self.ranking_dataset}[self.label_mode]

    @property
    def resolved_url(self) -> str:
        return self.url or f"http://{self.server.host}:{self.server.port}"

    @model_validator(mode="after")
    def _unique_usernames(self) -> ArgillaConfig:
        names = [self.owner.username] + [account.username for account in self.annotators]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"annotators: usernames must be unique and differ from the owner's; repeated: {repeated}")
        return self


class PromotionGate(_Section):
    """When a retrained reward model replaces the current one: on paired bootstrap intervals of the
    candidate's accuracy minus the incumbent's (prefcurate/refresh/gate.py)."""

    confidence: Literal[0.8, 0.9, 0.95, 0.99] = 0.95
    # The on-policy gain's interval must lie above this ...
    min_on_policy_gain: Annotated[float, Field(ge=-1.0, le=1.0)] = 0.0
    # ... the fixed held-out change's interval may reach down to -max_fixed_drop at most (non-inferiority) ...
    max_fixed_drop: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    # ... and the candidate's within-prompt reward spread over the policy's responses (relative to its
    # spread on the fixed held-out set) must be at least this share of the incumbent's.
    min_relative_spread: Annotated[float, Field(ge=0.0)] = 0.5
    # Below this many held-out pairs the round refuses without looking (not enough evidence).
    min_heldout_pairs: Annotated[int, Field(ge=1)] = 4


class RefreshConfig(_Section):
    """On-policy refresh rounds (`prefcurate refresh`)."""

    # Prompts per round, drawn from the pool: never-drawn prompts first (seeded order); once every
    # prompt has been drawn, the least recently drawn ones are reused.
    prompts_per_round: PositiveInt = 32  # with on_policy_heldout 0.25: 8 on-policy held-out pairs
    seed: int = 0
    # The policy per round: a backend (an OpenAI-compatible endpoint, or a local checkpoint as
    # kind=transformers); rounds not listed use the built-in policy: best-of-N sampling of
    # generate.backend under the current reward model.
    policies: dict[int, BackendConfig] = Field(default_factory=dict)
    samples_per_prompt: Annotated[int, Field(ge=2)] = 4  # policy responses per prompt
    best_of_n: Annotated[int, Field(ge=1)] = 4  # base samples behind each best-of-N response
    # Pairs per prompt among the policy's responses: the highest- vs lowest-reward response, the
    # pair the RM ensemble is least sure about (member spread vs margin), or a seeded random pair.
    pair_selection: Literal["max_min", "ensemble_uncertain", "random"] = "max_min"
    # Share of each round's prompts whose pairs are held out (never trained on) to measure
    # on-policy accuracy.
    on_policy_heldout: Annotated[float, Field(gt=0.0, lt=1.0)] = 0.25
    # Retrain from the current reward model (warm start) or from train.base_model.
    warm_start: bool = True
    gate: PromotionGate = PromotionGate()


class ScheduleConfig(_Section):
    flow: Literal["judge", "collect-annotations", "refresh", "curate", "train", "pipeline"]
    cron: str = Field(min_length=9)  # five fields, e.g. "0 2 * * *"
    enabled: bool = True


def _default_schedules() -> dict[str, ScheduleConfig]:
    return {
        "judge-nightly": ScheduleConfig(flow="judge", cron="0 2 * * *"),
        "collect-annotations-hourly": ScheduleConfig(flow="collect-annotations", cron="15 * * * *"),
        "refresh-weekly": ScheduleConfig(flow="refresh", cron="0 4 * * 1"),
    }


class ServeConfig(_Section):
    """Scheduled deployments served by `prefcurate serve` against a Prefect server."""

    schedules: dict[str, ScheduleConfig] = Field(default_factory=_default_schedules)
    timezone: str = "UTC"


class FanoutConfig(_Section):
    """Where labelling calls are made (judge and generate, every online backend): in this process, or
    by the workers of a Dask cluster, through Prefect's Dask task runner (prefect-dask). Workers make
    the endpoint calls and hand the answers back; this process stays the store's one writer and
    journals each answer as its chunk returns. Keys are read from each worker's own environment."""

    runner: Literal["in_process", "dask"] = "in_process"
    # A running Dask scheduler, e.g. tcp://10.0.0.5:8786 (its workers need prefcurate installed and
    # the endpoint's key in their environment); None: a local cluster of `workers` processes started
    # for the run and stopped after it.
    address: str | None = None
    workers: PositiveInt = 2
    threads_per_worker: PositiveInt = 1
    # Calls per chunk (one Prefect task on one worker); None: twice the backend's max_concurrency
    # (bench/judge_fanout.py: each chunk costs this process a submission). What a worker lost
    # mid-chunk takes with it is asked again elsewhere; what returned is never asked again.
    chunk_calls: PositiveInt | None = None
    # Chunks handed out at once (queued on the cluster); None: two per worker thread. With the chunk
    # size, it bounds what a kill -9 of this process asks again: the calls in chunks not yet returned.
    chunks_in_flight: PositiveInt | None = None


class PrefcurateConfig(_Section):
    # Everything the pipeline writes (curated sets, checkpoints, reports, converted models).
    workdir: Path = Path("prefcurate_out")
    models_dir: Path | None = None  # defaults to <workdir>/models
    store: StoreConfig = StoreConfig()
    ingest: IngestConfig = IngestConfig()
    generate: GenerateConfig = GenerateConfig()
    pairs: PairingConfig = PairingConfig()
    judge: JudgeConfig = JudgeConfig()
    gold: GoldConfig = GoldConfig()
    curate: CurateConfig = CurateConfig()
    suspicion: SuspicionConfig = SuspicionConfig()
    train: TrainConfig = TrainConfig()
    evaluate: EvaluateConfig = EvaluateConfig()
    argilla: ArgillaConfig = ArgillaConfig()
    refresh: RefreshConfig = RefreshConfig()
    serve: ServeConfig = ServeConfig()
    fanout: FanoutConfig = FanoutConfig()

    @property
    def resolved_models_dir(self) -> Path:
        return self.models_dir or self.workdir / "models"

    @property
    def resolved_features_dir(self) -> Path:
        return self.suspicion.features.cache_dir or self.workdir / "features"

    @property
    def resolved_argilla_home(self) -> Path:
        return self.argilla.server.home or self.workdir / "argilla"

    def secret_env_names(self) -> list[str]:
        """Every environment variable this config reads a secret from (masked wherever text leaves)."""
        backends = [self.generate.backend, *(judge.backend for judge in self.judge.panel),
                    *self.refresh.policies.values()]
        accounts = [self.argilla.owner, *self.argilla.annotators]
        names = [backend.api_key_env for backend in backends if backend.kind in ("openai", "openai_batch")]
        names += [name for account in accounts for name in (account.password_env, account.api_key_env) if name]
        return sorted(set(names))


def _describe(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for item in error.errors():
        field = ".".join(str(part) for part in item["loc"]) or "(top level)"
        reason = item["msg"]
        if item["type"] == "extra_forbidden":
            reason = "unknown field"
        lines.append(f"  {field}: {reason} (got {item.get('input')!r})")
    return "\n".join(lines)


def config_from_dict(data: dict, source: str = "<dict>") -> PrefcurateConfig:
    try:
        return PrefcurateConfig.model_validate(data)
    except ValidationError as error:
        raise ConfigError(_describe(error, source)) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader, refusing a key given twice in one mapping (plain YAML keeps the last one
    silently: a second `store:` would quietly switch the store)."""

    def construct_mapping(self, node, deep=False):
        seen: dict = {}
        for key_node, _value_node in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key]})", key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | Path | None) -> PrefcurateConfig:
    """Load a YAML or TOML config file; None gives the embedded defaults."""
    if path is None:
        return PrefcurateConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw[:error.start].count(b"\n") + 1
        raise ConfigError(f"{path}: line {line}: not valid UTF-8 (byte {error.start}: {raw[error.start]:#04x}); "
                          "save the file as UTF-8") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.load(text, Loader=_UniqueKeyLoader) or {}
        else:
            raise ConfigError(f"{path}: config files must end in .yaml, .yml or .toml")
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise ConfigError(f"{path}: {where}not valid YAML: {error.problem or error.context}") from None
    except (yaml.YAMLError, tomllib.TOMLDecodeError) as error:
        raise ConfigError(f"{path}: not valid {path.suffix[1:].upper()}: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return config_from_dict(data, str(path))
