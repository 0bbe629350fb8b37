#!/usr/bin/env python3
"""Post-deploy smoke test: is the new version serving, on the stack's target?

Run by the pipeline's Deploy stage right after ``pulumi up`` (the buildspec runs ``make
deploy`` then ``make smoke``, which reads the stack's outputs), and by hand: ``make smoke
URL=https://...``. Each check has bounded retries. By ``--target``:

ecs (the default)
  1. (optional, ``--ecs-cluster/--ecs-service/--expect-task-definition``) ECS runs the task
     definition this deploy registered: its PRIMARY deployment is that revision and not
     FAILED. A deployment the circuit breaker or an alarm rolled back can still leave
     ``pulumi up`` green (pulumi-aws#4487); this is where it turns red;
  2. readiness: ``GET <url>/readyz`` answers 200 (every model is loaded);
  3. (optional, ``--expect-models``: the stack's ``models`` output) the service serves
     exactly the deployed model versions, the default first (``/readyz``), and each
     version's ``GET <url>/v1/models/<name>/versions/<v>/metadata`` reports its pinned
     manifest hash;
  4. one prediction from each model version (the deployed ones, or without 3 those
     ``/readyz`` lists): an instance built from the version's own metadata (input shape and
     range) must be answered in its output shape with finite numbers; where
     ``KNOWN_ANSWERS`` holds a known input for the model, the answer must be its label
     (digits: an 8x8 "0" from scikit-learn's digits set).

lambda (``--url`` is the Function URL)
  1. (``--function``, ``--expect-version``) the ``live`` alias points at the version this
     deploy published: a rolled-back pipeline stage or a concurrent deploy moves it;
  2-4. as on ECS, every request signed with SigV4 for service ``lambda`` (botocore's
     SigV4Auth; the URL's auth is AWS_IAM), no API key.

sagemaker (``--endpoint``, ``--expect-endpoint-config``, ``--expect-models``)
  1. the endpoint is InService on the endpoint configuration this deploy made: a blue/green
     update that an alarm rolled back leaves it on the previous one (and ``pulumi up`` may
     still report success);
  2. ``InvokeEndpoint`` through ``sagemaker-runtime`` without ``CustomAttributes``, as a
     plain client calls it, as JSON and as ``text/csv`` (answered in the ``Accept`` type):
     the default model (the first of ``models``) answers, and the CSV line holds the JSON
     answer's numbers;
  3. each deployed model version, selected with ``CustomAttributes=
     'tfs-model-name=<name>,tfs-model-version=<v>'`` (SageMaker reaches /invocations only),
     with an instance built from that version's manifest as committed in this checkout
     (``model/artifacts/<name>/<version>``, after checking it is the pinned one): the answer's
     ``CustomAttributes``, which SageMaker forwards verbatim from the container, must name
     that model, version and pinned manifest sha256, and the answer must be finite numbers
     of the manifest's output shape (the known label where ``KNOWN_ANSWERS`` has one).

Exit status 0 when every check passes, 1 when the service is not serving correctly (the
message says what was seen), 2 on bad arguments. The ECS path needs the standard library
only (it runs in a bare CodeBuild image); SageMaker and Lambda need botocore, which the
program's virtualenv has (requirements.txt; ``make smoke`` uses it). Credentials and region
come from the environment as for the AWS CLI (the region also from the URL). The API key
(header ``x-api-key``, ECS only) comes from ``--api-key`` or the ``API_KEY`` environment
variable, never from the command line in CI logs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable

# load_digits().data[0], label 0. Integers 0..16, row-major 8x8.
KNOWN_DIGIT = [
    0, 0, 5, 13, 9, 1, 0, 0,
    0, 0, 13, 15, 10, 15, 5, 0,
    0, 3, 15, 2, 0, 11, 8, 0,
    0, 4, 12, 0, 0, 8, 8, 0,
    0, 5, 8, 0, 0, 9, 8, 0,
    0, 4, 11, 0, 1, 12, 7, 0,
    0, 2, 14, 5, 10, 12, 0, 0,
    0, 0, 6, 13, 10, 0, 0, 0,
]
KNOWN_LABEL = 0
# Known answers by model name: an input whose label a classifier must predict (whatever its
# version), and whether its outputs are probabilities (summing to 1). Add your model's.
KNOWN_ANSWERS = {"digits": {"instance": KNOWN_DIGIT, "label": str(KNOWN_LABEL),
                            "probabilities": True}}
# One entry of the stack's models output (ml-app:models): name/version@sha256:<manifest's>.
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/"
                   r"(?P<version>[A-Za-z0-9][A-Za-z0-9._-]{0,63})@sha256:(?P<sha256>[0-9a-f]{64})$")
TARGETS = ("ecs", "sagemaker", "lambda")
# The released versions in the checkout the Deploy build runs in (the deployed commit).
ARTIFACTS = Path(__file__).resolve().parents[1] / "model" / "artifacts"
JSON, CSV = "application/json", "text/csv"
# The region in a Function URL's or SageMaker runtime URL's host name.
URL_REGION = re.compile(r"^https://(?:[^/]*\.)?(?:lambda-url|runtime\.sagemaker)\.([a-z0-9-]+)\.")

# (method, url, headers, body) -> the headers to send: how a request is authenticated.
Signer = Callable[[str, str, dict, bytes | None], dict]


class SmokeFailure(Exception):
    """The service is reachable or not, but it is not serving the expected answer."""


def _request(url: str, *, body: dict | None, api_key: str | None, timeout: float,
             sign: Signer | None = None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"accept": "application/json", "user-agent": "ml-app-smoke/1"}
    if body is not None:
        headers["content-type"] = "application/json"
    if api_key:
        headers["x-api-key"] = api_key
    method = "GET" if body is None else "POST"
    if sign is not None:
        headers = sign(method, url, headers, data)
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (http/https only, checked)
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _retry(what: str, attempt, *, attempts: int, delay: float, log) -> object:
    """Call ``attempt()`` until it returns without raising, at most ``attempts`` times."""
    last = None
    for i in range(1, attempts + 1):
        try:
            return attempt()
        except (SmokeFailure, OSError) as err:  # URLError, timeouts, resets are OSErrors
            last = err
            log(f"smoke: {what}: attempt {i}/{attempts} failed: {err}")
            if i < attempts:
                time.sleep(delay)
    raise SmokeFailure(f"{what} still failing after {attempts} attempts: {last}")


def _get_json(url: str, *, api_key, timeout, sign: Signer | None = None):
    status, body = _request(url, body=None, api_key=api_key, timeout=timeout, sign=sign)
    if status != 200:
        raise SmokeFailure(f"GET {url} answered {status}: {body[:200]!r}")
    try:
        return json.loads(body)
    except ValueError as err:
        raise SmokeFailure(f"GET {url}: not JSON: {body[:200]!r}") from err


def check_ready(base: str, *, api_key, timeout, sign: Signer | None = None) -> dict:
    """/readyz's answer, once it is 200."""
    return _get_json(f"{base}/readyz", api_key=api_key, timeout=timeout, sign=sign)


