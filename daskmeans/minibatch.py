"""Mini-batch k-means; the fold itself lives in :mod:`daskmeans.engine._fold`."""

from .engine._fold import MiniBatchKMeans

__all__ = ["MiniBatchKMeans"]
