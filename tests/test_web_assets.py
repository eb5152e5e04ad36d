"""The page's files ship in the package, and its vendored modules are the locked versions."""

from __future__ import annotations

import json
import re
from pathlib import Path

from streamrag.web import STATIC

WEB = Path(__file__).resolve().parents[1] / "web"


def test_vendored_modules_are_the_versions_the_lock_file_names() -> None:
    lock = json.loads((WEB / "package-lock.json").read_text())
    vendored = json.loads((STATIC / "vendor" / "versions.json").read_text())
    wanted = json.loads((WEB / "package.json").read_text())["dependencies"]
    assert vendored == {
        name: lock["packages"][f"node_modules/{name}"]["version"] for name in wanted
    }
    banner = (STATIC / "vendor" / "marked.esm.js").read_text()[:200]
    assert f"marked v{vendored['marked']}" in banner


def test_every_module_the_page_imports_exists() -> None:
    """No build step: each relative import resolves to a shipped file."""
    for module in STATIC.rglob("*.js"):
        for target in re.findall(r'^import .* from "(\.[^"]+)";', module.read_text(), re.M):
            assert (module.parent / target).resolve().is_file(), f"{module.name}: {target}"
    html = (STATIC / "index.html").read_text()
    for asset in re.findall(r'(?:src|href)="/static/([^"]+)"', html):
        assert (STATIC / asset).is_file(), asset
