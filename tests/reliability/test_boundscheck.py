"""Every CPU kernel compiled with numba's bounds checking (NUMBA_BOUNDSCHECK=1, in a subprocess with its own empty
cache dir, since the flag changes the compiled code) runs the valid sample call of every public op (fast mode), or
the whole CPU parity suite of every family (--slow), without an out-of-bounds access: numba raises IndexError on the
first one, which fails the run."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(TESTS)

SAMPLE_RUN = textwrap.dedent("""
    import sys
    sys.path.insert(0, {tests!r})
    import numba
    import numpy as np
    assert numba.config.BOUNDSCHECK, "NUMBA_BOUNDSCHECK did not reach numba"

    @numba.njit
    def _outside(a):
        return a[len(a)]

    try:
        _outside(np.zeros(3))
        raise SystemExit("bounds checking is not active")
    except IndexError:
        pass
    import nbops
    from test_errors import NO_ARRAY, SAMPLES
    from nbops._dispatch import PUBLIC_OPS
    names = sorted(n for n in PUBLIC_OPS if n not in NO_ARRAY)
    for name in names:
        args, kwargs = SAMPLES[name]()
        getattr(nbops, name)(*args, **kwargs)
    print("ok", len(names))
""")


def _env(tmp_path):
    return dict(os.environ, NUMBA_BOUNDSCHECK="1", NUMBA_CACHE_DIR=str(tmp_path))


def test_samples_in_bounds(tmp_path):
    r = subprocess.run([sys.executable, "-c", SAMPLE_RUN.format(tests=TESTS)], env=_env(tmp_path), cwd=ROOT,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0 and r.stdout.startswith("ok"), (r.stdout + r.stderr)[-3000:]


FAMILY_FILES = sorted(glob.glob(os.path.join(TESTS, "test_*.py")))


@pytest.mark.slow
@pytest.mark.parametrize("path", FAMILY_FILES, ids=os.path.basename)
def test_parity_suite_in_bounds(tmp_path, path):
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-m", "not cuda", "-p", "no:cacheprovider", path],
                       env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=3600)
    assert r.returncode in (0, 5), r.stdout[-3000:]
