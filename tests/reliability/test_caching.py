"""numba's on-disk cache, as nbops uses it: a fresh process with a warm cache loads kernels without compiling them
(cache misses 0, first call much faster than cold), and editing a cached kernel's source invalidates its entry.
The read-only-install fallback (no writable __pycache__ -> a per-user temp cache dir) is tested in test_dispatch.py."""

import json
import os
import subprocess
import sys
import textwrap


FIRST_CALLS = textwrap.dedent("""
    import json, time
    import numpy as np
    import numba
    import nbops
    x = np.linspace(-3, 3, 60, dtype=np.float32).reshape(6, 10)
    big = np.linspace(-3, 3, 1 << 17, dtype=np.float32)
    times = {}
    for name, fn in [("relu", lambda: nbops.relu(x)), ("softmax", lambda: nbops.softmax(x, 1)),
                     ("relu parallel", lambda: nbops.relu(big))]:
        t = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - t
    import nbops.cpu.activation as mod
    from nbops.cpu._util import _SERIAL
    # small inputs run the kernels' serial twins (cpu/_util.serial), cached apart from the parallel kernels
    disp = [v for v in vars(mod).values() if isinstance(v, numba.core.registry.CPUDispatcher)] + list(_SERIAL.values())
    misses = sum(sum(d.stats.cache_misses.values()) for d in disp)
    hits = sum(sum(d.stats.cache_hits.values()) for d in disp)
    print(json.dumps({"times": times, "misses": misses, "hits": hits}))
""")


def _run(code, cache_dir, cwd=None, layer=None):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    if layer:
        env["NUMBA_THREADING_LAYER"] = layer
    r = subprocess.run([sys.executable, "-c", code], env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout.strip().splitlines()[-1]


def test_warm_cache_loads_without_compiling(tmp_path):
    cold = json.loads(_run(FIRST_CALLS, tmp_path))
    warm = json.loads(_run(FIRST_CALLS, tmp_path))
    print(f"first call cold {cold['times']} warm {warm['times']}")
    assert cold["misses"] > 0
    assert warm["misses"] == 0 and warm["hits"] > 0
    # small inputs run serial twins, the large one the parallel kernel; the first call of a process also pays
    # numba's own start-up (~0.15 s), and the first parallel launch starts its thread pool (~0.1 s), cached or not
    c, w = cold["times"], warm["times"]
    assert w["softmax"] * 10 < c["softmax"] and w["relu parallel"] * 3 < c["relu parallel"], (c, w)
    assert sum(w.values()) * 3 < sum(c.values()), (c, w)


KERNEL = textwrap.dedent("""
    from numba import njit

    @njit(cache=True)
    def kernel(x):
        return x * {factor}
""")
USE = "import json, tinypkg.mod as m; print(json.dumps([m.kernel(3.0), sum(m.kernel.stats.cache_misses.values())]))"


def test_editing_a_kernel_invalidates_its_cache(tmp_path):
    pkg = tmp_path / "src" / "tinypkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    src = pkg / "mod.py"
    src.write_text(KERNEL.format(factor=2.0))
    cache = tmp_path / "cache"
    first, second = json.loads(_run(USE, cache, pkg.parent)), json.loads(_run(USE, cache, pkg.parent))
    assert first == [6.0, 1] and second == [6.0, 0]  # compiled once, then loaded
    st = src.stat()
    src.write_text(KERNEL.format(factor=5.0))
    os.utime(src, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))
    edited = json.loads(_run(USE, cache, pkg.parent))
    assert edited == [15.0, 1]  # the edit is seen and compiled, not the stale cached 2.0


def test_cache_shared_across_threading_layers(tmp_path, layer="workqueue"):
    """A cache written under the default layer loads under another one (the layer is a runtime choice)."""
    _run(FIRST_CALLS, tmp_path)
    warm = json.loads(_run(FIRST_CALLS, tmp_path, layer=layer))
    assert warm["misses"] == 0