def check_ecs(cluster: str, service: str, task_definition: str, *, run=subprocess.run) -> None:
    """ECS's PRIMARY deployment runs ``task_definition`` and has not failed (aws CLI)."""
    try:
        result = run(["aws", "ecs", "describe-services", "--cluster", cluster, "--services",
                      service, "--output", "json"], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired as err:
        raise SmokeFailure(f"aws ecs describe-services timed out: {err}") from err
    if result.returncode != 0:
        raise SmokeFailure(f"aws ecs describe-services failed: {result.stderr.strip()[:300]}")
    try:
        services = json.loads(result.stdout).get("services") or []
    except (ValueError, AttributeError) as err:
        raise SmokeFailure(f"unreadable describe-services output: {err}") from err
    if not services:
        raise SmokeFailure(f"ECS service {cluster}/{service} not found")
    primary = [d for d in services[0].get("deployments", []) if d.get("status") == "PRIMARY"]
    if not primary:
        raise SmokeFailure(f"ECS service {cluster}/{service} has no PRIMARY deployment")
    running, state = primary[0].get("taskDefinition"), primary[0].get("rolloutState")
    if running != task_definition:
        raise SmokeFailure(f"ECS runs {running}, not {task_definition} that this deploy "
                           "registered: the deployment was rolled back (circuit breaker or "
                           "deployment alarm); see the service's events")
    if state == "FAILED":
        raise SmokeFailure(f"ECS deployment of {running} FAILED: "
                           f"{primary[0].get('rolloutStateReason', '')}")
    if state == "IN_PROGRESS":
        raise SmokeFailure(f"ECS deployment of {running} still IN_PROGRESS")


def parse_models(text: str) -> list[tuple[str, str, str]]:
    """The stack's ``models`` output, ``name/version@sha256:<hex>,...``, as triples."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    found = [ENTRY.match(e) for e in entries]
    if not entries or not all(found):
        raise ValueError("--expect-models must be name/version@sha256:<64 hex>, comma-"
                         f"separated; got {text!r}")
    return [m.group("name", "version", "sha256") for m in found]


def _shown(models) -> str:
    return ", ".join(f"{n}/{v}@sha256:{(s or '')[:12]}..." for n, v, s in models) or "none"


def check_models(base: str, expected: list[tuple[str, str, str]], *, api_key, timeout,
                 sign: Signer | None = None) -> None:
    """The service serves exactly ``expected`` (default first), each with its pinned manifest."""
    ready = check_ready(base, api_key=api_key, timeout=timeout, sign=sign)
    served = [(m.get("name"), m.get("version"), m.get("sha256"))
              for m in ready.get("models") or [] if isinstance(m, dict)]
    if served != list(expected):
        raise SmokeFailure(f"the service serves {_shown(served)}, not the deployed "
                           f"{_shown(expected)} (an old task still answers, or the deployment "
                           "was rolled back)")
    for name, version, sha256 in expected:
        url = f"{base}/v1/models/{name}/versions/{version}/metadata"
        try:
            reported = _get_json(url, api_key=api_key, timeout=timeout,
                                 sign=sign)["manifest"]["sha256"]
        except (KeyError, TypeError) as err:
            raise SmokeFailure(f"no manifest hash in the metadata of {name}/{version}") from err
        if reported != sha256:
            raise SmokeFailure(f"{name} version {version} reports manifest {reported[:16]}..., "
                               f"not the deployed {sha256[:16]}...")


def _instance(manifest: dict) -> list:
    """A valid instance from a version's manifest (as metadata serves it): every element the
    midpoint of the declared range (a whole number for integer inputs), flat."""
    spec = manifest["input"]
    middle = (spec["min"] + spec["max"]) / 2
    if spec.get("dtype", "float32") != "float32":
        middle = math.floor(middle)
    return [middle] * math.prod(spec["shape"])


def _finite_of_shape(value, shape: list[int]) -> bool:
    if not shape:
        return isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
    return isinstance(value, list) and len(value) == shape[0] \
        and all(_finite_of_shape(v, shape[1:]) for v in value)


def instance_for(name: str, version: str, manifest: dict) -> list:
    """The instance to send ``name``/``version``: the known input where ``KNOWN_ANSWERS``
    has one of the manifest's input size, else one generated from the manifest."""
    try:
        known = KNOWN_ANSWERS.get(name)
        size = math.prod(manifest["input"]["shape"])
        return known["instance"] if known and len(known["instance"]) == size \
            else _instance(manifest)
    except (KeyError, TypeError) as err:
        raise SmokeFailure(f"the manifest of {name}/{version} has no input description: "
                           f"{err}") from err


def first_prediction(body: bytes) -> object:
    """The answer for the first instance of a JSON prediction body."""
    try:
        return json.loads(body)["predictions"][0]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise SmokeFailure(f"unexpected prediction body {body[:200]!r}: {err}") from err


def check_answer(name: str, version: str, manifest: dict, instance: list, answer) -> str:
    """The answer is finite numbers of the manifest's output shape, and for a known input its
    label; returns what was checked, for the log."""
    try:
        shape = manifest["output"]["shape"]
    except (KeyError, TypeError) as err:
        raise SmokeFailure(f"the manifest of {name}/{version} has no output description: "
                           f"{err}") from err
    if not _finite_of_shape(answer, shape):
        raise SmokeFailure(f"{name}/{version}: expected finite numbers of shape {shape}, got "
                           f"{answer!r}"[:300])
    known, labels = KNOWN_ANSWERS.get(name), manifest.get("labels")
    if not (known and labels and instance is known["instance"]):
        return f"{name}/{version} answered a generated instance with shape {shape}"
    if known.get("probabilities") and abs(sum(answer) - 1.0) > 1e-3:
        raise SmokeFailure(f"{name}/{version}: probabilities sum to {sum(answer):.4f}, not 1: "
                           f"{answer!r}")
    predicted = labels[max(range(len(answer)), key=answer.__getitem__)]
    if predicted != known["label"]:
        raise SmokeFailure(f"{name}/{version}: known input {known['label']!r} predicted as "
                           f"{predicted!r}: {answer!r}")
    return f"{name}/{version} predicted the known {known['label']!r}"


def check_prediction(base: str, name: str, version: str, *, api_key, timeout,
                     sign: Signer | None = None) -> str:
    """One prediction from ``name``/``version`` (the instance from its metadata's manifest);
    returns what was checked, for the log."""
    manifest = _get_json(f"{base}/v1/models/{name}/versions/{version}/metadata",
                         api_key=api_key, timeout=timeout, sign=sign).get("manifest") or {}
    instance = instance_for(name, version, manifest)
    url = f"{base}/v1/models/{name}/versions/{version}:predict"
    status, body = _request(url, body={"instances": [instance]}, api_key=api_key,
                            timeout=timeout, sign=sign)
    if status != 200:
        raise SmokeFailure(f"POST {url} answered {status}: {body[:200]!r}")
    return check_answer(name, version, manifest, instance, first_prediction(body))


# ----------------------------------------------------------------- SageMaker, Lambda --
def region_of(url: str | None, given: str | None = None) -> str:
    """The region to call: given, else the URL's (Function URL, SageMaker runtime), else
    the environment's (as the AWS CLI reads it)."""
    found = URL_REGION.match(url or "")
    region = given or (found.group(1) if found else None) \
        or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    if not region:
        raise ValueError("no region: pass --region (or set AWS_REGION)")
    return region


def aws_client(service: str, region: str):
    """A botocore client with the environment's credentials (CodeBuild's role)."""
    import botocore.session  # only SageMaker and Lambda need it (the program's venv has it)

    return botocore.session.get_session().create_client(service, region_name=region)


def sigv4_signer(credentials, region: str, service: str = "lambda") -> Signer:
    """Sign each request with SigV4 as a Function URL with AWS_IAM auth requires (botocore's
    SigV4Auth: host, date, the body's hash, the session token if any)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest

    def sign(method: str, url: str, headers: dict, data: bytes | None) -> dict:
        request = AWSRequest(method=method, url=url, data=data or b"", headers=headers)
        SigV4Auth(credentials.get_frozen_credentials(), service, region).add_auth(request)
        return dict(request.headers.items())
    return sign


def check_alias(client, function: str, alias: str, expected_version: str) -> None:
    """The alias serves the version this deploy published (Lambda GetAlias)."""
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        found = client.get_alias(FunctionName=function, Name=alias)
    except (BotoCoreError, ClientError) as err:
        raise SmokeFailure(f"lambda get-alias {function}:{alias} failed: {err}") from err
    version = found.get("FunctionVersion")
    if version != expected_version:
        raise SmokeFailure(f"alias {function}:{alias} points at version {version}, not "
                           f"{expected_version} that this deploy published (a rollback or "
                           "another deploy moved it)")


def check_endpoint(client, endpoint: str, expected_config: str) -> None:
    """The endpoint is InService on the configuration this deploy made (DescribeEndpoint)."""
    from botocore.exceptions import BotoCoreError, ClientError
    try:
        found = client.describe_endpoint(EndpointName=endpoint)
    except (BotoCoreError, ClientError) as err:
        raise SmokeFailure(f"sagemaker describe-endpoint {endpoint} failed: {err}") from err
    status, config = found.get("EndpointStatus"), found.get("EndpointConfigName")
    if status != "InService":
        raise SmokeFailure(f"endpoint {endpoint} is {status}: "
                           f"{found.get('FailureReason') or 'not serving yet'}")
    if config != expected_config:
        raise SmokeFailure(f"endpoint {endpoint} serves {config}, not {expected_config} that "
                           "this deploy made: the blue/green update was rolled back (an "
                           "alarm fired during the baking period; see the endpoint's events "
                           "and its alarms)")


def committed_manifest(artifacts: Path, name: str, version: str, sha256: str) -> dict:
    """``name``/``version``'s manifest as committed in the checkout (the Deploy build's
    source is the deployed commit), once its sha256 is the deployed pin."""
    path = artifacts / name / version / "manifest.json"
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SmokeFailure(f"{path}: {err.strerror}: the SageMaker smoke test builds each "
                           "model's request from its committed manifest; run it in a checkout "
                           "of the deployed commit (or pass --artifacts)") from err
    found = hashlib.sha256(raw).hexdigest()
    if found != sha256:
        raise SmokeFailure(f"{path} has sha256 {found[:16]}..., not the deployed "
                           f"{sha256[:16]}...: this checkout is not the deployed commit")
    try:
        return json.loads(raw)
    except ValueError as err:
        raise SmokeFailure(f"{path}: not JSON: {err}") from err


def custom_attributes(text: str | None) -> dict[str, str]:
    """SageMaker's CustomAttributes as key=value pairs, comma-separated."""
    pairs = (part.split("=", 1) for part in (text or "").split(",") if "=" in part)
    return {key.strip(): value.strip() for key, value in pairs}


