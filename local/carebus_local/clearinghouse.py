"""A stand-in clearinghouse: the HTTPS endpoint the stack's API destination POSTs submitted claims to.

It listens on loopback only, with a certificate it makes at start (clients trust `ca_file`; nothing turns
verification off). POST /claims records every request (the API key's value never: only whether it
matched), answers 401 to a wrong or missing key, and keeps the first claim of each eventId as a real
clearinghouse does: 202 {"accepted": true, "duplicate": false}, then 200 with duplicate true for a repeat.
Failures on demand, in-process (`fail_next`) or over the loopback admin endpoints; an injected failure
answers before the key is looked at, as an outage in front of the clearinghouse would:

    POST /_standin/failures   {"status": 503, "count": 2, "retryAfter": 1}  the next 2 claim requests fail
    GET  /_standin/deliveries {"deliveries": [...]}                          what was received, oldest first
"""

import datetime
import ipaddress
import json
import logging
import secrets
import shutil
import ssl
import tempfile
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Final

log = logging.getLogger("carebus.local")

CLAIMS_PATH: Final = "/claims"
FAILURES_PATH: Final = "/_standin/failures"
DELIVERIES_PATH: Final = "/_standin/deliveries"
DEFAULT_API_KEY_HEADER: Final = "x-api-key"
REDACTED: Final = "[redacted]"
# A claim is a few hundred bytes; anything near this is not one, and is refused unread.
MAX_BODY_BYTES: Final = 64 * 1024
# How many requests, and how many accepted claims (for deduplication), the stand-in remembers, the oldest
# forgotten first: a long lab must not grow it without bound.
DEFAULT_MAX_DELIVERIES: Final = 1000
MAX_ACCEPTED: Final = 10_000
READ_TIMEOUT_SECONDS: Final = 5.0


@dataclass(frozen=True)
class ClaimDelivery:
    """One request to the claims path, as the stand-in saw and answered it."""

    received_at: str
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    key_matched: bool
    status: int
    duplicate: bool


@dataclass
class _Failures:
    status: int = 0
    count: int = 0
    retry_after: int | None = None


def _utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat()


def _certificate(directory: Path, host: str) -> tuple[Path, Path]:
    """A self-signed certificate for the loopback names (its own trust anchor) and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "carebus clearinghouse stand-in")])
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ]
    if host not in ("localhost", "127.0.0.1"):
        names.append(x509.IPAddress(ipaddress.ip_address(host)))
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "clearinghouse-ca.pem", directory / "clearinghouse-key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class ClearinghouseStandIn:
    """The stand-in's state and its HTTPS server: start(), the URLs, what it received, failures on demand."""

    def __init__(
        self,
        api_key: str | None = None,
        api_key_header: str = DEFAULT_API_KEY_HEADER,
        host: str = "127.0.0.1",
        port: int = 0,
        max_deliveries: int = DEFAULT_MAX_DELIVERIES,
        clock: Callable[[], str] = _utc_now,
    ) -> None:
        self.api_key = api_key or secrets.token_urlsafe(32)
        self.api_key_header = api_key_header
        self.host = host
        self._port = port
        self._clock = clock
        self._lock = threading.Lock()
        self._deliveries: deque[ClaimDelivery] = deque(maxlen=max_deliveries)
        self._accepted: dict[str, Any] = {}
        self._failures = _Failures()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._directory: Path | None = None
        self.ca_file: Path | None = None

    # ----- life cycle ------------------------------------------------------------------------------
    def start(self) -> "ClearinghouseStandIn":
        self._directory = Path(tempfile.mkdtemp(prefix="carebus-clearinghouse-"))
        self.ca_file, key_file = _certificate(self._directory, self.host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.ca_file, key_file)
        handler = type("Handler", (_Handler,), {"standin": self})
        server = ThreadingHTTPServer((self.host, self._port), handler)
        server.daemon_threads = True
        # The handshake happens in the request's thread, under its read timeout (_Handler.handle): done in
        # accept(), one silent client would hold the whole server.
        server.socket = context.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="carebus-clearinghouse", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)
            self._directory = None

    def __enter__(self) -> "ClearinghouseStandIn":
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the stand-in is not started")
        return f"https://{self.host}:{self._server.server_address[1]}"

    @property
    def claims_url(self) -> str:
        return self.base_url + CLAIMS_PATH

    def outputs(self) -> dict[str, str]:
        """What the offline stack publishes about the stand-in: where its admin endpoints are, and the
        certificate a client trusts to reach them."""
        return {"ClearinghouseUrl": self.base_url, "ClearinghouseCaFile": str(self.ca_file)}

    # ----- what tests and labs do ------------------------------------------------------------------
    def fail_next(self, status: int, count: int = 1, retry_after: int | None = None) -> None:
        """The next `count` claim requests answer `status` (with Retry-After if given); count 0 clears."""
        if not 100 <= status <= 599 or count < 0:
            raise ValueError(f"status must be an HTTP status and count >= 0, not {status} and {count}")
        with self._lock:
            self._failures = _Failures(status, count, retry_after)

    def deliveries(self) -> list[ClaimDelivery]:
        with self._lock:
            return list(self._deliveries)

    def accepted(self) -> dict[str, Any]:
        """The claims kept, by eventId (the first delivery of each)."""
        with self._lock:
            return dict(self._accepted)

    # ----- answering -------------------------------------------------------------------------------
    def answer_claim(
        self, method: str, path: str, headers: dict[str, str], raw: bytes
    ) -> tuple[int, dict[str, Any], dict[str, str]]:
        """What the stand-in answers one claim request (status, body, headers), recorded."""
        given = next(
            (value for name, value in headers.items() if name.lower() == self.api_key_header.lower()), None
        )
        key_matched = given is not None and secrets.compare_digest(given.encode(), self.api_key.encode())
        recorded = {
            name: REDACTED if name.lower() == self.api_key_header.lower() else value
            for name, value in headers.items()
        }
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = None
        duplicate = False
        answer: dict[str, Any]
        extra: dict[str, str] = {}
        with self._lock:
            if self._failures.count > 0:
                self._failures.count -= 1
                status, answer = self._failures.status, {"error": "failure injected by the stand-in"}
                if self._failures.retry_after is not None:
                    extra["Retry-After"] = str(self._failures.retry_after)
            elif not key_matched:
                status, answer = 401, {"error": "API key missing or wrong"}
            elif not isinstance(body, dict) or not isinstance(body.get("eventId"), str):
                status, answer = 400, {"error": "a claim is a JSON object with an eventId"}
            else:
                duplicate = body["eventId"] in self._accepted
                self._accepted.setdefault(body["eventId"], body)
                if len(self._accepted) > MAX_ACCEPTED:
                    del self._accepted[next(iter(self._accepted))]
                status, answer = (200 if duplicate else 202), {"accepted": True, "duplicate": duplicate}
            self._deliveries.append(
                ClaimDelivery(self._clock(), method, path, recorded, body, key_matched, status, duplicate)
            )
        return status, answer, extra


