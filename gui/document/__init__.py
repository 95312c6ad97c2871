"""The open photo and its mask: pixels, painting, undo and redo."""
