"""The package's shape: layers that import only downwards, no import cycles, a core
without Bytewax, URL schemes read only by the connectors, tests on public names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import search_sessions

PACKAGE = Path(search_sessions.__file__).parent
TESTS = Path(__file__).parent

# A module may import modules of its own layer or lower ones, never higher ones.
LAYERS = {
    "core": 0,
    "errors": 0,
    "control": 1,
    "crashpoints": 1,
    "config": 1,
    "connectors": 2,
    "dataflow": 3,
    "runtime": 4,
}
TOP = 5  # cli, report, simulate, demo, __init__, __main__


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path) -> set[str]:
    """Package modules imported anywhere in the module (functions included: a lazy
    import is still a dependency)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{a.name}" for a in node.names)
    known = modules()
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    return {name: imports_of(name, path) for name, path in modules().items()}


def layer(name: str) -> int:
    parts = name.split(".")
    return LAYERS.get(parts[1], TOP) if len(parts) > 1 else TOP


def find_cycles(g: dict[str, set[str]]) -> list[str]:
    """Every back edge of a depth-first walk, as the cycle it closes."""
    cycles = []
    state: dict[str, int] = {}  # 1 on the path, 2 done

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(g[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for node in sorted(g):
        if node not in state:
            visit(node, [node])
    return cycles


def test_no_import_cycles() -> None:
    assert not find_cycles(graph())


def test_cycle_check_finds_a_cycle() -> None:
    """The check above would fail on a cycle, a lazy import's too (so it is not vacuous)."""
    g = graph()
    assert "search_sessions.core.time" in g["search_sessions.core.sessions"]
    g["search_sessions.core.time"].add("search_sessions.core.sessions")
    assert find_cycles(g)


def test_layers_import_only_downwards() -> None:
    wrong = [
        f"{name} (layer {layer(name)}) imports {dep} (layer {layer(dep)})"
        for name, deps in graph().items()
        for dep in deps
        if layer(dep) > layer(name)
    ]
    assert not wrong, wrong


def test_core_imports_only_core() -> None:
    g = graph()
    for name, deps in g.items():
        if name.startswith("search_sessions.core"):
            outside = [d for d in deps if not d.startswith("search_sessions.core")]
            assert not outside, (name, outside)


def test_core_runs_without_bytewax() -> None:
    code = (
        "import sys, search_sessions.core.events, search_sessions.core.sessions, "
        "search_sessions.core.searches, search_sessions.core.rollups, "
        "search_sessions.core.schema, search_sessions.core.time\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'bytewax'], 'bytewax imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_the_command_line_begins_before_bytewax_is_imported() -> None:
    """``run`` lists its inputs and begins the pre-scans of ``--order auto`` while
    Bytewax is imported (cli.py imports it only then): neither may import it first."""
    code = (
        "import sys, search_sessions.cli, search_sessions.connectors.inputs\n"
        "assert not [m for m in sys.modules if m.split('.')[0] == 'bytewax'], 'bytewax imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_only_connectors_read_url_schemes() -> None:
    """Scheme prefixes appear in code only under connectors/ (docstrings and help texts
    may show them)."""
    offenders = []
    for name, path in modules().items():
        if name.startswith("search_sessions.connectors"):
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Module | ast.FunctionDef | ast.ClassDef)
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("startswith", "removeprefix")
            ):
                for arg in ast.walk(node):
                    text = arg.value if isinstance(arg, ast.Constant) else None
                    if isinstance(text, str) and ("://" in text or text == "-"):
                        offenders.append(f"{name}:{node.lineno}")
            if (
                isinstance(node, ast.Compare)
                and id(node) not in docstrings
                and any(
                    isinstance(c, ast.Constant) and c.value in ("-", "kafka://")
                    for c in ast.walk(node)
                )
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, offenders


def test_tests_import_public_names_only() -> None:
    private = []
    for path in sorted(TESTS.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                "search_sessions"
            ):
                private += [
                    f"{path.relative_to(TESTS)}: {a.name}"
                    for a in node.names
                    if a.name.startswith("_")
                ]
    assert not private, private


def test_public_api() -> None:
    assert set(search_sessions.__all__) == set(search_sessions._WHERE)
    for name in search_sessions.__all__:
        assert getattr(search_sessions, name).__doc__, name
    assert issubclass(search_sessions.ConfigError, search_sessions.SearchSessionsError)
    assert issubclass(search_sessions.RunError, search_sessions.SearchSessionsError)


MAX_FUNCTION_LINES = 80
"""Issue #21: no function (Python or Rust) over 80 lines, docstring and comments included."""


def long_python_functions(source: str) -> list[tuple[str, int]]:
    """``(name, lines)`` of the functions in ``source`` over :data:`MAX_FUNCTION_LINES`."""
    return [
        (node.name, node.end_lineno - node.lineno + 1)
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno is not None
        and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES
    ]


def long_rust_functions(source: str) -> list[tuple[str, int]]:
    """The same for Rust, as rustfmt lays it out: a ``fn`` from its line to the first
    line after it that closes a brace at the ``fn``'s own indentation."""
    lines = source.splitlines()
    out = []
    for i, line in enumerate(lines):
        head = line.lstrip()
        if not head.startswith(("fn ", "pub fn ", "pub(crate) fn ", "pub(super) fn ")):
            continue
        indent = line[: len(line) - len(head)]
        for j in range(i + 1, len(lines)):
            if lines[j] == indent + "}":
                if j - i + 1 > MAX_FUNCTION_LINES:
                    out.append((head.split("(")[0].split()[-1], j - i + 1))
                break
    return out


def test_no_function_is_over_80_lines() -> None:
    native = PACKAGE.parent.parent / "native" / "src"
    found = {
        str(p): long
        for p in sorted(PACKAGE.rglob("*.py"))
        if (long := long_python_functions(p.read_text()))
    }
    found |= {
        str(p): long
        for p in sorted(native.glob("*.rs"))
        if (long := long_rust_functions(p.read_text()))
    }
    assert not found


def test_the_function_length_checks_find_a_long_function() -> None:
    body = "\n".join(f"    x{i} = {i}" for i in range(85))
    assert long_python_functions(f"def f():\n{body}\n") == [("f", 86)]
    rust = "\n".join(f"        let x{i} = {i};" for i in range(85))
    assert long_rust_functions(f"impl A {{\n    pub fn g(&self) {{\n{rust}\n    }}\n}}\n") == [
        ("g", 87)
    ]
    assert long_rust_functions("fn h() {\n}\n") == []


_ONE_EVENT = (
    "import sys, tempfile, os\n"
    "from search_sessions.cli import main\n"
    "d = tempfile.mkdtemp()\n"
    "p = os.path.join(d, 'in.jsonl')\n"
    'open(p, \'w\').write(\'{"type": "search", "user": "u", '
    '"time": "2026-01-01T00:00:00Z", "query": "q"}\\n\')\n'
)
"""The start of a script that runs the command line in a fresh interpreter: ``p``, a file
of one event, in a temporary directory ``d``."""


def test_a_run_loads_only_what_it_uses() -> None:
    """A run (reading ahead) imports no ``concurrent.futures`` and ``logging`` (the reader
    threads' tasks are the package's), no ``hashlib`` (OpenSSL: the Python core's
    session ids use CPython's own BLAKE2) and no ``socket`` (local clusters only): 10 ms
    and 4 MB of every process's start."""
    code = _ONE_EVENT + (
        "from search_sessions.core.cores import NATIVE\n"
        "for core in ('python',) if NATIVE is None else ('native', 'python'):\n"
        "    os.environ['SEARCH_SESSIONS_CORE'] = core\n"
        "    try:\n"
        "        main(['run', p, '--searches', os.path.join(d, core), '--read-ahead', 'on'])\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "    assert open(os.path.join(d, core)).read().count('search_id') == 1\n"
        "loaded = {'concurrent.futures', 'logging', 'hashlib', '_hashlib', 'socket'}\n"
        "assert not loaded & set(sys.modules), loaded & set(sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_a_run_imports_no_asyncio_and_bytewax_still_can() -> None:
    """Bytewax's ``inputs`` imports asyncio (and ssl) for ``batch_async``, which no run
    calls: the package defers it (20-30 ms and 1.7 MB of every process's start). A
    whole run imports neither; ``batch_async`` still works, with the real module."""
    code = _ONE_EVENT + (
        "try:\n"
        "    main(['run', p, '--searches', os.path.join(d, 's.jsonl'), '--quiet'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'asyncio' not in sys.modules and 'ssl' not in sys.modules\n"
        "import bytewax.inputs, datetime\n"
        "async def gen():\n"
        "    for i in range(3):\n"
        "        yield i\n"
        "got = list(bytewax.inputs.batch_async(gen(), datetime.timedelta(seconds=5), 10))\n"
        "assert got == [[0, 1, 2]], got\n"
        "assert type(sys.modules['asyncio']).__name__ == 'module'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
