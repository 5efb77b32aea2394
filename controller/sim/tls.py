"""A throwaway self-signed certificate for the simulators' HTTPS servers.

The certificate is its own CA (basicConstraints CA:TRUE) and names 127.0.0.1, ::1 and localhost in
its subjectAltName, so a client can verify the server against it: `requests.get(url, verify=cert)`.
"""

from __future__ import annotations

import atexit
import datetime as _dt
import ipaddress
import os
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class CertPair:
    """Paths of a PEM certificate and its unencrypted PEM key. `ca_bundle` is what clients verify with."""

    cert: str
    key: str

    @property
    def ca_bundle(self) -> str:
        return self.cert


def make_self_signed(
    directory: str | None = None,
    *,
    dns_names: Iterable[str] = ("localhost",),
    ip_addresses: Iterable[str] = ("127.0.0.1", "::1"),
    common_name: str = "localhost",
    days: int = 30,
    basename: str = "sim",
) -> CertPair:
    """Write `<basename>.crt` and `<basename>.key` into `directory` (a new temp dir when None)."""
    if directory is None:
        directory = tempfile.mkdtemp(prefix="f5-llm-ratio-tls-")
    os.makedirs(directory, exist_ok=True)

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "f5-llm-ratio simulator")])
    now = _dt.datetime.now(_dt.timezone.utc)
    san = [x509.DNSName(d) for d in dns_names] + [x509.IPAddress(ipaddress.ip_address(a)) for a in ip_addresses]
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )

    cert_path = os.path.join(directory, basename + ".crt")
    key_path = os.path.join(directory, basename + ".key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return CertPair(cert=cert_path, key=key_path)


_shared: CertPair | None = None
_shared_lock = threading.Lock()


def shared_pair() -> CertPair:
    """One certificate per process in a temp dir removed at exit (for servers started without a cert dir)."""
    global _shared
    with _shared_lock:
        if _shared is None or not os.path.exists(_shared.cert):
            directory = tempfile.mkdtemp(prefix="f5-llm-ratio-tls-")
            atexit.register(shutil.rmtree, directory, True)
            _shared = make_self_signed(directory)
        return _shared


def server_context(pair: CertPair) -> ssl.SSLContext:
    """An `ssl.SSLContext` for a server presenting `pair`."""

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(pair.cert, pair.key)
    return ctx
