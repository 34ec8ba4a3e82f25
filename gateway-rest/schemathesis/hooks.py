"""schemathesis hooks for Castle's REST gateway: sign requests like a client.

The auth below only names the API key (X-API-KEY), on the operations that
declare security; the signature (X-TIMESTAMP, X-SIGNATURE) is added to the
final prepared request, whose path, query and body bytes are exactly what
the gateway verifies. A request that schemathesis sends without the key
(the `ignored_auth` check) stays unsigned and must be refused.
"""

import hashlib
import hmac
import os
import threading
import time
from urllib.parse import urlsplit

import requests
import schemathesis

# Hypothesis describes lambdas for its reprs by parsing their source with
# `ast`; on this CPython 3.11 that parse sometimes raises
# SystemError("AST constructor recursion depth mismatch"), an interpreter bug
# that ends the operation's fuzzing as an "error". The description is cosmetic,
# so fall back to Hypothesis's own "unknown body" form; responses are still
# checked exactly as before.
try:
    from hypothesis.internal import lambda_sources as _lambda_sources

    _describe = _lambda_sources._lambda_description

    def _describe_or_unknown(f, *args, **kwargs):
        try:
            return _describe(f, *args, **kwargs)
        except SystemError:
            return "lambda: <unknown>"

    _lambda_sources._lambda_description = _describe_or_unknown
except (ImportError, AttributeError):
    pass

KEY = os.environ["CASTLE_REST_KEY"]
SECRET = os.environ["CASTLE_REST_SECRET"]

_lock = threading.Lock()
_last = [0]


def _timestamp() -> str:
    # Strictly increasing: two identical requests in one millisecond would
    # otherwise be refused as a replay.
    with _lock:
        t = max(int(time.time() * 1000), _last[0] + 1)
        _last[0] = t
        return str(t)


_send = requests.adapters.HTTPAdapter.send


def _signed_send(self, request, *args, **kwargs):
    if request.headers.get("X-API-KEY") == KEY:
        url = urlsplit(request.url)
        body = request.body or b""
        if isinstance(body, str):
            body = body.encode()
        ts = _timestamp()
        payload = ts.encode() + request.method.encode() + url.path.encode()
        if url.query:
            payload += b"?" + url.query.encode()
        payload += body
        request.headers["X-TIMESTAMP"] = ts
        request.headers["X-SIGNATURE"] = hmac.new(SECRET.encode(), payload, hashlib.sha256).hexdigest()
    return _send(self, request, *args, **kwargs)


requests.adapters.HTTPAdapter.send = _signed_send


@schemathesis.auth()
class CastleApiKey:
    def get(self, case, context):
        return KEY

    def set(self, case, data, context):
        if case.operation.definition.raw.get("security"):
            case.headers = case.headers or {}
            case.headers["X-API-KEY"] = data


# Codes a schema-valid order may be refused with (see schemathesis.toml).
ORDER_VALIDATION_CODES = {1302, 1305, 1306, 2006, 2007, 2008, 2009, 2015, 2016, 2021}


@schemathesis.check
def errors_are_documented_json(ctx, response, case):
    """Every error is JSON {code, message} with a documented code, and a 400 on
    a schema-valid order is one of the cross-field validation codes."""
    if response.status_code < 400:
        return None
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"code", "message"}, f"error body {body!r}"
    code = body["code"]
    assert isinstance(code, int) and (1000 <= code <= 1401 or 2001 <= code <= 2031), f"undocumented code {code}"
    if (
        response.status_code == 400
        and case.method == "POST"
        and case.path == "/api/v1/order"
        and case.meta is not None
        and "positive" in str(getattr(case.meta.generation, "mode", "")).lower()
    ):
        assert code in ORDER_VALIDATION_CODES, f"schema-valid order refused with code {code}: {body['message']}"
    return None
