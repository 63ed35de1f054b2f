"""Code that runs inside argilla-server's own virtual environment, never in prefcurate's.

argilla-server pins libraries that clash with ours (click, huggingface-hub, datasets), so it runs
as a service from a dedicated venv; `launcher.py` is executed there by path and imports
`sql_search_engine.py` beside it. Nothing here may import prefcurate.
"""
