"""A PKI for the rig and the tests: a CA, a server certificate and client certificates (``cryptography``).

EC P-256 keys (fast to make). The server certificate names ``localhost`` and
``127.0.0.1``; a client certificate's CN is the name given (the unit id), so
a broker with ``use_identity_as_username`` sees it as the username.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path
    directory: Path

    def client(self, name: str) -> tuple[Path, Path]:
        """A client certificate and key for ``name`` (made once, signed by this CA)."""
        cert_path = self.directory / f"client-{name}.crt"
        key_path = self.directory / f"client-{name}.key"
        if not cert_path.exists():
            ca_key = serialization.load_pem_private_key(self.ca_key.read_bytes(), None)
            ca_cert = x509.load_pem_x509_certificate(self.ca_cert.read_bytes())
            key = ec.generate_private_key(ec.SECP256R1())
            cert = _issue(
                _name(name), key, ca_cert.subject, ca_key, extended_usage=ExtendedKeyUsageOID.CLIENT_AUTH
            )
            _write(cert_path, key_path, cert, key)
        return cert_path, key_path


def make_pki(directory: Path) -> TlsFiles:
    """Write a CA and a server certificate for localhost into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("umps test CA")
    ca_cert = _issue(ca_name, ca_key, ca_name, ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = _issue(
        _name("localhost"),
        server_key,
        ca_name,
        ca_key,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        extended_usage=ExtendedKeyUsageOID.SERVER_AUTH,
    )
    files = TlsFiles(
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        directory=directory,
    )
    _write(files.ca_cert, files.ca_key, ca_cert, ca_key)
    _write(files.server_cert, files.server_key, server_cert, server_key)
    return files


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _issue(subject, key, issuer, issuer_key, *, ca=False, san=None, extended_usage=None) -> x509.Certificate:
    now = dt.datetime.now(dt.timezone.utc)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    if extended_usage:
        builder = builder.add_extension(x509.ExtendedKeyUsage([extended_usage]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(cert_path: Path, key_path: Path, cert: x509.Certificate, key) -> None:
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    key_path.chmod(0o600)
