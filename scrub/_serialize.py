"""Saving hypotheses: as Python source (:func:`to_python`) and as JSON (:func:`to_json`, :func:`from_json`).

Everything a node holds is saved: name, model nodes, ports, positions, feature, ``open``, neuron
sets, subspaces (the basis written out in full, so it round-trips exactly) and the DAG's shape (a
node attached to several parents is written once and attached again). A feature or ``positions=``
function is saved by its importable name (``module:qualname``); a lambda, a nested function or one
defined in ``__main__`` cannot be re-imported and is refused.

>>> import scrub
>>> h = scrub.Hypothesis("demo")
>>> _ = h.output().add("heads", model=["a1.0"], port="q", agree="label")
>>> scrub.from_json(scrub.to_json(h)).describe() == h.describe()
True
"""

from __future__ import annotations

import importlib
import json
from typing import Any

from scrub._hypothesis import Hypothesis, Node
from scrub._sampling import Exact, Random
from scrub._subspace import Subspace
from scrub.errors import HypothesisError

__all__ = ["to_python", "to_json", "from_json", "check_saveable"]


def _function_name(fn, where: str) -> str:
    module, qual = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
    if not module or not qual or module == "__main__" or "<" in qual:
        raise HypothesisError(
            f"{where}: the function {getattr(fn, '__name__', fn)!r} cannot be saved: only functions importable by "
            "name (defined at the top level of a module, not a lambda, not in __main__) are saved, by that name; "
            "move it into a module, or use a dataset column name"
        )
    try:
        found = _resolve(f"{module}:{qual}", where)
    except HypothesisError:
        found = None
    if found is not fn:
        raise HypothesisError(f"{where}: the function {module}.{qual} is not importable under that name; it cannot be saved")
    return f"{module}:{qual}"


def _resolve(ref: str, where: str):
    module, _, qual = ref.partition(":")
    try:
        obj: Any = importlib.import_module(module)
        for part in qual.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise HypothesisError(f"{where}: cannot import the function {ref!r} ({exc})") from None
    return obj


def check_saveable(feature, where: str) -> None:
    """Raise :class:`~scrub.HypothesisError` if ``feature`` cannot be saved by name."""
    _feature_json(feature, where)


def _feature_json(f, where: str) -> dict[str, Any]:
    if isinstance(f, Exact) or f is Exact:
        return {"kind": "exact"}
    if isinstance(f, Random) or f is Random:
        return {"kind": "random"}
    if isinstance(f, str):
        return {"kind": "column", "name": f}
    if callable(f):
        return {"kind": "function", "name": _function_name(f, where)}
    raise HypothesisError(f"{where}: cannot save the feature {f!r}")


def _feature_from(d: dict[str, Any], where: str):
    kind = d.get("kind")
    if kind == "exact":
        return Exact()
    if kind == "random":
        return Random()
    if kind == "column":
        return str(d["name"])
    if kind == "function":
        return _resolve(str(d["name"]), where)
    raise HypothesisError(f"{where}: unknown feature kind {kind!r}")


def _positions_json(p, where: str):
    if p is None:
        return None
    if callable(p):
        return {"function": _function_name(p, where)}
    return [int(x) for x in p]


def _node_json(n: Node, root: Node) -> dict[str, Any]:
    where = f"node {n.name!r}"
    return {
        "name": n.name,
        "model": list(n.model),
        "port": None if n.port is None else list(n.port),
        "positions": _positions_json(n.positions, where),
        "agree": _feature_json(n.agree, where),
        "open": bool(n.open),
        "children": [c.name for c in n.children],
        # only when set, so hypotheses without them save as before
        **({"neurons": [int(i) for i in n.neurons]} if n.neurons is not None else {}),
        **({"subspace": {"name": n.subspace.name, "basis": n.subspace.basis.tolist()}} if n.subspace is not None else {}),
        **({"root": True} if n is root else {}),
    }


def to_json(hypothesis: Hypothesis, indent: int | None = 1) -> str:
    """The hypothesis as JSON text (rebuild it with :func:`from_json`).

    Raises:
        HypothesisError: a feature or positions function that is not importable by name.
    """
    nodes = [_node_json(n, hypothesis.root) for n in hypothesis.nodes()]
    return json.dumps({"scrub_hypothesis": 1, "name": hypothesis.name, "nodes": nodes}, indent=indent)


