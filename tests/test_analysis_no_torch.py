"""The analysis never imports torch, directly or through anything it imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_importing_every_analysis_module_leaves_torch_out(tmp_path):
    code = textwrap.dedent("""
        import importlib, pkgutil, sys
        import analysis
        names = ["analysis"] + [m.name for m in pkgutil.walk_packages(analysis.__path__, "analysis.")
                                if m.name != "analysis.__main__"]
        for name in names:
            importlib.import_module(name)
        assert len(names) >= 10, names
        bad = sorted(m for m in sys.modules if m == "torch" or m.startswith("torch."))
        print("modules:", len(names), "torch:", bad)
        assert not bad, bad
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "torch: []" in result.stdout


def test_the_whole_command_runs_with_torch_blocked(tmp_path):
    """Run `python -m analysis` on run folders with any torch import made to fail."""
    code = textwrap.dedent(f"""
        import sys

        class NoTorch:
            def find_spec(self, name, path=None, target=None):
                if name == "torch" or name.startswith("torch."):
                    raise ImportError(f"the analysis imported {{name}}")
                return None

        sys.meta_path.insert(0, NoTorch())  # any `import torch` now fails
        sys.path.insert(0, {str(REPO)!r})
        from tests.analysis_fixtures import make_study
        make_study({str(tmp_path / "outputs")!r}, study="t", pairs=(0, 1), replicates=2, shuffled_replicates=0,
                   epochs=4)
        from analysis.cli import main
        code = main(["--root", {str(tmp_path / "outputs")!r}, "--core-only", "--quiet"])
        assert code == 0, code
        assert "torch" not in sys.modules
        print("ok")
    """)
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "outputs" / "analysis" / "report.html").is_file()
