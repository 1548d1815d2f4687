"""A throwaway PKI for one local cluster: the cluster CA (serving cert, client certs), a separate
etcd CA (etcd's serving and peer certs, and the one client cert etcd accepts: the API server's),
and the service-account key. Every private key and kubeconfig is created 0600, in a 0700
directory: a running cluster is its user's alone."""

from __future__ import annotations

import datetime
import ipaddress
import os
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ..paths import write_private


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _pem_key(k) -> bytes:
    return k.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


class Pki:
    def __init__(self, root: Path, ca_name: str = "ca", service_accounts: bool = True) -> None:
        self.root = root
        root.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.ca_key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dra-harness-{ca_name}")])
        self.ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(self.ca_key.public_key())
                   .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
                   .not_valid_after(now + datetime.timedelta(days=7))
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                content_commitment=False, key_encipherment=False, data_encipherment=False,
                                                key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
                   .sign(self.ca_key, hashes.SHA256()))
        self.ca_path = root / f"{ca_name}.crt"
        self.ca_path.write_bytes(self.ca.public_bytes(serialization.Encoding.PEM))
        if service_accounts:
            sa = _key()
            write_private(root / "sa.key", _pem_key(sa))
            (root / "sa.pub").write_bytes(sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                                       serialization.PublicFormat.SubjectPublicKeyInfo))

    def issue(self, name: str, cn: str, orgs: list[str] = (), server: bool = False, client: bool | None = None) \
            -> tuple[Path, Path]:
        """A key and certificate; `server` adds serving use (loopback SANs), `client` client use
        (default: when not a server)."""
        key = _key()
        now = datetime.datetime.now(datetime.timezone.utc)
        attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in orgs] + [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
        b = (x509.CertificateBuilder().subject_name(x509.Name(attrs)).issuer_name(self.ca.subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=7))
             .add_extension(x509.ExtendedKeyUsage(
                 [ExtendedKeyUsageOID.SERVER_AUTH] * server + [ExtendedKeyUsageOID.CLIENT_AUTH] * (not server if client is None
                                                                                                  else client)),
                 critical=False))
        if server:
            b = b.add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.DNSName("kubernetes"), x509.DNSName("kubernetes.default.svc"),
                x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("198.19.0.1"))]),
                critical=False)
        cert = b.sign(self.ca_key, hashes.SHA256())
        crt, k = self.root / f"{name}.crt", self.root / f"{name}.key"
        crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        write_private(k, _pem_key(key))
        return crt, k

    def kubeconfig(self, path: Path, server: str, name: str, cn: str, orgs: list[str] = ()) -> Path:
        crt, key = self.issue(name, cn, orgs)
        write_private(path, f"""apiVersion: v1
kind: Config
clusters:
- name: dra-harness
  cluster: {{server: "{server}", certificate-authority: "{self.ca_path}"}}
users:
- name: {name}
  user: {{client-certificate: "{crt}", client-key: "{key}"}}
contexts:
- name: dra-harness
  context: {{cluster: dra-harness, user: {name}}}
current-context: dra-harness
""")
        return path
