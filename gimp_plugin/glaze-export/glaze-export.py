#!/usr/bin/env python3
"""File > Export Glazed...: cloak a merged copy of the image into a new file; the open image
is left as it is."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..",
                                "glaze_shared"))

from glaze_gimp import (  # noqa: E402
    Gimp,
    GlazeFailed,
    GlazePlugIn,
    GObject,
    glazed_pixels,
    options,
    write_pixels,
)

SUFFIXES = tuple(options.EXPORT_FORMATS)  # GIMP's exporter goes by the suffix


class GlazeExport(GlazePlugIn):
    PROCEDURE = "plug-in-glaze-export"
    LABEL = "Export Glazed..."
    MENU = "<Image>/File/[Export]"
    BLURB = "Export a glazed copy of the image"
    HELP = ("Cloaks a merged copy of the visible image and writes it to a "
            f"{options.export_names()} file. The open image is not changed.")
    TITLE = "Export Glazed"
    SENSITIVITY = Gimp.ProcedureSensitivityMask.ALWAYS

    def add_arguments(self, procedure) -> None:
        procedure.add_string_argument("filename", "File name",
                                      f"where to write ({options.export_suffixes()})", "",
                                      GObject.ParamFlags.READWRITE)

    def glaze(self, image, drawables, config):
        path = os.path.abspath(os.path.expanduser(config.get_property("filename")))
        stem, suffix = os.path.splitext(path)
        if suffix.lower() not in SUFFIXES or not os.path.isdir(os.path.dirname(path)):
            raise GlazeFailed(f"Glaze: give a file name ending in {options.export_suffixes()} "
                              "in an existing folder.", Gimp.PDBStatusType.CALLING_ERROR)
        copy = image.duplicate()
        temporary = f"{stem}.part{suffix}"  # the exporter goes by the suffix
        try:
            layer = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
            glazed, sample = glazed_pixels(layer, copy, config)
            write_pixels(layer, glazed, sample)
            Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, copy, _gfile(temporary), None)
            os.replace(temporary, path)
        finally:
            copy.delete()
            if os.path.exists(temporary):  # a failed save leaves no half-written file
                os.remove(temporary)


def _gfile(path: str):
    from gi.repository import Gio

    return Gio.File.new_for_path(path)


Gimp.main(GlazeExport.__gtype__, sys.argv)
