"""Mono's C# compiler and runtime, which build and run the Unity example scripts outside Unity."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MCS, MONO = shutil.which("mcs"), shutil.which("mono")
ENV = {**os.environ, "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8"}  # Mono's console encoding follows the locale
needs_mono = pytest.mark.skipif(MCS is None or MONO is None,
                                reason="Mono's C# compiler is not installed (apt-get install mono-mcs mono-runtime; "
                                       ".ci/run does this)")
