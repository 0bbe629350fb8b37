"""The ceiling of our stack: our own service (app factory, request-log middleware, front
config) with one extra endpoint that reads the body and answers a constant, running no
validation and no model. bench/serving.py starts it; production never imports it."""

from flask import Response, request

from app import create_app

app = create_app()
CONSTANT = '{"predictions":[[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]]}'


@app.post("/bench/noop")
def noop():
    request.get_data(cache=False)
    return Response(CONSTANT, mimetype="application/json")
