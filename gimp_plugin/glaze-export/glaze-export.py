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
    cloak,
    failure,
    read_pixels,
    sample_type,
    settings_from_config,
    show_dialog,
    success,
    write_pixels,
)

SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")


class GlazeExport(GlazePlugIn):
    PROCEDURE = "plug-in-glaze-export"
    LABEL = "Export Glazed..."
    MENU = "<Image>/File/[Export]"
    BLURB = "Export a glazed copy of the image"
    HELP = ("Cloaks a merged copy of the visible image and writes it to a PNG, JPEG or WebP "
            "file. The open image is not changed.")
    SENSITIVITY = Gimp.ProcedureSensitivityMask.ALWAYS

    def add_arguments(self, procedure) -> None:
        procedure.add_string_argument("filename", "File name",
                                      "where to write (.png, .jpg or .webp)", "",
                                      GObject.ParamFlags.READWRITE)

    def run(self, procedure, run_mode, image, drawables, config, data):
        if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config,
                                                                    "Export Glazed"):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        path = os.path.abspath(os.path.expanduser(config.get_property("filename")))
        stem, suffix = os.path.splitext(path)
        if suffix.lower() not in SUFFIXES or not os.path.isdir(os.path.dirname(path)):
            return failure(procedure, "Glaze: give a file name ending in .png, .jpg or .webp "
                                      "in an existing folder.", Gimp.PDBStatusType.CALLING_ERROR)
        copy = image.duplicate()
        temporary = f"{stem}.part{suffix}"  # the exporter goes by the suffix
        try:
            layer = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
            sample = sample_type(copy)
            pixels, width, height = read_pixels(layer, sample)
            glazed, _ = cloak(pixels, width, height, sample, settings_from_config(config))
            write_pixels(layer, glazed, sample)
            Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, copy, _gfile(temporary), None)
            os.replace(temporary, path)
        except GlazeFailed as error:
            return failure(procedure, str(error))
        finally:
            copy.delete()
            if os.path.exists(temporary):  # a failed save leaves no half-written file
                os.remove(temporary)
        return success(procedure)


def _gfile(path: str):
    from gi.repository import Gio

    return Gio.File.new_for_path(path)


Gimp.main(GlazeExport.__gtype__, sys.argv)
