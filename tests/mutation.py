"""A sampled mutation test of the decision code.

Usage (from the repo root, with the project's venv)::

    .venv/bin/python tests/mutation.py                    # the documented run
    .venv/bin/python tests/mutation.py --sample 0         # every mutant
    .venv/bin/python tests/mutation.py --list             # the mutants, not run
    .venv/bin/python tests/mutation.py --only core/decide.py:41 --show
    .venv/bin/python tests/mutation.py --since a09d751 --sample 0   # changed code only

Each mutant is one small change to one module of the decision code
(``core/decide.py``, ``core/evolve.py``, ``core/status.py``,
``stower/stower.py``, ``stower/batch.py``), made on its syntax tree:

- a comparison flipped (``==``/``!=``, ``<``/``>=``, ``>``/``<=``, ``is``/``is not``,
  ``in``/``not in``), ``and``/``or`` swapped, a ``not`` removed, a condition negated;
- a number changed (0 → 1, n → n + 1), ``True``/``False`` swapped, ``+``/``-`` and
  ``*``/``/`` swapped;
- a statement removed (``pass`` instead), a ``return x`` made ``return None``;
- an element removed from a set literal (a move of the transition table).

Not mutated: docstrings, type annotations, imports, ``__all__``, ``assert``
statements (they narrow types; removing one changes nothing a test can see)
and string constants (messages).

``--since REV`` keeps only the mutants whose node touches a line added or
changed since the git revision ``REV`` (``git diff -U0 REV`` of each module):
the mutants of new code, which a sample of the whole modules may miss; the
sample, if any, is then drawn from those.

The mutants are drawn with a fixed seed, so a run is repeatable. Each is
written over its module in a temporary copy of the repo (never in place),
laid out as the ``jobledger`` package and imported from there, and the fast
tests of the decision code run against it with a time limit: a failing run
kills the mutant; a passing one lets it survive; one past the time limit is
a timeout (counted as killed). The run ends with the score and the survivors.
"""

from __future__ import annotations

import argparse
import ast
import copy
import difflib
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODULES = (
    "core/decide.py",
    "core/evolve.py",
    "core/status.py",
    "stower/stower.py",
    "stower/batch.py",
)
"""The decision code: deciding commands, folding events, the transition
table, the Stower and its batch planning (one module before issue 14 split
``core/decide.py`` and ``stower/stower.py``)."""
TESTS = (
    "tests/test_transitions.py",
    "tests/test_decide.py",
    "tests/test_core.py",
    "tests/test_stower.py",
    "tests/test_recovery.py",
)
"""The fast tests of the decision code, the pure ones first (they fail soonest);
``test_recovery.py`` last, for the recoveries, releases and holders (a real
ledger on a file, driven by the injected clock)."""
SEED = 13
SAMPLE = 60
PARTS = ("core", "eventbus", "store", "stower", "workers", "annotations", "cli")

_FLIP: dict[type[ast.cmpop], type[ast.cmpop]] = {
    ast.Eq: ast.NotEq,
    ast.NotEq: ast.Eq,
    ast.Lt: ast.GtE,
    ast.GtE: ast.Lt,
    ast.Gt: ast.LtE,
    ast.LtE: ast.Gt,
    ast.Is: ast.IsNot,
    ast.IsNot: ast.Is,
    ast.In: ast.NotIn,
    ast.NotIn: ast.In,
}
_SWAP: dict[type[ast.operator], type[ast.operator]] = {
    ast.Add: ast.Sub,
    ast.Sub: ast.Add,
    ast.Mult: ast.Div,
    ast.Div: ast.Mult,
    ast.FloorDiv: ast.Mult,
    ast.Pow: ast.Mult,
}
_REMOVABLE = (ast.Expr, ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Raise, ast.If, ast.For)


@dataclass(frozen=True)
class Mutant:
    module: str
    index: int  # the site's place in the walk of the module's tree
    line: int
    what: str
    end_line: int = 0  # the node's last line (0: its first)

    def touches(self, lines: set[int]) -> bool:
        return any(n in lines for n in range(self.line, max(self.line, self.end_line) + 1))

    @property
    def id(self) -> str:
        return f"{self.module}:{self.index}"


def _is_all(node: ast.AST) -> bool:
    return isinstance(node, ast.Assign) and any(
        isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets
    )


def _skipped(tree: ast.Module) -> set[int]:
    """ids of the nodes never mutated: annotations, docstrings, imports,
    ``__all__``, asserts (and everything inside them)."""
    roots: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.arg) and node.annotation is not None:
            roots.append(node.annotation)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.returns:
            roots.append(node.returns)
        elif isinstance(node, ast.AnnAssign):
            roots.append(node.annotation)
        elif isinstance(node, ast.Import | ast.ImportFrom | ast.Assert) or _is_all(node):
            roots.append(node)
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            roots.append(node)  # a docstring (or a bare string)
    return {id(n) for root in roots for n in ast.walk(root)}


