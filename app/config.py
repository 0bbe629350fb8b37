"""Service settings: read from the environment (or a mapping in tests), validated at start-up.

Every problem is reported at once, each naming the variable, the bad value, the rule and the
fix. A name that looks like one of ours but is not (``MODEL_URL``) is an error too: a typo
must not silently fall back to a default.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
from dataclasses import dataclass, fields
from typing import Mapping

# Variables that belong to this service. Anything else with one of these prefixes is a typo.
OUR_PREFIXES = ("MODEL_", "API_", "MAX_", "METRICS_", "LOG_", "GUNICORN_")
DEFAULT_MODEL_URI = "model/artifacts/digits/1"
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class ConfigError(Exception):
    """Invalid settings; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid service configuration:\n  - " + "\n  - ".join(problems))


@dataclass(frozen=True)
class Settings:
    """What the Flask app needs. Field names are the environment variable names, lowercased."""

    model_uri: str = DEFAULT_MODEL_URI
    model_sha256: str | None = None          # sha256 of manifest.json, pins the whole version
    model_cache_dir: str = os.path.join(tempfile.gettempdir(), "ml-app-models")
    api_key: str | None = None
    max_batch_size: int = 256
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    metrics_namespace: str = "ml-app"
    metrics_flush_seconds: float = 10.0
    metrics_enabled: bool = True


@dataclass(frozen=True)
class ServerSettings:
    """gunicorn's knobs (see app/gunicorn_conf.py). Defaults fit a 2-vCPU Fargate task."""

    bind: str = "0.0.0.0:8080"
    web_concurrency: int = 2                 # workers: one per vCPU (design.md section 6)
    gunicorn_threads: int = 1
    gunicorn_worker_class: str = "sync"
    gunicorn_timeout: int = 30
    gunicorn_graceful_timeout: int = 25      # below ECS's stopTimeout (30 s) so drains finish
    gunicorn_keepalive: int = 75             # above the ALB's 60 s idle timeout: no random 502s


SERVER_NAMES = {f.name.upper() for f in fields(ServerSettings)} | {"PORT"}
APP_NAMES = {f.name.upper() for f in fields(Settings)}
KNOWN_NAMES = SERVER_NAMES | APP_NAMES


def _int(problems, name, raw, lo, hi, fix=""):
    try:
        value = int(raw)
    except (TypeError, ValueError):
        problems.append(f"{name}={raw!r}: must be a whole number from {lo} to {hi}{fix}")
        return None
    if not lo <= value <= hi:
        problems.append(f"{name}={raw!r}: must be from {lo} to {hi}{fix}")
        return None
    return value


def _unknown(env: Mapping[str, str], strict: bool) -> list[str]:
    problems = []
    for key in env:
        if key in KNOWN_NAMES:
            continue
        if strict or key.startswith(OUR_PREFIXES):
            hint = difflib.get_close_matches(key, sorted(KNOWN_NAMES), n=1)
            did_you_mean = f"; did you mean {hint[0]}?" if hint else ""
            problems.append(f"{key}: not a setting of this service{did_you_mean} "
                            "(see docs/api.md, Configuration)")
    return problems


