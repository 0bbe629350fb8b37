"""The model versions one process serves: loaded from MODEL_URI, held by name and version.

    MODEL_URI=model/artifacts/digits/1,model/artifacts/diabetes/1

Each version is fetched, verified against its manifest (and its pin, MODEL_SHA256), loaded
into its own LiteRT interpreter and warmed up before anything is served; requests are
validated against that version's manifest. The first version listed is the default model
(``/invocations``, the demo page, ``/readyz``). A URL without a version gets the highest
version loaded under its name, as in TensorFlow Serving.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from app.config import Settings
from app.manifest import ModelIntegrityError, ServingSpec, serving_spec
from app.model_store import fetch
from app.predictor import Predictor
from app.validation import BadRequest, InstanceParser


# SageMaker forwards this response header of the container to the InvokeEndpoint caller
# verbatim, as CustomAttributes (at most 1,024 visible US-ASCII characters).
CUSTOM_ATTRIBUTES = "X-Amzn-SageMaker-Custom-Attributes"


@dataclass
class ServedModel:
    """One loaded model version: its manifest, its interpreter and the request parser built
    from the manifest's input spec (so validation follows the model, not the code)."""

    spec: ServingSpec
    manifest: dict
    predictor: Predictor
    parser: InstanceParser
    source: str                          # the MODEL_URI entry it came from
    # The response headers naming this version, made once here so that answering costs a
    # list concatenation: every prediction's, and /invocations' (which adds CustomAttributes).
    headers: list[tuple[str, str]] = field(init=False, repr=False)
    invocation_headers: list[tuple[str, str]] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.headers = [("X-Model-Name", self.name), ("X-Model-Version", self.version)]
        # The same key=value pairs the request's CustomAttributes select a model with, and the
        # manifest's hash: a SageMaker caller can tell which version and bytes answered. The
        # manifest's name and version rules keep it ASCII, comma-free and under 250 characters.
        self.invocation_headers = [*self.headers, (CUSTOM_ATTRIBUTES, (
            f"tfs-model-name={self.name},tfs-model-version={self.version},"
            f"manifest-sha256={self.sha256}"))]

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def version(self) -> str:
        return self.spec.version

    @property
    def sha256(self) -> str:
        """The sha256 of its manifest.json: what pins the whole version."""
        return self.manifest["_manifest_sha256"]


def _listing(values: list[str], one: str, many: str) -> str:
    return f"{one if len(values) == 1 else many} {', '.join(values)}"


class ModelSet:
    """The loaded versions, by name and version, in MODEL_URI's order; the first is the
    default. Lookups are dictionary reads: they sit on the predict path."""

    def __init__(self, models: Sequence[ServedModel]):
        """``models``: distinct versions (load_models refuses a version listed twice)."""
        if not models:
            raise ValueError("a ModelSet needs at least one model")
        self.default = models[0]
        self._ordered = list(models)
        self._versions: dict[str, dict[str, ServedModel]] = {}
        for model in models:
            self._versions.setdefault(model.name, {})[model.version] = model
        for name, versions in self._versions.items():     # highest version first
            self._versions[name] = dict(sorted(versions.items(), key=lambda kv: -int(kv[0])))
        self._latest = {name: next(iter(v.values())) for name, v in self._versions.items()}

    def __iter__(self) -> Iterator[ServedModel]:
        return iter(self._ordered)

    @property
    def names(self) -> list[str]:
        return list(self._versions)

    def versions(self, name: str) -> list[ServedModel]:
        """Every loaded version of ``name``, highest first (404 if there is none)."""
        if name not in self._versions:
            raise self.not_found(name, None)
        return list(self._versions[name].values())

    def get(self, name: str, version: str | None = None) -> ServedModel | None:
        """The version a URL names (the highest when it names none), or None."""
        if version is None:
            return self._latest.get(name)
        return self._versions.get(name, {}).get(version)

    def find(self, name: str, version: str | None = None) -> ServedModel:
        """As ``get``, or a 404 naming what this server has."""
        model = self.get(name, version)
        if model is None:
            raise self.not_found(name, version)
        return model

    def not_found(self, name: str, version: str | None) -> BadRequest:
        versions = self._versions.get(name)
        if versions is None:
            served = [repr(n) for n in self._versions]
            return BadRequest(f"model {name!r} not found; this server serves "
                              f"{_listing(served, 'model', 'models')}", 404)
        return BadRequest(f"version {version!r} of model {name!r} not found; this server "
                          f"serves {_listing(list(versions), 'version', 'versions')} of it", 404)


def load_models(settings: Settings) -> ModelSet:
    """Every version MODEL_URI lists, in its order; ModelIntegrityError (one line) when one
    cannot be had, trusted or run. All are fetched and verified before any is loaded, so a
    bad pin or a missing file is reported before LiteRT says anything. MODEL_FETCH_TIMEOUT
    bounds the downloads of all of them together: ECS stops a task that is not healthy
    within its grace period, however many models it loads."""
    deadline = time.monotonic() + settings.model_fetch_timeout
    fetched = []
    for source in settings.models:
        folder, manifest = fetch(source.uri, settings.model_cache_dir, source.sha256,
                                 timeout=settings.model_fetch_timeout,
                                 remaining=deadline - time.monotonic())
        spec = serving_spec(manifest, f"{source.uri}/manifest.json")
        first = next((uri for uri, _, _, seen in fetched
                      if (seen.name, seen.version) == (spec.name, spec.version)), None)
        if first is not None:
            raise ModelIntegrityError(
                f"MODEL_URI: {first!r} and {source.uri!r} are both model {spec.name!r} version "
                f"{spec.version}; list each version once")
        fetched.append((source.uri, folder, manifest, spec))
    return ModelSet([_load(uri, folder, manifest, spec, settings)
                     for uri, folder, manifest, spec in fetched])


def _load(uri: str, folder: Path, manifest: dict, spec: ServingSpec,
          settings: Settings) -> ServedModel:
    """Load a verified version into its own interpreter and warm it up."""
    predictor = Predictor(folder, spec)
    _warm_up(predictor, spec)
    return ServedModel(spec, manifest, predictor, InstanceParser(spec, settings.max_batch_size),
                       uri)


def _warm_up(predictor: Predictor, spec: ServingSpec) -> None:
    """Run one prediction so the first request is not the slow one, and prove the model's
    output matches its manifest before the app reports ready."""
    value = min(max(0, spec.lo), spec.hi)            # an input inside the declared range
    out = predictor.predict(np.full((1, *spec.shape), value, dtype=spec.dtype))
    if out.shape != (1, *spec.output_shape):
        raise ModelIntegrityError(
            f"{spec.name} version {spec.version}: model.tflite returns shape "
            f"{list(out.shape[1:])} per instance but manifest.json declares output.shape "
            f"{list(spec.output_shape)}; the version folder is inconsistent")
