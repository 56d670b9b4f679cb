"""One HTTP POST to a checked, pinned address, within a total deadline.

``seconds`` bounds the whole attempt: resolving the name, connecting, the TLS handshake, sending the
request and reading the answer's status line and headers (its body is never read). A socket timeout
alone bounds each read, not the call: a receiver that drips its answer one byte a second holds the
worker for as long as it likes. So a watchdog timer shuts the socket down at the deadline, which
ends whatever call is blocked on it, and each socket operation is given what is left of the
deadline besides.

The name is resolved and checked once (``addresses.checked``), and the connection goes to the
address that was checked, while the request names the URL's host: the Host header, TLS SNI and the
certificate's check are for the host name. Nothing is looked up twice, so a name that resolves
elsewhere between the check and the connection (DNS rebinding) reaches nothing new. For the same
reason no proxy (``HTTP_PROXY``) is used: it would resolve the name again, out of sight.

The HTTP itself is the standard library's (``http.client``); redirects are not followed.
"""
import http.client
import socket
import ssl
import threading
import time
from urllib.parse import urlsplit

from portal.notices import addresses

DEFAULT_PORTS = {"http": 80, "https": 443}
# The certificate authorities a receiver's certificate must chain to: the system's (None), or
# only those of this file.
CA_FILE = None


class DeliveryError(Exception):
    """A POST that got no answer. ``kind`` sorts it for the server log (``RefusedAddress``,
    ``Timeout``, ``ConnectionError``, ``TLSError``, ``ProtocolError``); the text says the rest."""

    def __init__(self, kind, detail):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


class _Watchdog:
    """Shuts the watched socket down once the deadline passes, from a timer thread."""

    def __init__(self, seconds):
        self.fired = False
        self._sock = None
        self._lock = threading.Lock()
        self._active = True
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, sock):
        with self._lock:
            self._sock = sock
            if self.fired:
                self._shut(sock)

    def _fire(self):
        with self._lock:
            if not self._active:
                return
            self.fired = True
            if self._sock is not None:
                self._shut(self._sock)

    @staticmethod
    def _shut(sock):
        # The plain socket's shutdown, also for a TLS socket: it wakes a blocked read or write
        # (which then sees the end of the stream) without touching the TLS state under it.
        try:
            socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except OSError:
            pass  # not connected yet (connect has its own timeout) or already closed

    def cancel(self):
        """Stop watching; after this the timer touches no socket (it may be closed now)."""
        with self._lock:
            self._active = False
        self._timer.cancel()


def _left(deadline):
    return max(0.001, deadline - time.monotonic())


def _tls_context():
    # Certificates checked, and against the host name (the default context does both).
    return ssl.create_default_context(cafile=CA_FILE)


def _connect(pairs, host, tls, deadline, watchdog):
    """A socket connected (and, for https, TLS-handshaken for ``host``) to the first of the
    checked addresses that answers."""
    error = None
    for family, sockaddr in pairs:
        if time.monotonic() >= deadline:
            break
        sock = socket.socket(family, socket.SOCK_STREAM)
        if tls:
            # Wrapped before it connects, so the watchdog holds the socket the handshake uses.
            sock = _tls_context().wrap_socket(sock, server_hostname=host)
        watchdog.watch(sock)
        sock.settimeout(_left(deadline))
        try:
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
            if isinstance(exc, ssl.SSLError) or watchdog.fired:
                raise
    raise error or TimeoutError("no time left to connect")


def _request_target(parts):
    target = parts.path or "/"
    return target + ("?" + parts.query if parts.query else "")


def _kind(exc, watchdog, deadline):
    if watchdog.fired or time.monotonic() >= deadline or isinstance(exc, TimeoutError):
        return "Timeout"
    if isinstance(exc, (ssl.SSLError, ssl.CertificateError)):
        return "TLSError"
    if isinstance(exc, http.client.HTTPException):
        return "ProtocolError"
    return "ConnectionError"


def post(url, body, headers, seconds, allowed):
    """POST ``body`` (bytes) to ``url`` with ``headers``, all within ``seconds``; the answer's
    status code. DeliveryError when there is none, or when the host may not be reached."""
    deadline = time.monotonic() + seconds
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
        port = parts.port or DEFAULT_PORTS[scheme]
        pairs = addresses.checked(host, port, allowed, _left(deadline))
    except addresses.Refused as exc:
        raise DeliveryError("RefusedAddress", str(exc)) from None
    except addresses.Unresolved as exc:
        raise DeliveryError("ConnectionError", str(exc)) from None
    except (KeyError, ValueError) as exc:
        raise DeliveryError("ConnectionError", f"not a webhook URL: {exc}") from None
    watchdog = _Watchdog(_left(deadline))
    sock = connection = None
    try:
        sock = _connect(pairs, host, scheme == "https", deadline, watchdog)
        connection_class = (http.client.HTTPSConnection if scheme == "https"
                            else http.client.HTTPConnection)
        # Given the connected socket, http.client connects nothing itself; it sends Host: as the
        # URL names it.
        connection = connection_class(host, port, timeout=_left(deadline))
        connection.sock = sock
        connection.request("POST", _request_target(parts), body=body, headers=headers)
        sock.settimeout(_left(deadline))
        return connection.getresponse().status
    except (OSError, http.client.HTTPException, ValueError) as exc:
        kind = _kind(exc, watchdog, deadline)
        detail = f"{type(exc).__name__}: {exc}"
        if kind == "Timeout":
            detail = f"no answer within {seconds} s ({detail})"
        raise DeliveryError(kind, detail) from None
    finally:
        watchdog.cancel()
        if connection is not None:
            connection.close()   # the answer too: its body is never read
        if sock is not None:
            sock.close()
