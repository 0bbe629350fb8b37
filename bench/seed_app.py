"""The seed-style service that bench/seed.Dockerfile runs as `python3 app.py`.

Deliberately the naive way (the baseline `make bench-image` measures against): import
TensorFlow, load model.keras baked into the image, call `model.predict` per request on
Flask's development server. Same predict route and body as the real service, so one client
drives both.
"""

import os

import numpy as np
import tensorflow as tf
from flask import Flask, jsonify, request

app = Flask(__name__)
model = tf.keras.models.load_model("model/model.keras")


@app.route("/ping")
def ping():
    return "", 200


@app.route("/v1/models/digits:predict", methods=["POST"])
def predict():
    x = np.asarray(request.get_json()["instances"], dtype=np.float32).reshape(-1, 8, 8)
    return jsonify({"predictions": model.predict(x, verbose=0).tolist()})


if __name__ == "__main__":
    app.run(host="0.0.0.0", port=int(os.environ.get("PORT", "8080")))
