"""EDM on scikit-learn's 8x8 digits: the main job (a few minutes on 2 CPU cores)."""

from experiments.configs.base import base_config


def get_config():
    return base_config()
