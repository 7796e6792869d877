"""aimdb: a typed, async, in-memory data plane from microcontroller to edge to cloud.

Declare typed records on an :class:`AimDbBuilder`, give each a buffer
(:class:`BufferCfg`), attach sources, taps, transforms, joins and links, then
``build()`` and run the database on asyncio, trio or MicroPython.
"""

from ._core._buffers import (
    Buffer as Buffer,
)
from ._core._buffers import (
    BufferCfg as BufferCfg,
)
from ._core._buffers import (
    BufferListener as BufferListener,
)
from ._core._buffers import (
    BufferMirror as BufferMirror,
)
from ._core._buffers import (
    BufferStatistics as BufferStatistics,
)
from ._core._buffers import (
    BufferWatcher as BufferWatcher,
)
from ._core._buffers import (
    LatestBuffer as LatestBuffer,
)
from ._core._buffers import (
    LatestReader as LatestReader,
)
from ._core._buffers import (
    Mailbox as Mailbox,
)
from ._core._buffers import (
    MailboxBuffer as MailboxBuffer,
)
from ._core._buffers import (
    MailboxReader as MailboxReader,
)
from ._core._buffers import (
    Reader as Reader,
)
from ._core._buffers import (
    RingBuffer as RingBuffer,
)
from ._core._buffers import (
    RingReader as RingReader,
)
from ._core._buffers import (
    SingleLatest as SingleLatest,
)
from ._core._buffers import (
    SpmcRing as SpmcRing,
)
from ._core._builder import AimDbBuilder as AimDbBuilder
from ._core._codec import JsonCodec as JsonCodec
from ._core._codec import json_codec as json_codec
from ._core._context import Context as Context
from ._core._context import StageLog as StageLog
from ._core._context import Ticker as Ticker
from ._core._context import TimeApi as TimeApi
from ._core._database import (
    AimDb as AimDb,
)
from ._core._database import (
    JoinInputs as JoinInputs,
)
from ._core._database import (
    RecordInfo as RecordInfo,
)
from ._core._database import (
    StageStatistics as StageStatistics,
)
from ._core._handles import Consumer as Consumer
from ._core._handles import Producer as Producer
from ._core._record import RecordRegistrar as RecordRegistrar
from ._core._tasks import SupervisedTask as SupervisedTask
from ._core._tasks import TaskStatistics as TaskStatistics
from ._errors import (
    AimDbError as AimDbError,
)
from ._errors import (
    AttachFailed as AttachFailed,
)
from ._errors import (
    BufferClosed as BufferClosed,
)
from ._errors import (
    BufferEmpty as BufferEmpty,
)
from ._errors import (
    BufferError_ as BufferError_,
)
from ._errors import (
    BufferLagged as BufferLagged,
)
from ._errors import (
    ConfigProblem as ConfigProblem,
)
from ._errors import (
    ConnectionFailed as ConnectionFailed,
)
from ._errors import (
    ConnectorError as ConnectorError,
)
from ._errors import (
    ConnectorTimeout as ConnectorTimeout,
)
from ._errors import (
    DeserializeError as DeserializeError,
)
from ._errors import (
    DetachFailed as DetachFailed,
)
from ._errors import (
    GetTimeout as GetTimeout,
)
from ._errors import (
    InvalidConfiguration as InvalidConfiguration,
)
from ._errors import (
    NotPersisted as NotPersisted,
)
from ._errors import (
    PermissionDenied as PermissionDenied,
)
from ._errors import (
    PersistenceError as PersistenceError,
)
from ._errors import (
    ProtocolError as ProtocolError,
)
from ._errors import (
    PublishError as PublishError,
)
from ._errors import (
    RecordNotFound as RecordNotFound,
)
from ._errors import (
    RuntimeShutdown as RuntimeShutdown,
)
from ._errors import (
    SerializeError as SerializeError,
)
from ._errors import (
    SetTimeout as SetTimeout,
)
from ._errors import (
    StageFailed as StageFailed,
)
from ._errors import (
    SyncError as SyncError,
)
from ._errors import (
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
    "BufferListener",
    "BufferMirror",
    "BufferStatistics",
    "BufferWatcher",
    "ConfigProblem",
    "ConnectionFailed",
    "ConnectorError",
    "ConnectorTimeout",
    "Consumer",
    "Context",
    "DeserializeError",
    "DetachFailed",
    "GetTimeout",
    "InvalidConfiguration",
    "JoinInputs",
    "JsonCodec",
    "LatestBuffer",
    "LatestReader",
    "Mailbox",
    "MailboxBuffer",
    "MailboxReader",
    "NotPersisted",
    "PermissionDenied",
    "PersistenceError",
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
    "SupervisedTask",
    "SyncError",
    "TaskStatistics",
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
