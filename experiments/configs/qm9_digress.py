"""Unconditional DiGress on QM9 heavy-atom graphs (marginal transitions, DiGress graph transformer).

    python -m experiments.run --config=experiments/configs/qm9_digress.py --workdir=workdir/qm9_digress
"""

from experiments.configs.qm9_graph_dit import get_config as graph_dit_config


def get_config():
    c = graph_dit_config()
    c.data.update(dict(numeric=(), categorical=()))
    c.diffusion.update(dict(transition="marginal", lambda_edges=5.0, condition_dropout=0.0))
    c.model.update(dict(arch="digress", hidden=128, depth=4, num_heads=4))
    c.eval.update(dict(guidance_scales=(), unconditional=True))
    return c
