"""Fuzzing: schemathesis over the whole OpenAPI schema, Hypothesis over websocket messages.

Budgets are sized for CI (FUZZ_EXAMPLES, default 25 per operation); a longer run:
``FUZZ_EXAMPLES=500 ./dev.sh test tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import positive_data_acceptance

from server.app import create_app
from server.schemas import MaskSpec
from tests.test_server import ORIGIN, make_settings

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "25"))
_app_holder: dict = {}


@pytest.fixture(scope="module")
def fuzz_client(tiny_zoo: Path, tmp_path_factory: pytest.TempPathFactory):
    app = create_app(make_settings(tiny_zoo, tmp_path_factory.mktemp("fuzz"), causal_samples=0, queue_size=256))
    with TestClient(app) as client:
        app.state.ganpaint.jobs.wait_idle(60)
        _app_holder["app"] = app
        yield client


def test_api_never_errors_and_keeps_its_contract(fuzz_client: TestClient) -> None:
    """Every operation of the OpenAPI schema, fuzzed: no 5xx (503 busy excepted), only documented
    statuses, responses matching their schemas."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", fuzz_client.app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        def check(case) -> None:
            response = case.call()
            assert response.status_code < 500 or response.status_code == 503, \
                f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
            # Recipes carry constraints JSON Schema cannot state (a mask's bytes must fit its size, exactly one of
            # brush or units, brush names come from the model's table), so schema-valid data may be refused with
            # a documented 422; every other check (negative data rejected, documented statuses, response
            # schemas and content types, no server errors) stays on.
            case.validate_response(response, excluded_checks=[positive_data_acceptance])

        try:
            check()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    fuzz_client.app.state.ganpaint.jobs.cancel_all()  # fuzzed job requests must not outlive the test
    assert not failures, "\n\n".join(failures)


# --- websocket messages --------------------------------------------------------------------------
def masks() -> st.SearchStrategy[dict]:
    return st.builds(
        lambda side, seed, soft: MaskSpec.from_array(np.random.default_rng(seed).random((side, side)) > 0.6, soft).model_dump(),
        st.integers(1, 64), st.integers(0, 2**16), st.booleans())


strokes = st.fixed_dictionaries(
    {"action": st.sampled_from(["add", "remove", "erase"]), "strength": st.floats(0, 1), "mask": masks()},
    optional={"brush": st.sampled_from(["tree", "dome", "grass", "lamp", "sky"]),
              "units": st.lists(st.integers(0, 15), min_size=1, max_size=8)})
recipes = st.fixed_dictionaries({"v": st.just(1), "model": st.just("tiny"), "sample": st.integers(0, 999_999),
                                 "strokes": st.lists(strokes, max_size=4)})
json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)


def mutate(draw, message: dict) -> dict:
    """Replace, drop or add one field somewhere in the message."""
    target = message if draw(st.booleans()) else message["recipe"]
    key = draw(st.sampled_from(sorted(target)))
    choice = draw(st.integers(0, 2))
    if choice == 0:
        target[key] = draw(json_values)
    elif choice == 1:
        del target[key]
    else:
        target[draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    return message


@st.composite
def messages(draw) -> str:
    message = {"v": 1, "type": "edit", "seq": draw(st.integers(0, 2**40)), "preview": draw(st.booleans()),
               "recipe": draw(recipes)}
    kind = draw(st.sampled_from(["valid", "mutated", "garbage"]))
    if kind == "mutated":
        message = mutate(draw, message)
    if kind == "garbage":
        return draw(st.text(max_size=200))
    return json.dumps(message)


CODES = {"unavailable", "bad_json", "invalid_message", "unknown_brush", "bad_units", "unknown_model", "unknown_layer", "bad_z",
         "tables_not_ready", "no_brushes", "busy", "deadline", "render_failed", "too_large", "unsupported"}


@settings(max_examples=max(EXAMPLES * 4, 40), deadline=None, suppress_health_check=list(HealthCheck))
@given(batch=st.lists(messages(), min_size=1, max_size=5))
def test_websocket_answers_every_message(fuzz_client: TestClient, batch: list[str]) -> None:
    with fuzz_client.websocket_connect("/ws/paint", headers={**ORIGIN}) as ws:
        for text in batch:
            ws.send_text(text)
            reply = json.loads(ws.receive_text())
            if reply["type"] == "image":
                data = ws.receive_bytes()
                assert len(data) == reply["bytes"] and data[:4] in (b"\x89PNG", b"\xff\xd8\xff\xe0", b"\xff\xd8\xff\xdb")
            else:
                assert reply["type"] == "error" and reply["code"] in CODES, reply
        # the connection is still usable
        ws.send_text(json.dumps({"v": 1, "type": "edit", "seq": 1, "recipe": {"v": 1, "model": "tiny", "sample": 1}}))
        assert json.loads(ws.receive_text())["type"] == "image"
        ws.receive_bytes()
