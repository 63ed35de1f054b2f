"""On-policy refresh rounds, one room: round.py reads top to bottom and calls the rest.

prompt_pool.py     which prompts a round draws, and which it holds out
policy.py          who answers them (best-of-N under the incumbent, or the round's own policy)
pair_selection.py  the pair per prompt among the policy's responses (max-min, ensemble-uncertain, random)
routing.py         uncertain pairs to Argilla, never waited on
heldout.py         the fixed and on-policy held-out sets, and a model's figures on them
gate.py            promote or refuse, with the reason
ledger.py          what the store remembers: the model in charge, each round's state and outcome
report.py          the rounds report (markdown + PNG)
"""
