# ml-app serving image: nginx + granian + Flask + LiteRT, no TensorFlow, no model inside.
#
#   DOCKER_BUILDKIT=1 docker build --network host -t ml-app .
#   docker run --rm --network host --read-only --tmpfs /tmp \
#     -v "$PWD/model/artifacts/digits/1:/model:ro" -e MODEL_URI=/model ml-app
#
# The model version is given at run time (MODEL_URI: a mounted folder, file:// or s3://,
# optionally pinned by MODEL_SHA256); see README.md. Stages:
#   deps     a venv with app/requirements.txt only (rebuilt only when that file changes)
#   code     the service code, normalised to root-owned and read-only, byte-compiled
#   runtime  the base image + Debian's nginx + the venv + the code; runs as uid 10001
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------- deps --
FROM ${PYTHON_IMAGE} AS deps
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
COPY app/requirements.txt /tmp/requirements.txt
# Wheels only (no compiler in any stage), then trim what serving never loads, so the
# runtime layer stays small (Fargate pulls the image on every task start):
#  - pip/setuptools: nothing is installed at run time;
#  - test suites shipped inside wheels (~17 MB, mostly numpy's), type stubs (*.pyi), numpy's
#    build tools (f2py, distutils, C headers): never imported by a running service;
#  - LiteRT's CompiledModel runtime (libLiteRt.so, loaded only if present), its WebGPU
#    accelerator, NPU compiler plugins, AOT tools and the apply_plugin CLI (~40 MB): the
#    service runs model.tflite with the CPU Interpreter (app/predictor.py), which is
#    self-contained in libpywrap_litert_common.so (checked: identical outputs without them);
#  - botocore's API models except the services a model download can touch (s3, plus sts,
#    sso and sso-oidc for role and SSO credentials): ~27 MB of JSON. A new AWS client in
#    app/ must add its service name to KEEP_BOTOCORE below.
# Byte-code is compiled with unchecked-hash so it stays valid whatever the files' mtimes.
ARG KEEP_BOTOCORE="s3 sts sso sso-oidc"
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-compile --only-binary=:all: -r /tmp/requirements.txt \
 && /opt/venv/bin/pip uninstall --yes pip setuptools \
 && site=$(/opt/venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])') \
 && find "$site" -depth -type d -name tests -exec rm -rf {} + \
 && find "$site" -name '*.pyi' -delete \
 && rm -rf "$site"/numpy/f2py "$site"/numpy/distutils "$site"/numpy/_core/include \
           "$site"/ai_edge_litert/libLiteRt.so "$site"/ai_edge_litert/libLiteRtWebGpuAccelerator.so \
           "$site"/ai_edge_litert/vendors "$site"/ai_edge_litert/tools "$site"/ai_edge_litert/aot \
           /opt/venv/bin/f2py /opt/venv/bin/numpy-config /opt/venv/bin/litert-benchmark \
 && keep=" $KEEP_BOTOCORE " \
 && for d in "$site"/botocore/data/*/; do \
      case "$keep" in *" $(basename "$d") "*) ;; *) rm -rf "$d" ;; esac; \
    done \
 && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash "$site" >/dev/null \
 && /opt/venv/bin/python -c 'import ai_edge_litert.interpreter, numpy, flask, granian, boto3, awslambdaric.bootstrap, runtime_client; boto3.client("s3", region_name="us-east-1"); print("deps ok")'

# ---------------------------------------------------------------------------------- code --
FROM ${PYTHON_IMAGE} AS code
COPY app /srv/app
# root owns everything, nobody else may write (whatever the checkout's umask was)
RUN python3 -m compileall -q --invalidation-mode unchecked-hash /srv/app \
 && chown -R root:root /srv/app \
 && chmod -R u=rwX,go=rX /srv/app

# ------------------------------------------------------------------------------- runtime --
FROM ${PYTHON_IMAGE} AS runtime
# nginx in front of the app server (app/nginx.conf; docs/performance.md says why): Debian's
# package without recommends. Its default site, logs and service scripts are never used:
# the config is rendered into /tmp at start (app/server.py), logs go to stdout/stderr.
# hadolint ignore=DL3008  # bookworm pins nginx 1.22; a rebuild picks up its security fixes
RUN apt-get update \
 && apt-get install --yes --no-install-recommends nginx \
 && rm -rf /var/lib/apt/lists/* /etc/nginx/sites-enabled/* /var/log/nginx/* /usr/share/doc/* \
           /usr/share/man/* \
 && nginx -v
# A fixed, non-root uid/gid (ECS, Kubernetes runAsNonRoot and volume permissions rely on
# it); no home directory: nothing may write outside the /tmp tmpfs.
RUN groupadd --system --gid 10001 app \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin app
# /srv/app/bin holds `serve`, the program SageMaker runs (`docker run IMAGE serve`).
ENV PATH=/opt/venv/bin:/srv/app/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=deps /opt/venv /opt/venv
COPY --from=code /srv/app /srv/app
WORKDIR /srv
USER 10001:10001
EXPOSE 8080
# Readiness (model loaded) with the interpreter already in the image: no curl. Honours
# BIND (host:port) or PORT like app/config.py; ECS uses its own health check and the
# target group's, this one serves `docker run` and compose.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python3", "-c", "import os,urllib.request as u; b=os.environ.get('BIND',''); p=b.rsplit(':',1)[1] if b else os.environ.get('PORT','8080'); u.urlopen(f'http://127.0.0.1:{p}/readyz', timeout=2)"]
# app/server.py validates settings, checks the model, then runs nginx and granian and
# relays SIGTERM to drain them (exec form: it is PID 1 and gets the signal itself).
# One image, three targets, no ENTRYPOINT (docs/sagemaker.md, docs/lambda.md):
#   ECS        this CMD
#   SageMaker  `docker run IMAGE serve`: app/bin/serve, the same front on 8080 or
#              SAGEMAKER_BIND_TO_PORT, the model from /opt/ml/model
#   Lambda     image_config: entry point /opt/venv/bin/python3 -m awslambdaric, command
#              app.lambda_handler.handler (awslambdaric imports ~20 ms of mostly stdlib
#              modules, only there: ECS and SageMaker never load it)
CMD ["python3", "-m", "app.server"]

# Last, so a new revision or date does not invalidate any layer above.
ARG SOURCE="unknown" \
    REVISION="unknown" \
    VERSION="dev" \
    CREATED="1970-01-01T00:00:00Z"
# accept-bind-to-port: SageMaker may then set SAGEMAKER_BIND_TO_PORT, which `serve` honours.
LABEL com.amazonaws.sagemaker.capabilities.accept-bind-to-port="true" \
      org.opencontainers.image.title="ml-app" \
      org.opencontainers.image.description="Released TensorFlow models served with LiteRT (MODEL_URI): TF Serving REST, SageMaker, Lambda; nginx, granian, Flask" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.created="${CREATED}"
