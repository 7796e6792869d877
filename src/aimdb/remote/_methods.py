"""The remote methods: one table, used by dispatch, ``method_not_found`` replies, docs and tests.

Each handler takes the session and the request's ``params`` object and returns the
``result`` (any JSON-encodable value) or raises :class:`RemoteFailure`. A handler that
has to wait (``record.history`` queries the store off the event loop) checks its params
at once and returns an awaitable giving the result (or raising :class:`RemoteFailure`);
the session awaits it before it handles the connection's next request, so replies stay
in request order.
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .. import RecordInfo
from .._errors import (
    BufferClosed,
    BufferLagged,
    DeserializeError,
    NotPersisted,
    PersistenceError,
    TypeMismatch,
)
from . import _protocol as P
from ._fanout import Subscription, latest_value
from ._records import RemoteFailure

if TYPE_CHECKING:
    from ._session import Session


def _need_str(params: dict[str, Any], name: str, *aliases: str) -> str:
    for n in (name, *aliases):
        v = params.get(n)
        if v is not None:
            if not isinstance(v, str) or not v:
                raise RemoteFailure(P.INVALID_PARAMS, f"{name!r} must be a non-empty string")
            return v
    raise RemoteFailure(P.INVALID_PARAMS, f"missing parameter {name!r}")


def _opt_int(params: dict[str, Any], name: str, lo: int, hi: int) -> int | None:
    v = params.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise RemoteFailure(P.INVALID_PARAMS, f"{name!r} must be an integer in {lo}..{hi}")
    return v


def _aimdb_version() -> str:
    try:
        from .. import __version__

        return __version__
    except ImportError:  # pragma: no cover
        return "?"


def hello(session: Session, params: dict[str, Any]) -> Any:
    """Handshake: check version and token, then describe the server."""
    server = session.server
    cfg = server.config
    version = params.get("version")
    if not P.version_compatible(version):
        session.closing = True
        raise RemoteFailure(
            P.VERSION_MISMATCH,
            f"protocol version {version!r} is not compatible with {P.PROTOCOL_VERSION}",
            {"server_version": P.PROTOCOL_VERSION},
        )
    authenticated = False
    if cfg.token is not None:
        token = params.get("token")
        if not isinstance(token, str) or not hmac.compare_digest(token.encode(), cfg.token.encode()):
            server.counters.auth_failures += 1
            session.closing = True
            raise RemoteFailure(P.AUTH_FAILED, "missing or wrong token")
        authenticated = True
    client = params.get("client")
    session.client = client if isinstance(client, str) else ""
    session.ready = True
    writable = server.records.writable_keys()
    return {
        "protocol": P.PROTOCOL_VERSION,
        "server": "aimdb-python",
        "version": _aimdb_version(),
        "name": cfg.name,
        "pid": os.getpid(),
        "started_at": server.started_at,
        "permissions": ["read", "write"] if writable else ["read"],
        "writable": writable,
        "authenticated": authenticated,
        "records": len(server.records.readable_infos()),
        "dashboard": server.http_url,
        "limits": {
            "max_connections": cfg.max_connections,
            "max_subscriptions": cfg.max_subscriptions,
            "max_frame": cfg.max_frame,
            "max_depth": cfg.max_depth,
            "queue_size": cfg.queue_size,
            "idle_timeout": session.idle_timeout,
            "max_history": cfg.max_history,
        },
    }


def ping(session: Session, params: dict[str, Any]) -> Any:
    """Liveness check."""
    return {"pong": True, "ts": time.time_ns()}


def record_list(session: Session, params: dict[str, Any]) -> Any:
    """Readable records (optionally matching ``pattern``) with metadata and statistics."""
    records = session.server.records
    db = records.db
    pattern = params.get("pattern")
    if pattern is not None and (not isinstance(pattern, str) or not pattern):
        raise RemoteFailure(P.INVALID_PARAMS, "'pattern' must be a non-empty string")
    writable = set(records.writable_keys())
    out = []
    for info in records.readable_infos():
        if pattern is not None and not P.pattern_matches(pattern, info.key):
            continue
        d = info.as_dict()
        d.pop("remote_readable", None)
        d["writable"] = info.key in writable
        buf = db.buffer(info.key)
        d["has_value"] = latest_value(buf)[0]
        d["stats"] = buf.statistics().as_dict() if buf is not None else None
        out.append(d)
    return {"records": out}


def record_get(session: Session, params: dict[str, Any]) -> Any:
    """The newest value of one record, nothing consumed."""
    records = session.server.records
    key = _need_str(params, "key", "name", "record")
    info = records.info(key)
    has, value = latest_value(records.db.buffer(key))
    if not has:
        raise RemoteFailure(P.NO_VALUE, f"record {key!r} has no value yet")
    return {"key": key, "value": msgspec.Raw(records.encoder(info)(value))}


def record_set(session: Session, params: dict[str, Any]) -> Any:
    """Produce a value into a writable record."""
    server = session.server
    records = server.records
    key = _need_str(params, "key", "name")
    if "value" not in params:
        raise RemoteFailure(P.INVALID_PARAMS, "missing parameter 'value'")
    info = records.info(key)
    records.check_writable(info)
    payload = msgspec.json.encode(params["value"])
    try:
        value = records.decoder(info)(payload)
    except (DeserializeError, TypeMismatch, ValueError) as exc:
        raise RemoteFailure(P.INVALID_VALUE, f"value does not fit {info.type_name}: {exc}") from None
    try:
        records.producer(info).produce(value)
    except TypeMismatch as exc:
        raise RemoteFailure(P.INVALID_VALUE, str(exc)) from None
    except BufferClosed:
        raise RemoteFailure(P.SHUTTING_DOWN, "the database is stopping") from None
    server.counters.sets += 1
    return {"key": key, "value": msgspec.Raw(records.encoder(info)(value))}


def _slots_left(session: Session) -> None:
    limit = session.server.config.max_subscriptions
    if len(session.subs) + len(session.drains) >= limit:
        raise RemoteFailure(P.TOO_MANY_SUBSCRIPTIONS, f"at most {limit} subscriptions per connection")


def record_subscribe(session: Session, params: dict[str, Any]) -> Any:
    """Subscribe to a key or pattern: snapshot events first, then updates."""
    server = session.server
    records = server.records
    cfg = server.config
    pattern = _need_str(params, "pattern", "key", "name")
    snapshot = params.get("snapshot", True)
    if not isinstance(snapshot, bool):
        raise RemoteFailure(P.INVALID_PARAMS, "'snapshot' must be true or false")
    queue = _opt_int(params, "queue", 1, cfg.queue_size) or cfg.queue_size
    _slots_left(session)
    keys = [
        info.key
        for info in records.readable_infos()
        if P.pattern_matches(pattern, info.key) and records.db.buffer(info.key) is not None
    ]
    if not keys:
        raise RemoteFailure(P.NOT_FOUND, f"no readable record with a buffer matches {pattern!r}")
    session.next_sub += 1
    sub = Subscription(f"s{session.next_sub}", keys, queue, session.wake, server.counters)
    session.subs[sub.id] = sub
    n_snap = server.fanout.subscribe(sub, snapshot)
    server.counters.subscriptions_total += 1
    return {"sub": sub.id, "keys": keys, "snapshot": n_snap, "queue": queue}


def record_unsubscribe(session: Session, params: dict[str, Any]) -> Any:
    """End one subscription of this connection."""
    sub_id = _need_str(params, "sub", "subscription_id")
    sub = session.subs.pop(sub_id, None)
    if sub is None:
        raise RemoteFailure(P.NOT_FOUND, f"no subscription {sub_id!r} on this connection")
    session.server.fanout.unsubscribe(sub)
    pending = len(sub.queue)
    sub.queue.clear()
    return {"sub": sub_id, "delivered": sub.delivered, "dropped": sub.dropped, "discarded": pending}


def record_drain(session: Session, params: dict[str, Any]) -> Any:
    """Values produced since this connection's previous drain of the record."""
    records = session.server.records
    key = _need_str(params, "key", "name")
    limit = _opt_int(params, "limit", 1, 100_000) or 1000
    info = records.info(key)
    buf = records.db.buffer(key)
    if buf is None:
        raise RemoteFailure(P.NOT_FOUND, f"record {key!r} has no buffer")
    if buf.kind == "mailbox" and key not in records.writable_keys():
        raise RemoteFailure(
            P.PERMISSION_DENIED,
            f"draining mailbox {key!r} would take commands from its consumers; it must be writable",
        )
    reader = session.drains.get(key)
    if reader is None:
        _slots_left(session)
        reader = session.drains[key] = buf.subscribe()
    lagged = 0
    values: list[Any] = []
    while len(values) < limit:
        try:
            got = reader.try_recv_batch(limit - len(values))
        except BufferLagged as exc:
            lagged += exc.missed
            continue
        except BufferClosed:
            break
        if not got:
            break
        values.extend(got)
    enc = records.encoder(info)
    raws = [msgspec.Raw(enc(v)) for v in values]
    return {"key": key, "values": raws, "count": len(raws), "lagged": lagged}


