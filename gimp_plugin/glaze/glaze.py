#!/usr/bin/env python3
"""Filters > Glaze > Glaze...: cloak the selected layer into a new layer above it."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..",
                                "glaze_shared"))

from glaze_gimp import (  # noqa: E402
    Gimp,
    GlazeFailed,
    GlazePlugIn,
    cloak,
    failure,
    read_pixels,
    sample_type,
    settings_from_config,
    show_dialog,
    success,
    write_pixels,
)


class Glaze(GlazePlugIn):
    PROCEDURE = "plug-in-glaze"
    LABEL = "Glaze..."
    MENU = "<Image>/Filters/Glaze"
    BLURB = "Cloak a layer against style mimicry"
    HELP = ("Adds a glazed copy of the selected layer above it; the layer itself is not "
            "changed. Runs on the Glaze daemon, which is started if it is not running.")

    def run(self, procedure, run_mode, image, drawables, config, data):
        if len(drawables) != 1 or not isinstance(drawables[0], Gimp.Layer):
            return failure(procedure, "Glaze: select one layer.",
                           Gimp.PDBStatusType.CALLING_ERROR)
        if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config, "Glaze"):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        source = drawables[0]
        sample = sample_type(image)
        pixels, width, height = read_pixels(source, sample)
        try:
            glazed, _ = cloak(pixels, width, height, sample, settings_from_config(config))
        except GlazeFailed as error:
            return failure(procedure, str(error))
        image.undo_group_start()
        try:
            layer = Gimp.Layer.new(image, f"{source.get_name()} (glazed)", width, height,
                                   Gimp.ImageType.RGBA_IMAGE, 100.0,
                                   Gimp.LayerMode.NORMAL)
            image.insert_layer(layer, source.get_parent(), image.get_item_position(source))
            _, x, y = source.get_offsets()
            layer.set_offsets(x, y)
            write_pixels(layer, glazed, sample)
        finally:
            image.undo_group_end()
        Gimp.displays_flush()
        return success(procedure)


Gimp.main(Glaze.__gtype__, sys.argv)