def invoke(runtime, endpoint: str, body: bytes, mime: str,
           attributes: str | None = None) -> tuple[bytes, str | None]:
    """InvokeEndpoint with ``body`` in ``mime``, answered in ``mime``: (the answer's body,
    its CustomAttributes: what the container sent in X-Amzn-SageMaker-Custom-Attributes)."""
    from botocore.exceptions import BotoCoreError, ClientError
    options = {"CustomAttributes": attributes} if attributes else {}
    shown = f"{endpoint} ({mime}{', CustomAttributes ' + attributes if attributes else ''})"
    try:
        answer = runtime.invoke_endpoint(EndpointName=endpoint, Body=body, ContentType=mime,
                                         Accept=mime, **options)
    except (BotoCoreError, ClientError) as err:
        raise SmokeFailure(f"InvokeEndpoint {shown} failed: {err}") from err
    if answer.get("ContentType", "").split(";")[0].strip() != mime:
        raise SmokeFailure(f"InvokeEndpoint {shown}: asked for {mime}, answered "
                           f"{answer.get('ContentType')!r}")
    return answer["Body"].read(), answer.get("CustomAttributes")


def check_answered_by(attributes: str | None, model: tuple[str, str, str], what: str) -> None:
    """The answer's CustomAttributes name ``model`` (name, version, manifest sha256)."""
    name, version, sha256 = model
    found = custom_attributes(attributes)
    answered = (found.get("tfs-model-name"), found.get("tfs-model-version"),
                found.get("manifest-sha256"))
    if answered == (None, None, None):
        raise SmokeFailure(f"{what}: the answer has no CustomAttributes naming the model that "
                           f"answered (got {attributes!r}); the image sends them from this "
                           "release on: is the endpoint running an older image?")
    if answered != model:
        raise SmokeFailure(f"{what}: answered by {_shown([answered])}, not the deployed "
                           f"{_shown([model])} (an older endpoint configuration still "
                           "serves, or the model's bytes differ from the pin)")


