"""The web server's frame: the FastAPI app, its security and its errors.

    GET  /               the page (static/index.html; its script and style sheet under /static)
    GET  /api/messages   the page's sentences in one language (?lang=tr), from the same tables
                         as the command line (``sifir.messages``)
    GET  /docs           the API, documented (FastAPI's OpenAPI page, its Swagger UI served from
                         the installed package, so it works offline too; also /openapi.json)

The rooms that hang on it, one job each: ``predict`` (read a picture with a trained model, the
Draw view) and ``learn`` (training sessions the Learn view drives and watches).
Everything a client can send wrong is answered with a 4xx and ``{"error": "…", "code": "…"}``;
nothing it sends reaches a 500 or a traceback.

What keeps others out (``Guard``): training uses the machine's CPU, so a page on another web site
must not be able to start it, and neither may a stranger on the network.
- the Host header must name an address this server serves (127.0.0.1, localhost): a site whose
  name an attacker points at 127.0.0.1 (DNS rebinding) gets a 403;
- every request that changes something (POST…) must come from this server's own page: an Origin
  header from elsewhere, or a browser's Sec-Fetch-Site: cross-site, gets a 403;
- the training API (/api/learn/…) needs this launch's token, which `sifir serve` prints in its URL
  (as Jupyter does): opening that URL leaves it in a cookie for this server (HttpOnly,
  SameSite=Strict), scripts may send it as X-Sifir-Token or ?token=. Without it: a 403.

What keeps it standing:
- the request body is counted as it streams in and refused over ``max_body`` bytes (413), whatever
  Content-Length claims;
- static files come only from the package's static folder, through Starlette's StaticFiles
  (which refuses paths that resolve outside it);
- the page may load only from this server (a strict Content-Security-Policy), and may not be
  framed by another site.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from pathlib import Path

from fastapi import Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection

from .. import __version__
from ..errors import SifirError
from ..messages import languages, page_messages

__all__ = ["create_app", "ApiError", "MAX_BODY_BYTES", "LOOPBACK_NAMES"]

STATIC = Path(__file__).resolve().parent / "static"
MAX_BODY_BYTES = 2 * 1024 * 1024   # a 280×280 canvas is ~10 kB; a phone photo the page shrinks first
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
PROTECTED = "/api/learn"            # the training API: the token's part of the server
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}

log = logging.getLogger("sifir.web")

# The page's own files may load only from this server; /docs (FastAPI's page) is left alone.
PAGE_CSP = ("default-src 'self'; img-src 'self' data: blob:; connect-src 'self'; style-src 'self'; "
            "script-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


class ApiError(Exception):
    """A refusal the client caused: HTTP status, a short machine-readable code and a message
    (and the request's ``field`` it is about, when there is one)."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field


def error_response(status: int, code: str, message: str, headers: dict | None = None,
                   field: str | None = None) -> JSONResponse:
    body = {"error": message, "code": code, **({"field": field} if field else {})}
    return JSONResponse(body, status_code=status, headers=headers)


# -- the app ------------------------------------------------------------------------------------
def create_app(model_path=None, *, max_body: int = MAX_BODY_BYTES, token: str | None = None,
               hosts=LOOPBACK_NAMES, port: int | None = None, any_ip: bool = False,
               learn_options: dict | None = None, **predict_options) -> FastAPIOffline:
    """The app serving the page and the API; the Draw view reads with the model in
    ``model_path`` (loaded now, once; None: none until the Learn view hands one over).
    ``predict_options`` (``max_pixels``, ``workers``) go to the prediction room, ``learn_options``
    to the training room (``learn.LearnRoom``).

    Who may ask (``Guard``): a Host header naming one of ``hosts`` (on ``port`` if given; any IP
    address too when ``any_ip``, for a server listening on all of them), and for the training API
    the ``token`` (a new random one when None: ``app.state.token``).

    Raises ModelFileError when the file is not a readable sifir model.
    """
    from . import learn, predict

    token = token or secrets.token_urlsafe(24)

    # FastAPIOffline serves the /docs page's Swagger UI from the package, not from a CDN, so the
    # API documentation works on a machine without internet like everything else here.
    @contextlib.asynccontextmanager
    async def lifespan(app):
        yield
        await asyncio.to_thread(app.state.learn.close)   # stop every training run, wait for them

    app = FastAPIOffline(title="sifir", version=__version__, lifespan=lifespan,
                         description="A neural network from zero in NumPy reads handwritten digits. "
                                     "Draw on the page at /, or post a picture to /api/predict; "
                                     "train one in the Learn view (/api/learn, with this launch's token).")
    app.state.token = token
    app.add_middleware(Guard, token=token, hosts=hosts, port=port, any_ip=any_ip)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(BodyLimit, limit=max_body)
    _add_error_handlers(app)

    @app.get("/", include_in_schema=False)
    def page(request: Request) -> FileResponse:
        """The page; opened with this launch's ?token=, it also leaves the token in a cookie."""
        response = FileResponse(STATIC / "index.html", media_type="text/html")
        if secrets.compare_digest(request.query_params.get("token", ""), token):
            response.set_cookie(cookie_name(request.headers.get("host", "")), token, httponly=True,
                                samesite="strict", path="/")
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> FileResponse:
        return FileResponse(STATIC / "favicon.svg", media_type="image/svg+xml")

    @app.get("/api/messages", summary="The page's sentences in one language")
    def messages(lang: str = Query("en", description="a language code: " + ", ".join(languages()))) -> dict:
        """Every sentence the page shows, from the same per-language tables as the command line."""
        if lang not in languages():
            raise ApiError(422, "bad_language", f"no sentences for language '{lang}' "
                                                f"(have: {', '.join(languages())})")
        return {"lang": lang, "languages": languages(), "messages": page_messages(lang)}

    predict.add_routes(app, model_path, **predict_options)
    learn.add_routes(app, **(learn_options or {}))
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


def cookie_name(host: str) -> str:
    """The token's cookie, one per port: cookies do not tell ports apart, two servers on one
    machine must not overwrite each other's."""
    name, _, port = host.rpartition(":")
    return f"sifir_token_{port if name and port.isdigit() else 80}"


# -- errors -------------------------------------------------------------------------------------
def _add_error_handlers(app: FastAPIOffline) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.code, exc.message, field=exc.field)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(*_explain_validation(request, exc.errors()))

    @app.exception_handler(SifirError)
    async def sifir_error(request: Request, exc: SifirError) -> JSONResponse:
        return error_response(422, "bad_input", str(exc))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> JSONResponse:
        # A bug, not the client's fault: the client gets one line, the log the details (Starlette
        # re-raises the exception after this answer, so the server also logs its traceback).
        log.error("%s %s failed: %s: %s", request.method, request.url.path, type(exc).__name__, exc)
        return error_response(500, "internal", "internal error (the server's log has the details)")


