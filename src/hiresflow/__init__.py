"""hiresflow: training-free high-resolution generation on one rectified-flow core.

`hiresflow.generate(pipe_or_id, prompt, method=..., scale=...)` is the diffusers-style entry point
(`hiresflow.api`); `hiresflow.upscale_image(...)` enlarges a user's image (`hiresflow.upscale`).
"""

__version__ = "0.1.0"


def generate(*args, **kwargs):
    """See `hiresflow.api.generate` (imported lazily so `import hiresflow` stays light)."""
    from .api import generate as _generate

    return _generate(*args, **kwargs)


def upscale_image(*args, **kwargs):
    """See `hiresflow.upscale.upscale_image`."""
    from .upscale import upscale_image as _upscale

    return _upscale(*args, **kwargs)
