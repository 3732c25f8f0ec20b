"""Glaze for Krita: Filter > Glaze and File > Export Glazed, backed by the Glaze daemon."""

from krita import Krita

# A Krita whose Qt the plug-in does not know stops at `qt` with its message, which Krita
# shows in Settings > Python Plugin Manager.
from . import qt  # noqa: F401
from .support import RefusalNotice, refusal

REFUSED = refusal(Krita.instance().version())
if REFUSED:
    EXTENSION = RefusalNotice(Krita.instance(), REFUSED)
else:
    from .extension import GlazeExtension

    EXTENSION = GlazeExtension(Krita.instance())
# Held here for Krita's lifetime: Krita 5.3 and 6 keep a Python extension alive only while
# Python holds it, and crash once the list from Krita.instance().extensions() is dropped.
Krita.instance().addExtension(EXTENSION)
