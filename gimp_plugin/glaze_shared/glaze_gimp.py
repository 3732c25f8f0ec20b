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
        daemon_state,
        describe,
        keep_sheet,
        layout_for,
        left_out_lines,
    )
    from glaze_client.stamp import published  # noqa: E402, F401  (for Export Glazed)
except ImportError:
    from glaze import options  # noqa: E402
    from glaze.daemon.client import (  # noqa: E402
        Client,
        DaemonError,
        daemon_state,
        describe,
        keep_sheet,
        layout_for,
        left_out_lines,
    )
    from glaze.stamp import published  # noqa: E402, F401

# 8-bit images are read as 8-bit; anything deeper as float, so no precision is lost.
U8_PRECISIONS = ("U8_LINEAR", "U8_NON_LINEAR", "U8_PERCEPTUAL")
FORMATS = {"u8": "R'G'B'A u8", "f32": "R'G'B'A float"}
SETTINGS = options.SETTINGS  # one procedure argument each, named setting.argument
INT_RANGE = (-2**31, 2**31 - 1)  # a GObject int argument's widest range
CUSTOM = "custom"  # a preset setting's choice that takes the number of its -custom argument
STATE_ROW = "glaze-daemon-state"  # the dialog's first row: the daemon's state
SHOW_PREVIEW = "show-preview"  # the argument that opens what a model sees afterwards
WATCH_MS = 1000  # how often the dialog asks a loading daemon how far it is


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
        # The running daemon's presets, when it advertises them, are what the lists hold;
        # its state heads the dialog (asked once a run).
        self.daemon = daemon_state()
        add_settings_arguments(procedure, self.daemon.options)
        procedure.add_boolean_argument(SHOW_PREVIEW, options.SHOW_PREVIEW,
                                       options.SHOW_PREVIEW_HELP, False,
                                       GObject.ParamFlags.READWRITE)
        return procedure

    def add_arguments(self, procedure) -> None:
        """Arguments before the shared settings."""

    def refuse(self, image, drawables) -> str | None:
        """Why the procedure cannot run on this selection (asked before the dialog)."""
        return None

    def propose(self, image, config) -> None:
        """Set what the dialog proposes for this image (before it is shown)."""

    def confirm(self, config) -> bool:
        """Whether to go on with the values the dialog was accepted with (False: show the
        dialog again)."""
        return True

    def glaze(self, image, drawables, config) -> dict:
        """Make the cloak and return the daemon's result message; raise GlazeFailed with a
        message for the user."""
        raise NotImplementedError

    def run(self, procedure, run_mode, image, drawables, config, data):
        refused = self.refuse(image, drawables)
        if refused:
            return failure(procedure, refused, Gimp.PDBStatusType.CALLING_ERROR)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            self.propose(image, config)
            while True:
                if not show_dialog(procedure, config, self.TITLE, self.daemon):
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
                if self.confirm(config):
                    break
        try:
            result = self.glaze(image, drawables, config)
        except GlazeFailed as error:
            return failure(procedure, str(error), error.status)
        if config.get_property(SHOW_PREVIEW):
            try:
                show_what_a_model_sees(result, image, run_mode == Gimp.RunMode.INTERACTIVE)
            except GlazeFailed as error:  # the glaze stands; only its preview is missing
                Gimp.message(f"{error} (no preview; the glaze itself was made)")
        return success(procedure)


def choice_argument(setting, name: str) -> str:
    """The boolean argument of one choice of a several-choice setting ("defend-sdxl")."""
    return f"{setting.argument}-{name}"


def list_argument(setting) -> str:
    """The argument that lists a text setting's suggestions ("target-list")."""
    return f"{setting.argument}-list"


AUTOMATIC = "auto"  # the list's entry that leaves the text setting empty


def custom_argument(setting) -> str:
    """The number argument a preset setting takes when its choice is CUSTOM."""
    return f"{setting.argument}-{CUSTOM}"


