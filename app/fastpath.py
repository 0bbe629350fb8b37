"""The predict routes as plain WSGI, in front of Flask: the hot path, kept lean.

Flask's request machinery (context push, URL matching, Request and Response objects) cost
more per prediction than the model and its validation together (docs/performance.md:
~110 us of a ~200 us request, the model 22 us). ``POST /v1/models/<name>[/versions/<v>]:predict``
and ``POST /invocations`` are answered here from the WSGI environ, with the same checks, in
the same order, and the same JSON errors as everywhere else; every other request, and every
other method on these paths (405 with Allow), goes to Flask. Nothing here is specific to a
model: the name (and version) in the URL selects the model version, its manifest-built
parser and its interpreter; /invocations answers with the default model.
"""

from __future__ import annotations

import hmac
import re
import traceback
from typing import TYPE_CHECKING

import orjson

from app.negotiation import CSV, JSON, answer_type, csv_body
from app.observability import INSTANCES, MODEL, REQUEST_ID
from app.validation import BadRequest, parse_json

if TYPE_CHECKING:
    from app import ServedModel, Service

PREDICT_PATH = re.compile(r"/v1/models/([^/:]+)(?:/versions/([^/:]+))?:predict")
STATUS_TEXT = {200: "200 OK", 400: "400 Bad Request", 401: "401 Unauthorized",
               404: "404 Not Found", 406: "406 Not Acceptable", 411: "411 Length Required",
               413: "413 Content Too Large",
               415: "415 Unsupported Media Type", 500: "500 Internal Server Error"}
JSON_TYPES = (JSON,)
CUSTOM_ATTRIBUTES = "HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES"
TFS_ATTRIBUTE = re.compile(r"(tfs-model-name|tfs-model-version)=([^,\s]+)")
INVOCATION_TYPES = (JSON, CSV)


def error_body(message: str) -> bytes:
    return orjson.dumps({"error": message}, option=orjson.OPT_APPEND_NEWLINE)


def check_api_key(service: "Service", given: str | None) -> None:
    expected = service.settings.api_key
    if expected is None:
        return
    # compare_digest takes the same time whatever the first differing byte is; bytes, so
    # a non-ASCII header cannot raise instead of comparing.
    if not hmac.compare_digest((given or "").encode("utf-8", "surrogateescape"),
                               expected.encode()):
        raise BadRequest("missing or invalid x-api-key header", 401)


def media_type(environ: dict, allowed: tuple[str, ...]) -> str:
    """The request's media type if it is one of ``allowed``, else a 415 naming them."""
    raw = environ.get("CONTENT_TYPE", "")
    mimetype = raw.split(";", 1)[0].strip().lower()
    if mimetype not in allowed:
        raise BadRequest(f"Content-Type must be {' or '.join(allowed)}; got "
                         f"{raw[:100] or 'none'!r}", 415)
    encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding not in ("", "identity"):
        raise BadRequest(f"Content-Encoding {encoding[:40]!r} is not supported; send the body "
                         "uncompressed", 415)
    return mimetype


def read_body(environ: dict, limit: int) -> bytes:
    """The whole body, refusing one over ``limit`` bytes (MAX_BODY_BYTES) however it is
    framed: by Content-Length before reading, without one (chunked) while reading."""
    stream = environ["wsgi.input"]
    raw_length = environ.get("CONTENT_LENGTH", "")
    if raw_length:
        if not raw_length.isdigit():
            raise BadRequest(f"Content-Length {raw_length[:20]!r} is not a number")
        length = int(raw_length)
        if length > limit:
            raise body_too_large(limit)
        return stream.read(length) if length else b""
    data = stream.read(limit + 1)
    if len(data) > limit:
        raise body_too_large(limit)
    return data


def body_too_large(limit: int) -> BadRequest:
    """The 413 for a body over MAX_BODY_BYTES (Flask's own 413 says the same: app/errors.py).
    Made only when raised: building it up front cost ~1 us on every request."""
    return BadRequest(f"request body exceeds {limit} bytes (MAX_BODY_BYTES); send smaller "
                      "batches", 413)


def json_answer(key: str, outputs) -> bytes:
    """TF Serving's answer: "outputs" to a columnar request ("inputs"), else "predictions"."""
    # orjson writes numpy float32 arrays directly, in float32's shortest form.
    return orjson.dumps({"outputs" if key == "inputs" else "predictions": outputs},
                        option=orjson.OPT_SERIALIZE_NUMPY)


def predict(service: "Service", environ: dict, name: str,
            version: str | None) -> tuple[int, bytes, "ServedModel | None", str]:
    """TF Serving's predict: (status, JSON body, the model the URL names if it is served,
    the answer's media type)."""
    # Resolved first (a dictionary read) so that even a 401 is counted against its model.
    return _predict(service, environ, service.models.get(name, version), name, version,
                    invocation=False)


