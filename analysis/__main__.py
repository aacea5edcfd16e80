"""``python -m analysis``: see ``analysis.cli``."""

import os

# The analysis parallelises over processes (--jobs); multi-threaded BLAS on top of that only spins
# (on a loaded 2-core machine it made the mixed models 3x slower). Set before numpy is imported;
# an explicit setting in the environment wins.
for _name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")

from analysis.cli import main  # noqa: E402  (after the BLAS thread settings above)

raise SystemExit(main())
