"""The review app's guard, run before every route (an ASGI middleware): who may ask, and from which page.

- Host allow-list (review.access): a DNS-rebinding page sends its own name as Host; refused.
- The access token (off loopback): `?token=`, the `X-Hootwatch-Token` header or the cookie the first tokened page
  sets; compared as bytes (a non-ASCII token is simply wrong).
- Cross-site: a request that changes something (any method but GET/HEAD/OPTIONS) needs an Origin, if it sends
  one, of this very server, a Sec-Fetch-Site, if it sends one, of same-origin or none, and the CSRF token the
  page was served with (`<meta name="hootwatch-csrf">`, sent back as `X-Hootwatch-Csrf`); a read of /api/ that
  a browser marks as from another site is refused too.
Every refusal is a 403 with {error, fix}; every response says not to frame the page or sniff its types.
"""

from __future__ import annotations

import re
import secrets
from html import escape
from urllib.parse import urlsplit

from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .access import host_allowed

CSRF_HEADER = "x-hootwatch-csrf"
TOKEN_HEADER = "x-hootwatch-token"
TOKEN_COOKIE = "hootwatch_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
SAME_SITE = frozenset({"same-origin", "none"})  # Sec-Fetch-Site of the page's own requests / a typed address
SECURITY_HEADERS = {"x-content-type-options": "nosniff", "x-frame-options": "DENY",
                    "content-security-policy": "frame-ancestors 'none'", "referrer-policy": "no-referrer"}
FROM_THE_PAGE = ("send it from the review page of this server (reload it if the server was restarted); a script "
                 "sends the X-Hootwatch-Csrf header with the token in the page's <meta name=\"hootwatch-csrf\">")


class Refused(Exception):
    """A request the app turns down: HTTP status, what is wrong, and the fix (the reply's {error, fix})."""

    def __init__(self, status: int, error: str, fix: str) -> None:
        super().__init__(error)
        self.status, self.error, self.fix = status, error, fix

    def response(self) -> JSONResponse:
        return JSONResponse({"error": self.error, "fix": self.fix}, status_code=self.status)


def in_words(errors: list[dict]) -> str:
    """pydantic's errors of a request's parameters as one sentence naming each parameter and the value given."""
    said = []
    for e in errors:
        name = ".".join(str(x) for x in e.get("loc", ()) if x not in ("query", "body")) or "the request"
        got = e.get("input")
        shown = "" if got is None or isinstance(got, (dict, list)) else f" (got {got!r:.40})"
        said.append(f"{name}: {e.get('msg', 'invalid')}{shown}")
    return "; ".join(said)


# the fix for each kind of pydantic error (its `type`), the first that applies
FIXES = (({"json_invalid", "json_type", "model_attributes_type", "dict_type"},
          "send a JSON object (Content-Type: application/json) with the fields the API names (/api/docs)"),
         ({"missing"}, "give the parameter the error names (the API: /api/docs)"),
         ({"literal_error", "enum"}, "use one of the values the error names"),
         ({"string_too_short", "string_too_long", "string_pattern_mismatch", "string_type"},
          "give it in the form and length the error names"),
         ({"finite_number", "float_parsing", "int_parsing", "float_type", "int_type", "int_from_float",
           "greater_than", "greater_than_equal", "less_than", "less_than_equal"},
          "give a finite number in its range (the API's ranges: /api/docs)"))


def fix_for(errors: list[dict]) -> str:
    """The fix for a request's pydantic errors, by the kind of the first one."""
    kinds = {e.get("type", "") for e in errors}
    for types, fix in FIXES:
        if kinds & types:
            return fix
    return "see what each parameter takes at /api/docs"


def same_bytes(given: str | None, expected: str) -> bool:
    return given is not None and secrets.compare_digest(given.encode("utf-8", "replace"), expected.encode())


def with_meta(html: str, name: str, content: str) -> str:
    """The page with a <meta name=... content=...> (escaped) the page's script reads."""
    meta = f'<meta name="{name}" content="{escape(content, quote=True)}">'
    page, n = re.subn(r"<head>", lambda m: f"{m.group(0)}\n{meta}", html, count=1, flags=re.IGNORECASE)
    return page if n else meta + html


def with_csrf_meta(html: str, csrf: str) -> str:
    """The page with its server's CSRF token in a <meta> the page's api() reads."""
    return with_meta(html, "hootwatch-csrf", csrf)


class Guard:
    """ASGI middleware: `app` behind the checks above, for Host names `hosts`, an access `token` (None: none
    needed) and the server's `csrf` token."""

    def __init__(self, app, hosts: frozenset[str], token: str | None, csrf: str) -> None:
        self.app, self.hosts, self.token, self.csrf = app, hosts, token, csrf
        self.cookie = ""  # the Set-Cookie a tokened address gets, so the page's own requests carry the token
        if token:
            made = Response()
            made.set_cookie(TOKEN_COOKIE, token, httponly=True, samesite="strict")
            self.cookie = made.headers["set-cookie"]

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            self.check(request)
        except Refused as no:
            await no.response()(scope, receive, send)
            return
        set_cookie = bool(self.token and request.query_params.get("token"))

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for k, v in SECURITY_HEADERS.items():
                    headers.setdefault(k, v)
                if set_cookie:
                    headers.append("set-cookie", self.cookie)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def check(self, request: Request) -> None:
        h = request.headers
        host = h.get("host", "")
        if not host_allowed(host, self.hosts):
            raise Refused(403, f"Host {host!r} is not a name of this server (a web page may be trying to reach it "
                               "by DNS rebinding)",
                          "open the address `hootwatch review` printed; behind a proxy or under another name, "
                          "start it with --allow-host NAME (the daemon: allow_hosts under [review])")
        if self.token:
            given = request.query_params.get("token") or h.get(TOKEN_HEADER) or request.cookies.get(TOKEN_COOKIE)
            if not same_bytes(given, self.token):
                raise Refused(403, "this server needs its token",
                              "open the address with ?token=... that `hootwatch review` printed")
        site = h.get("sec-fetch-site")
        changes = request.method not in SAFE_METHODS
        if site is not None and site not in SAME_SITE and (changes or request.url.path.startswith("/api/")):
            raise Refused(403, f"a request from another site (Sec-Fetch-Site: {site}) is refused", FROM_THE_PAGE)
        if not changes:
            return
        origin = h.get("origin")
        if origin is not None and not _same_origin(origin, host):
            raise Refused(403, f"a request from {origin!r} (its Origin) may not change anything here", FROM_THE_PAGE)
        if not same_bytes(h.get(CSRF_HEADER), self.csrf):
            raise Refused(403, "this request lacks the review page's token (X-Hootwatch-Csrf)", FROM_THE_PAGE)


def _same_origin(origin: str, host: str) -> bool:
    """Whether an Origin ("http://name:port") is the server the request reached (its Host, already allowed).
    Scheme aside: behind a TLS proxy the page is https while the app is reached over http."""
    try:
        netloc = urlsplit(origin).netloc
    except ValueError:
        return False
    return bool(netloc) and netloc.lower() == host.strip().lower()
