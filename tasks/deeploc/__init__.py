"""DeepLocations: photo geolocation from YFCC100M. Stages live in ``deeploc.stages``."""

__version__ = "0.1.0"
