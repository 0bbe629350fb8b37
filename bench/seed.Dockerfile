# The seed-style image that `make bench-image` measures ours against (bench/image.py).
# NOT used to serve anything. It reproduces the common tutorial shape this project started
# from, on purpose, warts included:
#   - system packages nobody at serving time needs (awscli, ffmpeg, libsm6/libxext6 for
#     OpenCV), with recommends;
#   - the whole project copied in before the dependencies are installed, so any code change
#     re-installs TensorFlow;
#   - full TensorFlow to run a 38k-parameter Keras model, `model.predict` per request;
#   - the model baked into the image; Flask's development server as root (`python3 app.py`).
# bench/image.py builds it from a temporary context holding app.py (bench/seed_app.py),
# requirements.txt (bench/seed-requirements.txt) and model/ (the committed version 1).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
FROM ${PYTHON_IMAGE}
RUN apt-get update && apt-get install -y awscli ffmpeg libsm6 libxext6
WORKDIR /app
COPY . /app
RUN pip install -r requirements.txt
EXPOSE 8080
CMD ["python3", "app.py"]
