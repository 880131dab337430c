"""POST /v1/tx: a batch of dict, counter and list operations applied all or nothing; a failed
precondition is 409 with the failing operation's position, any refused operation answers its
error with "index" and applies nothing; bad bodies are clear 400s."""
import base64
import json

import pytest

import shmstate


def tx(server, ops, raw=None):
    status, body = server.http("POST", "/v1/tx", raw if raw is not None else
                               json.dumps({"ops": ops}).encode(),
                               {"Content-Type": "application/json"})
    return status, json.loads(body)


@pytest.fixture
def st(server):
    return shmstate.attach(server.name)


def test_a_batch_applies_every_operation(server, st):
    st.dict("cache")["k"] = b"v0"
    version = st.dict("cache").entry("k")[1]
    status, body = tx(server, [
        {"op": "set", "dict": "cache", "key": "k", "value": "v1", "if_version": version},
        {"op": "incr", "counter": "hits", "by": 5, "init": 10},
        {"op": "get", "dict": "cache", "key": "k"},
        {"op": "incr", "dict": "cache", "key": "n", "by": 2},
        {"op": "set", "dict": "cache", "key": "b", "value": base64.b64encode(b"\xff\x00").decode(),
         "encoding": "base64", "if_absent": True},
        {"op": "get", "dict": "cache", "key": "b", "encoding": "base64"},
        {"op": "get", "dict": "cache", "key": "missing"},
        {"op": "get", "counter": "hits"},
        {"op": "set", "counter": "other", "value": -3}])
    assert status == 200, body
    results = body["results"]
    assert results[1] == {"value": 15}
    assert results[2]["value"] == "v1"  # The batch reads its own writes.
    assert results[3] == {"value": 2}
    assert results[5]["value"] == base64.b64encode(b"\xff\x00").decode()
    assert results[6] == {"value": None}
    assert results[7] == {"value": 15} and results[8] == {"value": -3}
    d = st.dict("cache")
    assert (d["k"], d["n"], d["b"]) == (b"v1", b"2", b"\xff\x00")
    assert st.counter("hits").value == 15 and st.counter("other").value == -3


def test_a_failed_precondition_is_409_with_its_index_and_applies_nothing(server, st):
    d = st.dict("cache")
    d["k"] = b"v0"
    d["taken"] = b"x"
    version = d.entry("k")[1]
    ops = [{"op": "set", "dict": "cache", "key": "k", "value": "v1", "if_version": version},
           {"op": "incr", "counter": "hits"},
           {"op": "set", "dict": "cache", "key": "taken", "value": "y", "if_absent": True}]
    status, body = tx(server, ops)
    assert status == 409
    assert body["error"]["code"] == "Conflict" and body["error"]["index"] == 2
    status, body = tx(server, [dict(ops[0], if_version=version + 100)])
    assert status == 409 and body["error"]["index"] == 0
    assert d["k"] == b"v0" and d["taken"] == b"x"
    # The batch created the counter as it opened it (as its endpoint would); it did not add.
    assert st.counter("hits").value == 0


def test_any_refused_operation_answers_its_error_with_index(server, st):
    st.counter("c").set(10)
    cases = [
        ({"op": "set", "dict": "c", "key": "k", "value": "v"}, 409, "WrongType"),
        ({"op": "get", "counter": "nope"}, 404, "NotFound"),
        ({"op": "delete", "dict": "cache", "key": "absent"}, 404, "NotFound"),
        ({"op": "set", "dict": "cache", "key": "k", "value": "v", "mode": "replace"}, 404,
         "NotFound"),
        ({"op": "incr", "counter": "c", "by": 2**63 - 1}, 400, "InvalidArgument"),
    ]
    for bad, status_wanted, code in cases:
        ops = [{"op": "set", "dict": "cache", "key": "first", "value": "1"}, bad]
        status, body = tx(server, ops)
        assert status == status_wanted, (bad, body)
        assert body["error"]["code"] == code and body["error"]["index"] == 1, (bad, body)
        assert st.dict("cache").get("first") is None, bad  # Nothing applied.


def test_bad_bodies_are_400(server):
    cases = [
        (b"not json", None),
        (b'{"ops": 3}', None),
        (b'{"ops": [], "more": 1}', None),
        (json.dumps({"ops": [{"op": "fly", "dict": "d", "key": "k"}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "get", "dict": "d"}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "get", "dict": "d", "counter": "c", "key": "k"}]}).encode(),
         0),
        (json.dumps({"ops": [{"op": "get", "dict": "../x", "key": "k"}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "get", "dict": "d", "key": "k"},
                             {"op": "set", "dict": "d", "key": "k", "value": 5}]}).encode(), 1),
        (json.dumps({"ops": [{"op": "set", "dict": "d", "key": "k", "value": "!",
                              "encoding": "base64"}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "set", "dict": "d", "key": "k", "value": "v",
                              "if_version": 1, "if_absent": True}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "incr", "counter": "c", "if_absent": True}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "incr", "counter": "c", "by": 1.5}]}).encode(), 0),
        (json.dumps({"ops": [{"op": "get", "dict": "d", "key": "k"}] * 1001}).encode(), None),
    ]
    for raw, index in cases:
        status, body = tx(server, None, raw=raw)
        assert status == 400, (raw[:80], body)
        assert body["error"]["code"] == "InvalidArgument"
        assert body["error"].get("index") == index, (raw[:80], body)


def test_a_value_that_is_not_utf8_needs_base64(server, st):
    st.dict("bin")["k"] = b"\xff"
    status, body = tx(server, [{"op": "get", "dict": "bin", "key": "k"}])
    assert status == 400 and body["error"]["index"] == 0
    status, body = tx(server, [{"op": "get", "dict": "bin", "key": "k", "encoding": "base64"}])
    assert status == 200 and body["results"][0]["value"] == "/w=="


def test_list_pushes_and_pops_join_the_batch(server, st):
    jobs = st.list("jobs")
    jobs.push(b"j1")
    jobs.push(b"j2")
    status, body = tx(server, [
        {"op": "pop", "list": "jobs"},
        {"op": "push", "list": "done", "value": "j1", "end": "left"},
        {"op": "pop", "list": "jobs", "end": "right"},
        {"op": "pop", "list": "jobs"},
        {"op": "push", "list": "jobs", "value": "back"},
        {"op": "length", "list": "done"},
        {"op": "incr", "counter": "moved"}])
    assert status == 200, body
    results = body["results"]
    assert results[0] == {"value": "j1"} and results[2] == {"value": "j2"}
    assert results[3] == {"value": None}
    assert results[4] == {"length": 1} and results[5] == {"length": 1}
    assert jobs.range() == [b"back"] and st.list("done").range() == [b"j1"]
    # A refused operation later in the batch applies none of the list's pops or pushes.
    status, body = tx(server, [
        {"op": "pop", "list": "jobs"},
        {"op": "push", "list": "done", "value": "x"},
        {"op": "set", "dict": "cache", "key": "k", "value": "v", "if_version": 12345}])
    assert status == 409 and body["error"]["index"] == 2, body
    assert jobs.range() == [b"back"] and st.list("done").range() == [b"j1"]
