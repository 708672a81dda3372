"""The local REST APIs over HTTP: requests in, LocalRestApi (or an ApiRouter of several), answers out,
whatever the client sends.

API Gateway always answers at its edge: a method it has no route for, a body it cannot read, a client that
announces more body than it sends. So does this server, with the API's own gateway responses.
"""

import logging
import re
import socket
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Final, Protocol

from carebus_local.gateway_responses import (
    INTERNAL_ERROR,
    REQUEST_TOO_LARGE,
    GatewayError,
    unreadable_request,
)
from carebus_local.http import Headers, HttpResponse

log = logging.getLogger("carebus.local")

# API Gateway's hard quota on a request's payload. A larger announced body is refused unread: reading it
# would hold that much memory for a request API Gateway would never have forwarded.
MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024
# How long the server waits on a silent client. Each thread serves one connection: without a timeout, a
# client that announces more body than it sends (or goes quiet mid-request) holds its thread forever.
DEFAULT_READ_TIMEOUT_SECONDS: Final = 10.0
# How long a refused request's remaining bytes are read and dropped before the connection is closed.
LINGER_SECONDS: Final = 1.0
_DIGITS: Final = re.compile(r"[0-9]+")


class ServedApi(Protocol):
    """What the server serves: LocalRestApi, or an ApiRouter of several APIs on one port."""

    def handle(
        self, method: str, path: str, query_string: str, headers: Headers, body: bytes, source_ip: str
    ) -> HttpResponse: ...

    def refusal(self, error: GatewayError) -> HttpResponse: ...


class _UnreadableRequest(Exception):
    """The request's framing cannot be trusted: answer it, then close, since its end is unknown."""

    def __init__(self, error: GatewayError) -> None:
        super().__init__(error.message)
        self.error = error


class ApiRequestHandler(BaseHTTPRequestHandler):
    """HTTP in, the served API, HTTP out. Subclassed per server with its API (see api_server)."""

    rest_api: ServedApi
    protocol_version = "HTTP/1.1"
    # StreamRequestHandler puts it on the connection's socket, so every read (headers and body) is bounded.
    timeout: float | None = DEFAULT_READ_TIMEOUT_SECONDS
    # Headers and body go out in two writes: with Nagle on, a kept-alive connection waits out the client's
    # delayed ACK (about 40 ms) before every answer's body.
    disable_nagle_algorithm = True

    def __getattr__(self, name: str) -> Any:
        # handle_one_request answers Python's HTML 501 for a method without a do_<METHOD>; every method goes
        # to the API instead, which answers the ones it has no route for (TRACE, PROPFIND...) as API Gateway.
        if name.startswith("do_"):
            return self._serve
        raise AttributeError(name)

    def _serve(self) -> None:
        close = False
        try:
            response = self._answer()
        except _UnreadableRequest as unreadable:
            response, close = self.rest_api.refusal(unreadable.error), True
        except Exception:
            log.exception("api %s %s: the local API failed", self.command, self.path)
            response, close = self.rest_api.refusal(INTERNAL_ERROR), True
        self._send(response, close)
        if close:
            self._linger()

    def _answer(self) -> HttpResponse:
        path, _, query = self.path.partition("?")
        body = self._body()
        return self.rest_api.handle(
            self.command, path, query, list(self.headers.items()), body, self.client_address[0]
        )

    def _body(self) -> bytes:
        """The body its Content-Length announces; _UnreadableRequest when it cannot be read as announced."""
        announced = {value.strip() for value in self.headers.get_all("Content-Length") or []}
        if not announced:
            return b""
        if len(announced) > 1 or not _DIGITS.fullmatch(next(iter(announced))):
            # int() would take "+5", "1_0" or " 5"; several different lengths leave the body's end unknown.
            raise _UnreadableRequest(
                unreadable_request(f"Content-Length must be one number of bytes, not {sorted(announced)}")
            )
        length = int(next(iter(announced)))
        if length > MAX_PAYLOAD_BYTES:
            raise _UnreadableRequest(REQUEST_TOO_LARGE)
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            body = None
        if body is None or len(body) < length:
            raise _UnreadableRequest(
                unreadable_request(f"the body ended before the {length} bytes its Content-Length announces")
            )
        return body

    def _send(self, response: HttpResponse, close: bool) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if close or self.close_connection:
            # send_header also ends the connection after this answer; a client that asked to close
            # (Connection: close, HTTP/1.0) is told so too.
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(response.body)

    def _linger(self) -> None:
        """Drop what the client is still sending, briefly, after the answer: closing a socket with unread
        bytes resets the connection, and a reset can destroy the answer before the client has read it."""
        self.wfile.flush()
        deadline = time.monotonic() + LINGER_SECONDS
        try:
            self.connection.shutdown(socket.SHUT_WR)
            while (left := deadline - time.monotonic()) > 0:
                self.connection.settimeout(left)
                if not self.connection.recv(64 * 1024):
                    return
        except OSError:
            return  # the client is gone, or quiet for the rest of the time: close

    def log_message(self, format: str, *args: Any) -> None:
        log.info("api %s", format % args)


def api_server(
    rest_api: ServedApi,
    host: str,
    port: int,
    read_timeout_seconds: float | None = DEFAULT_READ_TIMEOUT_SECONDS,
) -> ThreadingHTTPServer:
    """An HTTP server for the API, not yet serving (call serve_forever). Port 0 picks a free one."""
    handler = type("Handler", (ApiRequestHandler,), {"rest_api": rest_api, "timeout": read_timeout_seconds})
    return ThreadingHTTPServer((host, port), handler)
