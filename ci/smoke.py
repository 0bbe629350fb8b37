#!/usr/bin/env python3
"""Post-deploy smoke test: is the new version serving?

Run by the pipeline's Deploy stage right after ``pulumi up`` (the buildspec runs ``make
deploy`` then ``make smoke``), and by hand: ``make smoke URL=https://...``. Checks, each with
bounded retries:

1. (optional, ``--ecs-cluster/--ecs-service/--expect-task-definition``) ECS runs the task
   definition this deploy registered: its PRIMARY deployment is that revision and not
   FAILED. A deployment the circuit breaker or an alarm rolled back can still leave
   ``pulumi up`` green (pulumi-aws#4487); this is where it turns red;
2. readiness: ``GET <url>/readyz`` answers 200 (the model is loaded);
3. (optional, ``--expect-manifest-sha256``) the model version served is the one deployed:
   ``GET <url>/v1/models/<model>/metadata`` reports that manifest hash;
4. one known prediction: ``POST <url>/v1/models/<model>:predict`` with an 8x8 digit "0"
   from scikit-learn's digits set must answer ``{"predictions": [[10 probabilities]]}``
   whose largest probability is the expected label.

Exit status 0 when both pass, 1 when the service is not serving correctly (the message says
what was seen), 2 on bad arguments. Standard library only: it runs in a bare CodeBuild image
before any virtualenv exists. The API key (header ``x-api-key``) comes from ``--api-key`` or
the ``API_KEY`` environment variable, never from the command line in CI logs.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

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


def check_ready(base: str, *, api_key, timeout) -> None:
    status, body = _request(f"{base}/readyz", body=None, api_key=api_key, timeout=timeout)
    if status != 200:
        raise SmokeFailure(f"GET /readyz answered {status}: {body[:200]!r}")


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


def check_manifest(base: str, model: str, expected: str, *, api_key, timeout) -> None:
    url = f"{base}/v1/models/{model}/metadata"
    status, body = _request(url, body=None, api_key=api_key, timeout=timeout)
    if status != 200:
        raise SmokeFailure(f"GET {url} answered {status}: {body[:200]!r}")
    try:
        served = json.loads(body)["manifest"]["sha256"]
    except (ValueError, KeyError, TypeError) as err:
        raise SmokeFailure(f"no manifest hash in {body[:200]!r}") from err
    if served != expected:
        raise SmokeFailure(f"the service serves model manifest {served[:16]}..., not the "
                           f"deployed {expected[:16]}... (an old task still answers, or the "
                           "deployment was rolled back)")


def check_prediction(base: str, model: str, *, api_key, timeout) -> list[float]:
    url = f"{base}/v1/models/{model}:predict"
    status, body = _request(url, body={"instances": [KNOWN_DIGIT]}, api_key=api_key,
                            timeout=timeout)
    if status != 200:
        raise SmokeFailure(f"POST {url} answered {status}: {body[:200]!r}")
    try:
        probs = json.loads(body)["predictions"][0]
    except (ValueError, KeyError, IndexError, TypeError) as err:
        raise SmokeFailure(f"unexpected prediction body {body[:200]!r}: {err}") from err
    if not (isinstance(probs, list) and len(probs) == 10
            and all(isinstance(p, (int, float)) and not math.isnan(p) for p in probs)):
        raise SmokeFailure(f"expected 10 probabilities, got {probs!r}")
    if abs(sum(probs) - 1.0) > 1e-3:
        raise SmokeFailure(f"probabilities sum to {sum(probs):.4f}, not 1: {probs!r}")
    label = max(range(10), key=probs.__getitem__)
    if label != KNOWN_LABEL:
        raise SmokeFailure(f"known digit {KNOWN_LABEL} predicted as {label}: {probs!r}")
    return probs


def run(url: str, *, model: str = "digits", api_key: str | None = None,
        attempts: int = 20, delay: float = 15.0, timeout: float = 10.0, log=print,
        expect_manifest_sha256: str | None = None,
        ecs: tuple[str, str, str] | None = None, run_command=subprocess.run) -> None:
    """Raise SmokeFailure unless the service at ``url`` is ready and predicts correctly.

    Defaults: 20 readiness attempts 15 s apart (5 min), enough for a rolling ECS deployment
    to finish behind the ALB but far below the build timeout. The prediction is tried at most
    3 times (a just-drained old task may answer once).
    """
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"URL must start with http:// or https://, got {url!r}")
    if ecs:
        cluster, service, task_definition = ecs
        _retry("ECS deployment",
               lambda: check_ecs(cluster, service, task_definition, run=run_command),
               attempts=attempts, delay=delay, log=log)
    _retry("readiness", lambda: check_ready(base, api_key=api_key, timeout=timeout),
           attempts=attempts, delay=delay, log=log)
    if expect_manifest_sha256:
        _retry("model version",
               lambda: check_manifest(base, model, expect_manifest_sha256, api_key=api_key,
                                      timeout=timeout),
               attempts=attempts, delay=delay, log=log)
    probs = _retry("prediction",
                   lambda: check_prediction(base, model, api_key=api_key, timeout=timeout),
                   attempts=min(3, attempts), delay=delay, log=log)
    log(f"smoke: OK {base}: ready, known digit {KNOWN_LABEL} predicted "
        f"(p={probs[KNOWN_LABEL]:.3f})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default=os.environ.get("SMOKE_URL"),
                        help="service base URL (default: $SMOKE_URL)")
    parser.add_argument("--model", default=os.environ.get("SMOKE_MODEL", "digits"))
    parser.add_argument("--api-key", default=os.environ.get("API_KEY") or None,
                        help="x-api-key header (default: $API_KEY)")
    parser.add_argument("--attempts", type=int, default=int(os.environ.get("SMOKE_ATTEMPTS", 20)))
    parser.add_argument("--delay", type=float, default=float(os.environ.get("SMOKE_DELAY", 15)))
    parser.add_argument("--timeout", type=float, default=10.0, help="per request, seconds")
    parser.add_argument("--expect-manifest-sha256", default=os.environ.get("SMOKE_MANIFEST_SHA256")
                        or None, help="the deployed model version's manifest hash")
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
        run(args.url, model=args.model, api_key=args.api_key, attempts=args.attempts,
            delay=args.delay, timeout=args.timeout,
            expect_manifest_sha256=args.expect_manifest_sha256,
            ecs=ecs_args if all(ecs_args) else None)
    except ValueError as err:
        parser.error(str(err))
    except SmokeFailure as err:
        print(f"smoke: FAILED: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
