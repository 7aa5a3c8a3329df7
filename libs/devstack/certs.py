"""A local certificate authority for the dev stack and the tests.

`make dev` keeps it in `.state/secrets`: the CA, a server certificate for the
loopback names, and client certificates whose SAN is a principal (SPIFFE-style
URI or DNS name). Files are made once and reused; a certificate close to its
end is made again.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
_LEAF_DAYS = 365
_RENEW_BEFORE = datetime.timedelta(days=30)


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key, both PEM files."""

    cert: Path
    key: Path

    def cert_bytes(self) -> bytes:
        return self.cert.read_bytes()

    def key_bytes(self) -> bytes:
        return self.key.read_bytes()


class LocalCA:
    """Loads the CA in `directory`, or makes one there."""

    def __init__(self, directory: Path, *, name: str = "Tenantry local CA") -> None:
        self.directory = directory
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.pair = KeyPair(directory / "ca.pem", directory / "ca-key.pem")
        if not self._usable(self.pair.cert):
            key = ec.generate_private_key(ec.SECP256R1())
            subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
            now = _now()
            cert = (
                x509.CertificateBuilder()
                .subject_name(subject)
                .issuer_name(subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5))
                .not_valid_after(now + datetime.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(
                    x509.KeyUsage(
                        digital_signature=True,
                        key_cert_sign=True,
                        crl_sign=True,
                        content_commitment=False,
                        key_encipherment=False,
                        data_encipherment=False,
                        key_agreement=False,
                        encipher_only=False,
                        decipher_only=False,
                    ),
                    critical=True,
                )
                .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                .sign(key, hashes.SHA256())
            )
            _write(self.pair, cert, key)
        self._cert = x509.load_pem_x509_certificate(self.pair.cert_bytes())
        loaded = serialization.load_pem_private_key(self.pair.key_bytes(), password=None)
        assert isinstance(loaded, ec.EllipticCurvePrivateKey)
        self._key = loaded

    @property
    def ca_file(self) -> Path:
        return self.pair.cert

    def server(self, name: str = "server", hosts: tuple[str, ...] = LOOPBACK_HOSTS) -> KeyPair:
        """A server certificate for `hosts` (IP addresses or DNS names)."""
        names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        return self.issue(name, hosts[0], names, ExtendedKeyUsageOID.SERVER_AUTH)

    def client(self, name: str, *, uri: str | None = None, dns: str | None = None) -> KeyPair:
        """A client certificate whose identity is the URI SAN `uri` (SPIFFE style) or DNS SAN `dns`."""
        names: list[x509.GeneralName] = []
        if uri:
            names.append(x509.UniformResourceIdentifier(uri))
        if dns:
            names.append(x509.DNSName(dns))
        if not names:
            raise ValueError("a client certificate needs a URI or DNS name")
        return self.issue(name, uri or dns or name, names, ExtendedKeyUsageOID.CLIENT_AUTH)

    def issue(
        self, name: str, common_name: str, names: list[x509.GeneralName], usage: x509.ObjectIdentifier
    ) -> KeyPair:
        """A certificate named `name` with exactly the subject alternative names `names`."""
        pair = KeyPair(self.directory / f"{name}.pem", self.directory / f"{name}-key.pem")
        if self._usable(pair.cert, issuer=self._cert, names=names):
            return pair
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])]))
            .issuer_name(self._cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=_LEAF_DAYS))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )
        if names:
            cert = cert.add_extension(x509.SubjectAlternativeName(names), critical=False)
        _write(pair, cert.sign(self._key, hashes.SHA256()), key)
        return pair

    @staticmethod
    def _usable(
        path: Path, *, issuer: x509.Certificate | None = None, names: list[x509.GeneralName] | None = None
    ) -> bool:
        if not path.exists():
            return False
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        if cert.not_valid_after_utc - _now() < _RENEW_BEFORE:
            return False
        if issuer is not None and cert.issuer != issuer.subject:
            return False
        if names is not None:
            try:
                san = list(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)
            except x509.ExtensionNotFound:
                san = []
            return san == names
        return True


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _write(pair: KeyPair, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> None:
    # The key first, private from its creation: no moment where another user can read it.
    fd = os.open(pair.key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
