"""The demo page (app/static) in headless Chromium against `make run`: digits from the data set
drawn by mouse, finger and keyboard are recognised and shown with their bars and the model
version that answered; Clear clears; every control has an accessible name; phone and large
screens hold up; a stopped service, a 413 and a proxy's HTML error page each give a readable
message. The page watch (conftest) fails any test that leaves a console error, an uncaught
exception or an undeclared failed request behind.
"""

from __future__ import annotations

import pytest
import requests

try:
    from playwright.sync_api import expect
except ImportError:  # the browser fixture says so: a skip, or a failure under REQUIRE_BROWSER=1
    expect = None

from tests.browser.conftest import DESKTOP, PHONE
from tests.browser.drawing import draw_with_mouse, draw_with_touch, press_keys, typical_digits

pytestmark = pytest.mark.browser

PREDICT = ":predict"
# Keyboard drawings (the pen starts in the middle of the pad; a step is 8 of 256 pixels).
SEVEN = ("ArrowUp*10 ArrowLeft*6 Space ArrowRight*12 " + "ArrowDown ArrowLeft ArrowDown " * 6
         + "ArrowDown*2 Space")
ONE = "ArrowUp*10 Space ArrowDown*20 Space"
# Words that mean a raw exception or a template leaked into a message meant for people.
NOT_READABLE = ("undefined", "[object", "SyntaxError", "TypeError", "NaN", "<html")


@pytest.fixture(scope="module")
def digits(heldout):
    return typical_digits(heldout.x_test, heldout.y_test)


@pytest.fixture(scope="module")
def served(service) -> dict:
    """What the service says it serves: {"model": ..., "version": ...}."""
    return requests.get(f"{service.url}/readyz", timeout=5).json()


def is_predict(response) -> bool:
    return response.url.endswith(PREDICT) and response.request.method == "POST"


def press_predict(page):
    """Press Predict and return the service's answer (after the page has had it)."""
    with page.expect_response(is_predict) as answer:
        page.get_by_role("button", name="Predict").click()
    answer.value.finished()
    return answer.value


def assert_shows(page, answer, digit: int, served: dict) -> None:
    """The page shows ``digit``, the service's probabilities as text and bars, the grid it
    sent, and the model version from the answer's headers."""
    probs = answer.json()["predictions"][0]
    assert max(range(10), key=probs.__getitem__) == digit, f"the service says {probs}"
    expect(page.locator("#digit")).to_have_text(str(digit))
    expect(page.locator("#confidence")).to_have_text(f"({probs[digit] * 100:.1f}%)")
    assert answer.headers["x-model-name"] == served["model"]
    assert answer.headers["x-model-version"] == served["version"]
    expect(page.locator("#answered-by")).to_have_text(
        f"Answered by model {served['model']}, version {served['version']}.")
    expect(page.locator("#error")).to_have_text("")

    rows = page.evaluate("""() => [...document.querySelectorAll('#probs tbody tr')].map(tr => ({
        label: tr.cells[0].textContent, text: tr.cells[2].textContent, best: tr.className === 'best',
        bar: tr.querySelector('.bar').getBoundingClientRect().width,
        track: tr.querySelector('.track').getBoundingClientRect().width}))""")
    assert [r["label"] for r in rows] == [str(i) for i in range(10)]
    assert [r["best"] for r in rows] == [i == digit for i in range(10)]
    for p, row in zip(probs, rows):
        assert row["text"] == f"{p * 100:.1f}%"
        assert row["track"] > 50, row
        assert abs(row["bar"] - max(1.0, p * row["track"])) <= 1.0, (p, row)

    # "what the model sees" shows the grid that was sent, one grey square per cell
    sent = answer.request.post_data_json["instances"][0]
    assert len(sent) == 8 and all(len(r) == 8 and all(0 <= v <= 16 for v in r) for r in sent)
    shades = page.evaluate("""() => { const g = document.getElementById('grid'), s = g.width / 8;
        const d = g.getContext('2d').getImageData(0, 0, g.width, g.height).data;
        return [...Array(8)].map((_, r) => [...Array(8)].map((_, c) =>
            d[((r * s + s / 2) * g.width + c * s + s / 2) * 4])); }""")
    assert shades == [[round(255 - v / 16 * 255) for v in row] for row in sent]


