"""The package's import graph has no cycle (docs/architecture.md, "Layers").

Every import of a batchlib module by another counts, also those inside
functions (a lazy import still ties the two modules together); imports under
``if TYPE_CHECKING:`` do not (they never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import batchlib

PACKAGE = Path(batchlib.__file__).parent


def module_name(path: Path) -> str:
    parts = ("batchlib",) + path.relative_to(PACKAGE).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The batchlib modules that module ``name`` imports, anywhere but under ``if TYPE_CHECKING:``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if _is_type_checking(node):
            return
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module or ""
            for alias in node.names:  # "from . import x" may name a module
                if f"{target}.{alias.name}" in known:
                    found.add(f"{target}.{alias.name}")
                elif target in known:
                    found.add(target)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    found.discard(name)
    return found


def import_graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imported_modules(name, path, set(known)) for name, path in known.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (the first repeated at the end), or None."""
    colour: dict[str, int] = {}  # 1 on the current path, 2 finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        colour[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if colour.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in colour and (cycle := visit(nxt)):
                return cycle
        path.pop()
        colour[node] = 2
        return None

    for node in sorted(graph):
        if node not in colour and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_lazy_imports():
    graph = import_graph()
    assert "batchlib.workflow" in graph["batchlib.exits"]  # imported inside run_and_exit_code
    assert "batchlib.cell_analysis" in graph["batchlib.cli"]  # imported inside _demo


#: The layers of docs/architecture.md, bottom first: a module may import its own layer and those below.
LAYERS = [
    (
        "leaves",
        "_version errors log params capture progress oserrors config measure nucleus_size saturation brightness "
        "profiles "
        "profile_files parquet_parts "
        "normalize feature_select consensus illumination "
        "synthetic synthetic_geometry synthetic_nuclei state state.atomic state.stamps io.threads",
    ),
    ("names", "plate"),
    ("metadata", "readers readers.records readers.harmony readers.imagexpress readers.ome_tiff platemap"),
    (
        "io",
        "io io.backends io.containers io.h5chunks io.n5chunks io.zarrchunks io.images io.tables io.stamps io.omezarr "
        "crops",
    ),
    ("state", "state.journal state.ledger state.lock state.status executors"),
    ("s3", "s3 s3.client s3.download s3.index s3.local s3.location s3.transfer s3.upload"),
    ("job model", "layout scan planning base worker plate_checks"),
    ("engine", "job_run workflow watch watch_root"),
    (
        "jobs",
        "jobs jobs.aggregate jobs.crops jobs.examples jobs.export jobs.importer jobs.measure jobs.omezarr jobs.qc "
        "jobs.segmentation jobs.stardist_model jobs.upload jobs.illumination jobs.raw_files jobs.plate_cache "
        "jobs.normalize",
    ),
    ("commands", "batchlib exits report demo script cell_analysis cli batch"),
]


def layer_of() -> dict[str, int]:
    return {f"batchlib.{m}" if m != "batchlib" else m: rank for rank, (_, ms) in enumerate(LAYERS) for m in ms.split()}


def test_every_module_has_a_layer():
    assert sorted(set(modules()) - set(layer_of())) == [], "add the new module to LAYERS (and docs/architecture.md)"


def test_no_module_imports_a_layer_above_its_own():
    rank = layer_of()
    upward = [
        f"{a} ({LAYERS[rank[a]][0]}) imports {b} ({LAYERS[rank[b]][0]})"
        for a, targets in import_graph().items()
        for b in sorted(targets)
        if rank.get(a, 0) < rank.get(b, 0)
    ]
    assert upward == []


def test_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_code_and_docs_cite_no_file_outside_the_repository():
    repo = PACKAGE.parent
    outside = ("DESIGN" + ".md", "shared" + "/reference", "shared" + "/background", "../" + "shared")
    files = [p for pattern in ("*.py", "*.md", "*.cfg", "*.toml", "*.ini") for p in repo.rglob(pattern)]
    files = [p for p in files if not {".git", "build", ".eggs"} & set(p.parts) and "egg-info" not in str(p)]
    assert len(files) > 50
    citing = [f"{p.relative_to(repo)}: {word}" for p in files for word in outside if word in p.read_text("utf-8")]
    assert citing == []
