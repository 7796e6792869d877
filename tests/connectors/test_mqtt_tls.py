"""MqttConnector over TLS (``mqtts://``) against a real Mosquitto with a TLS listener.

The certificates are made at run time (a throwaway CA, a server certificate for
127.0.0.1/localhost, client certificates) with the ``cryptography`` package; nothing is
committed.  Every broker is a ``PrivateMosquitto`` on a free port of 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509  # the dev extra
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from aimdb import AimDbBuilder, BufferCfg, ConnectionFailed, ConnectorTimeout
from aimdb.connectors import MqttConnector, ReconnectPolicy

from ._util import Temp, collector, wait_until

pytestmark = [pytest.mark.runtimes("asyncio", "uvloop"), pytest.mark.timeout(120)]
WAIT = 30  # seconds a connector may take to connect or give up: a liveness bound (the machine may be loaded)

GIVE_UP_FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.05, max_attempts=3)
FAST_RETRY = ReconnectPolicy(initial_delay=0.02, max_delay=0.1)


# ----------------------------------------------------------------------------- PKI


@dataclass
class _Issued:
    cert: Path
    key: Path


@dataclass
class Pki:
    ca: Path  # the CA the broker's certificate chains to
    server: _Issued  # CN/SAN 127.0.0.1 and localhost
    wrong_host: _Issued  # same CA, SAN only "wrong-host.invalid"
    client: _Issued  # client certificate from the CA
    other_ca: Path  # an unrelated CA
    stranger: _Issued  # client certificate from the unrelated CA


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "aimdb tests"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> Path:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)
    return path


def _write_cert(cert: x509.Certificate, path: Path) -> Path:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def _validity(b: x509.CertificateBuilder) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.timezone.utc)
    return b.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=2))


def _make_ca(cn: str, d: Path) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate, Path]:
    key = _key()
    name = _name(cn)
    b = x509.CertificateBuilder().subject_name(name).issuer_name(name)
    b = _validity(b.public_key(key.public_key()).serial_number(x509.random_serial_number()))
    b = b.add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )
    b = b.add_extension(usage, critical=True)
    b = b.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    cert = b.sign(key, hashes.SHA256())
    return key, cert, _write_cert(cert, d / f"{cn}.pem")


def _issue(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    cn: str,
    d: Path,
    *,
    server: bool,
    dns: tuple[str, ...] = (),
    ips: tuple[str, ...] = (),
) -> _Issued:
    key = _key()
    b = _validity(x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca_cert.subject)
                  .public_key(key.public_key()).serial_number(x509.random_serial_number()))
    b = b.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
    usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    b = b.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())
    b = b.add_extension(aki, critical=False)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips]
    if sans:
        b = b.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = b.sign(ca_key, hashes.SHA256())
    return _Issued(_write_cert(cert, d / f"{cn}.pem"), _write_key(key, d / f"{cn}.key"))


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    d.chmod(0o755)
    ca_key, ca, ca_path = _make_ca("aimdb-test-ca", d)
    other_key, other, other_path = _make_ca("aimdb-other-ca", d)
    return Pki(
        ca=ca_path,
        server=_issue(ca_key, ca, "server", d, server=True, dns=("localhost",), ips=("127.0.0.1",)),
        wrong_host=_issue(ca_key, ca, "wrong-host", d, server=True, dns=("wrong-host.invalid",)),
        client=_issue(ca_key, ca, "client", d, server=False),
        other_ca=other_path,
        stranger=_issue(other_key, other, "stranger", d, server=False),
    )


def client_ctx(cafile: Path | None, cert: _Issued | None = None) -> ssl.SSLContext:
    """What a user writes: a default client context trusting ``cafile`` (+ a client cert)."""
    ctx = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    if cert is not None:
        ctx.load_cert_chain(str(cert.cert), str(cert.key))
    return ctx


@pytest.fixture
def tls_broker(private_mosquitto_factory: Any, pki: Pki) -> Iterator[Any]:
    """A Mosquitto whose only listener is TLS with the test CA's server certificate."""
    yield private_mosquitto_factory(certfile=pki.server.cert, keyfile=pki.server.key, cafile=pki.ca)


