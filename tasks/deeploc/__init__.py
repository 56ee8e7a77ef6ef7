"""DeepLocations: photo geolocation from YFCC100M: stages in ``deeploc.stages``, built on storage, sources, earth, learn and web."""

__version__ = "0.1.0"
