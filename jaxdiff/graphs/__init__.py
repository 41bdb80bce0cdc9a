"""Graph diffusion: dense padded graphs, discrete (categorical) diffusion, graph denoisers, molecules."""
