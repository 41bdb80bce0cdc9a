"""Data sources, a leaf (imports no other jaxdiff package): shipped data sets (scikit-learn digits, the QM9
table of the qm9pack wheel and its 3-D point clouds), 2-D toys, TFDS image sets; deterministic per-process
batching (``pipeline``), batch transforms (``transforms``) and grain pipelines with worker processes
(``loader``)."""
