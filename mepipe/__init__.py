"""mepipe: reproducible micro-expression preprocessing and the MA2MI / MIACNet trainer."""

__version__ = "0.1.0"
