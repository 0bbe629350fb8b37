"""/invocations answers in the media type Accept asks for (app/negotiation.py): JSON or CSV."""

from __future__ import annotations

import numpy as np
import pytest

from app.negotiation import answer_type, csv_body


@pytest.mark.parametrize("accept, expected", [
    (None, "application/json"), ("", "application/json"), ("*/*", "application/json"),
    ("application/json", "application/json"), ("application/*", "application/json"),
    ("text/csv", "text/csv"), ("text/*", "text/csv"), ("text/csv; charset=utf-8", "text/csv"),
    ("text/csv;q=0.5, application/json;q=0.9", "application/json"),
    ("application/json;q=0.1, text/csv", "text/csv"),
    ("image/png, */*;q=0.1", "application/json"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "application/json"),
])
def test_accept_chooses_the_answer_type(accept, expected):
    environ = {} if accept is None else {"HTTP_ACCEPT": accept}
    assert answer_type(environ) == expected


@pytest.mark.parametrize("accept", ["application/xml", "text/html", "text/csv;q=0",
                                    "application/json;q=0, text/csv;q=0", "image/*"])
def test_nothing_acceptable_is_a_406_naming_what_is(accept):
    from app.validation import BadRequest

    with pytest.raises(BadRequest) as info:
        answer_type({"HTTP_ACCEPT": accept})
    assert info.value.status == 406
    assert "application/json or text/csv" in info.value.message


def test_csv_answer_matches_the_json_answer(client, heldout):
    x = heldout.x_test[:5].reshape(5, 64)
    csv_in = "\n".join(",".join(str(int(v)) for v in row) for row in x)
    as_json = client.post("/invocations", data=csv_in, content_type="text/csv")
    as_csv = client.post("/invocations", data=csv_in, content_type="text/csv",
                         headers={"Accept": "text/csv"})
    assert as_csv.status_code == 200 and as_csv.mimetype == "text/csv"
    assert as_csv.headers["X-Model-Name"] == "digits"
    rows = [[float(v) for v in line.split(",")] for line in as_csv.get_data(as_text=True).splitlines()]
    # the same numbers, written the same way (float32's shortest form) in both answers
    assert rows == as_json.json["predictions"]
    assert (np.argmax(rows, axis=1) == heldout.y_test[:5]).all()


def test_json_body_answered_in_csv_and_columnar_json_keeps_its_key(client):
    row = [0] * 64
    r = client.post("/invocations", json={"inputs": [row, row]}, headers={"Accept": "text/csv"})
    assert r.status_code == 200 and len(r.get_data(as_text=True).splitlines()) == 2
    r = client.post("/invocations", json={"inputs": [row]}, headers={"Accept": "application/json"})
    assert list(r.json) == ["outputs"]


def test_errors_stay_json_whatever_accept_says(client):
    r = client.post("/invocations", data="1,2", content_type="text/csv", headers={"Accept": "text/csv"})
    assert r.status_code == 400 and r.mimetype == "application/json" and "64" in r.json["error"]


def test_csv_body_of_a_regressor_has_one_number_per_line():
    assert csv_body(np.array([[1.5], [-2.25]], dtype=np.float32)) == b"1.5\n-2.25\n"
