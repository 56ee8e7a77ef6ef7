"""The pipeline's stages. Each module has a ``run(...)`` function and is wired to ``deeploc <stage>``."""