def load_settings(env: Mapping[str, str] | None = None, *, strict: bool = False) -> Settings:
    """Build Settings from ``env`` (default: the process environment).

    ``strict`` (used for the mapping given to ``create_app``) rejects every unknown key; the
    process environment is only checked for names that look like ours.
    """
    env = dict(os.environ if env is None else env)
    problems = _unknown(env, strict)
    values: dict = {}

    uri = env.get("MODEL_URI", Settings.model_uri)
    if not uri or not uri.strip():
        problems.append("MODEL_URI is empty: set it to a model version folder, a file:// "
                        "or an s3:// URI (e.g. s3://bucket/models/digits/1)")
    elif "://" in uri and not uri.startswith(("file://", "s3://")):
        problems.append(f"MODEL_URI={uri!r}: only local paths, file:// and s3:// are supported")
    elif uri.startswith("s3://") and len(uri[5:].split("/", 1)) < 2:
        problems.append(f"MODEL_URI={uri!r}: an s3:// URI needs a bucket and a key prefix, "
                        "e.g. s3://my-bucket/models/digits/1")
    values["model_uri"] = uri

    sha = env.get("MODEL_SHA256") or None
    if sha is not None:
        sha = sha.strip().lower()
        if not _SHA256.match(sha):
            problems.append(f"MODEL_SHA256={sha!r}: must be 64 hex digits (optionally "
                            "'sha256:' first), the sha256 of the version's manifest.json")
        sha = sha.removeprefix("sha256:")
    values["model_sha256"] = sha

    if "MODEL_CACHE_DIR" in env:
        values["model_cache_dir"] = env["MODEL_CACHE_DIR"]

    api_key = env.get("API_KEY")
    if api_key is not None and api_key != "" and len(api_key) < 16:
        problems.append("API_KEY is set but shorter than 16 characters: use a long random "
                        "value (e.g. `openssl rand -hex 32`), or unset it to disable the key")
    values["api_key"] = api_key or None

    if "MAX_BATCH_SIZE" in env:
        values["max_batch_size"] = _int(problems, "MAX_BATCH_SIZE", env["MAX_BATCH_SIZE"], 1, 10_000)
    if "MAX_BODY_BYTES" in env:
        values["max_body_bytes"] = _int(problems, "MAX_BODY_BYTES", env["MAX_BODY_BYTES"],
                                        1024, 64 * 1024 * 1024)

    level = env.get("LOG_LEVEL", Settings.log_level).upper()
    if level not in LOG_LEVELS:
        problems.append(f"LOG_LEVEL={env.get('LOG_LEVEL')!r}: must be one of {', '.join(LOG_LEVELS)}")
    values["log_level"] = level

    if "METRICS_NAMESPACE" in env:
        ns = env["METRICS_NAMESPACE"]
        if not ns or len(ns) > 255 or ns.startswith("AWS/"):
            problems.append(f"METRICS_NAMESPACE={ns!r}: 1 to 255 characters, not starting "
                            "with 'AWS/' (CloudWatch's rule)")
        values["metrics_namespace"] = ns
    if "METRICS_FLUSH_SECONDS" in env:
        values["metrics_flush_seconds"] = _int(problems, "METRICS_FLUSH_SECONDS",
                                               env["METRICS_FLUSH_SECONDS"], 1, 300)
    if "METRICS_ENABLED" in env:
        raw = env["METRICS_ENABLED"].lower()
        if raw not in ("true", "false", "1", "0"):
            problems.append(f"METRICS_ENABLED={env['METRICS_ENABLED']!r}: must be true or false")
        values["metrics_enabled"] = raw in ("true", "1")

    if problems:
        raise ConfigError(problems)
    return Settings(**values)


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """gunicorn's settings from the environment; errors name the variable and the rule."""
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    values: dict = {}
    if "BIND" in env:
        values["bind"] = env["BIND"]
    elif "PORT" in env:
        port = _int(problems, "PORT", env["PORT"], 1, 65535)
        values["bind"] = f"0.0.0.0:{port}"
    for name, lo, hi in (("WEB_CONCURRENCY", 1, 64), ("GUNICORN_THREADS", 1, 64),
                         ("GUNICORN_TIMEOUT", 1, 600), ("GUNICORN_GRACEFUL_TIMEOUT", 1, 120),
                         ("GUNICORN_KEEPALIVE", 1, 3600)):
        if name in env:
            values[name.lower()] = _int(problems, name, env[name], lo, hi)
    if "GUNICORN_WORKER_CLASS" in env:
        wc = env["GUNICORN_WORKER_CLASS"]
        if wc not in ("sync", "gthread"):
            problems.append(f"GUNICORN_WORKER_CLASS={wc!r}: must be sync or gthread "
                            "(the image ships no async worker libraries)")
        values["gunicorn_worker_class"] = wc
    if problems:
        raise ConfigError(problems)
    return ServerSettings(**values)