def ring(n: int = 64) -> Any:
    return BufferCfg.SpmcRing(capacity=n)


async def _round_trip(url: str, topic: str, ctx: ssl.SSLContext, protocol: Any = 5, qos: int = 1) -> None:
    pub = MqttConnector(url, tls=ctx, protocol=protocol)
    sub = MqttConnector(url, tls=ctx, protocol=protocol)
    got: list[Temp] = []
    bs = AimDbBuilder().with_connector(sub)
    bs.configure(Temp, "temp", lambda r: r.buffer(ring()).link_from(f"mqtt://{topic}").qos(qos).finish()
                 .tap(collector(got)))
    bp = AimDbBuilder().with_connector(pub)
    bp.configure(Temp, "temp", lambda r: r.buffer(ring()).link_to(f"mqtt://{topic}").qos(qos).finish())
    async with bs.build(), bp.build() as dbp:
        await sub.wait_connected(WAIT)
        await pub.wait_connected(WAIT)
        # it really is TLS, verified, and against our broker's certificate
        for conn in (pub, sub):
            assert conn._proto is not None and conn._proto.transport is not None
            sslobj = conn._proto.transport.get_extra_info("ssl_object")
            assert sslobj is not None, "no TLS on the connection"
            peer = conn._proto.transport.get_extra_info("peercert")
            assert dict(x[0] for x in peer["subject"])["commonName"] == "server"
        producer = dbp.producer(Temp, "temp")
        for i in range(20):
            producer.produce(Temp(float(i)))
        await wait_until(lambda: len(got) == 20, what="20 values over TLS")
    assert got == [Temp(float(i)) for i in range(20)]
    assert pub.statistics().connects == 1 and sub.statistics().connects == 1
    assert pub.statistics().failed_attempts == 0


# --------------------------------------------------------------------------- tests


def test_mqtts_defaults() -> None:
    """``mqtts://host`` means TLS on port 8883; ``tls=`` overrides the scheme."""
    conn = MqttConnector("mqtts://broker.example")
    assert conn.endpoint.port == 8883 and conn.tls is True
    assert MqttConnector("mqtt://broker.example").tls is False
    ctx = ssl.create_default_context()
    assert MqttConnector("mqtt://broker.example:1883", tls=ctx)._ssl_context() is ctx


@pytest.mark.parametrize("protocol", [5, "3.1.1"])
async def test_round_trip_over_tls(
    rt: Any, tls_broker: Any, pki: Pki, unique_topic: str, protocol: Any
) -> None:
    """link_to -> Mosquitto (TLS) -> link_from, the client trusting the test CA."""
    assert tls_broker.url == f"mqtts://127.0.0.1:{tls_broker.port}"
    await _round_trip(tls_broker.url, f"{unique_topic}/temp", client_ctx(pki.ca), protocol)


async def test_round_trip_with_client_certificate(
    rt: Any, private_mosquitto_factory: Any, pki: Pki, unique_topic: str
) -> None:
    """The broker requires a client certificate from the test CA; the client presents one."""
    broker = private_mosquitto_factory(certfile=pki.server.cert, keyfile=pki.server.key, cafile=pki.ca,
                                       require_certificate=True)
    await _round_trip(broker.url, f"{unique_topic}/temp", client_ctx(pki.ca, pki.client))


@pytest.mark.parametrize("client_cert", ["none", "stranger"])
async def test_missing_or_foreign_client_certificate_is_refused(
    rt: Any, private_mosquitto_factory: Any, pki: Pki, client_cert: str
) -> None:
    """Without a certificate (or with one from another CA) the broker refuses: ConnectionFailed."""
    broker = private_mosquitto_factory(certfile=pki.server.cert, keyfile=pki.server.key, cafile=pki.ca,
                                       require_certificate=True)
    ctx = client_ctx(pki.ca, pki.stranger if client_cert == "stranger" else None)
    conn = MqttConnector(broker.url, tls=ctx, reconnect=GIVE_UP_FAST, connect_timeout=5)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
    async with b.build():
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(WAIT)
    # TLS 1.3: the broker checks the certificate after the client's handshake is done, and
    # its alert often loses the race against a TCP reset, so the connector says what it means
    text = str(ei.value)
    assert "TLS connection before CONNACK" in text and "client certificate" in text, text
    assert isinstance(ei.value.__cause__, ConnectionError)
    assert conn.statistics().failed_attempts == 3


