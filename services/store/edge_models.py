"""Translation between qdrant-client's models and Qdrant Edge's, for :mod:`services.store.edge`.

Requests go from ``qdrant_client.models`` (the vocabulary of the store and of every Qdrant
client) to ``qdrant_edge``; answers come back as ``qdrant_client.models`` records and scored
points. What the store does not use raises ``NotImplementedError`` naming it, rather than
being approximated.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as qm

PAYLOAD_ONLY = "_payload_only"  # the unused sparse vector of a payload-only shard
DISTANCES = {
    qm.Distance.COSINE: qe.Distance.Cosine,
    qm.Distance.DOT: qe.Distance.Dot,
    qm.Distance.EUCLID: qe.Distance.Euclid,
    qm.Distance.MANHATTAN: qe.Distance.Manhattan,
}
SCHEMAS = {
    qm.PayloadSchemaType.KEYWORD: qe.PayloadSchemaType.Keyword,
    qm.PayloadSchemaType.INTEGER: qe.PayloadSchemaType.Integer,
    qm.PayloadSchemaType.FLOAT: qe.PayloadSchemaType.Float,
    qm.PayloadSchemaType.DATETIME: qe.PayloadSchemaType.Datetime,
    qm.PayloadSchemaType.BOOL: qe.PayloadSchemaType.Bool,
    qm.PayloadSchemaType.UUID: qe.PayloadSchemaType.Uuid,
    qm.PayloadSchemaType.TEXT: qe.PayloadSchemaType.Text,
}
SCHEMA_NAMES = {str(v).rsplit(".", 1)[-1].lower(): k for k, v in SCHEMAS.items()}


# qdrant_client.models -> qdrant_edge ---------------------------------------------------
def _datetime(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.isoformat()
    if isinstance(value, dt.date):
        return dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).isoformat()
    return value


def _range(rng: Any) -> Any:
    if isinstance(rng, qm.DatetimeRange):
        return qe.RangeDateTime(
            gte=_datetime(rng.gte),
            gt=_datetime(rng.gt),
            lte=_datetime(rng.lte),
            lt=_datetime(rng.lt),
        )
    return qe.RangeFloat(gte=rng.gte, gt=rng.gt, lte=rng.lte, lt=rng.lt)


def _match(match: Any) -> Any:
    if isinstance(match, qm.MatchValue):
        return qe.MatchValue(match.value)
    if isinstance(match, qm.MatchAny):
        values: Any = list(match.any)
        return qe.MatchAny(values)
    if isinstance(match, qm.MatchExcept):
        values = list(match.except_)
        return qe.MatchExcept(values)
    raise NotImplementedError(f"Edge engine: match {type(match).__name__} is not translated")


def condition(cond: Any) -> Any:
    """One ``qm`` filter condition as Edge's."""
    if isinstance(cond, qm.Filter):
        return edge_filter(cond)
    if isinstance(cond, qm.FieldCondition):
        return qe.FieldCondition(
            key=cond.key,
            match=_match(cond.match) if cond.match is not None else None,
            range=_range(cond.range) if cond.range is not None else None,
        )
    if isinstance(cond, qm.IsEmptyCondition):
        return qe.IsEmptyCondition(cond.is_empty.key)
    if isinstance(cond, qm.IsNullCondition):
        return qe.IsNullCondition(cond.is_null.key)
    if isinstance(cond, qm.HasIdCondition):
        return qe.HasIdCondition({point_id(i) for i in cond.has_id})
    raise NotImplementedError(f"Edge engine: condition {type(cond).__name__} is not translated")


def _conditions(part: Any) -> list[Any] | None:
    if part is None:
        return None
    items = part if isinstance(part, list) else [part]
    return [condition(c) for c in items]


def edge_filter(flt: qm.Filter | None) -> Any:
    if flt is None:
        return None
    if flt.min_should is not None:
        raise NotImplementedError("Edge engine: min_should is not translated")
    return qe.Filter(
        must=_conditions(flt.must),
        should=_conditions(flt.should),
        must_not=_conditions(flt.must_not),
    )


