"""The framework ceiling: a Flask app with the same gunicorn config that parses the same
JSON body and answers without running a model. bench/serving.py starts it."""

import json

from flask import Flask, Response, request

app = Flask(__name__)


@app.post("/v1/models/digits:predict")
def predict():
    json.loads(request.get_data())
    return Response('{"predictions":[[0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1,0.1]]}',
                    mimetype="application/json")
