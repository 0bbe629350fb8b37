"""Peer: KServe's Python model server (its V1 protocol, `/v1/models/<name>:predict`) with a
custom Model running the same LiteRT call. bench/serving.py runs it in bench/.venvs/kserve:
    python kserve_app.py --http_port PORT --workers 2 --enable_grpc false"""

from kserve import Model, ModelServer

from litert_digits import predict


class Digits(Model):
    def __init__(self):
        super().__init__("digits")
        self.ready = True

    def predict(self, payload, headers=None, response_headers=None):
        return {"predictions": predict(payload["instances"])}


if __name__ == "__main__":
    ModelServer().start([Digits()])
