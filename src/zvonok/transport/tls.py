"""SIP over TLS (RFC 3261 §26.2, RFC 5630): the server certificate, read from files and reloaded on change.

How it works: :class:`ServerCertificate` holds one :class:`ssl.SSLContext` for the TLS listener (the TCP
transport given that context, see :mod:`.tcp`). :meth:`ServerCertificate.reload_if_changed`, called
every few seconds by the SIP service, loads the files again when their modification time or size
moved: ``load_cert_chain`` on the same context changes what *new* handshakes present, while connections
already open keep theirs (as nginx's reload does). A pair that does not load (a half-written renewal, a
key that does not match) is logged and the previous certificate stays in force.

Clients are not asked for certificates: phones authenticate with digest over the encrypted connection.
TLS 1.2 is the floor (RFC 8996 deprecates 1.0/1.1).

Towards carriers we are the client (:func:`client_context`): their certificate is verified against the
system's CA store, or a CA file of the platform, and its name against the trunk's host (RFC 5922 §7: the
host we were configured with, sent as SNI); a trunk may turn verification off for a self-signed office PBX.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from pathlib import Path

from zvonok.logs import get_logger

log = get_logger(__name__)


class ServerCertificate:
    def __init__(self, cert: Path, key: Path) -> None:
        self.cert = cert
        self.key = key
        self.context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._stamp = self._files_stamp()
        self.context.load_cert_chain(cert, key)  # at start a bad pair is an error: nothing to fall back to
        self.loads = 1

    def _files_stamp(self) -> tuple[tuple[int, int], ...]:
        stats = [os.stat(path) for path in (self.cert, self.key)]
        return tuple((s.st_mtime_ns, s.st_size) for s in stats)

    def reload_if_changed(self) -> bool:
        """Load the files again if they changed since the last load; True when the new pair is in force."""
        try:
            stamp = self._files_stamp()
        except OSError as exc:
            log.warning("tls certificate files unreadable; keeping the loaded one", error=str(exc))
            return False
        if stamp == self._stamp:
            return False
        self._stamp = stamp  # a broken pair is reported once, not every poll
        try:
            self.context.load_cert_chain(self.cert, self.key)
        except (OSError, ssl.SSLError) as exc:
            log.warning("tls certificate did not load; keeping the previous one", cert=str(self.cert),
                        error=str(exc))
            return False
        self.loads += 1
        log.info("tls certificate reloaded", cert=str(self.cert))
        return True


def client_context(*, verify: bool, ca_file: Path | None = None) -> ssl.SSLContext:
    """The context of TLS connections we open to carriers: verifying (CA store or ``ca_file``, host name
    checked) or, with ``verify`` False, accepting any certificate (still encrypted, not authenticated)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def write_self_signed(cert: Path, key: Path, hosts: Sequence[str], *, days: int = 825) -> None:
    """A self-signed certificate for ``hosts`` (DNS names or IP addresses, all in subjectAltName) and its
    EC P-256 key, as PEM files; the key readable by its owner only. For demos and tests: phones have to
    be told to trust it (or not to verify)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    private = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0] if hosts else "zvonok")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    key.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
