"""SageMaker's ``serve``: how SageMaker hosting starts this image.

    docker run IMAGE serve         (SageMaker: the model at /opt/ml/model, port 8080)

SageMaker runs a model container as ``docker run IMAGE serve`` (the image's CMD replaced by
one argument), so ``serve`` is a program on PATH (app/bin/serve) that runs this module. It
applies SageMaker's conventions, then starts the same front as the image's CMD
(app/server.py's ``main()``): nginx in front of granian, /ping and /invocations on the port.

SageMaker's conventions, each only where the setting is not given already:

- port: ``SAGEMAKER_BIND_TO_PORT`` when SageMaker sets it (inference pipelines; the image's
  label ``com.amazonaws.sagemaker.capabilities.accept-bind-to-port=true`` declares that the
  image honours it), else PORT/BIND, else 8080;
- model: ``/opt/ml/model`` when MODEL_URI is not set and that folder holds a model version
  (its manifest.json): SageMaker extracts the model's ``ModelDataUrl`` archive there;
- body limit: MAX_BODY_BYTES defaults to 6 MiB, InvokeEndpoint's own payload limit, so any
  body SageMaker delivers is read; the batch limit (MAX_BATCH_SIZE) still applies;
- no API_KEY: SageMaker strips every request header InvokeEndpoint does not define, so a
  key could never arrive; callers are authenticated by IAM instead. Setting one is refused.

Everything the image writes goes to $TMPDIR (/tmp): the rendered nginx config, the
sockets, request bodies nginx buffers, an s3:// download. /opt/ml/model is only read.
Checked before start-up, each with one line naming the fix (exit 2): a writable temporary
folder, a readable model folder.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from app.manifest import MANIFEST_NAME

SAGEMAKER_MODEL_DIR = Path("/opt/ml/model")
# InvokeEndpoint's and a Lambda Function URL's request payload limit: 6 MB.
PAYLOAD_LIMIT_BYTES = 6 * 1024 * 1024
EXIT_CONFIG = 2          # as app/server.py: a setting (or the environment) is wrong


def sagemaker_settings(environ, model_dir: Path = SAGEMAKER_MODEL_DIR) -> tuple[dict, list[str]]:
    """(settings to add to the environment, problems): SageMaker's conventions above."""
    add: dict[str, str] = {}
    problems: list[str] = []
    port = environ.get("SAGEMAKER_BIND_TO_PORT")
    if port is not None:
        if port.isdigit() and 1 <= int(port) <= 65535:
            add["BIND"] = f"0.0.0.0:{int(port)}"
        else:
            problems.append(f"SAGEMAKER_BIND_TO_PORT={port!r}: must be a port from 1 to 65535 "
                            "(SageMaker sets it; unset it to listen on 8080)")
    if "MODEL_URI" not in environ:
        if (model_dir / MANIFEST_NAME).is_file():
            add["MODEL_URI"] = str(model_dir)
        else:
            problems.append(_no_model(model_dir))
    if environ.get("API_KEY"):
        problems.append("API_KEY is set, but InvokeEndpoint passes only its own headers to the "
                        "container, never x-api-key: every invocation would get 401. Unset it; "
                        "SageMaker's callers authenticate with IAM (sagemaker:InvokeEndpoint)")
    if "MAX_BODY_BYTES" not in environ:
        add["MAX_BODY_BYTES"] = str(PAYLOAD_LIMIT_BYTES)
    return add, problems


def _no_model(model_dir: Path) -> str:
    nested = [*sorted(model_dir.glob(f"*/{MANIFEST_NAME}")),
              *sorted(model_dir.glob(f"*/*/{MANIFEST_NAME}"))]
    if nested:
        return (f"no {MANIFEST_NAME} in {model_dir}, but {nested[0]} exists: build "
                "model.tar.gz from inside the version folder (tar -C "
                "model/artifacts/<name>/<version> -czf model.tar.gz .) or set "
                f"MODEL_URI={nested[0].parent}")
    if model_dir.is_dir():
        return (f"no {MANIFEST_NAME} in {model_dir} and MODEL_URI is not set: SageMaker "
                "extracts the model's ModelDataUrl archive there; it must hold a model version "
                "folder's files (manifest.json, model.tflite) at its root, or set MODEL_URI "
                "(s3://...)")
    return (f"MODEL_URI is not set and {model_dir} does not exist: give the SageMaker model a "
            "ModelDataUrl (a model version as model.tar.gz) or set MODEL_URI in its environment")


def unreadable_files(folder: Path) -> list[str]:
    """Files of a model folder this process cannot read (SageMaker extracts archives as root;
    a file without read permission for others fails as uid 10001)."""
    return [str(p) for p in sorted(folder.iterdir()) if p.is_file() and not os.access(p, os.R_OK)]


def writable_tempdir() -> str | None:
    """The temporary folder Python will use, or None when there is none it can write."""
    try:
        return tempfile.gettempdir()
    except FileNotFoundError:
        return None


def main(argv: list[str] | None = None) -> int:
    """Apply SageMaker's conventions, check what the image needs, run app/server.py's main."""
    args = sys.argv[1:] if argv is None else argv
    if args:
        print(f"error: serve takes no arguments (got {' '.join(args)!r}); settings come from "
              "the environment (docs/api.md, Configuration)", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    # Before any settings are built: MODEL_CACHE_DIR's default asks for the temporary folder.
    if writable_tempdir() is None:
        print("error: no writable temporary folder: mount a tmpfs at /tmp (docker run --tmpfs "
              "/tmp) or set TMPDIR to a writable folder; the server keeps its config, sockets and "
              "buffered bodies there (docs/sagemaker.md)", file=sys.stderr, flush=True)
        return EXIT_CONFIG
    add, problems = sagemaker_settings(os.environ)
    model_uri = add.get("MODEL_URI")
    if model_uri and (unreadable := unreadable_files(Path(model_uri))):
        problems.append(f"cannot read {', '.join(unreadable)} as uid {os.geteuid()}: make the "
                        "model files readable by others (tar --mode=a+rX when building "
                        "model.tar.gz) or run the container as root")
    if problems:
        print("error: " + " | ".join(problems), file=sys.stderr, flush=True)
        return EXIT_CONFIG

    from app import server

    return server.main(add)


if __name__ == "__main__":
    sys.exit(main())
