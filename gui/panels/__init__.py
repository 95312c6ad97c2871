"""The side and bottom panels: tasks (with Advanced and the run box) and the log."""
