"""The Krita plug-in as `glaze install` copies it into Krita's pykrita folder."""
