"""Peer: a plain FastAPI endpoint under uvicorn (uvloop, httptools), as most FastAPI
model-serving tutorials write it. bench/serving.py runs it in bench/.venvs/fastapi."""

from fastapi import FastAPI, Request

from litert_digits import predict

app = FastAPI()


@app.post("/v1/models/{name}:predict")
async def predict_route(name: str, request: Request):
    body = await request.json()
    return {"predictions": predict(body["instances"])}
