"""The baseline for bench/judge_throughput.py: distilabel 1.5.3 judging the same pairs.

Runs in distilabel's own virtual environment (bench/.venvs/distilabel). Each row is one pair in
one shown order, rated by distilabel's UltraFeedback task (overall-rating aspect) through its
OpenAILLM against the same OpenAI-compatible server, with the given input_batch_size (the calls
one replica sends at once) and replicas of the task step.
Prints one JSON line: {"seconds": ..., "rows": ..., "rated": ...}.
"""

import json
import sys
import time


def main() -> None:
    rows_path, base_url, batch_size, replicas = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    from distilabel.models import OpenAILLM
    from distilabel.pipeline import Pipeline
    from distilabel.steps import LoadDataFromDicts, StepResources
    from distilabel.steps.tasks import UltraFeedback

    rows = [json.loads(line) for line in open(rows_path)]
    with Pipeline(name="judge-throughput-baseline") as pipeline:
        load = LoadDataFromDicts(data=rows, batch_size=batch_size)
        rate = UltraFeedback(
            llm=OpenAILLM(model="test-model", base_url=base_url, api_key="unused", max_retries=2, timeout=60,
                          generation_kwargs={"max_new_tokens": 64, "temperature": 0.0}),
            aspect="overall-rating", input_batch_size=batch_size, resources=StepResources(replicas=replicas))
        load >> rate
    started = time.perf_counter()
    distiset = pipeline.run(use_cache=False)
    seconds = time.perf_counter() - started
    out = distiset["default"]["train"]
    print(json.dumps({"seconds": seconds, "rows": len(out), "rated": sum(1 for r in out if r.get("raw_output_ultra_feedback_0")
                                                                         or r.get("distilabel_metadata"))}))


if __name__ == "__main__":
    main()
