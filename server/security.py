"""Request-level security for Flowmill's HTTP and websocket server.

Owns the server's configuration (`SecurityConfig`, which applies the bind policy), the optional
access token, the one middleware that every request passes through (Host allowlist, token,
cross-site defence, content-type gate, body-size caps), the headers added to every response and
the redacting access log (security.md §1.5, §1.6, §1.7, §3). Which addresses and Host names
count as loopback, and the bind policy itself (`check_bind`), are server/addresses.py's job; how
user files are served (content types, Content-Disposition) is server/serving.py's.

Uses aiohttp and the standard library only: it never imports torch or the engine. There is no
module-level mutable state; the configuration is captured by the middleware closure.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from aiohttp import hdrs, web
from aiohttp.abc import AbstractAccessLogger
from yarl import URL

# SecurityError is part of this module's API too: SecurityConfig and validate_token raise it.
from server.addresses import (
    SecurityError,
    _as_address_list,
    _bare_host,
    _is_ip_literal,
    _is_wildcard_address,
    _normalise_host_entry,
    check_bind,
    is_loopback_address,
    machine_addresses,
    parse_host,
)

logger = logging.getLogger(__name__)

MIB = 1024 * 1024
TOKEN_COOKIE = "flowmill_token"
TOKEN_SUBPROTOCOL_PREFIX = "flowmill.token."
# Multipart upload routes: the only POST routes whose body is not JSON.
UPLOAD_ROUTES = ("/upload/image", "/upload/mask")
STATE_CHANGING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# The index page is all a browser may fetch without the token; it then logs in with ?token=.
PUBLIC_ROUTES = frozenset({("GET", "/"), ("HEAD", "/")})
# connect-src 'self' also covers ws:/wss: to the page's own host and port (CSP Level 3), so the
# page can open its websocket and nothing else; frame-ancestors stops other sites framing the
# canvas (clickjacking), as X-Frame-Options does for older browsers.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; "
    "style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'"
)
# Token characters that survive a cookie value, a websocket subprotocol and a header unquoted.
_MIN_TOKEN_CHARS = 16
_TOKEN_PATTERN = re.compile(rf"[A-Za-z0-9._~-]{{{_MIN_TOKEN_CHARS},}}")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators.
_CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Middleware = Callable[[web.Request, Handler], Awaitable[web.StreamResponse]]


# --------------------------------------------------------------------------- configuration


@dataclass(frozen=True)
class SecurityConfig:
    """What the security middleware enforces. Built once by main.py from the command line.

    Constructing a config runs `check_bind`, so an exposed server without authentication
    cannot even be described.
    """

    listen: Sequence[str] = ("127.0.0.1",)
    port: int = 8188
    token: str | None = None
    allowed_hosts: Sequence[str] = ()  # extra Host names beyond loopback, e.g. a proxy's name
    max_upload_size: int = 100 * MIB
    max_json_size: int = 10 * MIB
    insecure_no_auth: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "listen", _as_address_list(self.listen))
        object.__setattr__(self, "allowed_hosts", tuple(_normalise_host_entry(h) for h in self.allowed_hosts))
        if not 0 <= self.port <= 65535:
            raise SecurityError(f"port must be between 0 and 65535, got {self.port}")
        for name in ("max_upload_size", "max_json_size"):
            if getattr(self, name) <= 0:
                raise SecurityError(f"{name} must be a positive number of bytes, got {getattr(self, name)}")
        if self.token is not None:
            validate_token(self.token)
        check_bind(list(self.listen), self.token, self.insecure_no_auth)

    @property
    def client_max_size(self) -> int:
        """The value for `web.Application(client_max_size=...)`: the largest body any route takes.

        The middleware lowers it per request for JSON routes, so this only admits uploads.
        """
        return max(self.max_upload_size, self.max_json_size)

def generate_token() -> str:
    """A fresh random access token (256 bits, URL-safe)."""
    return secrets.token_urlsafe(32)


def validate_token(token: str) -> None:
    """Raise SecurityError unless `token` is long enough and made of URL-safe characters."""
    if not isinstance(token, str) or not _TOKEN_PATTERN.fullmatch(token):
        raise SecurityError(
            f"the auth token must be at least {_MIN_TOKEN_CHARS} characters from A-Z a-z 0-9 . _ ~ -"
            " (it travels in a cookie and a websocket subprotocol); use generate_token() for a good one"
        )


def token_matches(presented: str, expected: str) -> bool:
    """Compare tokens in constant time, so response timing does not reveal a matching prefix."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogatepass"), expected.encode("utf-8"))


