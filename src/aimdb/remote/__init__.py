"""Remote access: see and steer a running aimdb from outside (CPython only).

Server side::

    async with builder.build() as db:
        server = await aimdb.remote.start_server(db, RemoteConfig(writable=["config.#"]))
        print(server.endpoints)

or declared on the builder with ``builder.with_connector(RemoteAccess(cfg))``, or run
as a service: ``db.add_service("remote", aimdb.remote.serve, db, cfg)``.

Client side: :class:`AsyncClient` (``await aimdb.remote.connect("unix:///...")``) and
:class:`SyncClient`. Instance-to-instance links: :class:`AimdbConnector` (scheme
``aimdb``). The wire protocol is documented in ``docs/remote-protocol.md``.

Over HTTP (``RemoteConfig(http="127.0.0.1:0")``, needs ``pip install 'aimdb[dashboard]'``):
the same protocol over WebSocket at ``/ws``, Prometheus metrics at ``/metrics``
(:class:`MetricsRenderer`, :class:`AimDbCollector`) and the dashboard page at ``/``.
"""

from ._client import (
    AsyncClient as AsyncClient,
)
from ._client import (
    Event as Event,
)
from ._client import (
    RemoteError as RemoteError,
)
from ._client import (
    RemotePermissionDenied as RemotePermissionDenied,
)
from ._client import (
    RemoteProtocolError as RemoteProtocolError,
)
from ._client import (
    Subscription as Subscription,
)
from ._client import (
    connect as connect,
)
from ._client import (
    list_instances as list_instances,
)
from ._client import (
    probe as probe,
)
from ._client import (
    resolve_endpoint as resolve_endpoint,
)
from ._config import RemoteConfig as RemoteConfig
from ._connector import AimdbConnector as AimdbConnector
from ._discovery import default_socket_path as default_socket_path
from ._discovery import runtime_dir as runtime_dir
from ._methods import METHODS as METHODS
from ._metrics import AimDbCollector as AimDbCollector
from ._metrics import Family as Family
from ._metrics import MetricsRenderer as MetricsRenderer
from ._protocol import (
    ERROR_CODES as ERROR_CODES,
)
from ._protocol import (
    PROTOCOL_VERSION as PROTOCOL_VERSION,
)
from ._protocol import (
    Endpoint as Endpoint,
)
from ._protocol import (
    FrameDecoder as FrameDecoder,
)
from ._protocol import (
    FrameError as FrameError,
)
from ._protocol import (
    parse_endpoint as parse_endpoint,
)
from ._protocol import (
    pattern_matches as pattern_matches,
)
from ._server import (
    RemoteAccess as RemoteAccess,
)
from ._server import (
    RemoteServer as RemoteServer,
)
from ._server import (
    serve as serve,
)
from ._server import (
    start_server as start_server,
)
from ._stats import RemoteServerStatistics as RemoteServerStatistics
from ._sync import SyncClient as SyncClient
from ._sync import SyncSubscription as SyncSubscription

__all__ = (
    "ERROR_CODES",
    "METHODS",
    "PROTOCOL_VERSION",
    "AimDbCollector",
    "AimdbConnector",
    "AsyncClient",
    "Endpoint",
    "Event",
    "Family",
    "FrameDecoder",
    "FrameError",
    "MetricsRenderer",
    "RemoteAccess",
    "RemoteConfig",
    "RemoteError",
    "RemotePermissionDenied",
    "RemoteProtocolError",
    "RemoteServer",
    "RemoteServerStatistics",
    "Subscription",
    "SyncClient",
    "SyncSubscription",
    "connect",
    "default_socket_path",
    "list_instances",
    "parse_endpoint",
    "pattern_matches",
    "probe",
    "resolve_endpoint",
    "runtime_dir",
    "serve",
    "start_server",
)
