"""Intake: prompts (ingest) and existing preference datasets (import) into the store; every file
format is read in sources.py, and a bad row becomes a reject, never an abort."""
