"""Coupling Flow Matching latent upsampler (Fischer et al., "Boosting Latent Diffusion with Flow Matching").

* :mod:`.coupling` — source/target coupling, cosine-VP noise augmentation, straight path, target velocity;
* :mod:`.model` — the UNet2DModel velocity network, the upsampler folder (save / offline load);
* :mod:`.solver` — Euler, midpoint and RK4 with a given number of network evaluations;
* :mod:`.upsample` — PSU condition, ODE source and the upsample of a latent;
* :mod:`.stage` — the upsampler as a cascade stage's initialisation (`InitSpec.upsampler`).

Training: :mod:`hiresflow.train.cfm` (``hiresflow train cfm``). Method notes: docs/methods/cfm.md.
"""
