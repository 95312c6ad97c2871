"""Photo and mask files: open, paste, drop, save, in the background; what is unsaved."""
