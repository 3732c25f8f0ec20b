"""Code both Glaze plug-ins share: arguments, pixels in and out of GIMP, the daemon job.

This folder has no executable of its own name, so GIMP does not take it for a plug-in.
"""

import os
import sys

HERE = os.path.dirname(os.path.realpath(__file__))
VENDOR = os.path.join(os.path.dirname(HERE), "glaze_vendor")  # the installer's GIMP_VENDOR
if os.path.isdir(VENDOR) and VENDOR not in sys.path:
    sys.path.insert(0, VENDOR)

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GLib, GObject  # noqa: E402

try:
    from glaze_client import options  # noqa: E402
    from glaze_client.client import (  # noqa: E402
        Client,
        DaemonError,
        describe,
        layout_for,
        offered_options,
    )
except ImportError:
    from glaze import options  # noqa: E402
    from glaze.daemon.client import (  # noqa: E402
        Client,
        DaemonError,
        describe,
        layout_for,
        offered_options,
    )

# 8-bit images are read as 8-bit; anything deeper as float, so no precision is lost.
U8_PRECISIONS = ("U8_LINEAR", "U8_NON_LINEAR", "U8_PERCEPTUAL")
FORMATS = {"u8": "R'G'B'A u8", "f32": "R'G'B'A float"}
SETTINGS = options.SETTINGS  # one procedure argument each, named setting.argument
INT_RANGE = (-2**31, 2**31 - 1)  # a GObject int argument's widest range


class GlazeFailed(Exception):
    """The cloak could not be made; the message is for the user."""

    def __init__(self, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR) -> None:
        super().__init__(message)
        self.status = status


class GlazePlugIn(Gimp.PlugIn):
    """What both plug-ins declare and do alike; a subclass names its one procedure and menu
    and says what to cloak (`glaze`)."""

    PROCEDURE = ""
    LABEL = MENU = BLURB = HELP = TITLE = ""
    SENSITIVITY = Gimp.ProcedureSensitivityMask.DRAWABLE

    def do_query_procedures(self):
        return [self.PROCEDURE]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        procedure = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, self.run, None)
        procedure.set_image_types("RGB*")
        procedure.set_sensitivity_mask(self.SENSITIVITY)
        procedure.set_menu_label(self.LABEL)
        procedure.add_menu_path(self.MENU)
        procedure.set_documentation(self.BLURB, self.HELP, name)
        procedure.set_attribution("Glaze for painters", "Glaze for painters", "2026")
        self.add_arguments(procedure)
        # The running daemon's presets, when it advertises them, are what the blurbs list.
        add_settings_arguments(procedure, offered_options())
        return procedure

    def add_arguments(self, procedure) -> None:
        """Arguments before the shared settings."""

    def refuse(self, image, drawables) -> str | None:
        """Why the procedure cannot run on this selection (asked before the dialog)."""
        return None

    def glaze(self, image, drawables, config) -> None:
        """Make the cloak; raise GlazeFailed with a message for the user."""
        raise NotImplementedError

    def run(self, procedure, run_mode, image, drawables, config, data):
        refused = self.refuse(image, drawables)
        if refused:
            return failure(procedure, refused, Gimp.PDBStatusType.CALLING_ERROR)
        if run_mode == Gimp.RunMode.INTERACTIVE and not show_dialog(procedure, config,
                                                                    self.TITLE):
            return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
        try:
            self.glaze(image, drawables, config)
        except GlazeFailed as error:
            return failure(procedure, str(error), error.status)
        return success(procedure)


def choice_argument(setting, name: str) -> str:
    """The boolean argument of one choice of a several-choice setting ("defend-sdxl")."""
    return f"{setting.argument}-{name}"


def list_argument(setting) -> str:
    """The argument that lists a text setting's suggestions ("target-list")."""
    return f"{setting.argument}-list"


AUTOMATIC = "auto"  # the list's entry that leaves the text setting empty


def add_settings_arguments(procedure, offered: dict | None = None) -> None:
    """One argument per declared setting: presets and text as strings (a preset name or a
    number, so scripts can pass either), whole numbers as ints within their range; a
    several-choice setting as one boolean (a checkbox) per choice; a text setting with
    suggestions also as a list to choose from."""
    flags = GObject.ParamFlags.READWRITE
    for setting in SETTINGS:
        blurb = setting.describe(options.presets_of(setting, offered))
        if setting.choices:
            chosen = setting.selection(setting.default)
            for name, label in options.choices_of(setting, offered).items():
                procedure.add_boolean_argument(
                    choice_argument(setting, name), label,
                    f"{setting.label}: {label} ({setting.help})", name in chosen, flags)
        elif setting.kind is int and not setting.presets:
            low, high = INT_RANGE
            procedure.add_int_argument(
                setting.argument, setting.label, blurb,
                int(setting.minimum if setting.minimum is not None else low),
                int(setting.maximum if setting.maximum is not None else high),
                setting.default, flags)
        else:
            if setting.suggestions:
                add_list_argument(procedure, setting)
            label = f"Or your own {setting.label.lower()}" if setting.suggestions \
                else setting.label
            if setting.placeholder:
                blurb += f" (empty: {setting.placeholder})"
            procedure.add_string_argument(setting.argument, label, blurb,
                                          setting.text_default(), flags)


