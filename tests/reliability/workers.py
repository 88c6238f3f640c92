"""Scripts the reliability tests run in fresh subprocesses (a threading layer, a cache dir or boundscheck can only be
chosen before numba starts): ``python workers.py threads SECONDS`` and ``python workers.py fork METHOD``."""

import concurrent.futures
import multiprocessing
import os
import sys
import threading
import time

import numpy as np

import nbops

THREADS = 8


def _data():
    rng = np.random.default_rng(0)

    def f(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    x, img = f(64, 257), f(2, 3, 17, 15)
    return [
        ("relu", lambda: nbops.relu(x)),
        ("softmax", lambda: nbops.softmax(x, 1)),
        ("sum", lambda: nbops.sum(x, 1)),
        ("var", lambda: nbops.var(x, 0)),
        ("add", lambda: nbops.add(x, x[:1])),
        ("linear", lambda w=f(31, 257), b=f(31): nbops.linear(x, w, b)),
        ("conv2d", lambda w=f(4, 3, 3, 3): nbops.conv2d(img, w, padding=1)),
        ("max_pool2d", lambda: nbops.max_pool2d(img, 3, 2, ceil_mode=True)),
        ("layer_norm", lambda: nbops.layer_norm(x, (257,))),
        ("batch_norm", lambda m=f(3), v=f(3) ** 2 + 1: nbops.batch_norm(img, m, v)),
        ("embedding", lambda i=rng.integers(0, 64, (5, 7)): nbops.embedding(i, x)),
        ("cat", lambda: nbops.cat([x, x[:3]])),
    ]


def _same(a, b):
    if isinstance(a, tuple):
        return all(_same(p, q) for p, q in zip(a, b))
    return np.array_equal(a, b, equal_nan=True)


def threads(seconds):
    """THREADS threads call a rotating mix of ops for ``seconds``; every result must equal the serial one."""
    ops = _data()
    ref = [fn() for _, fn in ops]
    calls, wrong, errors = [0] * THREADS, [0] * THREADS, []

    def worker(i):
        t0, k = time.perf_counter(), i
        try:
            while time.perf_counter() - t0 < seconds:
                j = k % len(ops)
                wrong[i] += not _same(ops[j][1](), ref[j])
                calls[i] += 1
                k += 1
        except Exception as e:  # reported to the parent, which fails the test
            errors.append(repr(e))

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        pooled = list(pool.map(lambda j: _same(ops[j][1](), ref[j]), list(range(len(ops))) * 3))
    print(f"layer={nbops._runtime.threading_layer()} threads={THREADS} seconds={seconds} calls={sum(calls)} "
          f"wrong={sum(wrong)} errors={len(errors)} pool_wrong={pooled.count(False)}")
    print("\n".join(errors[:3]))


def _child(q):
    try:
        q.put(("ok", bool(np.array_equal(nbops.relu(_X), np.maximum(_X, 0))
                          and np.allclose(nbops.sum(_X, 1), _X.sum(1, dtype=np.float64), atol=1e-3))))
    except RuntimeError as e:
        q.put(("error", str(e)))


_X = np.linspace(-5, 5, 100000, dtype=np.float32).reshape(100, 1000)  # past SERIAL_BELOW: a parallel launch


def fork(method):
    """Run a parallel kernel here, then the same ops in a child started with ``method``."""
    nbops.sum(_X, 1)
    ctx = multiprocessing.get_context(method)
    q = ctx.Queue()
    p = ctx.Process(target=_child, args=(q,))
    p.start()
    p.join(120)
    got = q.get(timeout=10) if not q.empty() or p.exitcode == 0 else None
    print(f"layer={nbops._runtime.threading_layer()} method={method} exit={p.exitcode} child={got}")


if __name__ == "__main__":
    if sys.argv[1] == "threads":
        threads(float(sys.argv[2]))
    else:
        fork(sys.argv[2])
    sys.stdout.flush()
    os._exit(0)