_NS_MAX = (1 << 63) - 1


def _opt_ns(params: dict[str, Any], name: str) -> int | None:
    v = params.get(name)
    if v is None:
        return None
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= _NS_MAX:
        raise RemoteFailure(P.INVALID_PARAMS, f"{name!r} must be integer nanoseconds since the epoch")
    return v


def record_history(session: Session, params: dict[str, Any]) -> Awaitable[Any]:
    """Stored values of a persisted record between two times (read-only, off the event loop)."""
    records = session.server.records
    cap = session.server.config.max_history
    key = _need_str(params, "key", "name")
    since = _opt_ns(params, "since")
    until = _opt_ns(params, "until")
    limit = params.get("limit")
    if limit is None:
        limit = cap
    elif not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise RemoteFailure(P.INVALID_PARAMS, "'limit' must be a positive integer")
    elif limit > cap:
        raise RemoteFailure(
            P.INVALID_PARAMS,
            f"'limit' {limit} is above this server's max_history {cap}",
            {"max_history": cap},
        )
    newest_first = params.get("newest_first", False)
    if not isinstance(newest_first, bool):
        raise RemoteFailure(P.INVALID_PARAMS, "'newest_first' must be true or false")
    info = records.info(key)
    if not info.persisted:
        raise RemoteFailure(P.NOT_PERSISTED, f"record {key!r} is not persisted", {"key": key})
    return _history(session, info, since, until, limit, newest_first)


