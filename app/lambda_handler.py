"""AWS Lambda's entry: the same image, started by the function's image_config.

    entry point  ["/opt/venv/bin/python3", "-m", "awslambdaric"]
    command      ["app.lambda_handler.handler"]

awslambdaric (AWS's runtime interface client, from PyPI) imports this module during Lambda's
init phase, then polls the Runtime API for invocations and calls ``handler`` with each event.
The image's CMD and ENTRYPOINT are untouched, so ECS and SageMaker start it as before.

Import builds the app exactly as every other target does (create_app: settings checked, the
model fetched, verified against its manifest, loaded and warmed up). Anything that fails
here raises, and awslambdaric reports it to Lambda as an init error (POST
/runtime/init/error) with the exception's type and message, e.g. ``ModelIntegrityError:
model.tflite: sha256 mismatch ...``: the function fails to start, naming the cause, instead
of answering every request with a 500. Lambda's root filesystem is read-only and /tmp is
writable: an s3:// model goes to /tmp/ml-app-models (Python's temporary folder there).

Each Function URL request goes through app/function_url.py to the WSGI app, so the routes,
validation and JSON errors are the ones ECS and SageMaker serve. The body limit defaults to
6 MiB (MAX_BODY_BYTES), the Function URL's own payload limit.
"""

from __future__ import annotations

import os

from app import create_app
from app.function_url import FunctionUrlHandler
from app.serve import PAYLOAD_LIMIT_BYTES

os.environ.setdefault("MAX_BODY_BYTES", str(PAYLOAD_LIMIT_BYTES))
app = create_app()
_service = app.extensions["ml_app"]
_serve = FunctionUrlHandler(app.wsgi_app)


def handler(event, context):
    """One Function URL request -> its payload 2.0 response. A non-HTTP event raises
    UnsupportedEvent, which Lambda reports as the invocation's error, naming what came in."""
    try:
        return _serve(event, context)
    finally:
        # Lambda freezes the sandbox between invocations and may end it without a signal:
        # write the metrics now rather than after METRICS_FLUSH_SECONDS.
        if _service.metrics is not None:
            _service.metrics.flush()
