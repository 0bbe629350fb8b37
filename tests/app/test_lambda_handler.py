"""app/lambda_handler.py, the module awslambdaric imports: the app is built at import (Lambda's
init phase), so a model that cannot be trusted fails the import with the cause; requests and
metrics go through per invocation. Each case runs in a fresh interpreter, as Lambda starts one.
(tests/container/test_lambda.py runs the real runtime client in the image.)"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import MODEL_DIR, ROOT, serve_env

CALL = """
import json, sys
from pathlib import Path
from app import lambda_handler
event = json.loads(Path(sys.argv[1]).read_text())
print("RESULT " + json.dumps(lambda_handler.handler(event, None)))
print("LIMIT", lambda_handler.app.config["MAX_CONTENT_LENGTH"])
"""
EVENT = ROOT / "tests" / "app" / "function_url_events" / "iam_predict.json"


def run(**env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CALL, str(EVENT)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, env=serve_env(**env))


def test_import_builds_the_app_and_each_invocation_flushes_its_metrics(tmp_path):
    proc = run(MODEL_URI=str(MODEL_DIR), MODEL_CACHE_DIR=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    returned = next(i for i, ln in enumerate(lines) if ln.startswith("RESULT "))
    result = json.loads(lines[returned][7:])
    assert result["statusCode"] == 200 and "predictions" in json.loads(result["body"])
    # the EMF document is written before the invocation returns, not METRICS_FLUSH_SECONDS
    # later (nor at exit, which a frozen sandbox may never reach)
    emf = [json.loads(ln) for ln in lines[:returned] if ln.startswith('{"_aws"')]
    assert len(emf) == 1 and emf[0]["PredictionRequests"] == 1 and emf[0]["Predictions"] == 1
    assert "LIMIT 6291456" in lines                  # MAX_BODY_BYTES: the Function URL's 6 MB


def test_a_model_that_fails_its_hash_fails_the_import_naming_the_file(model_copy):
    data = bytearray((model_copy / "model.tflite").read_bytes())
    data[100] ^= 0x01
    (model_copy / "model.tflite").write_bytes(bytes(data))
    proc = run(MODEL_URI=str(model_copy))
    assert proc.returncode != 0 and "RESULT" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("app.manifest.ModelIntegrityError: model.tflite: sha256 mismatch"), last