def check_endpoint_default(runtime, endpoint: str, model: tuple[str, str, str],
                           manifest: dict) -> str:
    """The default model as a client without CustomAttributes reaches it, as JSON and as
    CSV: the default version answers, and the CSV line holds the JSON answer's numbers."""
    name, version, _ = model
    instance = instance_for(name, version, manifest)
    payload, attributes = invoke(runtime, endpoint,
                                 json.dumps({"instances": [instance]}).encode(), JSON)
    check_answered_by(attributes, model, f"InvokeEndpoint {endpoint} (JSON, no model named)")
    answer = first_prediction(payload)
    checked = check_answer(name, version, manifest, instance, answer)
    payload, attributes = invoke(runtime, endpoint,
                                 ",".join(map(str, instance)).encode() + b"\n", CSV)
    check_answered_by(attributes, model, f"InvokeEndpoint {endpoint} (CSV, no model named)")
    lines = payload.decode(errors="replace").strip().splitlines()
    try:
        numbers = [float(cell) for cell in lines[0].split(",")] if len(lines) == 1 else None
    except ValueError as err:
        raise SmokeFailure(f"unexpected CSV answer {payload[:200]!r}: {err}") from err
    if numbers is None:
        raise SmokeFailure(f"expected one CSV line for one instance, got {payload[:200]!r}")
    expected = list(_flat(answer))
    if len(numbers) != len(expected) or not all(
            math.isclose(a, b, rel_tol=1e-6, abs_tol=1e-12) for a, b in zip(numbers, expected)):
        raise SmokeFailure(f"{name}/{version}: the CSV answer {payload[:200]!r} is not the "
                           f"JSON answer {expected!r}"[:400])
    return f"the default {checked}, as JSON and CSV"


