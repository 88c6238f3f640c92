"""Where numba's ``cache=True`` files go.

numba caches next to the source (``nbops/**/__pycache__``) when that directory is writable, or in the directory
named by ``NUMBA_CACHE_DIR``. For a read-only install (a system site-packages, a container image) nbops points
numba at a per-user directory under the system temp dir instead, so that ``cache=True`` kernels still import and
run. This must happen before the first ``@njit(cache=True)`` decorator runs.
"""

import os
import tempfile


def _writable(directory):
    try:
        os.makedirs(directory, exist_ok=True)
        with tempfile.TemporaryFile(dir=directory):
            pass
        return True
    except OSError:
        return False


def fallback_dir():
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return os.path.join(tempfile.gettempdir(), f"nbops-numba-cache-{uid}")


def ensure_cache_dir(package_dir):
    """Point numba at a writable cache dir when neither NUMBA_CACHE_DIR nor the package tree can take the cache."""
    from numba.core import config

    if config.CACHE_DIR:
        return config.CACHE_DIR
    if _writable(os.path.join(package_dir, "__pycache__")):
        return None
    config.CACHE_DIR = fallback_dir()
    return config.CACHE_DIR
