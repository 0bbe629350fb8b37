"""The serving runtime never imports TensorFlow (design.md section 3)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import MODEL_DIR, ROOT

PROBE = f"""
import sys
from app import create_app
client = create_app({{"MODEL_URI": {str(MODEL_DIR)!r}, "METRICS_ENABLED": "false"}}).test_client()
assert client.post("/v1/models/digits:predict", json={{"instances": [[0] * 64]}}).status_code == 200
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "sklearn", "model"))
print("HEAVY=" + ",".join(heavy))
"""


def test_serving_a_prediction_loads_no_tensorflow():
    # A fresh interpreter: this test process has TensorFlow's training deps importable.
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    heavy = [ln for ln in out.stdout.splitlines() if ln.startswith("HEAVY=")]
    assert heavy == ["HEAVY="], f"serving imported: {heavy}"


def test_no_module_in_app_imports_training_packages():
    banned = {"tensorflow", "keras", "tf_keras", "sklearn", "model"}
    offenders = []
    files = sorted(Path(ROOT, "app").rglob("*.py"))
    assert len(files) >= 8
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in banned]
    assert offenders == []


def test_serving_requirements_have_no_tensorflow():
    reqs = (ROOT / "app" / "requirements.txt").read_text().lower()
    lines = [ln.split("==")[0].strip() for ln in reqs.splitlines() if ln.strip() and not ln.startswith("#")]
    assert "ai-edge-litert" in lines
    assert not [ln for ln in lines if "tensorflow" in ln or ln in ("keras", "scikit-learn")]