def assert_cleared(page) -> None:
    expect(page.locator("#digit")).to_have_text("\u2013")
    for part in ("#confidence", "#answered-by", "#error"):
        expect(page.locator(part)).to_have_text("")
    expect(page.locator("#probs tbody tr")).to_have_count(0)
    blank = page.evaluate("""() => {
        const pad = document.getElementById('pad').getContext('2d').getImageData(0, 0, 256, 256).data;
        const grid = document.getElementById('grid').getContext('2d').getImageData(0, 0, 128, 128).data;
        return {pad: pad.every(v => v === 255), grid: grid.every(v => v === 0)}; }""")
    assert blank == {"pad": True, "grid": True}


def assert_readable_error(page, *words: str) -> str:
    error = page.locator("#error")
    for word in words:
        expect(error).to_contain_text(word)
    text = error.inner_text()
    assert not any(bad in text for bad in NOT_READABLE), text
    expect(page.locator("#digit")).to_have_text("\u2013")   # no stale answer beside it
    return text


# --- drawing and answers ---------------------------------------------------------------------

def test_every_digit_drawn_with_the_mouse_is_recognised(service, served, open_page, digits):
    page, _ = open_page(service.url)
    for digit, image in digits.items():
        page.get_by_role("button", name="Clear").click()
        draw_with_mouse(page, image)
        assert_shows(page, press_predict(page), digit, served)
    assert set(page.evaluate("__pointerTypes")) == {"mouse"}


def test_digits_drawn_with_a_finger_on_a_phone_are_recognised(service, served, open_page, digits):
    page, _ = open_page(service.url, viewport=PHONE, has_touch=True, is_mobile=True,
                        device_scale_factor=3)
    for digit in (2, 5, 8):
        page.get_by_role("button", name="Clear").tap()
        draw_with_touch(page, digits[digit])
        # lifting the finger predicts by itself, no button needed
        expect(page.locator("#digit")).to_have_text(str(digit))
    assert set(page.evaluate("__pointerTypes")) == {"touch"}
    # and Predict gives the same answer, fully shown
    assert_shows(page, press_predict(page), 8, served)


def test_clear_clears_the_pad_the_grid_and_the_answer(service, served, open_page, digits):
    page, _ = open_page(service.url)
    draw_with_mouse(page, digits[4])
    assert_shows(page, press_predict(page), 4, served)
    page.get_by_role("button", name="Clear").click()
    assert_cleared(page)
    # Clear right after drawing: the automatic prediction, pending or in flight, is dropped
    draw_with_mouse(page, digits[4])
    page.get_by_role("button", name="Clear").click()
    page.wait_for_timeout(1000)
    assert_cleared(page)


# --- keyboard and accessibility --------------------------------------------------------------

def accessibility_problems(page) -> list[str]:
    """Controls without an accessible name, from Chromium's own accessibility tree."""
    cdp = page.context.new_cdp_session(page)
    try:
        nodes = cdp.send("Accessibility.getFullAXTree")["nodes"]
    finally:
        cdp.detach()
    controls = {"button", "link", "textbox", "checkbox", "combobox", "slider", "application",
                "img", "image", "table", "DisclosureTriangle", "radio", "spinbutton"}
    problems = []
    for node in nodes:
        if node.get("ignored"):
            continue
        role = node.get("role", {}).get("value", "")
        props = {p["name"]: p["value"].get("value") for p in node.get("properties", [])}
        name = (node.get("name") or {}).get("value", "").strip()
        if (role in controls or props.get("focusable")) and role != "RootWebArea" and not name:
            problems.append(f"{role} without a name (node {node.get('backendDOMNodeId')})")
    return problems


