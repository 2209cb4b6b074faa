"""crdswatch: notices for CRDS context activations, down to the reference-file rule."""

__version__ = "0.1.0"
__all__ = ["__version__"]