def _flat(value):
    if isinstance(value, list):
        for item in value:
            yield from _flat(item)
    else:
        yield value


def check_endpoint_model(runtime, endpoint: str, model: tuple[str, str, str],
                         manifest: dict) -> str:
    """One deployed version, selected with CustomAttributes: it answers (its CustomAttributes
    name it and its pinned manifest), in its output shape."""
    name, version, _ = model
    instance = instance_for(name, version, manifest)
    selector = f"tfs-model-name={name},tfs-model-version={version}"
    payload, attributes = invoke(runtime, endpoint,
                                 json.dumps({"instances": [instance]}).encode(), JSON, selector)
    check_answered_by(attributes, model, f"InvokeEndpoint {endpoint} ({selector})")
    return check_answer(name, version, manifest, instance, first_prediction(payload))


# ---------------------------------------------------------------------------- targets --
def _check_service(base: str, *, api_key, attempts, delay, timeout, log,
                   expect_models: list[tuple[str, str, str]] | None,
                   sign: Signer | None = None) -> str:
    """Readiness, the deployed model versions, a prediction from each: the ECS and Lambda
    paths. Returns what was checked, for the log."""
    ready = _retry("readiness",
                   lambda: check_ready(base, api_key=api_key, timeout=timeout, sign=sign),
                   attempts=attempts, delay=delay, log=log)
    if expect_models:
        _retry("model versions",
               lambda: check_models(base, expect_models, api_key=api_key, timeout=timeout,
                                    sign=sign),
               attempts=attempts, delay=delay, log=log)
        versions = [(name, version) for name, version, _ in expect_models]
    else:
        versions = [(m.get("name"), m.get("version")) for m in ready.get("models") or []] \
            or [(ready.get("model"), ready.get("version"))]
    # Each at most 3 times (a just-drained old task may answer once).
    checked = [_retry(f"prediction from {name}/{version}",
                      lambda n=name, v=version: check_prediction(
                          base, n, v, api_key=api_key, timeout=timeout, sign=sign),
                      attempts=min(3, attempts), delay=delay, log=log)
               for name, version in versions]
    return (("serves the deployed model versions; " if expect_models else "")
            + "; ".join(checked))