# --------------------------------------------------------------------------- middleware


@dataclass(frozen=True)
class _Policy:
    """The config plus what is derived from it once, when the middleware is built."""

    config: SecurityConfig
    host_names: frozenset[str]  # accepted non-loopback Host names and addresses
    any_ip_host: bool  # bound to a wildcard address with a token: IP literals cannot be rebound


def _build_policy(config: SecurityConfig) -> _Policy:
    """Loopback, the --allowed-hosts names, and every address this server was bound to.

    A wildcard bind (0.0.0.0, ::) answers on all of this machine's interface addresses, so each
    is accepted; with a token, so is any IP literal (the address a NAT or container port-forward
    shows the browser is not an interface address here). Names other than the allowed ones stay
    refused whatever the bind: a rebinding page always arrives under its own name.
    """
    names = set(config.allowed_hosts)
    wildcard = False
    for address in config.listen:
        if _is_wildcard_address(address):
            wildcard = True
        elif not is_loopback_address(address):
            names.add(_bare_host(address))
    if wildcard:
        names |= machine_addresses()
    return _Policy(config=config, host_names=frozenset(names), any_ip_host=wildcard and config.token is not None)


def security_middleware(config: SecurityConfig) -> Middleware:
    """The middleware that screens every request, websocket upgrades included.

    Checks run in order: Host allowlist (DNS rebinding), token, cross-site defence, content
    type, body size. A refused request never reaches its handler. Install it first, so it
    also covers routes added by plugins and the static UI.
    """
    policy = _build_policy(config)
    checks = (_check_host, _check_token, _check_cross_site, _check_content_type, _check_body_size)

    @web.middleware
    async def flowmill_security(request: web.Request, handler: Handler) -> web.StreamResponse:
        for check in checks:
            refusal = check(request, policy)
            if refusal is not None:
                return refusal
        request = _with_body_limit(request, config)
        try:
            response = await handler(request)
        except web.HTTPException as error:
            apply_security_headers(error)
            raise
        if not response.prepared:
            apply_security_headers(response)
        return response

    return flowmill_security


def install_security(app: web.Application, config: SecurityConfig) -> None:
    """Put the security middleware first in `app` and add the response-header hook."""
    app.middlewares.insert(0, security_middleware(config))
    install_response_headers(app)


def _refuse(request: web.Request, status: int, message: str) -> web.Response:
    # Header values in `message` are quoted with !r by callers, so log lines cannot be forged.
    logger.info("refused %s %r with %d: %s", request.method, request.path, status, message)
    response = web.json_response({"error": message}, status=status)
    if status == 401:
        response.headers[hdrs.WWW_AUTHENTICATE] = 'Bearer realm="flowmill"'
    apply_security_headers(response)
    return response


def is_upload_route(path: str) -> bool:
    """True for the multipart routes, bare or under `/api` (every ComfyUI route exists in both)."""
    return path.endswith(UPLOAD_ROUTES)


def is_websocket_upgrade(request: web.BaseRequest) -> bool:
    if request.method != "GET":
        return False
    offered = request.headers.get(hdrs.UPGRADE, "")
    return any(part.strip().lower() == "websocket" for part in offered.split(","))


def _check_host(request: web.Request, policy: _Policy) -> web.Response | None:
    """DNS rebinding: a page on attacker.example rebound to 127.0.0.1 still says Host: attacker.example."""
    raw = request.headers.get(hdrs.HOST)
    parsed = parse_host(raw) if raw else None
    if parsed is None:
        return _refuse(request, 403, f"missing or malformed Host header: {raw!r}")
    host = parsed[0]
    if is_loopback_address(host) or host in policy.host_names:
        return None
    if policy.any_ip_host and _is_ip_literal(host):
        return None
    return _refuse(request, 403, f"Host {host!r} is not allowed; start the server with --allowed-hosts {host} "
                                 "to serve it under that name")


