"""MkDocs hook: one reference page per public module of jaxdiff, found by walking the package.

Nothing is imported: module summaries are read with ``ast`` and mkdocstrings reads the sources
with griffe. A package's page shows its docstring and a table of its public submodules.
"""

from __future__ import annotations

import ast
import posixpath
from pathlib import Path

from mkdocs.structure.files import File

PACKAGE = Path(__file__).resolve().parents[1] / "jaxdiff"


def _modules():
    """(dotted name, page path, source file) of every public module and package."""
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts, page = parts[:-1], (*parts[1:-1], "index.md")
        else:
            page = (*parts[1:-1], parts[-1] + ".md")
        if not any(part.startswith("_") for part in parts):
            yield ".".join(parts), posixpath.join("reference", *page), path


def _summary(path: Path) -> str:
    doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
    return doc.split("\n\n")[0].replace("\n", " ").replace("|", "\\|")


def on_files(files, config):
    modules = list(_modules())
    for name, page, path in modules:
        content = f"# {name}\n\n::: {name}\n"
        if path.name == "__init__.py":
            rows = [
                f"| [{child}]({posixpath.relpath(child_page, posixpath.dirname(page))}) | {_summary(child_path)} |"
                for child, child_page, child_path in modules
                if child.rpartition(".")[0] == name
            ]
            content += "    options:\n      members: false\n\n| module | |\n|---|---|\n" + "\n".join(rows) + "\n"
        files.append(File.generated(config, page, content=content))
    return files


def on_nav(nav, config, files):
    """Title each package's section by its dotted name (rather than the folder's name)."""

    def retitle(items):
        for section in (item for item in items if item.is_section):
            for page in section.children:
                parts = page.file.src_uri.split("/") if page.is_page else []
                if len(parts) > 2 and parts[0] == "reference" and parts[-1] == "index.md":
                    section.title = ".".join(("jaxdiff", *parts[1:-1]))
            retitle(section.children)

    retitle(nav.items)
    return nav