def _base(url: str | None) -> str:
    base = (url or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"URL must start with http:// or https://, got {url!r}")
    return base


def run(url: str, *, api_key: str | None = None, attempts: int = 20, delay: float = 15.0,
        timeout: float = 10.0, log=print, expect_models: list[tuple[str, str, str]] | None = None,
        ecs: tuple[str, str, str] | None = None, run_command=subprocess.run) -> None:
    """ECS: raise SmokeFailure unless the service at ``url`` is ready, serves the deployed
    model versions (when given) and answers a prediction from each.

    Defaults: 20 readiness attempts 15 s apart (5 min), enough for a rolling ECS deployment
    to finish behind the ALB but far below the build timeout.
    """
    base = _base(url)
    if ecs:
        cluster, service, task_definition = ecs
        _retry("ECS deployment",
               lambda: check_ecs(cluster, service, task_definition, run=run_command),
               attempts=attempts, delay=delay, log=log)
    checked = _check_service(base, api_key=api_key, attempts=attempts, delay=delay,
                             timeout=timeout, log=log, expect_models=expect_models)
    log(f"smoke: OK {base}: ready, {checked}")


def run_lambda(url: str, *, function: str | None, expect_version: str | None,
               alias: str = "live", region: str | None = None,
               attempts: int = 20, delay: float = 15.0, timeout: float = 10.0, log=print,
               expect_models: list[tuple[str, str, str]] | None = None, client=None,
               credentials=None) -> None:
    """Lambda: the alias serves this deploy's version, then readiness, the model versions
    and a prediction from each through the Function URL, each request signed with SigV4
    (``client`` and ``credentials``: botocore's, from the environment unless given)."""
    base = _base(url)
    region = region_of(base, region)
    if credentials is None:
        import botocore.session
        credentials = botocore.session.get_session().get_credentials()
        if credentials is None:
            raise SmokeFailure("no AWS credentials to sign the Function URL requests with")
    if function and expect_version:
        client = client or aws_client("lambda", region)
        _retry("live alias", lambda: check_alias(client, function, alias, expect_version),
               attempts=attempts, delay=delay, log=log)
    checked = _check_service(base, api_key=None, attempts=attempts, delay=delay,
                             timeout=timeout, log=log, expect_models=expect_models,
                             sign=sigv4_signer(credentials, region))
    log(f"smoke: OK {base}: alias {alias} on version {expect_version or '?'}, ready, "
        f"{checked} (SigV4)")


