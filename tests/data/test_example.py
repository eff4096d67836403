"""The Load example runs and reports its statistics."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "load_images.py"


def test_load_images_example_runs() -> None:
    out = subprocess.run([sys.executable, str(EXAMPLE), "--images", "64"], capture_output=True, text=True,
                         timeout=110, check=True)
    assert "64 images in 2 classes ['cat', 'dog']" in out.stdout
    assert "(32, 3, 64, 64) float32" in out.stdout
    assert "decode" in out.stdout and "backend" in out.stdout
    assert "bottleneck" in out.stdout or "keeps up" in out.stdout or "dominates" in out.stdout
