"""Zero-shot photo restoration engine (DDNM / DDNM+, Mask-Shift and Hierarchical Restoration).

Pure library: torch, numpy and Pillow only. It never imports Qt; the CLI (``python -m engine``)
and the desktop app both drive the same :func:`engine.pipeline.restore` generator.
"""

__version__ = "0.1.0"
