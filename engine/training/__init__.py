"""Training and fine-tuning the diffusion prior on a folder of photos (``python -m engine train``)."""
