"""The samplers' names, in one torch-free place (the CLI's ``--sampler`` choices load without torch).

``hot`` and ``cold`` are the paper's samplers (:mod:`prdit.diffusion`); ``v2m`` and ``v2m-sde`` the
multistep solvers made for few steps (:mod:`prdit.solvers`).
"""

PAPER_SAMPLERS = ("hot", "cold")
SOLVERS = ("v2m", "v2m-sde")
SAMPLERS = (*PAPER_SAMPLERS, *SOLVERS)
