"""WSGI entry point for granian's workers (app/server.py starts them): ``app.wsgi:app``."""

import sys

from app import ConfigError, ModelIntegrityError, create_app

try:
    app = create_app()
except (ConfigError, ModelIntegrityError) as exc:
    # app/server.py checked settings and model before starting any worker, so this is a
    # change between then and now (a cache wiped); one line, and the worker exits.
    print(f"error: {' '.join(str(exc).split())}", file=sys.stderr, flush=True)
    sys.exit(3)