def selected_model(environ: dict) -> tuple[str | None, str | None]:
    """The model (name, version) SageMaker's CustomAttributes name, as SageMaker's TensorFlow
    Serving container reads them (``tfs-model-name=<name>,tfs-model-version=<v>``); (None,
    None) without them. InvokeEndpoint reaches /invocations only, so this is how a
    SageMaker client picks a model other than the default."""
    raw = environ.get(CUSTOM_ATTRIBUTES)
    if not raw:
        return None, None
    found = dict(TFS_ATTRIBUTE.findall(raw))
    return found.get("tfs-model-name"), found.get("tfs-model-version")


def invocations(service: "Service", environ: dict) -> tuple[int, bytes, "ServedModel | None", str]:
    """SageMaker's inference route: JSON as for predict, or text/csv, on the default model
    (or the one CustomAttributes name); answered in the type Accept asks for
    (app/negotiation.py). Returns what predict returns (errors are always JSON)."""
    name, version = selected_model(environ)
    if name is None and version is None:
        model = service.default
    else:
        name = name or service.default.name        # a version alone: of the default model
        model = service.models.get(name, version)
    return _predict(service, environ, model, name, version, invocation=True)


def _predict(service: "Service", environ: dict, model: "ServedModel | None",
             name: str | None, version: str | None, *,
             invocation: bool) -> tuple[int, bytes, "ServedModel | None", str]:
    """Both routes' checks, in one order (key, model, Content-Type, Accept, body), and the
    prediction. Only /invocations takes text/csv and answers by Accept."""
    environ[MODEL] = model
    environ[INSTANCES] = 0  # a prediction request, even if it fails below
    try:
        check_api_key(service, environ.get("HTTP_X_API_KEY"))
        if model is None:
            raise service.models.not_found(name, version)
        mimetype = media_type(environ, INVOCATION_TYPES if invocation else JSON_TYPES)
        answer = answer_type(environ) if invocation else JSON
        raw = read_body(environ, service.settings.max_body_bytes)
        if mimetype == CSV:
            x, key = model.parser.parse_csv(raw), "predictions"
        else:
            x, key = model.parser.parse(parse_json(raw))
        environ[INSTANCES] = len(x)
        outputs = model.predictor.predict(x)
        body = csv_body(outputs) if answer == CSV else json_answer(key, outputs)
        return 200, body, model, answer
    except BadRequest as exc:
        return exc.status, error_body(exc.message), model, JSON


def url_text(segment: str | None) -> str | None:
    """A PATH_INFO segment as the client wrote it. PATH_INFO holds the URL's bytes as
    latin-1 (PEP 3333); Flask's routes decode them as UTF-8, and so must this path, or a 404
    names 'cafÃ©' for 'café'. Served names are ASCII (app/manifest.py), so only a name that
    cannot be served pays for decoding."""
    if segment is None or segment.isascii():
        return segment
    try:
        return segment.encode("latin-1").decode("utf-8", "replace")
    except UnicodeEncodeError:   # a server that already decoded it (not PEP 3333): as given
        return segment


class PredictFastPath:
    """WSGI middleware: POST predict and /invocations here, everything else to Flask."""

    def __init__(self, flask_app, service: "Service"):
        self.flask_app = flask_app
        self.service = service

    def __call__(self, environ, start_response):
        if environ.get("REQUEST_METHOD") == "POST":
            path = environ.get("PATH_INFO", "")
            if path == "/invocations":
                return self._answer(environ, start_response, invocations, self.service, environ)
            match = PREDICT_PATH.fullmatch(path)
            if match:
                return self._answer(environ, start_response, predict, self.service, environ,
                                    url_text(match.group(1)), url_text(match.group(2)))
        return self.flask_app(environ, start_response)

    def _answer(self, environ, start_response, handler, *args):
        model, content_type = None, JSON
        try:
            status, body, model, content_type = handler(*args)
        except Exception as exc:  # noqa: BLE001 - a 500 with a request id, never a traceback
            status, body = 500, self._internal_error(environ, exc)
        headers = [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        if model is not None:
            # Which model answered (the demo page shows it; clients can log it), and on
            # /invocations SageMaker's CustomAttributes naming it with its manifest's hash.
            headers += model.invocation_headers if handler is invocations else model.headers
        start_response(STATUS_TEXT.get(status) or f"{status} Error", headers)
        return [body]

    def _internal_error(self, environ, exc: Exception) -> bytes:
        request_id = environ.get(REQUEST_ID)
        self.service.log.write("ERROR", event="unhandled_exception",
                               path=environ.get("PATH_INFO"), request_id=request_id,
                               error=repr(exc), traceback=traceback.format_exc())
        return error_body(f"internal error (request id {request_id})")