def test_the_page_works_by_keyboard(service, served, open_page):
    page, _ = open_page(service.url)
    order = []
    for _ in range(5):
        page.keyboard.press("Tab")
        order.append(page.evaluate("document.activeElement.id || document.activeElement.textContent"))
        outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
        assert outline != "none", f"no visible focus on {order[-1]}"
    assert order == ["pad", "clear", "predict", "OpenAPI", "meta-link"]

    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")
    assert page.evaluate("document.activeElement.id") == "pad"
    expect(page.locator("#pen")).to_be_visible()          # where the keyboard pen is
    press_keys(page, SEVEN)
    with page.expect_response(is_predict) as answer:
        page.keyboard.press("Enter")
    assert_shows(page, answer.value, 7, served)
    page.keyboard.press("Escape")
    assert_cleared(page)

    press_keys(page, ONE)
    page.keyboard.press("Tab")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "predict"
    expect(page.locator("#pen")).to_be_hidden()
    with page.expect_response(is_predict) as answer:
        page.keyboard.press("Space")
    assert_shows(page, answer.value, 1, served)

    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")                          # Clear
    assert_cleared(page)
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")                          # Predict, with nothing drawn
    expect(page.locator("#error")).to_have_text("Nothing to predict yet: draw a digit first.")
    assert set(page.evaluate("__pointerTypes")) == set()  # no pointer was used


def test_every_control_has_an_accessible_name(service, open_page):
    page, _ = open_page(service.url)
    assert accessibility_problems(page) == []
    for role, name in (("application", "Drawing pad"), ("button", "Clear"), ("button", "Predict"),
                       ("img", "The 8 by 8 grid sent to the model"),
                       ("table", "Probability of each digit"), ("link", "OpenAPI"),
                       ("link", "model metadata")):
        expect(page.get_by_role(role, name=name, exact=True)).to_have_count(1)
    expect(page.get_by_role("application", name="Drawing pad")).to_have_accessible_description(
        "Keyboard: arrow keys move the pen (with Shift: further), Space puts it down or lifts "
        "it, Enter predicts, Escape clears.")


def test_an_api_key_is_asked_for_and_used(own_service, open_page, digits):
    service = own_service(API_KEY="browser-test-key")
    page, watch = open_page(service.url)
    watch.expect(PREDICT, 401)
    draw_with_mouse(page, digits[3])
    press_predict(page)
    assert_readable_error(page, "needs an API key", "401", 'Enter it under "API key"')
    key = page.get_by_label("x-api-key")
    expect(key).to_be_visible()
    assert accessibility_problems(page) == []             # now with the key box open
    key.focus()
    page.keyboard.type("browser-test-key")
    served = requests.get(f"{service.url}/readyz", timeout=5).json()
    assert_shows(page, press_predict(page), 3, served)


# --- several models (MODEL_URI=a,b make run) -------------------------------------------------

def test_the_page_draws_for_the_default_model_of_several(own_service, open_page, digits):
    service = own_service(MODEL_URI="model/artifacts/digits/1,model/artifacts/diabetes/1")
    served = requests.get(f"{service.url}/readyz", timeout=5).json()
    assert [m["name"] for m in served["models"]] == ["digits", "diabetes"]
    page, _ = open_page(service.url)
    expect(page.locator("#model-name")).to_have_text("digits/versions/1")
    draw_with_mouse(page, digits[4])
    answer = press_predict(page)
    assert answer.url == f"{service.url}/v1/models/digits/versions/1:predict"  # the version /readyz named
    assert_shows(page, answer, 4, served)


def test_a_default_model_that_is_not_8x8_is_explained_not_sent_drawings(own_service, open_page,
                                                                       digits):
    service = own_service(MODEL_URI="model/artifacts/diabetes/1,model/artifacts/digits/1")
    page, _ = open_page(service.url)
    sent = []
    page.on("request", lambda r: sent.append(r.url) if r.url.endswith(PREDICT) else None)
    assert_readable_error(page, "draws 8x8 digits", "diabetes version 1", "'features'",
                          "shape [10]", "first in MODEL_URI")
    draw_with_mouse(page, digits[4])
    page.get_by_role("button", name="Predict").click()
    assert_readable_error(page, "draws 8x8 digits")
    assert sent == []


