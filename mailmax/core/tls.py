"""TLS material: server context options (swappable by a reload), and a self-signed
certificate for development."""

from __future__ import annotations

import datetime
import ipaddress
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL
from twisted.internet import ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from zope.interface import implementer

from mailmax.core.config import IMPLICIT_TLS_SERVICES, ConfigError, Settings


class TLSConfigError(Exception):
    """The certificate or key cannot be used; the message says which file and why."""


def server_options(
    cert_path: Path, key_path: Path, min_version: str = "1.2"
) -> ssl.CertificateOptions:
    """Twisted context options for a server using ``cert_path`` (PEM chain) and ``key_path``."""
    try:
        cert_pem = Path(cert_path).read_bytes()
        key_pem = Path(key_path).read_bytes()
    except OSError as exc:
        raise TLSConfigError(
            f"cannot read TLS file {exc.filename}: {exc.strerror}; "
            "set [tls] cert/key or create a development certificate with `mailmax init`"
        ) from None
    try:
        private = ssl.PrivateCertificate.loadPEM(key_pem + b"\n" + cert_pem)
    except Exception as exc:
        raise TLSConfigError(
            f"{cert_path} / {key_path}: not a matching PEM certificate and key ({exc})"
        ) from None
    minimum = ssl.TLSVersion.TLSv1_3 if min_version == "1.3" else ssl.TLSVersion.TLSv1_2
    chain = [
        ssl.Certificate.loadPEM(block).original.to_cryptography()
        for block in _pem_blocks(cert_pem)[1:]
    ]
    return ssl.CertificateOptions(
        privateKey=private.privateKey.original.to_cryptography_key(),
        certificate=private.original.to_cryptography(),
        extraCertChain=chain or None,
        raiseMinimumTo=minimum,
    )


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerOptions:
    """Server TLS options that a reload can replace: each new TLS connection (an implicit-TLS
    accept or a STARTTLS) uses the :attr:`options` current at that moment."""

    def __init__(self, options: ssl.CertificateOptions) -> None:
        self.options = options

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        """A server-side OpenSSL connection with the current certificate."""
        return SSL.Connection(self.options.getContext(), None)


def listener_options(settings: Settings) -> list[ssl.CertificateOptions | None]:
    """The TLS options of each of ``settings.listeners`` (None: no certificate, no STARTTLS).

    A listener's own ``tls_cert``/``tls_key`` win over ``[tls]``. Raises
    :class:`TLSConfigError` for a file that cannot be used, and ConfigError when an
    implicit-TLS listener has no certificate.
    """
    cert, key = settings.path(settings.tls.cert), settings.path(settings.tls.key)
    default = None
    if cert.exists() and key.exists():
        default = server_options(cert, key, settings.tls.min_version)
    found: list[ssl.CertificateOptions | None] = []
    for listener in settings.listeners:
        options = default
        if listener.tls_cert or listener.tls_key:
            options = server_options(
                settings.path(listener.tls_cert or settings.tls.cert),
                settings.path(listener.tls_key or settings.tls.key),
                settings.tls.min_version,
            )
        if listener.service in IMPLICIT_TLS_SERVICES and options is None:
            raise ConfigError(
                f"{settings.source}: listener {listener.address}:{listener.port} "
                f"({listener.service}) needs a certificate; {cert} or {key} is missing"
            )
        found.append(options)
    return found


def _pem_blocks(data: bytes) -> list[bytes]:
    marker = b"-----END CERTIFICATE-----"
    return [part + marker for part in data.split(marker) if b"-----BEGIN CERTIFICATE-----" in part]


def make_self_signed(hostnames: Sequence[str], days: int = 825) -> tuple[bytes, bytes]:
    """A self-signed EC P-256 certificate for ``hostnames`` and 127.0.0.1: (key PEM, cert PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
    now = datetime.datetime.now(datetime.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(h) for h in dict.fromkeys(hostnames)]
    sans.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def write_self_signed(cert_path: Path, key_path: Path, hostnames: Sequence[str]) -> None:
    """Write a development certificate and its key (mode 0600) to the given paths."""
    key_pem, cert_pem = make_self_signed(hostnames)
    cert_path.parent.mkdir(parents=True, exist_ok=True)
    key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_pem)
    cert_path.write_bytes(cert_pem)