def _check_token(request: web.Request, policy: _Policy) -> web.Response | None:
    token = policy.config.token
    if token is None:
        return None
    if request.method in ("GET", "HEAD") and request.path == "/" and "token" in request.query:
        return _login(request, token)
    if (request.method, request.path) in PUBLIC_ROUTES:
        return None
    if any(token_matches(candidate, token) for candidate in _presented_tokens(request)):
        return None
    return _refuse(request, 401, "authentication required: send the access token as 'Authorization: Bearer <token>'")


def _presented_tokens(request: web.Request) -> list[str]:
    found: list[str] = []
    scheme, _, value = request.headers.get(hdrs.AUTHORIZATION, "").strip().partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        found.append(value.strip())
    cookie = request.cookies.get(TOKEN_COOKIE)
    if cookie:
        found.append(cookie)
    if is_websocket_upgrade(request):
        # Browsers cannot set headers on a websocket; a subprotocol is the one field they send.
        found.extend(protocol[len(TOKEN_SUBPROTOCOL_PREFIX) :] for protocol in token_subprotocols(request))
    return found


def token_subprotocols(request: web.BaseRequest) -> tuple[str, ...]:
    """The `flowmill.token.*` subprotocols a websocket client offered.

    Pass them to `web.WebSocketResponse(protocols=...)`: a browser drops the connection unless
    the server selects one of the subprotocols it offered.
    """
    offered = request.headers.get(hdrs.SEC_WEBSOCKET_PROTOCOL, "")
    entries = (entry.strip() for entry in offered.split(","))
    return tuple(entry for entry in entries if entry.startswith(TOKEN_SUBPROTOCOL_PREFIX))


def _login(request: web.Request, token: str) -> web.Response:
    """`GET /?token=T`: set the cookie and redirect, so the token leaves the address bar at once."""
    if not token_matches(request.query["token"], token):
        return _refuse(request, 401, "wrong access token")
    response = web.Response(status=303, headers={hdrs.LOCATION: "/"})
    # HttpOnly keeps it from scripts; SameSite=Strict keeps it off cross-site requests.
    response.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="Strict", path="/", secure=request.secure)
    response.headers[hdrs.CACHE_CONTROL] = "no-store"
    apply_security_headers(response)
    return response


def _check_cross_site(request: web.Request, policy: _Policy) -> web.Response | None:
    """CSRF, cross-site websocket hijacking and cross-site reads.

    CORS does not stop a cross-site POST from running, nor an `<img src=/view?...>` on another
    site from learning which files exist and their sizes. So every cross-site request is
    refused except a top-level navigation to the page itself (a link to the app, the token
    login). Same-site requests (another port of this host, a sibling subdomain behind a proxy)
    pass this check; their Origin is still checked on state changes. Requests without Fetch
    Metadata (scripts, older browsers) are judged by Origin and the token alone.
    """
    cross_site = request.headers.get("Sec-Fetch-Site", "").strip().lower() == "cross-site"
    if request.method not in STATE_CHANGING_METHODS and not is_websocket_upgrade(request):
        if cross_site and not _is_page_navigation(request):
            return _refuse(request, 403, "cross-site reads are not allowed: open the app from its own address")
        return None
    if cross_site:
        return _refuse(request, 403, "cross-site requests are not allowed")
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is None:
        return None  # not a browser (scripts send no Origin); the token covers exposed servers
    host = parse_host(request.headers.get(hdrs.HOST, ""))
    if host is None or not _origin_matches(origin, host, policy.config.allowed_hosts):
        return _refuse(request, 403, f"Origin {origin!r} does not match the server's Host")
    return None


def _is_page_navigation(request: web.Request) -> bool:
    return request.path == "/" and request.headers.get("Sec-Fetch-Mode", "").strip().lower() == "navigate"


