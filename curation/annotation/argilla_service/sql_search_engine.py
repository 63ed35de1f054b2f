"""An Argilla search engine that answers from Argilla's own SQL database.

Argilla keeps records, responses and suggestions in its database and mirrors them into
Elasticsearch/OpenSearch for search. Neither can be had offline, so this engine skips the mirror:
every write hook is a no-op and every query reads the database at query time. It loads one
dataset's records (with responses and suggestions) and filters, sorts and pages in Python, which
is quick for annotation queues of thousands of records; production deployments with millions of
records switch back to `ARGILLA_SEARCH_ENGINE=elasticsearch`.

Registered under the name "sql"; `launcher.py` imports this module before the app starts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from datetime import datetime
from typing import Any, Iterable, List, Optional, Union

from argilla_server.database import AsyncSessionLocal
from argilla_server.enums import MetadataPropertyType, RecordStatus, ResponseStatusFilter, SortOrder
from argilla_server.models import Dataset, MetadataProperty, Record, Response, Suggestion, User
from argilla_server.search_engine.base import (
    AndFilter,
    Filter,
    FloatMetadataMetrics,
    IntegerMetadataMetrics,
    MetadataFilterScope,
    Order,
    RangeFilter,
    RecordFilterScope,
    ResponseFilterScope,
    SearchEngine,
    SearchResponseItem,
    SearchResponses,
    SuggestionFilterScope,
    TermsFilter,
    TermsMetrics,
    TextQuery,
)
from sqlalchemy import select
from sqlalchemy.orm import selectinload

ENGINE_NAME = "sql"


@SearchEngine.register(engine_name=ENGINE_NAME)
class SQLSearchEngine(SearchEngine):
    @classmethod
    async def new_instance(cls) -> "SQLSearchEngine":
        return cls()

    async def close(self):
        pass

    async def ping(self) -> bool:
        return True

    async def info(self) -> dict:
        return {"engine": ENGINE_NAME, "source": "argilla database"}

    # The database is the index: writes need no mirroring.
    async def create_index(self, dataset: Dataset):
        pass

    async def delete_index(self, dataset: Dataset):
        pass

    async def configure_metadata_property(self, dataset: Dataset, metadata_property: MetadataProperty):
        pass

    async def index_records(self, dataset: Dataset, records: Iterable[Record]):
        pass

    async def partial_record_update(self, record: Record, **update):
        pass

    async def delete_records(self, dataset: Dataset, records: Iterable[Record]):
        pass

    async def update_record_response(self, response: Response):
        pass

    async def delete_record_response(self, response: Response):
        pass

    async def update_record_suggestion(self, suggestion: Suggestion):
        pass

    async def delete_record_suggestion(self, suggestion: Suggestion):
        pass

    async def configure_index_vectors(self, vector_settings):
        pass

    async def similarity_search(self, *args, **kwargs) -> SearchResponses:
        raise NotImplementedError("the sql search engine has no vector search; use elasticsearch for vectors")

    # -- queries --------------------------------------------------------------------------------

    async def get_dataset_progress(self, dataset: Dataset) -> dict:
        if dataset.is_draft:
            return {}
        records = await _load_records(dataset.id)
        counts = Counter(str(record.status) for record in records)
        return {"total": len(records), **counts}

    async def get_dataset_user_progress(self, dataset: Dataset, user: User) -> dict:
        if dataset.is_draft:
            return {}
        records = await _load_records(dataset.id)
        statuses = [
            str(response.status) for record in records for response in record.responses if response.user_id == user.id
        ]
        return {"total": len(statuses), **Counter(statuses)}

    async def search(
        self,
        dataset: Dataset,
        query: Optional[Union[TextQuery, str]] = None,
        filter: Optional[Filter] = None,
        sort: Optional[List[Order]] = None,
        offset: int = 0,
        limit: int = 100,
        user_id: Optional[str] = None,
    ) -> SearchResponses:
        records = await _load_records(dataset.id)
        if query:
            records = [record for record in records if _matches_text(record, query)]
        if filter:
            records = [record for record in records if _matches(record, filter)]
        if sort:
            # Stable sorts applied last key first give a lexicographic order; missing values last.
            for order in reversed(sort):
                descending = order.order == SortOrder.desc
                present = [r for r in records if _sort_value(r, order.scope) is not None]
                missing = [r for r in records if _sort_value(r, order.scope) is None]
                present.sort(key=lambda r: _sort_value(r, order.scope), reverse=descending)
                records = present + missing
        elif user_id is not None:
            # Each annotator sees the queue in an order of their own (deterministic per user), so a
            # team spreads over the records instead of all starting on the first one.
            records.sort(key=lambda r: hashlib.sha256(f"{user_id}:{r.id}".encode()).digest())
        items = [SearchResponseItem(record_id=record.id, score=None) for record in records[offset : offset + limit]]
        return SearchResponses(items=items, total=len(records))

    async def compute_metrics_for(self, metadata_property: MetadataProperty):
        records = await _load_records(metadata_property.dataset_id)
        values = [
            (record.metadata_ or {}).get(metadata_property.name)
            for record in records
            if (record.metadata_ or {}).get(metadata_property.name) is not None
        ]
        if metadata_property.type == MetadataPropertyType.terms:
            flat = [str(v) for value in values for v in (value if isinstance(value, list) else [value])]
            counts = Counter(flat).most_common()
            return TermsMetrics(total=len(flat), values=[TermsMetrics.TermCount(term=t, count=c) for t, c in counts])
        metrics = IntegerMetadataMetrics if metadata_property.type == MetadataPropertyType.integer else FloatMetadataMetrics
        return metrics(min=min(values) if values else None, max=max(values) if values else None)


async def _load_records(dataset_id) -> list[Record]:
    async with AsyncSessionLocal() as session:
        rows = await session.execute(
            select(Record)
            .where(Record.dataset_id == dataset_id)
            .options(selectinload(Record.responses), selectinload(Record.suggestions).selectinload(Suggestion.question))
            .order_by(Record.inserted_at.asc(), Record.id.asc())
        )
        return list(rows.scalars().all())


def _matches_text(record: Record, query: Union[TextQuery, str]) -> bool:
    text, field = (query, None) if isinstance(query, str) else (query.q, query.field)
    if not text or text == "*":
        return True
    values = [record.fields.get(field)] if field else list(record.fields.values())
    haystack = " ".join(str(value) for value in values if value is not None).lower()
    return all(word in haystack for word in text.lower().split())


def _matches(record: Record, filter: Filter) -> bool:
    if isinstance(filter, AndFilter):
        return all(_matches(record, inner) for inner in filter.filters)
    scope = filter.scope
    if isinstance(scope, ResponseFilterScope) and scope.question is None:
        return _matches_response_status(record, filter)
    return any(_value_matches(value, filter) for value in _scope_values(record, scope))


def _matches_response_status(record: Record, filter: TermsFilter) -> bool:
    """Response status filters: `pending` means no response yet (by this user when one is given)."""
    user = filter.scope.user
    responses = [r for r in record.responses if user is None or r.user_id == user.id]
    wanted = {str(value) for value in filter.values}
    if ResponseStatusFilter.pending.value in wanted and not responses:
        return True
    return any(str(response.status) in wanted for response in responses)


def _scope_values(record: Record, scope) -> list[Any]:
    """The values a filter on `scope` compares against (several for responses: one per annotator)."""
    if isinstance(scope, RecordFilterScope):
        return [_record_property(record, scope.property)]
    if isinstance(scope, MetadataFilterScope):
        return [(record.metadata_ or {}).get(scope.metadata_property)]
    if isinstance(scope, SuggestionFilterScope):
        return [
            getattr(suggestion, scope.property, None)
            for suggestion in record.suggestions
            if suggestion.question.name == scope.question
        ]
    if isinstance(scope, ResponseFilterScope):
        return [
            (response.values or {}).get(scope.question, {}).get("value")
            for response in record.responses
            if scope.user is None or response.user_id == scope.user.id
        ]
    raise ValueError(f"the sql search engine cannot filter on scope {scope}")


def _record_property(record: Record, name: str) -> Any:
    value = getattr(record, name, None)
    return str(value) if isinstance(value, RecordStatus) else value


def _value_matches(value: Any, filter: Filter) -> bool:
    if value is None:
        return False
    if isinstance(filter, TermsFilter):
        wanted = {str(v) for v in filter.values}
        values = value if isinstance(value, list) else [value]
        return any(str(v) in wanted for v in values)
    if isinstance(filter, RangeFilter):
        number = value.timestamp() if isinstance(value, datetime) else value
        try:
            number = float(number)
        except (TypeError, ValueError):
            return False
        return (filter.ge is None or number >= filter.ge) and (filter.le is None or number <= filter.le)
    raise ValueError(f"the sql search engine cannot apply filter {filter}")


def _sort_value(record: Record, scope) -> Any:
    if isinstance(scope, ResponseFilterScope) and scope.question is None:
        statuses = [str(r.status) for r in record.responses if scope.user is None or r.user_id == scope.user.id]
        return min(statuses) if statuses else None
    values = [v for v in _scope_values(record, scope) if v is not None and not isinstance(v, (list, dict))]
    if not values:
        return None
    if all(isinstance(v, (int, float)) for v in values):
        return sum(values) / len(values)  # several annotators: their mean, as Elasticsearch's avg mode
    return min(str(v) for v in values)
