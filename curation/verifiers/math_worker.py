"""Math final-answer equivalence, run as its own process inside the sandbox (verify.py starts it):
math-verify's timeouts rely on signal alarms, which only work in a process's main thread.

Reads JSON lines {"id", "reference", "response"} on stdin and writes {"id", "passed", "detail"}.
"""

from __future__ import annotations

import json
import sys


def main() -> None:
    from math_verify import parse, verify

    for line in sys.stdin:
        task = json.loads(line)
        try:
            gold = parse(task["reference"] if "$" in task["reference"] or "\\" in task["reference"]
                         else f"${task['reference']}$")
            answer = parse(task["response"])
            if not answer:
                result = {"passed": False, "detail": "no final answer found in the response"}
            else:
                passed = bool(verify(gold, answer))
                result = {"passed": passed, "detail": None if passed else f"answer {str(answer[-1])[:80]!r} is not "
                          f"the reference {task['reference'][:80]!r}"}
        except Exception as error:  # noqa: BLE001 (one unreadable answer fails itself, not the batch)
            result = {"passed": False, "detail": f"could not be checked: {type(error).__name__}: {str(error)[:120]}"}
        print(json.dumps({"id": task["id"], **result}), flush=True)


if __name__ == "__main__":
    main()