def point_id(point_id: Any) -> Any:
    return point_id if isinstance(point_id, int) else str(point_id)


def payload_selector(with_payload: Any) -> Any:
    if with_payload is None or isinstance(with_payload, bool):
        return bool(with_payload)
    if isinstance(with_payload, list):
        return qe.PayloadSelector.Include(list(with_payload))
    if isinstance(with_payload, qm.PayloadSelectorInclude):
        return qe.PayloadSelector.Include(list(with_payload.include))
    if isinstance(with_payload, qm.PayloadSelectorExclude):
        return qe.PayloadSelector.Exclude(list(with_payload.exclude))
    raise NotImplementedError(f"Edge engine: with_payload={with_payload!r}")


def edge_vector(vector: Any) -> Any:
    """A point's vector(s): the unnamed dense one as a list, named ones in a dict."""
    if isinstance(vector, dict):
        return {
            name: qe.SparseVector(indices=list(v.indices), values=list(v.values))
            if isinstance(v, qm.SparseVector)
            else list(v)
            for name, v in vector.items()
        }
    return list(vector)


def edge_query(query: Any, using: str | None) -> Any:
    if isinstance(query, qm.NearestQuery):
        query = query.nearest
    if isinstance(query, qm.SparseVector):
        return qe.Query.Nearest(
            qe.SparseVector(indices=list(query.indices), values=list(query.values)), using=using
        )
    if isinstance(query, qm.FusionQuery):
        return qe.Fusion.Rrf(k=2)  # Qdrant's default k
    if isinstance(query, qm.RrfQuery):
        return qe.Fusion.Rrf(k=query.rrf.k or 2)
    if hasattr(query, "tolist"):
        query = query.tolist()
    if isinstance(query, list):
        return qe.Query.Nearest([float(x) for x in query], using=using)
    raise NotImplementedError(f"Edge engine: query {type(query).__name__} is not translated")


# How a search on an int8-quantized collection uses the float vectors when the request
# does not say: the graph is walked on int8 scores, then 2x the asked hits are rescored
# with the float vectors (on disk). Without rescoring recall@10 against exact search stops
# at 0.98 (ef 128..256) at 100k real sentence points; with it ef 64 gives 0.990 and
# recall@100 goes from 0.970 to 0.995 (docs/performance.md, "Growth").
RESCORE = qm.QuantizationSearchParams(rescore=True, oversampling=2.0)


def _quantization(quant: qm.QuantizationSearchParams) -> Any:
    return qe.QuantizationSearchParams(
        ignore=bool(quant.ignore), rescore=quant.rescore, oversampling=quant.oversampling
    )


def edge_params(params: qm.SearchParams | None, default_ef: int | None) -> Any:
    if params is None:
        return qe.SearchParams(hnsw_ef=default_ef, quantization=_quantization(RESCORE))
    return qe.SearchParams(
        hnsw_ef=params.hnsw_ef or default_ef,
        exact=bool(params.exact),
        quantization=_quantization(params.quantization or RESCORE),
    )


# qdrant_edge -> qdrant_client.models ---------------------------------------------------
def _client_vector(vector: Any) -> Any:
    if vector is None:
        return None
    if isinstance(vector, dict):
        out = {
            name: qm.SparseVector(indices=list(v.indices), values=list(v.values))
            if isinstance(v, qe.SparseVector)
            else list(v)
            for name, v in vector.items()
            if name != PAYLOAD_ONLY
        }
        return out
    return list(vector)


def client_record(found: Any, with_vectors: bool) -> qm.Record:
    return qm.Record(
        id=found.id if isinstance(found.id, int) else str(found.id),
        payload=found.payload,
        vector=_client_vector(found.vector) if with_vectors else None,
        order_value=found.order_value,
    )


def client_scored(found: Any, with_vectors: bool) -> qm.ScoredPoint:
    return qm.ScoredPoint(
        id=found.id if isinstance(found.id, int) else str(found.id),
        version=int(found.version or 0),
        score=float(found.score),
        payload=found.payload,
        vector=_client_vector(found.vector) if with_vectors else None,
        order_value=found.order_value,
    )
