"""WSGI entry point for gunicorn: ``gunicorn -c app/gunicorn_conf.py app.wsgi:app``."""

import sys

from app import ConfigError, ModelIntegrityError, create_app

try:
    app = create_app()
except (ConfigError, ModelIntegrityError) as exc:
    # A clear message instead of a traceback; exit code 3 makes gunicorn's master stop
    # ("Worker failed to boot") rather than respawn a worker that cannot work.
    print(f"error: {exc}", file=sys.stderr, flush=True)
    sys.exit(3)