def add_settings_arguments(procedure, offered: dict | None = None) -> None:
    """One argument per declared setting: a preset setting as a choice of its presets (the
    daemon's, when it advertises them) or CUSTOM, with the number in a second argument
    within the declared range; whole numbers as ints within their range; text as strings; a
    several-choice setting as one boolean (a checkbox) per choice; a text setting with
    suggestions also as a list to choose from. GIMP refuses a value outside a choice or a
    range before the plug-in runs."""
    flags = GObject.ParamFlags.READWRITE
    for setting in SETTINGS:
        presets = options.presets_of(setting, offered)
        blurb = setting.describe(presets)
        if setting.choices:
            chosen = setting.selection(setting.default)
            for name, label in options.choices_of(setting, offered).items():
                procedure.add_boolean_argument(
                    choice_argument(setting, name), label,
                    f"{setting.label}: {label} ({setting.help})", name in chosen, flags)
        elif setting.presets:
            add_preset_arguments(procedure, setting, presets)
        elif setting.kind is int:
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


def add_preset_arguments(procedure, setting, presets: dict) -> None:
    """The presets as a choice list ending in CUSTOM, and the custom number."""
    flags = GObject.ParamFlags.READWRITE
    choice = Gimp.Choice.new()
    for index, (name, value) in enumerate(presets.items()):
        choice.add(name, index, setting.preset_format.format(name=name, value=value), "")
    custom_label = f"{setting.label}, custom"
    choice.add(CUSTOM, len(presets), f"Custom (\u201c{custom_label}\u201d below)", "")
    default = setting.default if setting.default in presets else next(iter(presets))
    procedure.add_choice_argument(setting.argument, setting.label,
                                  setting.describe(presets) + f" (or {CUSTOM})", choice,
                                  default, flags)
    low, high = setting.minimum, setting.maximum
    number = f"{setting.help}, when {setting.label} is {CUSTOM}: {setting.range_text()}"
    if setting.kind is int:
        procedure.add_int_argument(custom_argument(setting), custom_label, number, int(low),
                                   int(high), int(presets[default]), flags)
    else:
        procedure.add_double_argument(custom_argument(setting), custom_label, number,
                                      float(low), float(high), float(presets[default]), flags)


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
        if setting.presets and value == CUSTOM:
            value = config.get_property(custom_argument(setting))
            if not setting.in_range(value):  # the exclusive bound GIMP's range cannot say
                raise GlazeFailed(f"Glaze: a custom {setting.label.lower()} must be "
                                  f"{setting.range_text()}", Gimp.PDBStatusType.CALLING_ERROR)
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


def glazed_pixels(drawable, image, config) -> tuple[bytes, str, dict]:
    """The drawable's pixels cloaked by the daemon with the procedure's settings, the
    sample type they are in (the image's depth decides it) and the daemon's result message.
    Its summary (with its "no protection" or "incomplete" warnings) is shown to the user."""
    settings = settings_from_config(config)
    sample = sample_type(image)
    pixels, width, height = read_pixels(drawable, sample)
    glazed, result = cloak(pixels, width, height, sample, settings)
    Gimp.message(describe(result))
    return glazed, sample, result


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


EXPORT_FILE = "file"  # Export Glazed's file argument


def gfile(path: str):
    from gi.repository import Gio

    return Gio.File.new_for_path(path)


def chosen_path(config) -> str | None:
    """Export Glazed's chosen file as a path (None when none is chosen)."""
    chosen = config.get_property(EXPORT_FILE)
    return chosen.get_path() if chosen is not None else None


def propose_export_file(image, config) -> None:
    """Propose NAME.glazed.SUFFIX beside the image's file, its XCF or the file it was opened
    from (the suffix last chosen); an image never saved: in the home folder, named as GIMP
    names it ("[Untitled]" -> "Untitled")."""
    files = (getattr(image, getter)() for getter in ("get_xcf_file", "get_file",
                                                      "get_imported_file"))
    saved = next((file.get_path() for file in files if file is not None and file.get_path()),
                 None)
    last = chosen_path(config)
    config.set_property(EXPORT_FILE, gfile(options.export_proposal(
        saved, image.get_name().strip("[]"), os.path.splitext(last)[1] if last else ".png")))


