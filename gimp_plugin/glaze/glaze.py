#!/usr/bin/env python3
"""Filters > Glaze > Glaze...: cloak the selected layer into a new layer above it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..",
                                "glaze_shared"))

from glaze_gimp import Gimp, GlazePlugIn, glazed_pixels, write_pixels  # noqa: E402


class Glaze(GlazePlugIn):
    PROCEDURE = "plug-in-glaze"
    LABEL = "Glaze..."
    TITLE = "Glaze"
    MENU = "<Image>/Filters/Glaze"
    BLURB = "Cloak a layer against style mimicry"
    HELP = ("Adds a glazed copy of the selected layer above it; the layer itself is not "
            "changed. Runs on the Glaze daemon, which is started if it is not running.")

    def refuse(self, image, drawables):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return "Glaze: select one layer."
        return None

    def glaze(self, image, drawables, config):
        source = drawables[0]
        glazed, sample, result = glazed_pixels(source, image, config)
        image.undo_group_start()
        try:
            layer = Gimp.Layer.new(image, f"{source.get_name()} (glazed)", source.get_width(),
                                   source.get_height(), Gimp.ImageType.RGBA_IMAGE, 100.0,
                                   Gimp.LayerMode.NORMAL)
            image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
            _, x, y = source.get_offsets()
            layer.set_offsets(x, y)
            write_pixels(layer, glazed, sample)
        finally:
            image.undo_group_end()
        Gimp.displays_flush()
        return result


Gimp.main(Glaze.__gtype__, sys.argv)
