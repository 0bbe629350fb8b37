#!/usr/bin/env python3
"""Post-deploy smoke test: is the new version serving?

Run by the pipeline's Deploy stage right after ``pulumi up`` (the buildspec runs ``make
deploy`` then ``make smoke``), and by hand: ``make smoke URL=https://...``. Checks, each with
bounded retries:

1. (optional, ``--ecs-cluster/--ecs-service/--expect-task-definition``) ECS runs the task
   definition this deploy registered: its PRIMARY deployment is that revision and not
   FAILED. A deployment the circuit breaker or an alarm rolled back can still leave
   ``pulumi up`` green (pulumi-aws#4487); this is where it turns red;
2. readiness: ``GET <url>/readyz`` answers 200 (every model is loaded);
3. (optional, ``--expect-models``, the stack's ``models`` output) the service serves exactly
   the deployed model versions, the default first (``/readyz``), and each version's
   ``GET /v1/models/<name>/versions/<v>/metadata`` reports the pinned manifest hash;
4. one prediction from each model version (the deployed ones, or without step 3 those
   ``/readyz`` lists): an instance built from the version's own metadata (its input shape
   and range) must be answered with its output shape, finite numbers, one per label for a
   classifier; where ``KNOWN_ANSWERS`` holds a known input for the model, the answer must be
   the known label (digits: a "0" from scikit-learn's digits set).

Exit status 0 when all pass, 1 when the service is not serving correctly (the message says
what was seen), 2 on bad arguments. Standard library only: it runs in a bare CodeBuild image
before any virtualenv exists. The API key (header ``x-api-key``) comes from ``--api-key`` or
the ``API_KEY`` environment variable, never from the command line in CI logs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request

# Known answers by model name: an input whose label a classifier must predict (whatever its
# version), and whether its outputs are probabilities (summing to 1). Add your model's.
KNOWN_ANSWERS = {
    # load_digits().data[0], a "0". Integers 0..16, row-major 8x8.
    "digits": {"instance": [
        0, 0, 5, 13, 9, 1, 0, 0,
        0, 0, 13, 15, 10, 15, 5, 0,
        0, 3, 15, 2, 0, 11, 8, 0,
        0, 4, 12, 0, 0, 8, 8, 0,
        0, 5, 8, 0, 0, 9, 8, 0,
        0, 4, 11, 0, 1, 12, 7, 0,
        0, 2, 14, 5, 10, 12, 0, 0,
        0, 0, 6, 13, 10, 0, 0, 0,
    ], "label": "0", "probabilities": True},
}
ENTRY = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]{0,63})/(?P<version>[A-Za-z0-9][A-Za-z0-9._-]{0,63})"
                   r"@sha256:(?P<sha256>[0-9a-f]{64})$")


class SmokeFailure(Exception):
    """The service is reachable or not, but it is not serving the expected answer."""


def _request(url: str, *, body: dict | None, api_key: str | None, timeout: float):
    data = None if body is None else json.dumps(body).encode()
    headers = {"accept": "application/json", "user-agent": "ml-app-smoke/1"}
    if body is not None:
        headers["content-type"] = "application/json"
    if api_key:
        headers["x-api-key"] = api_key
    req = urllib.request.Request(url, data=data, headers=headers,
                                 method="GET" if body is None else "POST")
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


def _get_json(url: str, *, api_key, timeout):
    status, body = _request(url, body=None, api_key=api_key, timeout=timeout)
    if status != 200:
        raise SmokeFailure(f"GET {url} answered {status}: {body[:200]!r}")
    try:
        return json.loads(body)
    except ValueError as err:
        raise SmokeFailure(f"GET {url}: not JSON: {body[:200]!r}") from err


def check_ready(base: str, *, api_key, timeout) -> dict:
    """/readyz's answer, once it is 200."""
    return _get_json(f"{base}/readyz", api_key=api_key, timeout=timeout)


def parse_models(text: str) -> list[tuple[str, str, str]]:
    """The stack's ``models`` output, ``name/version@sha256:<hex>,...``, as triples."""
    entries = [e.strip() for e in text.split(",") if e.strip()]
    found = [ENTRY.match(e) for e in entries]
    bad = [e for e, m in zip(entries, found) if not m]
    if bad or not entries:
        raise ValueError(f"--expect-models must be name/version@sha256:<64 hex>, comma-separated; "
                         f"got {text!r}")
    return [m.group("name", "version", "sha256") for m in found]


def _shown(models) -> str:
    return ", ".join(f"{n}/{v}@sha256:{s[:12]}..." for n, v, s in models) or "none"


def check_models(base: str, expected: list[tuple[str, str, str]], *, api_key, timeout) -> None:
    """The service serves exactly ``expected`` (default first), each with its pinned manifest."""
    ready = check_ready(base, api_key=api_key, timeout=timeout)
    served = [(m.get("name"), m.get("version"), m.get("sha256"))
              for m in ready.get("models") or [] if isinstance(m, dict)]
    if served != list(expected):
        raise SmokeFailure(f"the service serves {_shown(served)}, not the deployed "
                           f"{_shown(expected)} (an old task still answers, or the deployment "
                           "was rolled back)")
    for name, version, sha256 in expected:
        url = f"{base}/v1/models/{name}/versions/{version}/metadata"
        try:
            reported = _get_json(url, api_key=api_key, timeout=timeout)["manifest"]["sha256"]
        except (KeyError, TypeError) as err:
            raise SmokeFailure(f"no manifest hash in the metadata of {name}/{version}") from err
        if reported != sha256:
            raise SmokeFailure(f"{name} version {version} reports manifest {reported[:16]}..., "
                               f"not the deployed {sha256[:16]}...")


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


