"""Judging: the constitution, the prompt a judge is asked (prompt.py), reading its verdict back
(verdicts.py), the judge stage over a panel in both shown orders (judge.py), its cost estimate and
its quality report."""