class _Handler(BaseHTTPRequestHandler):
    standin: ClearinghouseStandIn
    protocol_version = "HTTP/1.1"
    timeout = READ_TIMEOUT_SECONDS

    def handle(self) -> None:
        try:
            self.connection.do_handshake()  # type: ignore[attr-defined]  # an SSLSocket (see start)
        except OSError:
            return  # not TLS, an untrusting client, or a silent one: nothing to answer
        super().handle()

    def do_POST(self) -> None:
        raw = self._body()
        if raw is None:
            return
        if self.path == CLAIMS_PATH:
            self._send(*self.standin.answer_claim(self.command, self.path, dict(self.headers.items()), raw))
        elif self.path == FAILURES_PATH:
            self._set_failures(raw)
        else:
            self._send(404, {"error": f"no {self.path} here"})

    def do_GET(self) -> None:
        if self.path == DELIVERIES_PATH:
            self._send(200, {"deliveries": [asdict(d) for d in self.standin.deliveries()]})
        elif self.path == CLAIMS_PATH:
            self._send(405, {"error": "POST a claim"}, {"Allow": "POST"})
        else:
            self._send(404, {"error": f"no {self.path} here"})

    def _set_failures(self, raw: bytes) -> None:
        try:
            asked = json.loads(raw)
            retry_after = None if asked.get("retryAfter") is None else int(asked["retryAfter"])
            self.standin.fail_next(int(asked["status"]), int(asked.get("count", 1)), retry_after)
        except (ValueError, KeyError, TypeError, AttributeError) as error:
            self._send(400, {"error": f'send {{"status": 503, "count": 2}}: {error}'})
            return
        self._send(200, {"status": int(asked["status"]), "count": int(asked.get("count", 1))})

    def _body(self) -> bytes | None:
        length = self.headers.get("Content-Length", "0")
        if not length.isdigit() or int(length) > MAX_BODY_BYTES:
            self.close_connection = True
            self._send(413 if length.isdigit() else 400, {"error": "Content-Length missing or too large"})
            return None
        try:
            return self.rfile.read(int(length))
        except TimeoutError:
            self.close_connection = True
            return None

    def _send(self, status: int, answer: Any, headers: dict[str, str] | None = None) -> None:
        body = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("clearinghouse %s", format % args)


def start_for_stack(
    secretsmanager: Any, stack_name: str, host: str, parameters: dict[str, str]
) -> tuple[ClearinghouseStandIn, dict[str, str]]:
    """The stand-in started, and its API key put in Secrets Manager as the operator puts the real one; with
    the template parameters that point the stack at both (the parameters given override them)."""
    header = parameters.get("ClearinghouseApiKeyHeader", DEFAULT_API_KEY_HEADER)
    standin = ClearinghouseStandIn(api_key_header=header, host=host).start()
    secret_name = f"{stack_name}/clearinghouse/api-key"
    try:
        secretsmanager.create_secret(
            Name=secret_name,
            Description="The clearinghouse stand-in's API key (offline stack)",
            SecretString=json.dumps({"apiKey": standin.api_key}),
        )
    except BaseException:
        standin.stop()
        raise
    return standin, {
        "ClearinghouseEndpoint": standin.claims_url,
        "ClearinghouseApiKeySecret": secret_name,
        **parameters,
    }
