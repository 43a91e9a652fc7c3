"""Exercise code that matches the course reference or a classmate's after normalisation, flagged for review.

Each submitted function (with its helpers) is normalised to a token sequence -- docstrings, comments, type
annotations and layout dropped, and every name the source binds itself (parameters, assigned names, loop and
comprehension variables, function names; not imports) renamed by first appearance to ``v0``, ``v1``, ... -- and
compared with ``difflib.SequenceMatcher``. A pair at or above the threshold becomes a :class:`Flag`, which the
grader writes as ``review: ...`` in the CSV and the feedback. A flag is for a person to look at: it never changes
the points, and a match can be honest (short exercises admit few reasonable answers).

Limits: renaming defeats nothing beyond identifiers and layout. Attribute names (``x.clamp`` vs ``x.clip``),
globals and builtins, literals and operators are kept, so swapping one call for an equivalent one, reordering
statements or rewriting an expression lowers the score; functions shorter than ``min_tokens`` are never flagged.
"""

from __future__ import annotations

import ast
import difflib
import io
import itertools
import tokenize
from dataclasses import dataclass

REFERENCE = "the course reference"
_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


def _plain_tokens(source: str) -> list[str]:
    """The tokenize() stream's strings (comments and blank lines dropped), up to the first error."""
    out: list[str] = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type in (tokenize.COMMENT, tokenize.NL, tokenize.ENDMARKER):
                continue
            out.append({tokenize.NEWLINE: "\n", tokenize.INDENT: "<indent>", tokenize.DEDENT: "<dedent>"}
                       .get(tok.type, tok.string))
    except (tokenize.TokenError, SyntaxError, ValueError):
        pass
    return out


class _Strip(ast.NodeTransformer):
    """Drops docstrings and type annotations."""

    def generic_visit(self, node):
        super().generic_visit(node)
        body = getattr(node, "body", None)
        if isinstance(node, (ast.Module, *_FUNCS)) and body:
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                node.body = body[1:] or [ast.Pass()]
        if isinstance(node, ast.arg):
            node.annotation = None
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
        return node

    def visit_AnnAssign(self, node):
        if node.value is None:
            return None
        return ast.copy_location(ast.Assign(targets=[node.target], value=node.value), node)


def _bound(node: ast.AST) -> str | None:
    """The name this node binds in the source, if any (imports excluded)."""
    if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
        return node.id
    if isinstance(node, ast.arg):
        return node.arg
    if isinstance(node, (*_FUNCS, ast.ExceptHandler)):
        return node.name
    return None


def normalise(source: str) -> list[str]:
    """The token sequence of ``source`` with docstrings, comments, annotations and layout dropped and the names
    it binds renamed by first appearance to v0, v1, ...; unparsable source gives the plain tokenize() stream."""
    try:
        tree = _Strip().visit(ast.parse(source))
        bound = {name for node in ast.walk(tree) if (name := _bound(node))}
        uses = [node for node in ast.walk(tree) if isinstance(node, (ast.Name, ast.arg, *_FUNCS, ast.ExceptHandler))
                and (node.id if isinstance(node, ast.Name) else _bound(node)) in bound]
        uses.sort(key=lambda node: (node.lineno, node.col_offset))
        names: dict[str, str] = {}
        for node in uses:
            attr = "id" if isinstance(node, ast.Name) else "arg" if isinstance(node, ast.arg) else "name"
            old = getattr(node, attr)
            setattr(node, attr, names.setdefault(old, f"v{len(names)}"))
        text = ast.unparse(ast.fix_missing_locations(tree))
    except (SyntaxError, ValueError, RecursionError, TypeError, AttributeError):
        return _plain_tokens(source)
    return _plain_tokens(text)


def _ratio(a: list[str], b: list[str]) -> float:
    return difflib.SequenceMatcher(None, a, b, autojunk=False).ratio()


def similarity(a: str, b: str) -> float:
    """0..1: how alike two sources' normalised token sequences are (difflib's ratio)."""
    return _ratio(normalise(a), normalise(b))


@dataclass(frozen=True)
class Flag:
    """``student``'s function for ``checker`` looks like ``other``'s (the course reference or a classmate)."""

    student: str
    checker: str
    other: str
    score: float


def find_flags(submissions: dict[str, dict[str, str]], references: dict[str, str], threshold: float = 0.9,
               min_tokens: int = 60) -> list[Flag]:
    """Flags per checker: each student against the course reference, then each pair of classmates (both get a
    Flag naming the other). Functions under ``min_tokens`` normalised tokens are never flagged."""
    cache: dict[str, list[str]] = {}

    def tokens(source: str) -> list[str] | None:
        if source not in cache:
            cache[source] = normalise(source)
        return cache[source] if len(cache[source]) >= min_tokens else None

    flags: list[Flag] = []
    for checker in sorted({c for funcs in submissions.values() for c in funcs}):
        done = {s: tokens(funcs[checker]) for s, funcs in submissions.items() if checker in funcs}
        done = {s: toks for s, toks in done.items() if toks is not None}
        ref = tokens(references[checker]) if checker in references else None
        for student, toks in done.items():
            if ref is not None and (score := _ratio(toks, ref)) >= threshold:
                flags.append(Flag(student, checker, REFERENCE, round(score, 2)))
        for (s1, t1), (s2, t2) in itertools.combinations(sorted(done.items()), 2):
            if (score := _ratio(t1, t2)) >= threshold:
                flags += [Flag(s1, checker, s2, round(score, 2)), Flag(s2, checker, s1, round(score, 2))]
    return sorted(flags, key=lambda f: (f.student, f.checker, f.other != REFERENCE, f.other))


def review_note(flags: list[Flag], student: str, checker: str) -> str:
    """One line for the report and the CSV, e.g. ``review: 0.97 like the course reference; 0.93 like bob``."""
    mine = [f for f in flags if f.student == student and f.checker == checker]
    mine.sort(key=lambda f: (f.other != REFERENCE, f.other))
    return "review: " + "; ".join(f"{f.score:.2f} like {f.other}" for f in mine) if mine else ""
