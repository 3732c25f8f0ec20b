"""The GIMP 3 plug-ins as `glaze install` copies them into GIMP's plug-ins folder."""
