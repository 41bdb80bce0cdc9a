"""Graph diffusion: dense padded graphs, discrete (categorical) diffusion, molecules <-> graphs, QM9 as
graphs, RDKit metrics and property guidance.

The package owns its networks (Graph-DiT and DiGress in ``nets``, the property predictor in
``guidance``), built from the shared blocks of ``jaxdiff.nn``.
"""
