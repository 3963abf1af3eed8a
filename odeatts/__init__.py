"""OdeaTTS: a RunPod serverless worker that sells MiniMax speech, metered per caller."""

__all__ = ["__version__"]

__version__ = "0.1.0"
