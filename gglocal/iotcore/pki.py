"""Local PKI for the IoT Core stand-in: a private CA, a broker cert and a thing cert.

Real Greengrass authenticates to AWS IoT Core with an X.509 client certificate over mutual TLS.
We reproduce that locally so components exercise the same code paths (and failure modes) they
would against the cloud. Everything is generated once and reused on later starts so that
certificates (and thus broker-side identities/sessions) are stable across runtime restarts.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_CA_DAYS = 3650
_LEAF_DAYS = 825  # well below the CA lifetime; renewed automatically when near expiry
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True)
class Pki:
    """Paths of the PEM files making up the local PKI."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    ca_key: Path


def ensure_pki(directory: Path, thing_name: str) -> Pki:
    """Create (first start) or reuse (later starts) the CA, broker and thing certificates.

    The CA is kept as long as it is valid; leaf certificates are re-issued when missing, near
    expiry, not signed by the current CA, or (client) when the thing name changed.
    """
    if not thing_name:
        raise ValueError("thing_name must not be empty (it becomes the client certificate CN)")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    pki = Pki(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
        client_cert=directory / "thing.pem",
        client_key=directory / "thing.key",
    )

    ca = _load_pair(pki.ca_cert, pki.ca_key)
    if ca is None or not _fresh(ca[0]):
        ca = _make_ca(pki)
    ca_cert, ca_key = ca

    server = _load_pair(pki.server_cert, pki.server_key)
    if server is None or not _fresh(server[0]) or not _issued_by(server[0], ca_cert):
        _issue_leaf(pki.server_cert, pki.server_key, "localhost", ca_cert, ca_key, server=True)

    client = _load_pair(pki.client_cert, pki.client_key)
    if (
        client is None
        or not _fresh(client[0])
        or not _issued_by(client[0], ca_cert)
        or _common_name(client[0]) != thing_name
    ):
        _issue_leaf(pki.client_cert, pki.client_key, thing_name, ca_cert, ca_key, server=False)
    return pki


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _fresh(cert: x509.Certificate) -> bool:
    return cert.not_valid_after_utc - _RENEW_BEFORE > _now()


def _issued_by(cert: x509.Certificate, ca_cert: x509.Certificate) -> bool:
    # Checks the signature, not just the issuer name: a regenerated CA keeps the same name.
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _common_name(cert: x509.Certificate) -> str | None:
    attrs = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def _load_pair(cert_path: Path, key_path: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None:
    """Load a cert and its key; None if either is missing, unreadable or they do not match."""
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError):
        return None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.public_key() != cert.public_key():
        return None
    return cert, key


def _write_private(path: Path, data: bytes, mode: int) -> None:
    """Write atomically with the final mode from the start (keys are never briefly world-readable)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _save(cert_path: Path, key_path: Path, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    _write_private(key_path, key_pem, 0o600)
    _write_private(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, days: int
) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))  # tolerate small clock skew
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _make_ca(pki: Pki) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "ggvision"),
            x509.NameAttribute(NameOID.COMMON_NAME, "ggvision local IoT Core CA"),
        ]
    )
    cert = (
        _builder(name, name, key.public_key(), _CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
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
        .sign(key, hashes.SHA256())
    )
    _save(pki.ca_cert, pki.ca_key, cert, key)
    return cert, key


def _issue_leaf(
    cert_path: Path,
    key_path: Path,
    common_name: str,
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    *,
    server: bool,
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    builder = (
        _builder(subject, ca_cert.subject, key.public_key(), _LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()), critical=False)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
    )
    if server:
        # TLS clients verify the host they dialled against the SAN, never the CN.
        san = x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.IPv4Address("127.0.0.1"))]
        )
        builder = builder.add_extension(san, critical=False)
    _save(cert_path, key_path, builder.sign(ca_key, hashes.SHA256()), key)