async def test_untrusted_server_certificate_fails_clearly_and_isolated(
    rt: Any, tls_broker: Any, pki: Pki, unique_topic: str
) -> None:
    """A client that does not trust the broker's CA: ConnectionFailed (certificate verify
    failed), retried per the ReconnectPolicy; the database and its other records go on."""
    # 1. the system trust store (plain mqtts://) and 2. a context trusting another CA
    for tls in (None, client_ctx(pki.other_ca)):
        conn = MqttConnector(tls_broker.url, tls=tls, reconnect=GIVE_UP_FAST)
        local: list[Temp] = []
        b = AimDbBuilder().with_connector(conn)
        b.configure(Temp, "linked", lambda r: r.buffer(ring()).link_to(f"mqtt://{unique_topic}/t").finish())
        b.configure(Temp, "local", lambda r: r.buffer(ring()).tap(collector(local)))
        async with b.build() as db:
            with pytest.raises(ConnectionFailed) as ei:
                await conn.wait_connected(WAIT)
            assert "certificate verify failed" in str(ei.value).lower()
            assert isinstance(ei.value.__cause__, ssl.SSLCertVerificationError)
            assert conn.statistics().failed_attempts == 3
            assert conn.state == "failed"
            # the database is still running and its records work
            assert db.state == "running"
            db.producer(Temp, "linked").produce(Temp(1.0))
            lp = db.producer(Temp, "local")
            for i in range(5):
                lp.produce(Temp(float(i)))
            await wait_until(lambda: len(local) == 5, what="local values after the TLS failure")
            assert db.state == "running"
        assert conn.state == "closed"

    # unlimited retries keep trying and time out with the TLS reason as the cause (waiting
    # for two failed attempts first: how many fit in a fixed time depends on the machine's load)
    conn = MqttConnector(tls_broker.url, reconnect=FAST_RETRY)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to(f"mqtt://{unique_topic}/t").finish())
    async with b.build():
        await wait_until(lambda: conn.statistics().failed_attempts >= 2, timeout=WAIT,
                         what="two failed attempts")
        with pytest.raises(ConnectorTimeout) as et:
            await conn.wait_connected(0.05)
        assert isinstance(et.value.__cause__, ConnectionFailed)
        assert "certificate verify failed" in str(et.value).lower()


async def test_hostname_mismatch_is_refused(
    rt: Any, private_mosquitto_factory: Any, pki: Pki
) -> None:
    """The certificate is from a trusted CA but for another name: refused."""
    broker = private_mosquitto_factory(certfile=pki.wrong_host.cert, keyfile=pki.wrong_host.key)
    conn = MqttConnector(broker.url, tls=client_ctx(pki.ca), reconnect=GIVE_UP_FAST)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
    async with b.build():
        with pytest.raises(ConnectionFailed) as ei:
            await conn.wait_connected(WAIT)
    cause = ei.value.__cause__
    assert isinstance(cause, ssl.SSLCertVerificationError)
    assert "mismatch" in str(ei.value).lower() and "127.0.0.1" in str(ei.value), str(ei.value)
    assert conn.statistics().failed_attempts == 3


async def test_plain_mqtt_to_a_tls_listener_fails(rt: Any, tls_broker: Any) -> None:
    """``mqtt://`` (no TLS) to a TLS-only port does not connect; it fails, not hangs."""
    conn = MqttConnector(f"mqtt://127.0.0.1:{tls_broker.port}", reconnect=GIVE_UP_FAST, connect_timeout=3)
    b = AimDbBuilder().with_connector(conn)
    b.configure(Temp, "t", lambda r: r.buffer(ring()).link_to("mqtt://x/t").finish())
    async with b.build():
        with pytest.raises(ConnectionFailed):
            await conn.wait_connected(WAIT)
    assert conn.statistics().connects == 0