def run_sagemaker(endpoint: str, *, expect_config: str | None,
                  expect_models: list[tuple[str, str, str]], artifacts: Path = ARTIFACTS,
                  region: str | None = None, url: str | None = None, attempts: int = 20,
                  delay: float = 15.0, log=print, control=None, runtime=None) -> None:
    """SageMaker: the endpoint is InService on this deploy's configuration; then through
    InvokeEndpoint the default model (no CustomAttributes) as JSON and CSV, and each deployed
    version selected by CustomAttributes, each answer naming the version and manifest that
    answered (``control``: a ``sagemaker`` client, ``runtime``: a ``sagemaker-runtime``
    client; from the environment unless given)."""
    manifests = {m: committed_manifest(artifacts, *m) for m in expect_models}
    region = region_of(url, region)
    if expect_config:
        control = control or aws_client("sagemaker", region)
        _retry("endpoint configuration",
               lambda: check_endpoint(control, endpoint, expect_config),
               attempts=attempts, delay=delay, log=log)
    runtime = runtime or aws_client("sagemaker-runtime", region)
    default = expect_models[0]
    # Each at most 3 times (instances of the previous configuration may drain).
    checked = [_retry("InvokeEndpoint (the default model)",
                      lambda: check_endpoint_default(runtime, endpoint, default,
                                                     manifests[default]),
                      attempts=min(3, attempts), delay=delay, log=log)]
    checked += [_retry(f"InvokeEndpoint ({m[0]}/{m[1]})",
                       lambda m=m: check_endpoint_model(runtime, endpoint, m, manifests[m]),
                       attempts=min(3, attempts), delay=delay, log=log)
                for m in expect_models]
    log(f"smoke: OK endpoint {endpoint} on {expect_config or '?'}: each deployed version "
        f"answered, named by its CustomAttributes with its pinned manifest; "
        + "; ".join(checked))


