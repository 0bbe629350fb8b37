"""Service settings: read from the environment (or a mapping in tests), validated at start-up.

Every problem is reported at once, each naming the variable, the bad value, the rule and the
fix. A name that looks like one of ours but is not (``MODEL_URL``) is an error too: a typo
must not silently fall back to a default.

Each setting is one row of a table (``APP_RULES``, ``SERVER_RULES``): the variable, how its
text becomes a value, and the rule it must meet. ``_parse`` walks a table in one loop.

``MODEL_URI`` lists one or more model versions, comma-separated; ``MODEL_SHA256`` their pins
in the same order (an empty entry: no pin). The first version is the default model
(``/invocations``, the demo page); ``Settings.models`` pairs each URI with its pin.
"""

from __future__ import annotations

import difflib
import os
import re
import tempfile
import dataclasses
from dataclasses import dataclass
from typing import Callable, Mapping

# Variables that belong to this service. Anything else with one of these prefixes is a typo.
OUR_PREFIXES = ("MODEL_", "API_", "MAX_", "METRICS_", "LOG_", "SERVER_", "GUNICORN_")
DEFAULT_MODEL_URI = "model/artifacts/digits/1"
_SHA256 = re.compile(r"^(sha256:)?[0-9a-f]{64}$")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
FRONTS = ("nginx", "auto", "none")


class ConfigError(Exception):
    """Invalid settings; the message lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("invalid service configuration:\n  - " + "\n  - ".join(problems))


class _Invalid(ValueError):
    """A rule's complaint about one value; ``_parse`` prefixes the variable and the value."""


@dataclass(frozen=True)
class ModelSource:
    """One model version to serve: where it is, and the sha256 of its manifest.json (which
    pins the whole version), if pinned."""

    uri: str
    sha256: str | None = None


@dataclass(frozen=True)
class Settings:
    """What the Flask app needs. Field names are the environment variable names, lowercased."""

    model_uri: tuple[str, ...] = (DEFAULT_MODEL_URI,)   # the default model first
    model_sha256: tuple[str | None, ...] = ()            # one pin per URI (None: unpinned)
    # a factory: asked when settings are built, not at import (app/serve.py checks first)
    model_cache_dir: str = dataclasses.field(
        default_factory=lambda: os.path.join(tempfile.gettempdir(), "ml-app-models"))
    model_fetch_timeout: int = 20            # seconds for the whole S3 download, retries included
    api_key: str | None = None
    max_batch_size: int = 256
    max_body_bytes: int = 1024 * 1024
    log_level: str = "INFO"
    metrics_namespace: str = "ml-app"
    metrics_flush_seconds: float = 10.0
    metrics_enabled: bool = True

    @property
    def models(self) -> tuple[ModelSource, ...]:
        """The model versions to serve, in MODEL_URI's order (the first is the default)."""
        pins = self.model_sha256 or (None,) * len(self.model_uri)
        return tuple(ModelSource(uri, pin) for uri, pin in zip(self.model_uri, pins))


@dataclass(frozen=True)
class ServerSettings:
    """The HTTP front's knobs (app/server.py). Defaults fit a 2-vCPU Fargate task behind an
    ALB: every timeout is below ECS's and SageMaker's 30 s stop timeout or above the ALB's
    60 s idle timeout, as each needs to be."""

    bind: str = "0.0.0.0:8080"
    web_concurrency: int = 2                 # app workers: one per vCPU (design.md section 6)
    server_front: str = "nginx"              # nginx | auto (nginx if installed) | none
    server_header_timeout: int = 10          # s to receive the whole request head
    server_body_timeout: int = 10            # s allowed between two reads of a request body
    server_keepalive: int = 75               # above the ALB's 60 s idle timeout: no random 502s
    server_graceful_timeout: int = 25        # SIGTERM drain; below ECS's stopTimeout (30 s)


# --- rules: each turns the variable's text into a value or raises _Invalid ---------------

