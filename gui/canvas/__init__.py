"""The photo canvas: zoom and pan, display layers, before/after compare, the run's window overlay."""
