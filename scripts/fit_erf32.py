"""Prints the coefficients of nbops' float32 erf (``nbops/cpu/activation.py: _erf32``), float64 in, float32 out.

Both pieces are Chebyshev interpolants (least squares at 4001 Chebyshev points, which is within a hair of the
minimax fit at these degrees), converted to the power basis that Horner's rule evaluates:
- |x| < 1: erf(x) / x as a polynomial of degree 6 in z = x^2; its constant is printed as a float32 pair (hi, lo);
- 1 <= |x| < 3.92: erfc(x) as a polynomial of degree 12 in t = (|x| - 2.46) / 1.46.
Run: python scripts/fit_erf32.py
"""

import math

import numpy as np
from numpy.polynomial import chebyshev, polynomial

erf = np.vectorize(math.erf)
erfc = np.vectorize(math.erfc)
nodes = np.cos(np.linspace(0.0, np.pi, 4001))  # Chebyshev points of [-1, 1]


def power_basis(cheb, offset, scale):
    """Coefficients in v of the Chebyshev series ``cheb`` in u = offset + scale * v."""
    out = np.zeros(1)
    for c in chebyshev.cheb2poly(cheb)[::-1]:
        out = polynomial.polyadd(polynomial.polymul(out, [offset, scale]), [c])
    return out


z = np.maximum((nodes + 1.0) / 2.0, 1e-30)  # z = x^2 over (0, 1]
small = power_basis(chebyshev.chebfit(2.0 * z - 1.0, erf(np.sqrt(z)) / np.sqrt(z), 6), -1.0, 2.0)
hi = np.float32(small[0])
print("|x| < 1, erf(x) / x in z = x^2: hi", repr(float(hi)), "lo", repr(float(np.float32(small[0] - float(hi)))))
print("  z^1..z^6:", [repr(float(np.float32(c))) for c in small[1:]])
mid, half = 2.46, 1.46
big = chebyshev.cheb2poly(chebyshev.chebfit(nodes, erfc(mid + half * nodes), 12))
print("1 <= |x| < 3.92, erfc in t = (|x| - 2.46) / 1.46, t^0..t^12:", [repr(float(np.float32(c))) for c in big])
