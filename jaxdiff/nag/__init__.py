"""Architecture generation (DiffusionNAG) over the NAS-Bench-201 cell space.

``space`` (cells, isomorphism classes, strings), ``encoding`` (operator-type matrices over the fixed
8-node DAG), ``nets`` (the score network and the noisy-cell property predictor, attention masked by
the DAG), ``model`` (guided predictor–corrector sampling, predictor training), ``metrics``
(validity, uniqueness, novelty, operation statistics), ``search`` (random search, regularised
evolution, model-based search), ``skeleton`` and ``table`` (a NAS-Bench-201-style network on digits
and the property tables it yields).
"""
