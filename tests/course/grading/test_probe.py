"""The probe's plain data and its protocol, in this process (the sandboxed runs are in test_exercises.py)."""

import io

import numpy as np
import pytest
import torch

from course_lib.course.grading import probe


class Liar(float):
    def __eq__(self, other):
        return True


def test_only_plain_data_crosses_as_itself():
    class Sub(torch.Tensor):
        pass

    t = torch.arange(6.0).view(2, 3)
    value = probe.to_plain({"a": [t.t(), (1, 2.5, True, None, "s", b"x")], "n": np.arange(3), "i": np.int64(4)})
    assert value["a"][0].is_contiguous() and torch.equal(value["a"][0], t.t())
    assert value["a"][1] == (1, 2.5, True, None, "s", b"x") and value["i"] == 4 and type(value["i"]) is int
    assert torch.equal(value["n"]["__ndarray__"], torch.arange(3))
    back = probe.from_plain(probe.decode(probe.encode(value)[probe.HEADER.size:]))
    assert isinstance(back["n"], np.ndarray) and back["n"].tolist() == [0, 1, 2]
    for sneaky in (Liar(0.5), t.as_subclass(Sub), object(), lambda: 1, {1, 2}):
        assert set(probe.to_plain(sneaky)) == {"__unsupported__"}
    deep = [[[[[[[[[[1]]]]]]]]]]
    assert "__unsupported__" in str(probe.to_plain(deep))


def test_the_probe_defines_calls_and_asks_for_givens_over_its_channel():
    replies = io.BytesIO(probe.encode({"status": "ok", "value": torch.tensor([7.0])}))
    sent = io.BytesIO()
    p = probe.Probe(replies, sent)
    assert p.define({"parts": [["import nonexistent_module", False], ["x = 1/0", False],
                               ["def f(a):\n    return helper(a) + a", True]],
                     "function": "f", "givens": ["helper"]}) == {"status": "ok"}
    reply = p.call({"args": [torch.tensor([1.0])], "kwargs": {}})
    assert reply["status"] == "ok" and torch.equal(reply["value"], torch.tensor([8.0]))
    request = probe.decode(sent.getvalue()[probe.HEADER.size:])
    assert request["op"] == "given" and request["name"] == "helper"
    assert p.define({"parts": [["def f(:", True]], "function": "f"})["status"] == "raised"
    assert p.call({"args": [], "kwargs": {}})["error"] == "the function was not defined"
    p.define({"parts": [["def f():\n    raise NotImplementedError", True]], "function": "f"})
    assert p.call({"args": [], "kwargs": {}}) == {"status": "not yet"}
    p.define({"parts": [["def f():\n    raise SystemExit(3)", True]], "function": "f"})
    assert p.call({"args": [], "kwargs": {}})["error"].startswith("SystemExit")


def test_oversized_messages_are_refused():
    stream = io.BytesIO(probe.HEADER.pack(probe.MAX_MESSAGE + 1))
    with pytest.raises(ValueError, match="over the limit"):
        probe.receive(stream)
    with pytest.raises(EOFError):
        probe.receive(io.BytesIO(b"\x00\x00"))