EXAMPLE_BODY = '{"image": "data:image/png;base64,…"}'


def _explain_validation(request: Request, errors) -> tuple[int, str, str]:
    """FastAPI's validation errors, turned into one sentence a person can act on."""
    first = errors[0] if errors else {}
    kind, loc = first.get("type", ""), tuple(first.get("loc", ()))
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "json_invalid":
        return 400, "bad_json", f"the body is not valid JSON; send {EXAMPLE_BODY}"
    if content_type != "application/json":
        return 415, "not_json", f"send the picture as JSON, {EXAMPLE_BODY}, with Content-Type: application/json"
    if loc == ("body",) and kind == "missing":
        return 422, "bad_request", f"the body is empty; send {EXAMPLE_BODY}"
    if loc == ("body",):
        return 422, "bad_request", f"the body must be a JSON object, {EXAMPLE_BODY}"
    field = ".".join(str(part) for part in loc[1:]) or "body"
    if kind == "missing":
        return 422, "bad_request", f"missing field '{field}'; send {EXAMPLE_BODY}"
    if kind == "string_type":
        return 422, "bad_request", f"'{field}' must be a string, a data URL such as data:image/png;base64,…"
    return 422, "bad_request", f"'{field}': {first.get('msg', 'invalid value')}"


# -- middleware (plain ASGI: they see the raw stream) ------------------------------------------------
class BodyLimit:
    """Refuse request bodies over ``limit`` bytes with 413, before the app reads any of it.

    The body is counted as it arrives, so a missing or lying Content-Length (or a chunked
    upload) gets no further than an honest one; a declared length over the limit is refused
    at once. Bodies under the limit are handed on whole.
    """

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers", ())).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._refuse(send)
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return   # the client left before sending it all: no one to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                return await self._refuse(send)
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body, delivered = b"".join(chunks), False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()   # after the body: wait for the disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, send):
        payload = json.dumps({"error": f"the request body is over the {self.limit:,}-byte limit; "
                              "send a smaller picture", "code": "too_large"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(payload)).encode()),
                                (b"connection", b"close")]})   # the rest of the body goes unread
        await send({"type": "http.response.body", "body": payload})


