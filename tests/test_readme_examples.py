"""Run the ```python examples of the README sections this suite owns (copy-paste examples must work)."""
import importlib.util
import os
import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
SECTIONS = ["Models", "Feature extraction", "Save and load (Hugging Face layout)", "Export", "timm", "Visualisation"]


def python_blocks(section: str) -> list[str]:
    text = README.read_text()
    m = re.search(rf"^## {re.escape(section)}\n(.*?)(?=^## |\Z)", text, flags=re.S | re.M)
    assert m, f"README has no section '## {section}'"
    return re.findall(r"```python\n(.*?)```", m.group(1), flags=re.S)


@pytest.mark.parametrize("section", SECTIONS)
def test_readme_section_examples_run(section, tmp_path, monkeypatch):
    blocks = python_blocks(section)
    assert blocks, f"section '{section}' has no python example"
    if section == "timm":
        spec = importlib.util.spec_from_file_location("_timm_shim", Path(__file__).with_name("_timm_shim.py"))
        shim = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(shim)
        try:
            shim.import_timm()
        except ImportError:
            if os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no"):
                raise  # the `test` extra installs timm: CI runs this example
            pytest.skip("timm is not installed (optional); the timm example needs it")
    monkeypatch.chdir(tmp_path)
    for code in blocks:
        exec(compile(code, f"README.md ## {section}", "exec"), {"__name__": "__readme__"})
