"""Schemathesis hooks for test/integration/schemathesis.test.ts (loaded through SCHEMATHESIS_HOOKS).

Rules the API enforces that an OpenAPI 3.0 parameter or body schema cannot state,
because they tie two inputs together or bind a header to the body's bytes. Each
one is written in its operation's description in the document; here Schemathesis
is taught them, so that a request it calls valid (a positive case) is one the
API must accept. Only positive cases are changed: a negative case keeps the
violation it was made for, and is still expected to be refused.

- GET /v1/audit/checkpoints: `size` goes with `log` (a size of which log?).
- GET /v1/audit/consistency: `from` ≤ `to`.
- GET /v1/audit/decisions, GET /v1/audit/pdps, GET /v1/audit/delegators/…/sessions: `from` < `to` (instants, ms).
- GET /v1/audit/decisions: `proofs=1` goes with `Accept: application/x-ndjson`.
- the paged audit routes: a `cursor` is a `next_cursor` the API issued for the
  same query; a generated string is not one, so a positive case goes without.
- POST /v1/freezes: `tenant_id` and `?tenant=` name the same tenant when both
  are given; `expires_at` is in the future.
- POST /v1/ingest/opa/logs: the body is encoded as `Content-Encoding` says
  (OPA sends gzip), so the JSON Schemathesis generates is compressed to match.

`TRUSTFOLD_ST_LOG` is a log id of the system under test (`<topic>/<partition>`),
set by the test, so that a generated `size` is asked of a log that exists.

Test data, not a rule: `TRUSTFOLD_ST_DATA` (JSON, set by the test) names records
the test stored before the run (a session, its delegator, a decision, a signal, a
trust version, a freeze, the size of a signed log). Every other positive case of a route that reads one record asks
for one of those, so the route's 200 answer is checked against the document too,
not only its 404; the cases between keep their generated ids (the 404 path).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import re
import zlib
from typing import Any, Callable

import schemathesis
from schemathesis import GenerationMode

LOG_ID = os.environ.get("TRUSTFOLD_ST_LOG", "trustfold.decisions/0")
NDJSON = "application/x-ndjson"

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:(Z|z)|([+-])(\d{2}):(\d{2}))$"
)


def _days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date; any year, 0 included (datetime stops at 1..9999)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


def instant_ms(s: str) -> int | None:
    """An RFC 3339 date-time as the API compares it: UTC milliseconds, sub-millisecond digits dropped."""
    m = _RFC3339.match(s)
    if m is None:
        return None
    y, mo, d, h, mi, sec = (int(m.group(i)) for i in range(1, 7))
    ms = int((m.group(7) or "0")[:3].ljust(3, "0"))
    offset = 0
    if m.group(9) is not None:
        sign = 1 if m.group(9) == "+" else -1
        offset = sign * (int(m.group(10)) * 60 + int(m.group(11)))
    return ((_days_from_civil(y, mo, d) * 24 + h) * 60 + mi - offset) * 60_000 + sec * 1000 + ms


def _ordered(query: dict[str, Any], parse: Callable[[Any], int | None], strict: bool) -> None:
    """`from` before `to` (or not after, when not strict): swap them when reversed, drop `to` when equal and strict."""
    if "from" not in query or "to" not in query:
        return
    a, b = parse(query["from"]), parse(query["to"])
    if a is None or b is None:
        return
    if a > b:
        query["from"], query["to"] = query["to"], query["from"]
    elif a == b and strict:
        del query["to"]


def _int(v: Any) -> int | None:
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _checkpoints(case: Any) -> None:
    q = case.query
    if q and "size" in q and "log" not in q:
        q["log"] = LOG_ID


def _consistency(case: Any) -> None:
    q = case.query
    if not q:
        return
    _ordered(q, _int, strict=False)
    # Test data: every other case asks the stored log for sizes it has signed, so a 200 is checked too.
    size = KNOWN.get("log_size")
    n = _seen.get("consistency", 0)
    _seen["consistency"] = n + 1
    if isinstance(size, int) and size > 0 and n % 2 == 0:
        q["log"] = LOG_ID
        q["to"] = size
        q["from"] = min(_int(q.get("from")) or 1, size)


def _window(case: Any) -> None:
    if case.query:
        _ordered(case.query, lambda v: instant_ms(v) if isinstance(v, str) else None, strict=True)


def _no_cursor(case: Any) -> None:
    if case.query:
        case.query.pop("cursor", None)


def _window_no_cursor(case: Any) -> None:
    _window(case)
    _no_cursor(case)


def _decisions(case: Any) -> None:
    _window(case)
    _no_cursor(case)
    if case.query and case.query.get("proofs") == "1":
        case.headers = {**(case.headers or {}), "Accept": NDJSON}


def _raise_freeze(case: Any) -> None:
    body = case.body
    if not isinstance(body, dict):
        return
    q = case.query
    if q is not None and "tenant" in q and isinstance(body.get("tenant_id"), str) and body["tenant_id"] != q["tenant"]:
        q["tenant"] = body["tenant_id"]
    expires = body.get("expires_at")
    now_ms = int(dt.datetime.now(dt.timezone.utc).timestamp() * 1000)
    if isinstance(expires, str) and (instant_ms(expires) or 0) <= now_ms + 60_000:
        later = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=1)
        body["expires_at"] = later.strftime("%Y-%m-%dT%H:%M:%SZ")


KNOWN: dict[str, Any] = json.loads(os.environ.get("TRUSTFOLD_ST_DATA", "{}"))

# Route → path parameter → the key of KNOWN it takes.
RECORDS: dict[str, dict[str, str]] = {
    "GET /v1/audit/decisions/{event_id}": {"event_id": "decision_id"},
    "GET /v1/audit/decisions/{event_id}/proof": {"event_id": "decision_id"},
    "GET /v1/audit/signals/{event_id}/proof": {"event_id": "signal_id"},
    "GET /v1/audit/sessions/{id}/transitions/{version}/proof": {"id": "session", "version": "version"},
    "GET /v1/audit/sessions/{id}/timeline": {"id": "session"},
    "GET /v1/audit/delegators/{user_id}/sessions": {"user_id": "user_id"},
    "GET /v1/sessions/{id}/trust": {"id": "session"},
    "DELETE /v1/freezes/{id}": {"id": "freeze_id"},
}
_seen: dict[str, int] = {}


def _known_record(label: str, case: Any) -> None:
    """Every other positive case of `label` asks for a stored record instead of its generated id."""
    names = RECORDS.get(label)
    if names is None or not case.path_parameters or any(KNOWN.get(k) is None for k in names.values()):
        return
    n = _seen.get(label, 0)
    _seen[label] = n + 1
    if n % 2 == 0:
        for param, key in names.items():
            case.path_parameters[param] = KNOWN[key]


RULES: dict[str, Callable[[Any], None]] = {
    "GET /v1/audit/checkpoints": _checkpoints,
    "GET /v1/audit/consistency": _consistency,
    "GET /v1/audit/decisions": _decisions,
    "GET /v1/audit/pdps": _window,
    "GET /v1/audit/sessions/{id}/timeline": _no_cursor,
    "GET /v1/audit/delegators/{user_id}/sessions": _window_no_cursor,
    "POST /v1/freezes": _raise_freeze,
}


def _positive(case: Any) -> bool:
    meta = case.meta
    return meta is not None and meta.generation.mode == GenerationMode.POSITIVE


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Runs in every phase (coverage, fuzzing, stateful) on each generated case."""
    label = f"{case.method.upper()} {case.path}"
    if not _positive(case):
        return case
    rule = RULES.get(label)
    if rule is not None:
        rule(case)
    _known_record(label, case)
    return case


def _header(headers: Any, name: str) -> str | None:
    if not headers:
        return None
    for k, v in headers.items():
        if k.lower() == name:
            return v if isinstance(v, str) else None
    return None


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """The OPA upload's bytes in the encoding its Content-Encoding header names (a body passed here replaces the generated one)."""
    if f"{case.method.upper()} {case.path}" != "POST /v1/ingest/opa/logs" or not _positive(case):
        return
    encoding = (_header(case.headers, "content-encoding") or "identity").strip().lower()
    if encoding == "identity" or case.body is None or not hasattr(case.body, "__len__"):
        return
    raw = json.dumps(case.body).encode("utf-8")
    if encoding in ("gzip", "x-gzip"):
        kwargs["data"] = gzip.compress(raw)
    elif encoding == "deflate":
        kwargs["data"] = zlib.compress(raw)
