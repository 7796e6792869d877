"""NatsConnector over TLS against a real nats-server that requires TLS.

Certificates come from the throwaway PKI of ``test_mqtt_tls`` (made at run time with the
``cryptography`` package); every server is a ``PrivateNats`` on a free port of 127.0.0.1.
"""

from __future__ import annotations

import ssl
from typing import Any

import pytest

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed
from aimdb.connectors import NatsConnector, ReconnectPolicy

from ._util import Temp, collector, wait_until
from .test_mqtt_tls import Pki, client_ctx, pki

pytest.importorskip("nats")

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(60)]

GIVE_UP_FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.05, max_attempts=2)

__all__ = ["pki"]  # the module-scoped PKI fixture, shared with the MQTT TLS tests


def ring(n: int = 64) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


def _transport_ssl(conn: NatsConnector) -> Any:
    nc = conn._nc
    assert nc is not None and nc._transport is not None
    writer = nc._transport._io_writer  # nats-py's TcpTransport: an asyncio StreamWriter
    return writer.get_extra_info("ssl_object")


def test_tls_url_defaults() -> None:
    conn = NatsConnector("tls://nats.example")
    assert conn.endpoint.port == 4222 and conn.tls is True and conn.scheme == "nats"
    assert NatsConnector("nats://nats.example").tls is False
    ctx = ssl.create_default_context()
    assert NatsConnector("nats://nats.example", tls=ctx).tls is ctx


async def test_round_trip_over_tls(rt: Any, private_nats_factory: Any, pki: Pki, unique_topic: str) -> None:
    server = private_nats_factory(certfile=pki.server.cert, keyfile=pki.server.key)
    assert server.url.startswith("tls://")
    subject = f"{unique_topic}.tls"
    pub = NatsConnector(server.url, tls=client_ctx(pki.ca))
    sub = NatsConnector(server.url.replace("tls://", "nats://"), tls=client_ctx(pki.ca))
    got: list[Temp] = []
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(Temp, "t", lambda r: r.buffer(ring()).link_from(f"nats://{subject}").finish()
                 .tap(collector(got)))
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(Temp, "t", lambda r: r.buffer(ring()).link_to(f"nats://{subject}").finish())
    async with bs.build(), bp.build() as dbp:
        await sub.wait_connected(5)
        await pub.wait_connected(5)
        for conn in (pub, sub):
            sslobj = _transport_ssl(conn)
            assert sslobj is not None, "no TLS on the connection"
            assert dict(x[0] for x in sslobj.getpeercert()["subject"])["commonName"] == "server"
        p = dbp.producer(Temp, "t")
        for i in range(10):
            p.produce(Temp(float(i)))
        await wait_until(lambda: len(got) == 10, what="10 values over TLS")
    assert got == [Temp(float(i)) for i in range(10)]


async def test_client_certificate(rt: Any, private_nats_factory: Any, pki: Pki, unique_topic: str) -> None:
    server = private_nats_factory(certfile=pki.server.cert, keyfile=pki.server.key, cafile=pki.ca)
    ok = NatsConnector(server.url, tls=client_ctx(pki.ca, pki.client))
    b = AimDbBuilder().with_connector(ok)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to(f"nats://{unique_topic}.t").finish())
    async with b.build():
        await ok.wait_connected(5)
    for cert in (None, pki.stranger):
        bad = NatsConnector(server.url, tls=client_ctx(pki.ca, cert), reconnect=GIVE_UP_FAST)
        b = AimDbBuilder().with_connector(bad)
        b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to(f"nats://{unique_topic}.t").finish())
        async with b.build():
            with pytest.raises(ConnectionFailed):
                await bad.wait_connected(5)
        assert bad.statistics().failed_attempts == 2


async def test_untrusted_server_and_plain_client_fail(rt: Any, private_nats_factory: Any, pki: Pki) -> None:
    server = private_nats_factory(certfile=pki.server.cert, keyfile=pki.server.key)
    cases = [
        # the system trust store does not know the test CA
        (NatsConnector(server.url, reconnect=GIVE_UP_FAST), "certificate verify failed"),
        # a CA that did not sign the server's certificate
        (
            NatsConnector(server.url, tls=client_ctx(pki.other_ca), reconnect=GIVE_UP_FAST),
            "certificate verify failed",
        ),
        # nats:// and no TLS options: nats-py upgrades anyway (the server requires TLS), with
        # the system trust store
        (NatsConnector(server.url.replace("tls://", "nats://"), reconnect=GIVE_UP_FAST), ""),
    ]
    for conn, text in cases:
        b = AimDbBuilder().with_connector(conn)
        b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("nats://x.t").finish())
        async with b.build():
            with pytest.raises(ConnectionFailed) as ei:
                await conn.wait_connected(5)
        assert text in str(ei.value), str(ei.value)
        assert conn.state == "closed"
