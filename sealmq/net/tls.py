"""TLS for every listener: server and client contexts, a local CA, certificate reload.

A broker started without certificates calls :func:`ensure_certificates` on
its ``tls`` folder, prints ``CertPaths.ca`` so clients can trust it, and then
builds its server context from ``CertPaths.cert``/``CertPaths.key``. With
certificates from files it builds the context directly. Either way, wrap the
files in :class:`ReloadableContext` so that replacing them on disk changes the
certificate new connections see, without a restart.

This module imports nothing of sealmq (stdlib ``ssl`` plus ``cryptography``).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

__all__ = [
    "CA_VALIDITY",
    "CLIENT_AUTH_MODES",
    "SERVER_VALIDITY",
    "TLS12_CIPHERS",
    "CertPaths",
    "ListenerContexts",
    "ReloadableContext",
    "TLSSetupError",
    "client_context",
    "describe_policy",
    "ensure_certificates",
    "prepare_certificates",
    "server_context",
]

log = logging.getLogger(__name__)

#: Lifetime of a generated local CA. Clients import its certificate once, so it
#: should outlive the broker's machine.
CA_VALIDITY = timedelta(days=3650)
#: Lifetime of a generated server certificate: 825 days is the longest that
#: Apple platforms and browsers accept for a TLS server certificate.
SERVER_VALIDITY = timedelta(days=825)
#: A server certificate this close to expiry is replaced at start-up, so that
#: it does not lapse while the broker runs.
RENEW_BEFORE = timedelta(days=30)
#: Certificates start this far in the past, for clients whose clocks lag.
BACKDATE = timedelta(hours=1)

#: TLS 1.2 suites: forward secrecy (ECDHE) with an AEAD only, as in Mozilla's
#: "intermediate" profile minus finite-field DHE. TLS 1.3 suites are all AEAD
#: already and keep OpenSSL's defaults.
TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)

#: What a listener asks of client certificates: nothing; verified if sent; required.
CLIENT_AUTH_MODES = ("none", "optional", "required")

_CA_PEM = "ca.pem"
_CA_KEY = "ca.key"
_SERVER_PEM = "server.pem"
_SERVER_KEY = "server.key"
_LOCK = ".lock"


class TLSSetupError(Exception):
    """Certificates cannot be generated or loaded; the message names the file and why."""


@dataclass(frozen=True, slots=True)
class CertPaths:
    """Where the broker's certificate files are."""

    ca: Path
    """PEM certificate of the local CA: give it to clients to trust (``ca.pem``)."""
    cert: Path
    """PEM server certificate followed by the CA certificate (``server.pem``)."""
    key: Path
    """PEM private key of the server certificate, mode 0600 (``server.key``)."""
    generated: bool
    """True if this call wrote a new CA or server certificate; False if all were reused."""


# -- contexts -----------------------------------------------------------------------------------


def server_context(
    cert: Path,
    key: Path,
    *,
    client_ca: Path | None = None,
    require_client_cert: bool = False,
) -> ssl.SSLContext:
    """A server context: TLS 1.2-1.3, ECDHE+AEAD suites, no compression or renegotiation.

    ``client_ca`` set: client certificates are requested and must chain to it
    (always when ``require_client_cert``, else only if the client sends one).
    Set ALPN on the returned context if the listener needs it; use one context
    per listener when listeners need different ALPN protocols.
    """
    if require_client_cert and client_ca is None:
        raise ValueError("require_client_cert needs client_ca")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    try:
        context.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as exc:
        raise TLSSetupError(f"cannot load certificate {cert} with key {key}: {exc}") from exc
    if client_ca is not None:
        try:
            context.load_verify_locations(cafile=client_ca)
        except (OSError, ssl.SSLError) as exc:
            raise TLSSetupError(f"cannot load client CA bundle {client_ca}: {exc}") from exc
        context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_OPTIONAL
    return context


def describe_policy(context: ssl.SSLContext) -> str:
    """The TLS policy ``context`` enforces, in one line for the start log (read from the
    context itself, so the line cannot disagree with what handshakes get)."""
    versions = {
        ssl.TLSVersion.TLSv1_2: "1.2",
        ssl.TLSVersion.TLSv1_3: "1.3",
        ssl.TLSVersion.MAXIMUM_SUPPORTED: "1.3",
    }
    low = versions.get(context.minimum_version, str(context.minimum_version))
    high = versions.get(context.maximum_version, str(context.maximum_version))
    by_version: dict[str, list[str]] = {}
    for cipher in context.get_ciphers():
        by_version.setdefault(cipher["protocol"], []).append(cipher["name"])
    clients = {
        ssl.CERT_NONE: "not asked",
        ssl.CERT_OPTIONAL: "optional",
        ssl.CERT_REQUIRED: "required",
    }
    return (
        f"TLS {low}-{high} only; TLS 1.2 ciphers: {':'.join(by_version.get('TLSv1.2', []))}; "
        f"TLS 1.3 ciphers: {':'.join(by_version.get('TLSv1.3', []))}; "
        f"compression {'off' if context.options & ssl.OP_NO_COMPRESSION else 'ON'}; "
        f"renegotiation {'off' if context.options & ssl.OP_NO_RENEGOTIATION else 'ON'}; "
        f"client certificates {clients[context.verify_mode]}"
    )


