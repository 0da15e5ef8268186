"""What a TLS handshake proved about the client: its verified certificate."""

from __future__ import annotations

import asyncio
import hashlib
import ssl

from sealmq.core.security import PeerCertificate

__all__ = ["peer_certificate"]

#: Attribute names as Java's X500Principal (RFC 2253) writes them.
_SHORT_NAMES = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
    "streetAddress": "STREET",
    "domainComponent": "DC",
    "userId": "UID",
}
_SPECIAL = ',+"\\<>;='


def peer_certificate(transport: asyncio.BaseTransport) -> PeerCertificate | None:
    """The client certificate the listener verified, or None (no TLS, none sent).

    Read only where the handshake verified it (``[tls] ca`` set, so that
    ``getpeercert()`` has the parsed fields); an unverified certificate is not a proof.
    """
    ssl_object = transport.get_extra_info("ssl_object")
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    fields = ssl_object.getpeercert()
    der = ssl_object.getpeercert(binary_form=True)
    if not fields or not der:
        return None
    return PeerCertificate(
        subject=_distinguished_name(fields.get("subject", ())),
        issuer=_distinguished_name(fields.get("issuer", ())),
        serial_number=str(fields.get("serialNumber", "")),
        fingerprint=hashlib.sha256(der).hexdigest(),
        subject_alt_names=_alt_names(fields.get("subjectAltName", ())),
    )


def _alt_names(names: object) -> tuple[str, ...]:
    """``(('DNS', 'a.example'), ('email', 'x@y'))`` → ``("DNS:a.example", "email:x@y")``."""
    found = []
    for item in names if isinstance(names, tuple) else ():
        if isinstance(item, tuple) and len(item) == 2 and all(isinstance(p, str) for p in item):
            found.append(f"{item[0]}:{item[1]}")
    return tuple(found)


def _distinguished_name(rdns: object) -> str:
    """``((('countryName', 'US'),), (('commonName', 'app'),))`` → ``CN=app,C=US``."""
    parts: list[str] = []
    for rdn in rdns if isinstance(rdns, tuple) else ():
        parts.append("+".join(f"{_SHORT_NAMES.get(k, k)}={_escape(v)}" for k, v in rdn))
    return ",".join(reversed(parts))


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in _SPECIAL else c for c in value)
    if out.startswith((" ", "#")):
        out = "\\" + out
    if out.endswith(" ") and not out.endswith("\\ "):
        out = out[:-1] + "\\ "
    return out