def main(argv: list[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", choices=TARGETS, default=env("SMOKE_TARGET") or "ecs",
                        help="where the stack runs the image (default: $SMOKE_TARGET or ecs)")
    parser.add_argument("--url", default=env("SMOKE_URL"),
                        help="service base URL: the ALB's or the Function URL (default: "
                             "$SMOKE_URL); SageMaker: its invocation URL, for the region")
    parser.add_argument("--api-key", default=env("API_KEY") or None,
                        help="x-api-key header, ECS only (default: $API_KEY)")
    parser.add_argument("--attempts", type=int, default=int(env("SMOKE_ATTEMPTS", 20)))
    parser.add_argument("--delay", type=float, default=float(env("SMOKE_DELAY", 15)))
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--region", default=env("SMOKE_REGION") or None,
                        help="SageMaker and Lambda (default: from the URL, else $AWS_REGION)")
    parser.add_argument("--expect-models", default=env("SMOKE_MODELS") or None,
                        help="the deployed model versions, the stack's models output: "
                             "name/version@sha256:<hex>,... (default: $SMOKE_MODELS)")
    ecs = parser.add_argument_group("ecs")
    ecs.add_argument("--ecs-cluster", default=env("SMOKE_ECS_CLUSTER") or None)
    ecs.add_argument("--ecs-service", default=env("SMOKE_ECS_SERVICE") or None)
    ecs.add_argument("--expect-task-definition", default=env("SMOKE_TASK_DEFINITION") or None,
                     help="task definition ARN the deploy registered (with --ecs-*)")
    sagemaker = parser.add_argument_group("sagemaker")
    sagemaker.add_argument("--endpoint", default=env("SMOKE_ENDPOINT") or None)
    sagemaker.add_argument("--expect-endpoint-config",
                           default=env("SMOKE_ENDPOINT_CONFIG") or None,
                           help="the endpoint configuration the deploy made")
    sagemaker.add_argument("--artifacts", type=Path,
                           default=Path(env("SMOKE_ARTIFACTS") or ARTIFACTS),
                           help="the released versions in the deployed checkout, for each "
                                "model's request (default: model/artifacts beside ci/)")
    function = parser.add_argument_group("lambda")
    function.add_argument("--function", default=env("SMOKE_FUNCTION") or None)
    function.add_argument("--alias", default=env("SMOKE_ALIAS") or "live")
    function.add_argument("--expect-version", default=env("SMOKE_FUNCTION_VERSION") or None,
                          help="the function version the deploy published (with --function)")
    args = parser.parse_args(argv)
    if args.attempts < 1 or args.delay < 0:
        parser.error("--attempts must be >= 1 and --delay >= 0")
    common = {"attempts": args.attempts, "delay": args.delay}
    try:
        expected = parse_models(args.expect_models) if args.expect_models else None
        if args.target == "sagemaker":
            if not args.endpoint:
                parser.error("--target sagemaker needs --endpoint (or $SMOKE_ENDPOINT)")
            if not expected:
                parser.error("--target sagemaker needs --expect-models (the stack's models "
                             "output, or $SMOKE_MODELS): each deployed version is invoked")
            run_sagemaker(args.endpoint, expect_config=args.expect_endpoint_config,
                          expect_models=expected, artifacts=args.artifacts,
                          region=args.region, url=args.url, **common)
        elif args.target == "lambda":
            if not args.url:
                parser.error("no URL: pass --url (the Function URL) or set SMOKE_URL")
            if bool(args.function) != bool(args.expect_version):
                parser.error("--function and --expect-version go together")
            run_lambda(args.url, function=args.function, expect_version=args.expect_version,
                       alias=args.alias, region=args.region, timeout=args.timeout,
                       expect_models=expected, **common)
        else:
            if not args.url:
                parser.error("no URL: pass --url or set SMOKE_URL")
            ecs_args = (args.ecs_cluster, args.ecs_service, args.expect_task_definition)
            if any(ecs_args) and not all(ecs_args):
                parser.error("--ecs-cluster, --ecs-service and --expect-task-definition go "
                             "together")
            run(args.url, api_key=args.api_key, timeout=args.timeout, expect_models=expected,
                ecs=ecs_args if all(ecs_args) else None, **common)
    except ValueError as err:
        parser.error(str(err))
    except SmokeFailure as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
