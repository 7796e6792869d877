"""aimdb: a typed, async, in-memory data plane from microcontroller to edge to cloud.

Declare typed records on an :class:`AimDbBuilder`, give each a buffer
(:class:`BufferCfg`), attach sources, taps, transforms, joins and links, then
``build()`` and run the database on asyncio, trio or MicroPython.
"""

from ._core._buffers import (
    Buffer as Buffer,
    BufferCfg as BufferCfg,
    BufferStatistics as BufferStatistics,
    LatestBuffer as LatestBuffer,
    LatestReader as LatestReader,
    Mailbox as Mailbox,
    MailboxBuffer as MailboxBuffer,
    MailboxReader as MailboxReader,
    Reader as Reader,
    RingBuffer as RingBuffer,
    RingReader as RingReader,
    SingleLatest as SingleLatest,
    SpmcRing as SpmcRing,
)
from ._core._builder import AimDbBuilder as AimDbBuilder
from ._core._codec import JsonCodec as JsonCodec, json_codec as json_codec
from ._core._connector import (
    Connector as Connector,
    ConnectorRoutes as ConnectorRoutes,
    InboundRoute as InboundRoute,
    LinkStatistics as LinkStatistics,
    OutboundRoute as OutboundRoute,
)
from ._core._context import Context as Context, StageLog as StageLog, Ticker as Ticker, TimeApi as TimeApi
from ._core._database import (
    AimDb as AimDb,
    JoinInputs as JoinInputs,
    RecordInfo as RecordInfo,
    StageStatistics as StageStatistics,
)
from ._core._handles import Consumer as Consumer, Producer as Producer
from ._core._links import (
    InboundLinkBuilder as InboundLinkBuilder,
    LinkSpec as LinkSpec,
    LinkUrl as LinkUrl,
    OutboundLinkBuilder as OutboundLinkBuilder,
)
from ._core._record import RecordRegistrar as RecordRegistrar
from ._errors import (
    AimDbError as AimDbError,
    AttachFailed as AttachFailed,
    BufferClosed as BufferClosed,
    BufferEmpty as BufferEmpty,
    BufferError_ as BufferError_,
    BufferLagged as BufferLagged,
    ConfigProblem as ConfigProblem,
    ConnectionFailed as ConnectionFailed,
    ConnectorError as ConnectorError,
    ConnectorTimeout as ConnectorTimeout,
    DeserializeError as DeserializeError,
    DetachFailed as DetachFailed,
    GetTimeout as GetTimeout,
    InvalidConfiguration as InvalidConfiguration,
    PermissionDenied as PermissionDenied,
    ProtocolError as ProtocolError,
    PublishError as PublishError,
    RecordNotFound as RecordNotFound,
    RuntimeShutdown as RuntimeShutdown,
    SerializeError as SerializeError,
    SetTimeout as SetTimeout,
    StageFailed as StageFailed,
    SyncError as SyncError,
    TypeMismatch as TypeMismatch,
)

__version__ = "0.1.0"

__all__ = (
    "AimDb",
    "AimDbBuilder",
    "AimDbError",
    "AttachFailed",
    "Buffer",
    "BufferCfg",
    "BufferClosed",
    "BufferEmpty",
    "BufferError_",
    "BufferLagged",
    "BufferStatistics",
    "ConfigProblem",
    "ConnectionFailed",
    "Connector",
    "ConnectorError",
    "ConnectorRoutes",
    "ConnectorTimeout",
    "Consumer",
    "Context",
    "DeserializeError",
    "DetachFailed",
    "GetTimeout",
    "InboundLinkBuilder",
    "InboundRoute",
    "InvalidConfiguration",
    "JoinInputs",
    "JsonCodec",
    "LatestBuffer",
    "LatestReader",
    "LinkSpec",
    "LinkStatistics",
    "LinkUrl",
    "Mailbox",
    "MailboxBuffer",
    "MailboxReader",
    "OutboundLinkBuilder",
    "OutboundRoute",
    "PermissionDenied",
    "Producer",
    "ProtocolError",
    "PublishError",
    "Reader",
    "RecordInfo",
    "RecordNotFound",
    "RecordRegistrar",
    "RingBuffer",
    "RingReader",
    "RuntimeShutdown",
    "SerializeError",
    "SetTimeout",
    "SingleLatest",
    "SpmcRing",
    "StageFailed",
    "StageLog",
    "StageStatistics",
    "SyncError",
    "Ticker",
    "TimeApi",
    "TypeMismatch",
    "__version__",
    "json_codec",
)


def _fix_module_names() -> None:
    # Tracebacks and reprs show ``aimdb.BufferLagged`` rather than private module paths.
    g = globals()
    for name in __all__:
        obj = g.get(name)
        if isinstance(obj, type) and getattr(obj, "__module__", "").startswith("aimdb._"):
            try:
                obj.__module__ = "aimdb"
            except (AttributeError, TypeError):  # pragma: no cover - MicroPython
                pass


_fix_module_names()
