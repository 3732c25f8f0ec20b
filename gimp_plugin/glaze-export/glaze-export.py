#!/usr/bin/env python3
"""File > Export Glazed...: cloak a merged copy of the image into a new file, chosen with
GIMP's file chooser; the open image is left as it is. The file carries the same record of
what made it as `glaze cloak`'s outputs.

A plug-in procedure with a file argument rather than an export procedure (a "Glazed PNG"
type in Export As): its dialog, arguments and scripting are the same in GIMP 3.0 and 3.2,
where an export procedure's run signature and options changed between the two, and it
keeps the glazing settings beside the file instead of after a format's own dialog.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.realpath(__file__)), "..",
                                "glaze_shared"))

from glaze_gimp import (  # noqa: E402
    EXPORT_FILE,
    Gimp,
    GlazeFailed,
    GlazePlugIn,
    GObject,
    ask_to_replace,
    chosen_path,
    gfile,
    glazed_pixels,
    options,
    propose_export_file,
    published,
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
        procedure.add_file_argument(EXPORT_FILE, "Export to", f"the glazed file, a "
                                    f"{options.export_suffixes()} file in an existing folder",
                                    Gimp.FileChooserAction.SAVE, True, None,
                                    GObject.ParamFlags.READWRITE)

    def propose(self, image, config) -> None:
        propose_export_file(image, config)

    def confirm(self, config) -> bool:
        path = chosen_path(config)
        return not (path and os.path.exists(path)) or ask_to_replace(path)

    def glaze(self, image, drawables, config):
        path = chosen_path(config)
        suffix = os.path.splitext(path or "")[1].lower()
        if suffix not in SUFFIXES or not os.path.isdir(os.path.dirname(path)):
            raise GlazeFailed(f"Glaze: choose a file ending in {options.export_suffixes()} "
                              "in an existing folder.", Gimp.PDBStatusType.CALLING_ERROR)
        copy = image.duplicate()
        try:
            layer = copy.merge_visible_layers(Gimp.MergeType.CLIP_TO_IMAGE)
            glazed, sample, result = glazed_pixels(layer, copy, config)
            write_pixels(layer, glazed, sample)
            with published(path, result.get("record")) as temporary:
                if not Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, copy, gfile(str(temporary)),
                                      None):
                    raise GlazeFailed(f"Glaze: GIMP could not write {path}")
        except (OSError, ValueError) as error:  # nothing was left half-written
            raise GlazeFailed(f"Glaze: could not write {path} ({error})") from None
        finally:
            copy.delete()
        return result


Gimp.main(GlazeExport.__gtype__, sys.argv)
