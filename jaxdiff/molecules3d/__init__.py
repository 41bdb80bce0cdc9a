"""3-D molecules: E(3)-equivariant diffusion of point clouds (Hoogeboom et al., 2022).

``egnn`` holds the E(n)-equivariant network (Satorras et al., 2021) and the diffusion network built on
it; ``com`` the zero-centre-of-mass subspace (projection, Gaussian noise and log-density with
(n - 1) · d degrees of freedom); ``features`` the scaling of categorical atom features; ``diffusion``
the state, noise, prior and EDM loss on the house's denoiser seam; ``qm9`` the QM9 point clouds split
consistently with the graph benchmarks of ``jaxdiff.graphs.qm9``; ``stability`` bond orders from
distances and atom/molecule stability; ``chem`` RDKit validity, uniqueness and novelty; ``context``
property conditioning (normalised properties, targets drawn with the atom count); ``regressor`` the
invariant property regressor that scores a conditional model; ``plot`` 3-D views.
"""
