"""The engine: task graphs that stream blocks and reduce their partial results.

Internal. :mod:`._graph` builds and runs the passes (a map over blocks and a
tree reduction); :mod:`._lloyd` is the Lloyd iteration; :mod:`._init` the
initialisations (k-means||, k-means++, random); :mod:`._prep` and
:mod:`._prep_passes` the standardisation and zero-row guards; :mod:`._fold` the
mini-batch fold over the row blocks and :mod:`._fold_pass` where its passes run;
:mod:`._checkpoint` the resumable state of the command line. Per-block
arithmetic lives in :mod:`daskmeans.kernels`; nothing here does arithmetic on
data outside a kernel.
"""