def client_context(
    ca: Path, *, cert: Path | None = None, key: Path | None = None
) -> ssl.SSLContext:
    """A client context that trusts only ``ca`` and checks the host name (tests, bench).

    ``cert``/``key``: a client certificate to present for client-certificate auth.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_verify_locations(cafile=ca)
    if cert is not None:
        context.load_cert_chain(cert, key)
    return context


_Stamp = tuple[tuple[int, int, int, int], ...]


class ReloadableContext:
    """A server :class:`ssl.SSLContext` whose certificate follows the files on disk.

    Hand ``context`` to the listener once. Then either call :meth:`maybe_reload`
    before each accepted connection's handshake (e.g. in the protocol factory;
    it costs two ``stat`` calls at most every ``check_interval`` seconds) or run
    :meth:`watch` as a task. When the cert or key file changes, both are re-read
    into the same context, so new handshakes use the new certificate and
    established connections are untouched. A broken or mismatched pair is logged
    and skipped; the old certificate stays in use until a good pair appears.
    The client CA bundle is read once; changing it needs a restart.
    """

    def __init__(
        self,
        cert: Path,
        key: Path,
        *,
        client_ca: Path | None = None,
        require_client_cert: bool = False,
        check_interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cert = Path(cert)
        self.key = Path(key)
        self.check_interval = check_interval
        self._clock = clock
        # Stat before reading, so a change racing the first load is seen by the next check.
        self._stamp = self._file_stamp()
        self._failed_stamp: _Stamp | None = None
        self._next_check = clock() + check_interval
        self.context = server_context(
            self.cert, self.key, client_ca=client_ca, require_client_cert=require_client_cert
        )
        #: Why the last reload attempt failed, or None.
        self.last_error: str | None = None
        #: How many times the certificate was reloaded (for metrics and tests).
        self.reloads = 0

    def maybe_reload(self) -> bool:
        """Reload if the files changed since the last load; return True if it did.

        Checks at most once per ``check_interval``; never raises for bad files.
        """
        now = self._clock()
        if now < self._next_check:
            return False
        self._next_check = now + self.check_interval
        try:
            stamp = self._file_stamp()
        except TLSSetupError as exc:
            self._fail(None, str(exc))
            return False
        if stamp == self._stamp or stamp == self._failed_stamp:
            return False
        try:
            self._load()
        except TLSSetupError as exc:
            self._fail(stamp, str(exc))
            return False
        self._loaded(stamp)
        log.info("reloaded TLS certificate %s", self.cert)
        return True

    def reload(self) -> None:
        """Re-read the files now, whether or not they changed; raise TLSSetupError if unusable."""
        stamp = self._file_stamp()
        self._load()
        self._loaded(stamp)

    async def watch(self) -> None:
        """Poll the files every ``check_interval`` seconds until cancelled."""
        while True:
            await asyncio.sleep(self.check_interval)
            self.maybe_reload()

    def _loaded(self, stamp: _Stamp) -> None:
        self._stamp, self._failed_stamp, self.last_error = stamp, None, None
        self.reloads += 1

    def _fail(self, stamp: _Stamp | None, reason: str) -> None:
        if reason != self.last_error:  # once per problem, not once per check
            log.warning("keeping the current TLS certificate: %s", reason)
        self._failed_stamp, self.last_error = stamp, reason

    def _file_stamp(self) -> _Stamp:
        try:
            stats = (os.stat(self.cert), os.stat(self.key))
        except OSError as exc:
            raise TLSSetupError(f"cannot stat certificate files: {exc}") from exc
        # The inode catches an atomic replace within one mtime tick (and symlink swaps).
        return tuple((st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) for st in stats)

    def _load(self) -> None:
        try:
            cert_pem = self.cert.read_bytes()
            key_pem = self.key.read_bytes()
        except OSError as exc:
            raise TLSSetupError(f"cannot read certificate files: {exc}") from exc
        _check_pair(cert_pem, key_pem, self.cert, self.key)
        # Load the bytes just checked (not the paths, which may change again), first
        # into a scratch context: a failed load_cert_chain can leave a context without
        # a certificate, and the live one must keep serving.
        with _pem_file(cert_pem + b"\n" + key_pem) as path:
            try:
                ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(path)
                self.context.load_cert_chain(path)
            except (OSError, ssl.SSLError) as exc:
                raise TLSSetupError(f"cannot load certificate {self.cert}: {exc}") from exc


class ListenerContexts:
    """The server certificate for every listener, one :class:`ReloadableContext` per
    client-certificate policy (``client_auth`` mode and CA bundle) in use.

    Listeners asking the same of client certificates share a context;
    :meth:`maybe_reload` and :meth:`reload` keep them all on the files' certificate.
    """

    def __init__(self, cert: Path, key: Path) -> None:
        self.cert, self.key = Path(cert), Path(key)
        self._contexts: dict[tuple[str, Path | None], ReloadableContext] = {}
        #: The context of listeners that ask for no client certificate.
        self.default = self.get("none", None)

    @property
    def context(self) -> ssl.SSLContext:
        return self.default.context

    def get(self, client_auth: str, ca: Path | None) -> ReloadableContext:
        """The context for ``client_auth`` (one of :data:`CLIENT_AUTH_MODES`) and ``ca``;
        raises TLSSetupError for unusable files, ValueError for a mode without a CA."""
        if client_auth not in CLIENT_AUTH_MODES:
            raise ValueError(f"client_auth must be one of {', '.join(CLIENT_AUTH_MODES)}")
        key = (client_auth, ca if client_auth != "none" else None)
        found = self._contexts.get(key)
        if found is None:
            if client_auth != "none" and ca is None:
                raise ValueError(f"client_auth {client_auth!r} needs a CA bundle")
            found = ReloadableContext(
                self.cert,
                self.key,
                client_ca=key[1],
                require_client_cert=client_auth == "required",
            )
            self._contexts[key] = found
        return found

    def maybe_reload(self) -> bool:
        """Every context's :meth:`ReloadableContext.maybe_reload`; True if any reloaded."""
        return any([context.maybe_reload() for context in self._contexts.values()])

    def reload(self) -> None:
        """Re-read the files into every context now (SIGHUP); TLSSetupError if they are
        unusable: the first context's load checks them, so then every context keeps
        its certificate."""
        for context in self._contexts.values():
            context.reload()
        log.info("reloaded TLS certificate %s", self.cert)

    async def watch(self, interval: float = 1.0) -> None:
        """Check the files every ``interval`` seconds until cancelled, so that listeners
        whose handshake comes before any session (WSS, the key service) and a broker
        nobody connects to follow a replaced certificate too."""
        while True:
            await asyncio.sleep(interval)
            self.maybe_reload()