def from_json(text: str) -> Hypothesis:
    """The hypothesis :func:`to_json` wrote (functions are imported by name)."""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise HypothesisError(f"from_json: not JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(doc, dict) or doc.get("scrub_hypothesis") != 1 or not isinstance(doc.get("nodes"), list):
        raise HypothesisError("from_json: not a hypothesis written by scrub.to_json (no 'scrub_hypothesis': 1)")
    h = Hypothesis(str(doc["name"]))
    specs = {d["name"]: d for d in doc["nodes"]}
    made: dict[str, Node] = {}

    def build(parent: Node, name: str) -> None:
        if name not in specs:
            raise HypothesisError(f"from_json: node {name!r} is a child but is not described")
        if name in made:
            parent.add(made[name])
            return
        d = specs[name]
        where = f"node {name!r}"
        pos = d["positions"]
        pos = _resolve(pos["function"], where) if isinstance(pos, dict) else pos
        sub = d.get("subspace")
        node = parent.add(name, model=d["model"], port=d["port"], positions=pos, agree=_feature_from(d["agree"], where),
                          neurons=d.get("neurons"),
                          subspace=None if sub is None else Subspace(sub["basis"], name=sub.get("name")))
        node.open = bool(d["open"])
        made[name] = node
        for c in d["children"]:
            build(node, c)

    root_spec = next((d for d in doc["nodes"] if d.get("root")), None)
    if root_spec is None:
        raise HypothesisError("from_json: no root node")
    root = h.output()
    root.open = bool(root_spec["open"])
    for c in root_spec["children"]:
        build(root, c)
    return h


def _feature_py(f, where: str) -> tuple[str, str | None]:
    d = _feature_json(f, where)
    if d["kind"] == "exact":
        return "scrub.Exact()", None
    if d["kind"] == "random":
        return "scrub.Random()", None
    if d["kind"] == "column":
        return repr(d["name"]), None
    module, qual = d["name"].split(":")
    return qual.replace(".", "_"), f"from {module} import {qual.split('.')[0]}" + (
        "" if "." not in qual else f"  # {qual}")


def to_python(hypothesis: Hypothesis, function: str = "hypothesis") -> str:
    """The hypothesis as Python source: a module defining ``function()`` that builds it.

    Raises:
        HypothesisError: a feature or positions function that is not importable by name.
    """
    imports: list[str] = []
    body: list[str] = []
    var: dict[int, str] = {}
    root = hypothesis.root
    for n in hypothesis.nodes():
        _node_json(n, root)  # refuses what cannot be saved
    var[id(root)] = "n0"
    body.append(f"    h = scrub.Hypothesis({hypothesis.name!r})")
    body.append("    n0 = h.output()")
    if root.open:
        body.append("    n0.open = True")

    def ref(f, where: str) -> str:
        expr, imp = _feature_py(f, where)
        if imp is not None:
            module, qual = _feature_json(f, where)["name"].split(":")
            expr = qual
            line = f"from {module} import {qual.split('.')[0]}"
            if line not in imports:
                imports.append(line)
        return expr

    def walk(n: Node) -> None:
        for c in n.children:
            if id(c) in var:
                body.append(f"    {var[id(n)]}.add({var[id(c)]})")
                continue
            v = f"n{len(var)}"
            var[id(c)] = v
            where = f"node {c.name!r}"
            args = [repr(c.name), f"model={list(c.model)!r}"]
            if c.port is not None:
                args.append(f"port={list(c.port)!r}")
            if c.positions is not None:
                pos = ref(c.positions, where) if callable(c.positions) else repr([int(x) for x in c.positions])
                args.append(f"positions={pos}")
            if not (isinstance(c.agree, Exact) or c.agree is Exact):
                args.append(f"agree={ref(c.agree, where)}")
            if c.neurons is not None:
                args.append(f"neurons={[int(i) for i in c.neurons]!r}")
            if c.subspace is not None:  # floats written by repr: the basis round-trips exactly
                args.append(f"subspace=scrub.Subspace({c.subspace.basis.tolist()!r}, name={c.subspace.name!r})")
            body.append(f"    {v} = {var[id(n)]}.add({', '.join(args)})")
            if c.open:
                body.append(f"    {v}.open = True")
            walk(c)

    walk(root)
    head = ['"""' + f"The hypothesis {hypothesis.name!r}, written by scrub.to_python." + '"""', "", "import scrub"]
    return "\n".join([*head, *imports, "", "", f"def {function}() -> scrub.Hypothesis:", *body, "    return h", ""])
