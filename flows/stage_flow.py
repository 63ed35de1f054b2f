"""`@stage_flow(name=...)`: a Prefect flow whose failure message has every secret masked before
Prefect stores it (a provider's error text can quote the API key)."""

from __future__ import annotations

import functools
import inspect
import typing

from prefect import flow

from prefcurate.core.secrets import redact_exception


def stage_flow(name: str, **options):
    def decorate(function):
        @functools.wraps(function)
        def masked(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except Exception as error:
                raise redact_exception(error)

        # Prefect validates parameters against the signature, resolving string annotations in the
        # wrapper's module: give it the stage's signature with its types resolved.
        hints = typing.get_type_hints(function)
        signature = inspect.signature(function)
        masked.__signature__ = signature.replace(
            parameters=[p.replace(annotation=hints.get(p.name, p.annotation)) for p in signature.parameters.values()],
            return_annotation=hints.get("return", signature.return_annotation))
        masked.__annotations__ = hints
        del masked.__wrapped__
        return flow(name=name, log_prints=True, **options)(masked)

    return decorate
