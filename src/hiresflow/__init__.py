"""hiresflow: training-free high-resolution generation on one rectified-flow core."""

__version__ = "0.1.0"
