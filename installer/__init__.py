"""`glaze install`, `glaze uninstall`, `glaze doctor`."""