def _sites(tree: ast.Module) -> Iterator[tuple[ast.AST, str, int]]:
    """Every (node, kind, n) that can be mutated, in a fixed order: ``n``
    tells several mutants of one node apart."""
    skipped = _skipped(tree)
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(s) for s in node.body)
    for node in ast.walk(tree):
        if id(node) in skipped:
            continue
        if isinstance(node, ast.Compare):
            for n, op in enumerate(node.ops):
                if type(op) in _FLIP:
                    yield node, "compare", n
        elif isinstance(node, ast.BoolOp):
            yield node, "boolop", 0
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            yield node, "not", 0
        elif isinstance(node, ast.BinOp) and type(node.op) in _SWAP:
            yield node, "binop", 0
        elif isinstance(node, ast.Constant) and type(node.value) in (int, float, bool):
            yield node, "constant", 0
        elif isinstance(node, ast.Set):
            for n in range(len(node.elts)):
                yield node, "set", n
        if isinstance(node, ast.If | ast.While | ast.IfExp) and not isinstance(
            node.test, ast.Compare | ast.BoolOp | ast.UnaryOp
        ):
            yield node, "negate", 0
        if id(node) in in_function:
            if isinstance(node, ast.Return) and node.value is not None:
                if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                    yield node, "return", 0
            elif isinstance(node, _REMOVABLE):
                yield node, "remove", 0


def _apply(node: ast.AST, kind: str, n: int) -> str:
    """Mutate ``node`` in place; return what was done."""
    line = ast.unparse(node).splitlines()[0][:70]
    if kind == "compare":
        assert isinstance(node, ast.Compare)
        old = node.ops[n]
        node.ops[n] = _FLIP[type(old)]()
        return f"{type(old).__name__} -> {type(node.ops[n]).__name__} in {line}"
    if kind == "boolop":
        assert isinstance(node, ast.BoolOp)
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
        return f"and/or swapped in {line}"
    if kind == "not":
        return f"not removed in {line}"  # done by the caller (the node is replaced)
    if kind == "binop":
        assert isinstance(node, ast.BinOp)
        old_op = node.op
        node.op = _SWAP[type(old_op)]()
        return f"{type(old_op).__name__} -> {type(node.op).__name__} in {line}"
    if kind == "constant":
        assert isinstance(node, ast.Constant)
        old_value = node.value
        if isinstance(old_value, bool):
            node.value = not old_value
        elif old_value == 0:
            node.value = type(old_value)(1)
        else:
            node.value = old_value + 1
        return f"{old_value!r} -> {node.value!r}"
    if kind == "set":
        assert isinstance(node, ast.Set)
        gone = node.elts.pop(n)
        return f"{ast.unparse(gone)} removed from {line}"
    if kind == "negate":
        assert isinstance(node, ast.If | ast.While | ast.IfExp)
        node.test = ast.UnaryOp(op=ast.Not(), operand=node.test)
        return f"condition negated: {line}"
    if kind == "return":
        assert isinstance(node, ast.Return)
        node.value = ast.Constant(value=None)
        return f"returns None: {line}"
    return f"removed: {line}"  # "remove": done by the caller


class _Mutator(ast.NodeTransformer):
    def __init__(self, target: ast.AST, kind: str, n: int) -> None:
        self.target, self.kind, self.n = target, kind, n
        self.what = ""

    def visit(self, node: ast.AST) -> ast.AST:
        if node is self.target:
            self.what = _apply(node, self.kind, self.n)
            if self.kind == "not":
                assert isinstance(node, ast.UnaryOp)
                return node.operand
            if self.kind == "remove":
                return ast.Pass()
            return node
        return super().visit(node)


def mutants(module: str) -> list[Mutant]:
    """Every mutant of ``module`` (a path relative to the repo root)."""
    tree = ast.parse((ROOT / module).read_text(), module)
    found = []
    for index, (node, kind, n) in enumerate(_sites(tree)):
        what = _apply(copy.deepcopy(node), kind, n)
        if kind == "not":
            what = f"not removed in {ast.unparse(node)[:70]}"
        elif kind == "remove":
            what = f"removed: {ast.unparse(node).splitlines()[0][:70]}"
        line = getattr(node, "lineno", 0)
        found.append(Mutant(module, index, line, what, getattr(node, "end_lineno", None) or line))
    return found


