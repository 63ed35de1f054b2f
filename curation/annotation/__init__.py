"""Human annotation in Argilla: the server prefcurate runs (server.py; argilla_service/ runs inside
the server's own venv), the workspace and dataset (dataset.py), sending pairs (push.py) and
collecting answers (pull.py)."""