def _origin_matches(origin: str, host: tuple[str, int | None], allowed_hosts: Sequence[str]) -> bool:
    # "null" (sandboxed iframes, file: pages) parses to no host and must not pass (CVE-2026-56674).
    try:
        url = URL(origin.strip())
    except ValueError:
        return False
    if url.scheme not in ("http", "https") or not url.raw_host:
        return False
    origin_host = url.raw_host.lower().rstrip(".")
    if origin_host in allowed_hosts:
        return True
    host_name, host_port = host
    if origin_host != host_name:
        return False
    if host_port is None:
        # Host without a port means the default port; the scheme may differ behind a TLS proxy.
        return url.explicit_port is None or url.explicit_port in (80, 443)
    return url.port == host_port


def _has_browser_markers(request: web.Request) -> bool:
    return hdrs.ORIGIN in request.headers or any(name.lower().startswith("sec-fetch-") for name in request.headers)


def _check_content_type(request: web.Request, policy: _Policy) -> web.Response | None:
    """A cross-site HTML form can only send the CORS-safelisted types, never application/json.

    Only browser requests are gated: script clients (urllib's default form type) post JSON
    bodies with other content types, and ComfyUI parses them as JSON regardless.
    """
    if request.method != "POST" or is_upload_route(request.path) or not _has_browser_markers(request):
        return None
    if request.content_type == "application/json":
        return None
    sent = request.headers.get(hdrs.CONTENT_TYPE, "<none>")
    return _refuse(request, 415, f"this route takes Content-Type: application/json, got {sent!r}")


def body_limit(config: SecurityConfig, path: str) -> int:
    """The largest body, in bytes, that the route at `path` accepts."""
    return config.max_upload_size if is_upload_route(path) else config.max_json_size


def _check_body_size(request: web.Request, policy: _Policy) -> web.Response | None:
    """Refuse an oversize body from its Content-Length, before a single byte is read."""
    limit = body_limit(policy.config, request.path)
    length = request.content_length
    if length is not None and length > limit:
        return _refuse(request, 413, f"request body is {length} bytes; this route accepts at most {limit}")
    return None


def _with_body_limit(request: web.Request, config: SecurityConfig) -> web.Request:
    """Lower aiohttp's read limit to the route's cap, which also bounds chunked bodies."""
    if request.method not in STATE_CHANGING_METHODS or is_upload_route(request.path):
        return request
    limit = config.max_json_size
    if request.client_max_size <= limit:
        return request
    return request.clone(client_max_size=limit)


# --------------------------------------------------------------------------- response headers


def apply_security_headers(response: web.StreamResponse) -> None:
    """nosniff and no framing on everything; the CSP on HTML. Headers a handler set itself are kept."""
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("X-Frame-Options", "DENY")
    if response.content_type == "text/html":
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)


async def _on_response_prepare(request: web.Request, response: web.StreamResponse) -> None:
    apply_security_headers(response)


def install_response_headers(app: web.Application) -> None:
    """Add the security headers to every response, streamed and file responses included.

    The middleware cannot reach a response once a handler has prepared it (websockets,
    `FileResponse`, `StreamResponse`); the `on_response_prepare` signal runs for all of them.
    """
    app.on_response_prepare.append(_on_response_prepare)


def printable(text: str) -> str:
    """`text` with control characters escaped (\\r, \\n, \\x1b, ...), so it cannot forge or recolour log lines."""
    return _CONTROL_CHARACTERS.sub(lambda match: match.group(0).encode("unicode_escape").decode("ascii"), text)


class RedactingAccessLogger(AbstractAccessLogger):
    """Access log lines without query strings, which can carry the login token (`/?token=`).

    The path is logged decoded, so `%0d%0a` in a URL would start a forged log line: control
    characters are escaped. Use as `web.run_app(app, access_log_class=RedactingAccessLogger)`.
    """

    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        self.logger.info('%s "%s %s" %d %.3fs', request.remote, printable(request.method), printable(request.path),
                         response.status, time)
