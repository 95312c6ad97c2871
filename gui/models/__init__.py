"""Model files in the app: the Models dialog, the welcome, the task panel's model list."""