def check_prediction(base: str, name: str, version: str, *, api_key, timeout) -> str:
    """One prediction from ``name``/``version``; returns what was checked, for the log."""
    manifest = _get_json(f"{base}/v1/models/{name}/versions/{version}/metadata",
                         api_key=api_key, timeout=timeout).get("manifest") or {}
    try:
        known = KNOWN_ANSWERS.get(name)
        shape = manifest["output"]["shape"]
        size = math.prod(manifest["input"]["shape"])
        instance = known["instance"] if known and len(known["instance"]) == size \
            else _instance(manifest)
    except (KeyError, TypeError) as err:
        raise SmokeFailure(f"the metadata of {name}/{version} has no input and output "
                           f"description: {err}") from err
    url = f"{base}/v1/models/{name}/versions/{version}:predict"
    status, body = _request(url, body={"instances": [instance]}, api_key=api_key, timeout=timeout)
    if status != 200:
        raise SmokeFailure(f"POST {url} answered {status}: {body[:200]!r}")
    try:
        answer = json.loads(body)["predictions"][0]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise SmokeFailure(f"unexpected prediction body {body[:200]!r}: {err}") from err
    if not _finite_of_shape(answer, shape):
        raise SmokeFailure(f"{name}/{version}: expected finite numbers of shape {shape}, got "
                           f"{answer!r}"[:300])
    labels = manifest.get("labels")
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


def run(url: str, *, api_key: str | None = None, attempts: int = 20, delay: float = 15.0,
        timeout: float = 10.0, log=print, expect_models: list[tuple[str, str, str]] | None = None,
        ecs: tuple[str, str, str] | None = None, run_command=subprocess.run) -> None:
    """Raise SmokeFailure unless the service at ``url`` is ready, serves the deployed model
    versions (when given) and answers a prediction from each.

    Defaults: 20 readiness attempts 15 s apart (5 min), enough for a rolling ECS deployment
    to finish behind the ALB but far below the build timeout. Each prediction is tried at
    most 3 times (a just-drained old task may answer once).
    """
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"URL must start with http:// or https://, got {url!r}")
    if ecs:
        cluster, service, task_definition = ecs
        _retry("ECS deployment",
               lambda: check_ecs(cluster, service, task_definition, run=run_command),
               attempts=attempts, delay=delay, log=log)
    ready = _retry("readiness", lambda: check_ready(base, api_key=api_key, timeout=timeout),
                   attempts=attempts, delay=delay, log=log)
    if expect_models:
        _retry("model versions",
               lambda: check_models(base, expect_models, api_key=api_key, timeout=timeout),
               attempts=attempts, delay=delay, log=log)
        versions = [(name, version) for name, version, _ in expect_models]
    else:
        versions = [(m.get("name"), m.get("version")) for m in ready.get("models") or []] \
            or [(ready.get("model"), ready.get("version"))]
    checked = [_retry(f"prediction from {name}/{version}",
                      lambda n=name, v=version: check_prediction(base, n, v, api_key=api_key,
                                                                 timeout=timeout),
                      attempts=min(3, attempts), delay=delay, log=log)
               for name, version in versions]
    log(f"smoke: OK {base}: ready" + (", serves the deployed model versions" if expect_models
                                      else "") + "; " + "; ".join(checked))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SMOKE_URL"),
                        help="service base URL (default: $SMOKE_URL)")
    parser.add_argument("--api-key", default=os.environ.get("API_KEY") or None,
                        help="x-api-key header (default: $API_KEY)")
    parser.add_argument("--attempts", type=int, default=int(os.environ.get("SMOKE_ATTEMPTS", 20)))
    parser.add_argument("--delay", type=float, default=float(os.environ.get("SMOKE_DELAY", 15)))
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--expect-models", default=os.environ.get("SMOKE_MODELS") or None,
                        help="the deployed model versions, the stack's models output: "
                             "name/version@sha256:<hex>,... (default: $SMOKE_MODELS)")
    parser.add_argument("--ecs-cluster", default=os.environ.get("SMOKE_ECS_CLUSTER") or None)
    parser.add_argument("--ecs-service", default=os.environ.get("SMOKE_ECS_SERVICE") or None)
    parser.add_argument("--expect-task-definition",
                        default=os.environ.get("SMOKE_TASK_DEFINITION") or None,
                        help="task definition ARN the deploy registered (with --ecs-*)")
    args = parser.parse_args(argv)
    if not args.url:
        parser.error("no URL: pass --url or set SMOKE_URL")
    if args.attempts < 1 or args.delay < 0:
        parser.error("--attempts must be >= 1 and --delay >= 0")
    ecs_args = (args.ecs_cluster, args.ecs_service, args.expect_task_definition)
    if any(ecs_args) and not all(ecs_args):
        parser.error("--ecs-cluster, --ecs-service and --expect-task-definition go together")
    try:
        expected = parse_models(args.expect_models) if args.expect_models else None
        run(args.url, api_key=args.api_key, attempts=args.attempts, delay=args.delay,
            timeout=args.timeout, expect_models=expected,
            ecs=ecs_args if all(ecs_args) else None)
    except ValueError as err:
        parser.error(str(err))
    except SmokeFailure as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
