"""Verifiers: judges whose verdict is checked, not opined (math answers, code against tests,
instruction constraints). See verify.py."""