def show_what_a_model_sees(result: dict, image, interactive: bool):
    """The daemon's sheet of what each defended family's decoder makes of the job's
    pictures, opened as a new image (shown when run interactively); returns it."""
    Gimp.progress_init(f"Glaze: {options.SHOW_PREVIEW.lower()}")
    try:
        with Client.connect() as client:
            sheet, message = client.preview(result["job"]).result()
    except DaemonError as error:
        raise GlazeFailed(f"Glaze: {error}") from None
    finally:
        Gimp.progress_end()
    stem = os.path.splitext(image.get_name().strip("[]"))[0] or "glazed"
    shown = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, gfile(keep_sheet(bytes(sheet), stem)))
    if interactive:
        Gimp.Display.new(shown)
        Gimp.displays_flush()
    for line in left_out_lines(message.get("left_out", {})):
        Gimp.message(f"Glaze: {line}")
    return shown


def success(procedure):
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())


def failure(procedure, message: str, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    Gimp.message(message)
    return procedure.new_return_values(status, GLib.Error(message))


def _dialog_rows(procedure, dialog) -> list[str]:
    """The dialog's rows: the daemon's state, then every argument a person sets, in order,
    with a several-choice setting's checkboxes in a frame titled with its label ("Defend
    against")."""
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
    return [STATE_ROW, *rows]


def build_dialog(procedure, config, title: str, state=None):
    """The procedure's dialog, headed by the daemon's `state` (asked for when not given),
    which it follows while the daemon loads its models: (dialog, the state's label)."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    state = state or daemon_state()
    line = dialog.get_label(STATE_ROW, state.text, False, False)
    line.set_line_wrap(True)
    line.set_max_width_chars(60)
    line.set_xalign(0.0)
    if state.loading:
        closed = []
        dialog.connect("destroy", lambda _: closed.append(True))

        def follow() -> bool:
            if closed:
                return False
            now = daemon_state()
            line.set_text(now.text)
            return now.loading  # the timer ends once the daemon is ready

        GLib.timeout_add(WATCH_MS, follow)
    dialog.fill(_dialog_rows(procedure, dialog))
    custom = Gimp.ValueArray.new(1)
    custom.append(GObject.Value(GObject.TYPE_STRING, CUSTOM))
    for setting in SETTINGS:  # a custom number can be set only when it is chosen
        if setting.presets:
            dialog.set_sensitive_if_in(custom_argument(setting), None, setting.argument,
                                       custom, True)
    return dialog, line


def show_dialog(procedure, config, title: str, state=None) -> bool:
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(procedure.get_name())
    dialog, _ = build_dialog(procedure, config, title, state)
    accepted = dialog.run()
    dialog.destroy()
    return accepted


def ask_to_replace(path: str) -> bool:
    """GIMP's question before a file is overwritten: whether to replace `path`."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import Gtk

    question = Gtk.MessageDialog(
        message_type=Gtk.MessageType.QUESTION, buttons=Gtk.ButtonsType.NONE, modal=True,
        text=f"A file named \u201c{os.path.basename(path)}\u201d already exists. "
             "Do you want to replace it?")
    question.format_secondary_text(f"It is in \u201c{os.path.dirname(path)}\u201d. "
                                   "Replacing it overwrites its contents.")
    question.add_buttons("_Cancel", Gtk.ResponseType.CANCEL, "_Replace",
                         Gtk.ResponseType.ACCEPT)
    question.set_default_response(Gtk.ResponseType.CANCEL)
    answer = question.run()
    question.destroy()
    return answer == Gtk.ResponseType.ACCEPT
