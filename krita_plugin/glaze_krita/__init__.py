"""Glaze for Krita: Filter > Glaze and File > Export Glazed, backed by the Glaze daemon."""

from krita import Krita

from .extension import GlazeExtension

Krita.instance().addExtension(GlazeExtension(Krita.instance()))