class Guard:
    """Host, Origin and token checks (see the module's docstring), before anything else runs."""

    def __init__(self, app, token: str, hosts, port: int | None = None, any_ip: bool = False):
        self.app, self.token, self.port, self.any_ip = app, token, port, any_ip
        self.names = {h.strip("[]").lower() for h in hosts}

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        refusal = self.refusal(HTTPConnection(scope))
        if refusal:
            code, message = refusal
            return await error_response(403, code, message)(scope, receive, send)
        await self.app(scope, receive, send)

    def refusal(self, request: HTTPConnection) -> tuple[str, str] | None:
        headers, scope = request.headers, request.scope
        host = headers.get("host")
        if host is not None and not self.host_allowed(host):   # no Host at all: not a browser
            shown = ", ".join(sorted(self.names))
            return "bad_host", (f"this server answers only to {shown}, not to '{host[:100]}': open the "
                                "address that `sifir serve` printed")
        if scope.get("method", "GET") not in SAFE_METHODS:
            origin = headers.get("origin")
            own = f"{scope.get('scheme', 'http')}://{host}"
            if (origin is not None and origin != own) or headers.get("sec-fetch-site") == "cross-site":
                return "bad_origin", (f"refused: this request came from another site ({(origin or 'unknown')[:100]}); "
                                      "only this server's own page may change anything here")
        if scope.get("path", "").startswith(PROTECTED) and not self.token_given(request):
            return "bad_token", ("the training API needs this launch's token: open the address with ?token=… "
                                 "that `sifir serve` printed (or send it as X-Sifir-Token)")
        return None

    def host_allowed(self, host: str) -> bool:
        name, _, port = host.rpartition(":") if not host.endswith("]") else (host, "", "")
        if not name or not port.isdigit():   # no port given: the default one
            name, port = host, "80"
        name = name.strip("[]").lower()
        if self.port is not None and int(port) != self.port:
            return False
        return name in self.names or (self.any_ip and _is_ip(name))

    def token_given(self, request: HTTPConnection) -> bool:
        given = (request.headers.get("x-sifir-token") or request.query_params.get("token")
                 or request.cookies.get(cookie_name(request.headers.get("host", ""))) or "")
        return secrets.compare_digest(given.encode(), self.token.encode())


def _is_ip(name: str) -> bool:
    import ipaddress
    try:
        ipaddress.ip_address(name)
        return True
    except ValueError:
        return False


class SecurityHeaders:
    """nosniff and no-referrer everywhere; a strict Content-Security-Policy on the page."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        page = path == "/" or path.startswith("/static/")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if page:
                    headers += [(b"content-security-policy", PAGE_CSP.encode()), (b"x-frame-options", b"DENY")]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_headers)