def add_list_argument(procedure, setting) -> None:
    """A text setting's suggestions as a choice list, headed by the automatic choice."""
    choice = Gimp.Choice.new()
    choice.add(AUTOMATIC, 0, setting.placeholder.capitalize(), "")
    for index, value in enumerate(setting.suggestions(), start=1):
        choice.add(value, index, value, "")
    procedure.add_choice_argument(
        list_argument(setting), setting.label, f"{setting.label}: {setting.placeholder}, "
        f"or one of the list (your own below takes precedence)", choice, AUTOMATIC,
        GObject.ParamFlags.READWRITE)


def settings_from_config(config) -> dict:
    """The daemon's settings from the procedure's arguments (empty text is left out)."""
    values = {}
    for setting in SETTINGS:
        if setting.choices:
            names = [name for name in setting.choices
                     if _property(config, choice_argument(setting, name))]
            if not names:
                raise GlazeFailed(f"Glaze: check at least one box under \u201c{setting.label}"
                                  "\u201d", Gimp.PDBStatusType.CALLING_ERROR)
            values[setting.name] = ",".join(names)
            continue
        value = config.get_property(setting.argument)
        if setting.suggestions and not (value or "").strip():
            listed = _property(config, list_argument(setting))
            value = "" if listed in (None, AUTOMATIC) else listed
        values[setting.name] = value
    return options.wire_settings(values)


def _property(config, name: str):
    """An argument's value, None when this procedure lacks it (a choice the daemon does
    not offer was not declared)."""
    spec = config.find_property(name)
    return config.get_property(name) if spec is not None else None


def sample_type(image) -> str:
    eight_bit = {getattr(Gimp.Precision, name) for name in U8_PRECISIONS
                 if hasattr(Gimp.Precision, name)}
    return "u8" if image.get_precision() in eight_bit else "f32"


def read_pixels(drawable, sample: str):
    """(bytes, width, height) of the drawable, RGBA in `sample`."""
    width, height = drawable.get_width(), drawable.get_height()
    rect = Gegl.Rectangle.new(0, 0, width, height)
    data = drawable.get_buffer().get(rect, 1.0, FORMATS[sample], Gegl.AbyssPolicy.CLAMP)
    return bytes(data), width, height


def write_pixels(drawable, data: bytes, sample: str) -> None:
    width, height = drawable.get_width(), drawable.get_height()
    buffer = drawable.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, width, height), FORMATS[sample], data)
    buffer.flush()
    drawable.update(0, 0, width, height)


def glazed_pixels(drawable, image, config) -> tuple[bytes, str]:
    """The drawable's pixels cloaked by the daemon with the procedure's settings, and the
    sample type they are in (the image's depth decides it). The daemon's summary (with its
    "no protection" or "incomplete" warnings) is shown to the user."""
    settings = settings_from_config(config)
    sample = sample_type(image)
    pixels, width, height = read_pixels(drawable, sample)
    glazed, result = cloak(pixels, width, height, sample, settings)
    Gimp.message(describe(result))
    return glazed, sample


def cloak(data: bytes, width: int, height: int, sample: str, settings: dict):
    """Send the pixels to the daemon (started if need be), with GIMP's progress bar."""
    def progress(fraction: float, message: str) -> None:
        Gimp.progress_set_text(f"Glaze: {message}")
        Gimp.progress_update(fraction)

    Gimp.progress_init("Glaze: connecting to the daemon (the first start loads the models)")
    try:
        with Client.connect(autostart=True) as client:
            job = client.submit(data, layout_for(width, height, "RGBA", sample), settings)
            pixels, result = job.result(on_progress=progress)
            return bytes(pixels), result
    except DaemonError as error:
        raise GlazeFailed(f"Glaze: {error}") from None
    finally:
        Gimp.progress_end()


def success(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def failure(procedure, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    Gimp.message(message)
    return procedure.new_return_values(status, GLib.Error(message))


def _dialog_rows(procedure, dialog) -> list[str]:
    """The dialog's rows: every argument a person sets, in order, with a several-choice
    setting's checkboxes in a frame titled with its label ("Defend against")."""
    rows = [spec.get_name() for spec in procedure.get_arguments()
            if spec.get_name() not in ("run-mode", "image", "drawables")]
    for setting in SETTINGS:
        boxes = [choice_argument(setting, name) for name in setting.choices
                 if choice_argument(setting, name) in rows]
        if not boxes:
            continue
        frame = f"{setting.argument}-frame"
        dialog.get_label(f"{setting.argument}-label", setting.label, False, False)
        dialog.fill_box(f"{setting.argument}-box", boxes)
        dialog.fill_frame(frame, f"{setting.argument}-label", False,
                          f"{setting.argument}-box")
        at = rows.index(boxes[0])
        rows = [row for row in rows if row not in boxes]
        rows.insert(at, frame)
    return rows


def show_dialog(procedure, config, title: str) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(procedure.get_name())
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    dialog.fill(_dialog_rows(procedure, dialog))
    accepted = dialog.run()
    dialog.destroy()
    return accepted