def _whole(lo: int, hi: int) -> Callable[[str], int]:
    def rule(raw: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise _Invalid(f"must be a whole number from {lo} to {hi}") from None
        if not lo <= value <= hi:
            raise _Invalid(f"must be from {lo} to {hi}")
        return value
    return rule


def _one_of(choices: tuple[str, ...], *, upper: bool = False) -> Callable[[str], str]:
    def rule(raw: str) -> str:
        value = raw.upper() if upper else raw
        if value not in choices:
            raise _Invalid(f"must be one of {', '.join(choices)}")
        return value
    return rule


def _model_uri_problem(uri: str) -> str | None:
    if "://" in uri and not uri.startswith(("file://", "s3://")):
        return "only local paths, file:// and s3:// are supported"
    if uri.startswith("s3://") and len(uri[5:].split("/", 1)) < 2:
        return "an s3:// URI needs a bucket and a key prefix, e.g. s3://my-bucket/models/digits/1"
    return None


def _each(raw: str, problem: Callable[[str], str | None], what: str) -> list[str]:
    """Split a comma-separated list; complain about each bad item (by position when there
    are several, so the message says which)."""
    items = [item.strip() for item in raw.split(",")]
    problems = []
    for n, item in enumerate(items, 1):
        why = problem(item) if item else None
        if why:
            problems.append(f"{what} {n} ({item[:200]!r}): {why}" if len(items) > 1 else why)
    if problems:
        raise _Invalid("; ".join(problems))
    return items


def _model_uris(raw: str) -> tuple[str, ...]:
    if not raw.strip():
        raise _Invalid("is empty: set it to a model version folder, a file:// or an s3:// URI "
                       "(e.g. s3://bucket/models/digits/1), or several separated by commas")
    uris = _each(raw, _model_uri_problem, "item")
    empty = [str(n) for n, uri in enumerate(uris, 1) if not uri]
    if empty:
        raise _Invalid(f"item {', '.join(empty)} of {len(uris)} is empty (two commas in a row, "
                       "or one at either end); list model versions separated by single commas")
    repeated = sorted({uri for uri in uris if uris.count(uri) > 1})
    if repeated:
        raise _Invalid(f"lists {', '.join(map(repr, repeated))} more than once; list each model "
                       "version once")
    return tuple(uris)


def _sha256_problem(pin: str) -> str | None:
    if not _SHA256.match(pin.lower()):
        return ("must be 64 hex digits (optionally 'sha256:' first), the sha256 of the "
                "version's manifest.json")
    return None


def _sha256s(raw: str) -> tuple[str | None, ...]:
    return tuple(pin.lower().removeprefix("sha256:") or None
                 for pin in _each(raw, _sha256_problem, "pin"))


def _api_key(raw: str) -> str | None:
    if raw and len(raw) < 16:
        raise _Invalid("is set but shorter than 16 characters: use a long random value "
                       "(e.g. `openssl rand -hex 32`), or unset it to disable the key")
    return raw or None


def _namespace(raw: str) -> str:
    if not raw or len(raw) > 255 or raw.startswith("AWS/"):
        raise _Invalid("1 to 255 characters, not starting with 'AWS/' (CloudWatch's rule)")
    return raw


def _boolean(raw: str) -> bool:
    if raw.lower() not in ("true", "false", "1", "0"):
        raise _Invalid("must be true or false")
    return raw.lower() in ("true", "1")


def _bind(raw: str) -> str:
    host, sep, port = raw.rpartition(":")
    # ASCII digits only: str.isdigit() and int() also take other scripts' ("８０８０"),
    # which nginx's listen does not (it would fail after the model loaded, not naming BIND).
    if not sep or not host or not (port.isascii() and port.isdigit()) \
            or not 1 <= int(port) <= 65535:
        raise _Invalid("must be host:port, e.g. 0.0.0.0:8080")
    return raw


def _port(raw: str) -> str:
    return f"0.0.0.0:{_whole(1, 65535)(raw)}"


# (variable, field, rule). A row whose variable is absent keeps the dataclass default.
APP_RULES = (
    ("MODEL_URI", "model_uri", _model_uris),
    ("MODEL_SHA256", "model_sha256", _sha256s),
    ("MODEL_CACHE_DIR", "model_cache_dir", str),
    ("MODEL_FETCH_TIMEOUT", "model_fetch_timeout", _whole(5, 600)),
    ("API_KEY", "api_key", _api_key),
    ("MAX_BATCH_SIZE", "max_batch_size", _whole(1, 10_000)),
    ("MAX_BODY_BYTES", "max_body_bytes", _whole(1024, 64 * 1024 * 1024)),
    ("LOG_LEVEL", "log_level", _one_of(LOG_LEVELS, upper=True)),
    ("METRICS_NAMESPACE", "metrics_namespace", _namespace),
    ("METRICS_FLUSH_SECONDS", "metrics_flush_seconds", _whole(1, 300)),
    ("METRICS_ENABLED", "metrics_enabled", _boolean),
)
SERVER_RULES = (
    ("PORT", "bind", _port),
    ("BIND", "bind", _bind),                  # after PORT: BIND wins when both are set
    ("WEB_CONCURRENCY", "web_concurrency", _whole(1, 64)),
    ("SERVER_FRONT", "server_front", _one_of(FRONTS)),
    ("SERVER_HEADER_TIMEOUT", "server_header_timeout", _whole(1, 60)),
    ("SERVER_BODY_TIMEOUT", "server_body_timeout", _whole(1, 60)),
    ("SERVER_KEEPALIVE", "server_keepalive", _whole(1, 3600)),
    ("SERVER_GRACEFUL_TIMEOUT", "server_graceful_timeout", _whole(1, 120)),
)
# gunicorn served this app before app/server.py did; a task definition that still sets its
# knobs gets told what replaced them rather than "not a setting".
RETIRED = {"GUNICORN_TIMEOUT": "SERVER_BODY_TIMEOUT and SERVER_HEADER_TIMEOUT",
           "GUNICORN_GRACEFUL_TIMEOUT": "SERVER_GRACEFUL_TIMEOUT",
           "GUNICORN_KEEPALIVE": "SERVER_KEEPALIVE",
           "GUNICORN_THREADS": "nothing (one request at a time per worker)",
           "GUNICORN_WORKER_CLASS": "nothing (the front is fixed: nginx + granian)"}

# CGI's names, which some WSGI servers (gunicorn) put into the environment: not typos.
CGI_NAMES = {"SERVER_SOFTWARE", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "SERVER_ADDR"}
APP_NAMES = {name for name, _, _ in APP_RULES}
SERVER_NAMES = {name for name, _, _ in SERVER_RULES}
KNOWN_NAMES = SERVER_NAMES | APP_NAMES


def _unknown(env: Mapping[str, str], strict: bool) -> list[str]:
    problems = []
    for key in env:
        if key in KNOWN_NAMES or (key in CGI_NAMES and not strict):
            continue
        if key in RETIRED:
            problems.append(f"{key}: gunicorn no longer serves this app; use {RETIRED[key]} "
                            "(see docs/api.md, Configuration)")
        elif strict or key.startswith(OUR_PREFIXES):
            hint = difflib.get_close_matches(key, sorted(KNOWN_NAMES), n=1)
            did_you_mean = f"; did you mean {hint[0]}?" if hint else ""
            problems.append(f"{key}: not a setting of this service{did_you_mean} "
                            "(see docs/api.md, Configuration)")
    return problems


def _parse(env: Mapping[str, str], rules, problems: list[str]) -> dict:
    values: dict = {}
    for name, field, rule in rules:
        if name not in env:
            continue
        try:
            values[field] = rule(env[name])
        except _Invalid as exc:
            problems.append(f"{name}={env[name]!r}: {exc}")
    return values


def load_settings(env: Mapping[str, str] | None = None, *, strict: bool = False) -> Settings:
    """Build Settings from ``env`` (default: the process environment).

    ``strict`` (used for the mapping given to ``create_app``) rejects every unknown key; the
    process environment is only checked for names that look like ours.
    """
    env = dict(os.environ if env is None else env)
    env.setdefault("MODEL_URI", DEFAULT_MODEL_URI)
    problems = _unknown(env, strict)
    values = _parse(env, APP_RULES, problems)
    _pair_pins(values, env, problems)
    if problems:
        raise ConfigError(problems)
    return Settings(**values)


def _pair_pins(values: dict, env: Mapping[str, str], problems: list[str]) -> None:
    """MODEL_SHA256 holds one pin per MODEL_URI entry, in the same order; unset or empty
    means no pins at all."""
    uris, pins = values.get("model_uri"), values.get("model_sha256")
    if uris is None or pins is None:
        return
    if pins == (None,):
        values["model_sha256"] = (None,) * len(uris)
    elif len(pins) != len(uris):
        problems.append(
            f"MODEL_SHA256={env['MODEL_SHA256']!r}: has {len(pins)} pin"
            f"{'s' if len(pins) != 1 else ''} but MODEL_URI lists {len(uris)} model version"
            f"{'s' if len(uris) != 1 else ''}; give one pin per version in MODEL_URI's order, "
            "comma-separated (leave an entry empty for no pin, e.g. '<sha256>,')")


def load_server_settings(env: Mapping[str, str] | None = None) -> ServerSettings:
    """The HTTP front's settings from the environment; errors name the variable and the rule."""
    env = dict(os.environ if env is None else env)
    problems: list[str] = []
    values = _parse(env, SERVER_RULES, problems)
    if problems:
        raise ConfigError(problems)
    return ServerSettings(**values)

