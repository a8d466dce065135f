"""The CLI lets numba load without importing scipy, and leaves scipy importable."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))


def test_numba_registry_loads_without_scipy_after_skip_blas_probe() -> None:
    """After skip_blas_probe, numba's numpy registry imports no scipy; the hook removes itself; scipy still imports."""
    code = (
        "import sys\n"
        "from pcaptools.jit import skip_blas_probe, _NoBlasProbe\n"
        "skip_blas_probe()\n"
        "import numba.np.arraymath\n"
        "assert 'scipy.linalg' not in sys.modules, 'scipy.linalg was imported'\n"
        "assert not any(isinstance(f, _NoBlasProbe) for f in sys.meta_path)\n"
        "import scipy.linalg\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=ENV,
                         capture_output=True, text=True, check=True)  # fmt: skip
    assert out.stdout.strip() == "ok"
