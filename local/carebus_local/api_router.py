"""Several REST APIs and a token endpoint behind one local HTTP server.

On AWS each REST API has a host of its own ({api-id}.execute-api...) and the token endpoint is the user pool
domain's ({domain}.auth...amazoncognito.com). Offline they share one port, so a path prefix stands in for
each host: the API with the empty base path answers at the root, the others under /{base path}, and the
token endpoint at /oauth2/token. A request under no API gets the root API's answer (Missing Authentication
Token for a path outside its stage), as a request to a host's unknown path does.
"""

import re
from collections.abc import Mapping
from typing import Final

from carebus_local.apigateway import LocalRestApi
from carebus_local.gateway_responses import GatewayError
from carebus_local.http import Headers, HttpResponse
from carebus_local.oauth_tokens import TOKEN_PATH, TokenEndpoint

_BASE_PATH: Final = re.compile(r"[A-Za-z0-9._~-]+")


class ApiRouter:
    """Hands each request to the API (or endpoint) its path names, with the stand-in prefix removed."""

    def __init__(self, apis: Mapping[str, LocalRestApi], token_endpoint: TokenEndpoint | None = None) -> None:
        """apis: by base path; "" is the API at the root, which also answers paths under no API."""
        if "" not in apis:
            raise ValueError("one API must be served at the root (base path '')")
        for base_path in apis:
            if base_path and not _BASE_PATH.fullmatch(base_path):
                raise ValueError(f"a base path is one path segment, not {base_path!r}")
        self._root = apis[""]
        self._prefixed = {f"/{base_path}": api for base_path, api in apis.items() if base_path}
        self._token_endpoint = token_endpoint

    def handle(
        self, method: str, path: str, query_string: str, headers: Headers, body: bytes, source_ip: str
    ) -> HttpResponse:
        if self._token_endpoint is not None and path == TOKEN_PATH:
            return self._token_endpoint.handle(method, headers, body)
        for prefix, api in self._prefixed.items():
            if path == prefix or path.startswith(prefix + "/"):
                inner = path.removeprefix(prefix) or "/"
                return api.handle(method, inner, query_string, headers, body, source_ip)
        return self._root.handle(method, path, query_string, headers, body, source_ip)

    def refusal(self, error: GatewayError) -> HttpResponse:
        """A request the server could not read as framed: its path is unknown, so the root API answers."""
        return self._root.refusal(error)