def changed_lines(module: str, since: str) -> set[int]:
    """The lines of ``module`` (as it is now) added or changed since the git
    revision ``since``."""
    diff = subprocess.run(
        ["git", "diff", "-U0", since, "--", module],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    lines: set[int] = set()
    for match in re.finditer(r"^@@ -\S+ \+(\d+)(?:,(\d+))? @@", diff, re.MULTILINE):
        start, count = int(match[1]), int(match[2] or 1)
        lines.update(range(start, start + count))
    return lines


def mutated_source(mutant: Mutant) -> str:
    tree = ast.parse((ROOT / mutant.module).read_text(), mutant.module)
    node, kind, n = list(_sites(tree))[mutant.index]
    mutator = _Mutator(node, kind, n)
    tree = ast.fix_missing_locations(mutator.visit(tree))
    return ast.unparse(tree) + "\n"


def _copy_repo(into: Path) -> tuple[Path, Path]:
    """A copy of the repo's files and a ``site`` folder that lays it out as
    the ``jobledger`` package; returns both."""
    repo, site = into / "repo", into / "site"
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "build")
    shutil.copytree(ROOT, repo, ignore=ignore)
    package = site / "jobledger"
    package.mkdir(parents=True)
    for item in (repo / "ledger").iterdir():
        (package / item.name).symlink_to(item)
    for part in PARTS:
        (package / part).symlink_to(repo / part, target_is_directory=True)
    return repo, site


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant must never be run from a stale .pyc
    return env


def _run_tests(repo: Path, site: Path, tests: list[str], limit: float) -> str:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:randomly", *tests]
    try:
        done = subprocess.run(
            command, cwd=repo, env=_env(site), capture_output=True, text=True, timeout=limit
        )
    except subprocess.TimeoutExpired:
        return "timeout"
    return "survived" if done.returncode == 0 else "killed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--sample", type=int, default=SAMPLE, help="0: every mutant")
    parser.add_argument("--only", action="append", default=[], help="a mutant id (repeatable)")
    parser.add_argument("--tests", nargs="+", default=list(TESTS))
    parser.add_argument(
        "--since", metavar="REV", help="only mutants of lines changed since this git revision"
    )
    parser.add_argument("--list", action="store_true", help="list the mutants; run nothing")
    parser.add_argument("--show", action="store_true", help="print each mutant's diff")
    args = parser.parse_args()

    every = [m for module in MODULES for m in mutants(module)]
    if args.since:
        changed = {module: changed_lines(module, args.since) for module in MODULES}
        every = [m for m in every if m.touches(changed[m.module])]
        print(f"since {args.since}: {sum(map(len, changed.values()))} lines changed")
    if args.only:
        chosen = [m for m in every if m.id in args.only]
    elif args.sample and args.sample < len(every):
        chosen = sorted(
            random.Random(args.seed).sample(every, args.sample),
            key=lambda m: (m.module, m.index),
        )
    else:
        chosen = every
    print(f"{len(every)} mutants in {', '.join(MODULES)}; running {len(chosen)} (seed {args.seed})")
    for mutant in chosen:
        if args.list or args.show:
            print(f"{mutant.id} line {mutant.line}: {mutant.what}")
        if args.show:
            old = (ROOT / mutant.module).read_text()
            new = mutated_source(mutant)
            base = ast.unparse(ast.parse(old)) + "\n"
            sys.stdout.writelines(
                difflib.unified_diff(base.splitlines(True), new.splitlines(True), n=1)
            )
    if args.list or args.show:
        return 0

    results: dict[str, list[Mutant]] = {"killed": [], "survived": [], "timeout": []}
    with tempfile.TemporaryDirectory(prefix="jobledger-mutation-") as tmp:
        repo, site = _copy_repo(Path(tmp))
        where = "import sys, jobledger.core; print(sys.modules['jobledger.core.decide'].__file__)"
        probe = subprocess.run(
            [sys.executable, "-c", where],
            cwd=repo,
            env=_env(site),
            capture_output=True,
            text=True,
            check=True,
        )
        if not probe.stdout.strip().startswith(str(site)):
            print(f"the copy is not what gets imported: {probe.stdout.strip()}", file=sys.stderr)
            return 2
        started = time.monotonic()
        if _run_tests(repo, site, args.tests, 900) != "survived":
            print("the tests fail without any mutant: fix them first", file=sys.stderr)
            return 2
        baseline = time.monotonic() - started
        limit = 3 * baseline + 30
        print(f"baseline {baseline:.0f} s; time limit per mutant {limit:.0f} s")
        for number, mutant in enumerate(chosen, 1):
            target = repo / mutant.module
            original = target.read_text()
            target.write_text(mutated_source(mutant))
            try:
                outcome = _run_tests(repo, site, args.tests, limit)
            finally:
                target.write_text(original)
            results[outcome].append(mutant)
            place = f"{mutant.id} line {mutant.line}"
            print(f"[{number}/{len(chosen)}] {outcome:8} {place}: {mutant.what}")
            sys.stdout.flush()
    killed = len(results["killed"]) + len(results["timeout"])
    total = len(chosen)
    print(
        f"\n{killed}/{total} killed ({100 * killed / max(1, total):.1f} %): "
        f"{len(results['killed'])} by a failing test, {len(results['timeout'])} by the time limit; "
        f"{len(results['survived'])} survived"
    )
    for mutant in results["survived"]:
        print(f"  survived {mutant.id} line {mutant.line}: {mutant.what}")
    return 0 if not results["survived"] else 1


if __name__ == "__main__":
    sys.exit(main())
