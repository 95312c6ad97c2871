"""The fast upscale: ResShift's real-world ×4 model (Yue, Wang and Loy) from its official files, our
implementation (docs/resshift.md).

``unet`` / ``swin`` (the Swin-UNet denoiser) and ``autoencoder`` (VQ-f4) are the networks; ``files``
recognises and loads the official files (the :mod:`engine.models.kinds` seam); ``diffusion`` is the
residual-shifting schedule and chain; ``upscaler`` is the tile function and tile layout for
:func:`engine.tiling.blended.run_tiles`; ``load`` makes one from a model spec; ``stage`` makes it the
pipeline's pre-stage (engine.cleanup.stage, at fidelity 1: then the engine for a fill or colorize);
``bench`` compares it with the engine's ×4.
Submodules are imported where used: importing this package loads no network code.
"""
