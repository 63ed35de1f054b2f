"""Human annotation in Argilla: the server prefcurate runs (server.py; argilla_service/ runs inside
the server's own venv), the workspace and dataset (dataset.py), sending pairs (push.py) and
collecting answers (pull.py); in rating and ranking mode, prompts with their candidates
(score_questions.py, score_push.py, score_pull.py) and the annotators' agreement on them
(rating_agreement.py)."""
