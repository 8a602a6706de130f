"""The built-in backends, one module each; `convbackends.dispatch` imports them lazily."""

import os

# Numba's OpenMP workers and OpenBLAS's threads both busy-wait after their work; on a
# 2-core machine each then runs beside the other pool's spinning thread and the parallel
# backends slow down about 2x (docs/performance.md). libgomp reads this when it loads, which
# is at the first parallel kernel, after this import; a user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
