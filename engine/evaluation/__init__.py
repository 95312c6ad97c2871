"""Measuring restorations: metrics (PSNR, SSIM, consistency), generated masks, the evaluation runner."""