def _check_pair(cert_pem: bytes, key_pem: bytes, cert: Path, key: Path) -> None:
    # Imported here: parsing certificates is needed only on a reload, and the x509
    # machinery costs several MiB of resident memory for the broker's whole life.
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from sealmq.net.certs import same_public_key

    try:
        leaf = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise TLSSetupError(f"{cert}: not a PEM certificate: {exc}") from exc
    try:
        private = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError) as exc:
        raise TLSSetupError(f"{key}: not an unencrypted PEM private key: {exc}") from exc
    if not same_public_key(leaf, private):
        raise TLSSetupError(f"{key} is not the private key of {cert}")


@contextlib.contextmanager
def _pem_file(data: bytes) -> Iterator[str]:
    """A path OpenSSL can read ``data`` from, which is gone afterwards.

    On Linux an anonymous memory file, so the key is not copied to disk.
    """
    if hasattr(os, "memfd_create") and os.path.isdir("/proc/self/fd"):
        fd = os.memfd_create("sealmq-tls", os.MFD_CLOEXEC)
        try:
            with open(fd, "wb", closefd=False) as handle:
                handle.write(data)
            yield f"/proc/self/fd/{fd}"
        finally:
            os.close(fd)
        return
    import tempfile  # not on Linux: tempfile imports shutil, bz2, lzma

    with tempfile.TemporaryDirectory(prefix="sealmq-tls-") as folder:
        path = Path(folder) / "chain.pem"
        _write_file(path, data)
        yield str(path)


# -- the local CA ---------------------------------------------------------------------------------

#: Remembers what the last full check of ``tls_dir`` found, so later starts can skip
#: parsing certificates: hashes of the files and of the host names, and the expiry.
_CHECKED = ".checked"


