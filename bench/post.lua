-- wrk script: POST one digit (the first held-out sample) to the predict endpoint.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = os.getenv("BENCH_BODY")