async def _history(
    session: Session, info: RecordInfo, since: int | None, until: int | None, limit: int, newest_first: bool
) -> Any:
    records = session.server.records
    db = records.db
    key = info.key
    try:
        rows, more = await db.history_ns(
            key, since_ns=since, until_ns=until, limit=limit, newest_first=newest_first
        )
    except NotPersisted:  # a server without the store the record was declared for
        raise RemoteFailure(P.NOT_PERSISTED, f"record {key!r} is not persisted", {"key": key}) from None
    except PersistenceError as exc:
        raise RemoteFailure(P.PERSISTENCE_ERROR, str(exc), {"key": key}) from None
    except RuntimeError:
        if db.state == "running":
            raise
        raise RemoteFailure(P.SHUTTING_DOWN, "the database is stopping") from None
    enc = records.encoder(info)
    out = [{"ts": s.ts_ns, "value": msgspec.Raw(enc(s.value))} for s in rows]
    return {"key": key, "rows": out, "count": len(out), "more": more}


def graph(session: Session, params: dict[str, Any]) -> Any:
    """The dataflow graph, restricted to readable records."""
    records = session.server.records
    g = records.db.graph()
    visible = {i.key for i in records.readable_infos()}
    hidden = {n["key"] for n in g["nodes"]} - visible
    writable = set(records.writable_keys())
    nodes = []
    for n in g["nodes"]:
        if n["key"] in visible:
            n = dict(n)
            n.pop("remote_readable", None)
            n["writable"] = n["key"] in writable
            nodes.append(n)
    return {
        "nodes": nodes,
        "edges": [e for e in g["edges"] if e["from"] not in hidden and e["to"] not in hidden],
        "order": [k for k in g["order"] if k in visible],
    }


def stats(session: Session, params: dict[str, Any]) -> Any:
    """Statistics of one record, or of every readable record plus the server's and the connectors'."""
    server = session.server
    records = server.records
    key = params.get("key")
    if key is not None:
        if not isinstance(key, str):
            raise RemoteFailure(P.INVALID_PARAMS, "'key' must be a string")
        records.info(key)
        return {"key": key, "stats": records.db.record_statistics(key)}
    visible = {i.key for i in records.readable_infos()}
    recs = {k: v for k, v in records.db.statistics().items() if k in visible}
    connectors = [
        {"scheme": scheme, **snap.as_dict()} for scheme, snap in records.db.connector_statistics().items()
    ]
    return {"records": recs, "server": server.statistics().as_dict(), "connectors": connectors}


def stats_reset(session: Session, params: dict[str, Any]) -> Any:
    """Zero the database's and the server's counters (when ``allow_reset``)."""
    server = session.server
    if not server.config.allow_reset:
        raise RemoteFailure(P.PERMISSION_DENIED, "this server does not allow stats.reset")
    server.records.db.reset_statistics()
    server.reset_counters()
    return {"reset": True}


Handler = Callable[["Session", dict[str, Any]], Any]

HANDLERS: dict[str, Handler] = {
    "hello": hello,
    "ping": ping,
    "record.list": record_list,
    "record.get": record_get,
    "record.set": record_set,
    "record.subscribe": record_subscribe,
    "record.unsubscribe": record_unsubscribe,
    "record.drain": record_drain,
    "record.history": record_history,
    "graph": graph,
    "stats": stats,
    "stats.reset": stats_reset,
}
"""Every remote method and its handler, in the order the protocol document lists them."""

METHODS: tuple[str, ...] = tuple(HANDLERS)
"""Every method a server answers, in the order the protocol document lists them."""
