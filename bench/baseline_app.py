"""The seed-style baseline the benchmark compares against: Flask's development server
calling Keras ``model.predict`` once per request, the way most tutorials serve a model.
Not used in production; bench/serving.py starts it."""

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import numpy as np  # noqa: E402
from flask import Flask, jsonify, request  # noqa: E402

model = keras.models.load_model(os.path.join(sys.argv[1], "model.keras"))
app = Flask(__name__)


@app.post("/v1/models/digits:predict")
def predict():
    x = np.asarray(request.get_json()["instances"], dtype=np.float32).reshape(-1, 8, 8)
    return jsonify(predictions=model.predict(x, verbose=0).tolist())


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(sys.argv[2]), threaded=True)