def ensure_certificates(
    tls_dir: Path, hostnames: Sequence[str], *, now: datetime | None = None
) -> CertPaths:
    """Make sure ``tls_dir`` holds a local CA and a server certificate; return their paths.

    First run: creates the folder (0700), an EC P-256 CA valid 10 years
    (``ca.pem``, ``ca.key``) and a server certificate it signs, valid 825 days,
    for ``localhost``, ``127.0.0.1``, ``::1`` and every entry of ``hostnames``
    (names or addresses; unspecified addresses such as ``0.0.0.0`` are skipped).
    Later runs reuse the files, replacing only a server certificate that is
    missing, unreadable, within 30 days of expiry, not signed by the CA, or not
    covering ``hostnames``. Keys are 0600; every file is replaced atomically, and
    concurrent callers on the same folder are serialised by a lock file.

    The CA key is only needed to sign a new server certificate: an operator may
    move ``ca.key`` offline, and the broker starts while ``server.pem`` is good.
    Raises TLSSetupError when a file cannot be used and must not be overwritten.
    """
    return prepare_certificates(tls_dir, hostnames, now=now)()


def prepare_certificates(
    tls_dir: Path,
    hostnames: Sequence[str],
    *,
    now: datetime | None = None,
    in_child: bool = False,
) -> Callable[[], CertPaths]:
    """:func:`ensure_certificates` in two steps: this call starts it, the one returned ends it.

    When the files were checked before and nothing changed, both are instant. Else,
    with ``in_child``, the files are made or re-checked by a child process (``python -m
    sealmq.net.certs``) that runs while the caller goes on with its own start-up, so the
    broker never loads ``cryptography.x509``, which would stay resident for the life
    of the process (3-4 MiB); the child's log lines are logged here.
    """
    now = now or datetime.now(UTC)
    paths = CertPaths(tls_dir / _CA_PEM, tls_dir / _SERVER_PEM, tls_dir / _SERVER_KEY, False)
    fingerprint = _fingerprint(paths, hostnames)
    checked = tls_dir / _CHECKED
    if fingerprint is not None:
        try:
            recorded, _, expiry = checked.read_text().partition(" ")
            if recorded == fingerprint and now + RENEW_BEFORE < datetime.fromisoformat(expiry):
                return lambda: paths
        except (OSError, ValueError):
            pass
    child = _CertificateChild(tls_dir, hostnames, now) if in_child else None

    def finish() -> CertPaths:
        if child is not None:
            result, expires = child.result()
        else:
            from sealmq.net.certs import check_or_create

            result, expires = check_or_create(tls_dir, hostnames, now)
        fingerprint = _fingerprint(paths, hostnames)
        if fingerprint is not None:
            _write_file(checked, f"{fingerprint} {expires.isoformat()}".encode())
        return result

    return finish


#: A child that makes a CA and a certificate takes well under a second.
_CHILD_TIMEOUT_SECONDS = 60.0


class _CertificateChild:
    """:func:`sealmq.net.certs.check_or_create` run by ``python -m sealmq.net.certs``."""

    def __init__(self, tls_dir: Path, hostnames: Sequence[str], now: datetime) -> None:
        import subprocess
        import sys

        self.tls_dir = tls_dir
        command = [sys.executable, "-m", "sealmq.net.certs", str(tls_dir), now.isoformat()]
        try:
            self.process: subprocess.Popen[bytes] | None = subprocess.Popen(
                [*command, *hostnames], stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            self.failure: OSError | None = None
        except OSError as exc:
            self.process, self.failure = None, exc

    def result(self) -> tuple[CertPaths, datetime]:
        import json
        import subprocess

        where = f"could not make the TLS certificates in {self.tls_dir}"
        if self.process is None:
            raise TLSSetupError(f"{where}: {self.failure}")
        try:
            out, err = self.process.communicate(timeout=_CHILD_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.communicate()
            raise TLSSetupError(f"{where}: no answer in {_CHILD_TIMEOUT_SECONDS:.0f} s") from None
        try:
            answer = json.loads(out)
        except ValueError:
            detail = err.decode(errors="replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit code {self.process.returncode}"
            raise TLSSetupError(f"{where}: {reason}") from None
        for level, text in answer.get("log", []):
            log.log(int(level), "%s", text)
        if "error" in answer:
            kind = ValueError if answer.get("kind") == "value" else TLSSetupError
            raise kind(str(answer["error"]))
        tls_dir = self.tls_dir
        paths = CertPaths(
            tls_dir / _CA_PEM, tls_dir / _SERVER_PEM, tls_dir / _SERVER_KEY, answer["generated"]
        )
        return paths, datetime.fromisoformat(answer["expires"])


def _fingerprint(paths: CertPaths, hostnames: Sequence[str]) -> str | None:
    digest = hashlib.sha256()
    try:
        for path in (paths.ca, paths.cert, paths.key):
            data = path.read_bytes()
            digest.update(len(data).to_bytes(8, "big") + data)
    except OSError:
        return None
    # The names the certificate must cover; unspecified bind addresses never go in it.
    for name in sorted(set(hostnames) - {"0.0.0.0", "::", ""}):
        digest.update(len(name).to_bytes(4, "big") + name.encode())
    return digest.hexdigest()


def _write_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` (mode 0600) atomically: readers see the old or new file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with open(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
