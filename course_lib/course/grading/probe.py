"""The probe: a fresh interpreter, inside a sandbox, that runs a student's exercise functions on the grader's cases.

The grader (``course_lib.course.grading.exercises``) starts ``python -I probe.py`` in a sandbox where the course's
package is absent and the implementations an exercise forbids (torchvision, unless allowed) cannot be imported
or read, then talks to it over the probe's standard input and output. Each message is one ``torch.save``d
object, read back with ``torch.load(weights_only=True)`` and framed by its length (8 bytes, big-endian):

* grader -> probe ``{"op": "define", "parts": [[code, required], ...], "function": name, "givens": [names],
  "prelude": ..., "adapter": name or None}``: execute the parts (the submitted function, the learner's own
  functions it uses, the notebook's imports) in a new namespace; each name in ``givens`` becomes a function that asks the
  grader to run the course's version (a helper the exercise may use). Reply ``{"status": "ok"}`` or
  ``{"status": "raised", "error": ...}``.
* grader -> probe ``{"op": "call", "args": [...], "kwargs": {...}}``: run the function (through the prelude's
  ``adapter(fn, *args)`` when there is one) on one case. While it runs, the probe may send ``{"op": "given",
  "name": ..., "args": ..., "kwargs": ...}`` and wait for ``{"status": "ok", "value": ...}``. Reply
  ``{"status": "ok", "value": ...}``, ``{"status": "not yet"}`` (``NotImplementedError``: the stub) or
  ``{"status": "raised", "error": "TypeError: ..."}``.
* grader -> probe ``{"op": "exit"}``.

Values cross as *plain* data only (``to_plain``): tensors of exactly ``torch.Tensor``, ``int``/``float``/``bool``/
``str``/``bytes``/``None``, and lists, tuples and dicts of them; NumPy arrays travel as tagged tensors. Anything
else becomes ``{"__unsupported__": type name}``, which never equals a reference output. The student's code runs
in this process, so it could forge the messages; it never sees a reference output, so all a forgery can say
is what the student's own code computed. Standard library and torch only: this file is copied into the sandbox.
"""

from __future__ import annotations

import builtins
import io
import os
import struct
import sys

MAX_MESSAGE = 256 * 2**20  # bytes; a bigger message ends the probe
MAX_DEPTH = 8
HEADER = struct.Struct(">Q")


def to_plain(x, depth: int = 0):
    """``x`` as plain data (see the module's docstring); the learner's objects never cross as themselves."""
    import torch

    kind = type(x)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        return x.detach().cpu().clone().contiguous()
    if kind in (bool, int, float, str, bytes, type(None)):
        return x
    if depth < MAX_DEPTH and kind in (list, tuple):
        return kind(to_plain(v, depth + 1) for v in x)
    if depth < MAX_DEPTH and kind is dict:
        return {to_plain(k, depth + 1): to_plain(v, depth + 1) for k, v in x.items()}
    numpy = sys.modules.get("numpy")
    if numpy is not None and kind is numpy.ndarray and x.dtype != object:
        return {"__ndarray__": torch.from_numpy(numpy.ascontiguousarray(x).copy())}
    if numpy is not None and isinstance(x, numpy.generic) and kind.__module__ == "numpy":
        return x.item()
    return {"__unsupported__": getattr(kind, "__name__", "?")[:60]}


def from_plain(x, depth: int = 0):
    """Undo ``to_plain``'s tags (NumPy arrays) in data read back with ``weights_only=True``."""
    if isinstance(x, dict):
        if set(x) == {"__ndarray__"}:
            return x["__ndarray__"].numpy()
        return {k: from_plain(v, depth + 1) for k, v in x.items()}
    if type(x) in (list, tuple):
        return type(x)(from_plain(v, depth + 1) for v in x)
    return x


def encode(message) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(message, buffer)
    data = buffer.getvalue()
    return HEADER.pack(len(data)) + data


def decode(data: bytes):
    import torch

    return torch.load(io.BytesIO(data), weights_only=True)


def read_exactly(stream, n: int) -> bytes:
    chunks, left = [], n
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise EOFError("the other side closed the channel")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def receive(stream):
    (size,) = HEADER.unpack(read_exactly(stream, HEADER.size))
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes is over the limit")
    return decode(read_exactly(stream, size))


def send(stream, message) -> None:
    stream.write(encode(message))
    stream.flush()


def describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:300]


class Probe:
    def __init__(self, inbox, outbox):
        self.inbox, self.outbox = inbox, outbox
        self.function = None
        self.adapter = None

    def given(self, name: str):
        def call(*args, **kwargs):
            send(self.outbox, {"op": "given", "name": name, "args": to_plain(list(args)),
                               "kwargs": to_plain(kwargs)})
            reply = receive(self.inbox)
            if reply.get("status") != "ok":
                raise RuntimeError(f"the course's {name} raised {reply.get('error', '?')}")
            return from_plain(reply["value"])

        call.__name__ = name
        return call

    def define(self, message: dict) -> dict:
        namespace = {"__name__": "__submission__", "__builtins__": builtins}
        for name in message.get("givens", []):
            namespace[name] = self.given(name)
        self.adapter = None
        try:
            if message.get("prelude"):
                prelude: dict = {"__name__": "__prelude__"}
                exec(compile(message["prelude"], "<course prelude>", "exec"), prelude)
                self.adapter = prelude[message["adapter"]]
            for text, required in message["parts"]:
                try:
                    exec(compile(text, "<submission>", "exec"), namespace)
                except Exception:
                    if required:
                        raise  # a helper that does not define (an import of the course) only stays undefined
            self.function = namespace[message["function"]]
        except BaseException as exc:  # noqa: B036 - whatever the definition raises is the student's result
            self.function = None
            return {"status": "raised", "error": describe(exc)}
        return {"status": "ok"}

    def call(self, message: dict) -> dict:
        if self.function is None:
            return {"status": "raised", "error": "the function was not defined"}
        args, kwargs = from_plain(message["args"]), from_plain(message["kwargs"])
        try:
            if self.adapter is not None:
                value = self.adapter(self.function, *args, **kwargs)
            else:
                value = self.function(*args, **kwargs)
            return {"status": "ok", "value": to_plain(value)}
        except NotImplementedError:
            return {"status": "not yet"}
        except BaseException as exc:  # noqa: B036 - a KeyboardInterrupt or SystemExit in the answer is its result
            return {"status": "raised", "error": describe(exc)}

    def serve(self) -> None:
        while True:
            message = receive(self.inbox)
            op = message.get("op")
            if op == "exit":
                return
            reply = self.define(message) if op == "define" else self.call(message) if op == "call" else \
                {"status": "raised", "error": f"unknown op {op!r}"}
            send(self.outbox, reply)


def main() -> None:
    # The channel keeps the original stdin/stdout; the student's prints go to stderr (the sandbox's log).
    inbox = os.fdopen(os.dup(0), "rb", buffering=0)
    outbox = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    send(outbox, {"op": "ready"})
    Probe(inbox, outbox).serve()


if __name__ == "__main__":
    main()