# --- the service failing ---------------------------------------------------------------------

def test_a_stopped_service_gives_a_readable_message(own_service, open_page, digits):
    service = own_service()
    served = requests.get(f"{service.url}/readyz", timeout=5).json()
    page, watch = open_page(service.url)
    draw_with_mouse(page, digits[6])
    assert_shows(page, press_predict(page), 6, served)
    service.stop()
    watch.expect(PREDICT, None)
    page.get_by_role("button", name="Predict").click()
    assert_readable_error(page, "Could not reach the service")


def test_a_413_and_a_proxy_error_page_give_readable_messages(own_service, open_page, digits):
    service = own_service(MAX_BODY_BYTES="1024")
    served = requests.get(f"{service.url}/readyz", timeout=5).json()
    page, watch = open_page(service.url)
    draw_with_mouse(page, digits[0])
    assert_shows(page, press_predict(page), 0, served)

    # the same request, padded past the service's limit: the service's own 413
    watch.expect(PREDICT, 413)
    page.route(f"**/*{PREDICT}", lambda route: route.continue_(
        post_data=route.request.post_data + " " * 2048))
    answer = press_predict(page)
    assert answer.status == 413 and "MAX_BODY_BYTES" in answer.json()["error"]
    assert_readable_error(page, "too large", "413", "MAX_BODY_BYTES")

    # a load balancer in front answers with an HTML page, not JSON
    page.unroute(f"**/*{PREDICT}")
    watch.expect(PREDICT, 502)
    page.route(f"**/*{PREDICT}", lambda route: route.fulfill(
        status=502, content_type="text/html", body="<html><body><h1>502 Bad Gateway</h1></body></html>"))
    press_predict(page)
    assert_readable_error(page, "busy or unavailable", "502", "Try again")

    page.unroute(f"**/*{PREDICT}")
    assert_shows(page, press_predict(page), 0, served)     # and it recovers


# --- layouts ---------------------------------------------------------------------------------

@pytest.mark.parametrize("viewport, touch", [
    ({"width": 360, "height": 640}, True),
    (PHONE, True),
    ({"width": 768, "height": 1024}, True),
    (DESKTOP, False),
    ({"width": 2560, "height": 1440}, False),
], ids=["phone-360", "phone-390", "tablet", "desktop", "large"])
def test_the_layout_holds_up_from_phone_to_large_screen(service, served, open_page, digits,
                                                        viewport, touch):
    page, _ = open_page(service.url, viewport=viewport, has_touch=touch, is_mobile=touch)
    width = viewport["width"]
    assert page.evaluate("document.documentElement.scrollWidth") <= width, "scrolls sideways"

    def box(selector):
        b = page.locator(selector).bounding_box()
        assert b and 0 <= b["x"] and b["x"] + b["width"] <= width, f"{selector} off screen: {b}"
        return b

    pad = box("#pad")
    assert abs(pad["width"] - pad["height"]) <= 1 and pad["width"] >= 240, pad
    if width >= 1024:   # big enough to draw comfortably, and all of it on the first screen
        assert pad["width"] >= 300 and pad["y"] + pad["height"] <= viewport["height"], pad
    font = page.evaluate("parseFloat(getComputedStyle(document.querySelector('.hint')).fontSize)")
    assert font >= (20 if width >= 2400 else 16), f"text of {font} px on a {width} px screen"
    for button in ("#clear", "#predict"):
        assert box(button)["height"] >= 44, f"{button}: under 44 px, small for a finger"
    panels = [box(f".panel:nth-child({n})") for n in (1, 2, 3)]
    tops = {round(p["y"]) for p in panels}
    if width >= 1024:
        assert len(tops) == 1, f"panels not side by side on a {width} px screen: {panels}"
    if width < 600:
        assert panels[0]["y"] < panels[1]["y"] < panels[2]["y"], "panels not stacked on a phone"

    # drawing still lands where the pointer is at this size
    (draw_with_touch if touch else draw_with_mouse)(page, digits[3])
    assert_shows(page, press_predict(page), 3, served)
    box("#probs")
