"""Checks run inside real GIMP 3 (gimp-console, python-fu-eval batch) by tests/test_gimp.py.

Reads $GLAZE_GIMP_CHECKS (which checks to run, comma-separated) and writes
$GLAZE_GIMP_RESULT: a JSON list of {"name", "ok", "detail"}.
"""

import json
import os
import re
import struct
import traceback

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp, GObject  # noqa: E402

W, H = 64, 48
FAST = {"quality": "custom", "quality-custom": 2, "work-size": 64,
        "target": "Baroque painting by Caravaggio"}
STEPS_TO_WATCH = 150  # a cloak long enough to watch its progress
FORMATS = {"u8": ("R'G'B'A u8", "<B", 255, Gimp.Precision.U8_NON_LINEAR),
           "float": ("R'G'B'A float", "<f", 1.0, Gimp.Precision.FLOAT_NON_LINEAR)}
results = []
CHECKS = {}


def check(name):
    def register(function):
        CHECKS[name] = function
        return function
    return register


def painting(kind):
    fmt, code, top, _ = FORMATS[kind]
    out = bytearray()
    for y in range(H):
        for x in range(W):
            alpha = 0.0 if x < 8 else 0.5 if x < 16 else 1.0
            for value in (((x * 4) % 256) / 255, ((y * 5) % 256) / 255,
                          ((x + y) % 256) / 255, alpha):
                out += struct.pack(code, value * top if code == "<f" else round(value * top))
    return bytes(out)


def new_image(kind):
    fmt, _, _, precision = FORMATS[kind]
    image = Gimp.Image.new_with_precision(W, H, Gimp.ImageBaseType.RGB, precision)
    layer = Gimp.Layer.new(image, "art", W, H, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    image.insert_layer(layer, None, 0)
    buffer = layer.get_buffer()
    buffer.set(Gegl.Rectangle.new(0, 0, W, H), fmt, painting(kind))
    buffer.flush()
    return image, layer


def pixels(layer, kind):
    fmt = FORMATS[kind][0]
    rect = Gegl.Rectangle.new(0, 0, layer.get_width(), layer.get_height())
    return bytes(layer.get_buffer().get(rect, 1.0, fmt, Gegl.AbyssPolicy.CLAMP))


def samples(data, kind):
    code = FORMATS[kind][1]
    size = struct.calcsize(code)
    return [struct.unpack_from(code, data, i)[0] for i in range(0, len(data), size)]


def snapshot(image):
    return [(layer.get_name(), pixels(layer, "u8")) for layer in image.get_layers()]


def run(procedure_name, image, drawables, **arguments):
    procedure = Gimp.get_pdb().lookup_procedure(procedure_name)
    assert procedure is not None, f"{procedure_name} is not installed"
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", drawables)
    for name, value in {**FAST, **arguments}.items():
        config.set_property(name, _gfile(value) if name == "file" else value)
    result = procedure.run(config)
    status = result.index(0)
    error = result.index(1) if result.length() > 1 else None
    return status, (str(error) if error is not None else "")


def glaze_checks(kind, **arguments):
    image, source = new_image(kind)
    before = pixels(source, kind)
    status, error = run("plug-in-glaze", image, [source], **arguments)
    assert status == Gimp.PDBStatusType.SUCCESS, (status, error)
    layers = image.get_layers()
    assert [layer.get_name() for layer in layers] == ["art (glazed)", "art"], layers
    glazed = layers[0]
    assert (glazed.get_width(), glazed.get_height()) == (W, H)
    assert pixels(source, kind) == before, "the source layer changed"
    old, new = samples(before, kind), samples(pixels(glazed, kind), kind)
    assert old[3::4] == new[3::4], "alpha changed"
    assert any(old[i] != new[i] for i in range(len(old)) if i % 4 != 3), "RGB unchanged"
    image.delete()


def plugin_module(ui=False):
    """The plug-ins' shared module (glaze_gimp), imported as they import it (it puts their
    vendor folder first); `ui`: with GimpUi set up, for dialogs (needs a display)."""
    import importlib
    import sys

    shared = os.path.join(os.environ["GLAZE_GIMP_PLUGINS"], "glaze_shared")
    if shared not in sys.path:
        sys.path.insert(0, shared)
    module = importlib.import_module("glaze_gimp")
    if ui:
        gi.require_version("GimpUi", "3.0")
        from gi.repository import GimpUi

        GimpUi.init("glaze-checks")
    return module


@check("the plug-ins import their own copy of the client and pyzmq")
def vendored_client():
    plugin_module()
    import glaze_client.client
    import msgpack
    import zmq

    vendor = os.path.join(os.environ["GLAZE_GIMP_PLUGINS"], "glaze_vendor") + os.sep
    for module in (glaze_client.client, zmq, msgpack):
        assert module.__file__.startswith(vendor), (module.__name__, module.__file__)


@check("the procedures take every declared setting with its default and presets")
def declared_arguments():
    gimp = plugin_module()
    from glaze_client import options

    for name in ("plug-in-glaze", "plug-in-glaze-export"):
        procedure = Gimp.get_pdb().lookup_procedure(name)
        assert procedure is not None, f"{name} is not installed"
        config = procedure.create_config()
        for setting in options.SETTINGS:
            if setting.choices:  # one checkbox a choice, the default ones checked
                for choice in setting.choices:
                    checked = config.get_property(gimp.choice_argument(setting, choice))
                    assert checked is (choice in setting.selection(setting.default)), choice
                continue
            value = config.get_property(setting.argument)
            if setting.presets:  # a list of the presets, then a number for "custom"
                spec = procedure.find_argument(setting.argument)
                nicks = Gimp.param_spec_choice_get_choice(spec).list_nicks()
                assert nicks == [*setting.presets, gimp.CUSTOM], (name, nicks)
                assert value == setting.default, (name, setting.argument, value)
                custom = config.get_property(gimp.custom_argument(setting))
                assert custom == setting.presets[setting.default], (name, custom)
                for preset, number in setting.presets.items():  # labelled with the numbers
                    listed = setting.preset_format.format(name=preset, value=number)
                    assert Gimp.param_spec_choice_get_choice(spec).get_label(preset) == \
                        listed, (name, preset)
                continue
            plain = setting.kind is int
            if value is None and not plain:  # GIMP gives an empty string argument as None
                value = ""
            assert value == (setting.default if plain else setting.text_default()), \
                (name, setting.argument, value)
        # The target list: the automatic choice first, then every candidate style.
        listed = procedure.find_argument(gimp.list_argument(options.TARGET))
        nicks = Gimp.param_spec_choice_get_choice(listed).list_nicks()
        assert nicks == [gimp.AUTOMATIC, *options.candidate_styles()], nicks[:3]
        assert config.get_property(gimp.list_argument(options.TARGET)) == gimp.AUTOMATIC


@check("the dialog's checkboxes and target list become the daemon's settings")
def settings_from_arguments():
    gimp = plugin_module()
    from glaze_client import options

    config = Gimp.get_pdb().lookup_procedure("plug-in-glaze").create_config()
    assert gimp.settings_from_config(config)["defend"] == "sd,sdxl,flux,flux2,qwen"
    assert gimp.settings_from_config(config)["quality"] == "default"  # a preset, by name
    config.set_property("intensity", gimp.CUSTOM)
    config.set_property("intensity-custom", 0.03)
    assert gimp.settings_from_config(config)["intensity"] == 0.03  # a number of one's own
    assert "target" not in gimp.settings_from_config(config)  # chosen for the profile
    config.set_property(gimp.choice_argument(options.DEFEND, "sdxl"), False)
    style = options.candidate_styles()[7]
    config.set_property(gimp.list_argument(options.TARGET), style)
    settings = gimp.settings_from_config(config)
    assert settings["defend"] == "sd,flux,flux2,qwen" and settings["target"] == style, settings
    config.set_property("target", "Cubism painting by someone of my own")
    assert gimp.settings_from_config(config)["target"] == "Cubism painting by someone of " \
        "my own"  # the own text takes precedence over the list
    for choice in options.DEFEND.choices:
        config.set_property(gimp.choice_argument(options.DEFEND, choice), False)
    try:
        gimp.settings_from_config(config)
    except gimp.GlazeFailed as error:
        assert "Defend against" in str(error), error
    else:
        raise AssertionError("nothing to defend against was accepted")


@check("the dialog frames the checkboxes under their setting's label")
def dialog_rows():
    """Builds the procedure's dialog as the plug-in does (not shown: needs a display)."""
    from gi.repository import GimpUi

    gimp = plugin_module(ui=True)
    for name, first in (("plug-in-glaze", []), ("plug-in-glaze-export", ["file"])):
        procedure = Gimp.get_pdb().lookup_procedure(name)
        dialog = GimpUi.ProcedureDialog.new(procedure, procedure.create_config(), "Glaze")
        rows = gimp._dialog_rows(procedure, dialog)
        assert rows[:len(first) + 6] == [gimp.STATE_ROW, *first, "intensity", "intensity-custom",
                                         "quality", "quality-custom", "defend-frame"], rows
        dialog.get_label(gimp.STATE_ROW, "the daemon's state", False, False)
        assert rows[-3:] == ["target-list", "target", gimp.SHOW_PREVIEW] and not [
            row for row in rows if row.startswith("defend-") and row != "defend-frame"], rows
        dialog.fill(rows)  # every row exists: GIMP warns of and skips unknown ones
        dialog.destroy()


@check("glaze an 8-bit layer")
def glaze_u8():
    glaze_checks("u8")


@check("glaze a float layer against SD and FLUX only")
def glaze_float():
    glaze_checks("float", **{"defend-sdxl": False})


@check("GIMP's progress bar shows the time the glaze has left and it falls")
def progress_time_left():
    gimp = plugin_module()
    said = []

    class Recorded:
        """GIMP's calls, as the plug-in makes them; its progress texts noted on the way."""

        def __getattr__(self, name):
            return getattr(Gimp, name)

        def progress_set_text(self, text):
            said.append(text)
            return Gimp.progress_set_text(text)

    gimp.Gimp = Recorded()
    try:
        settings = {"quality": STEPS_TO_WATCH, "work_size": 64, "target": FAST["target"],
                    "defend": "sd,flux"}
        gimp.cloak(painting("u8"), W, H, "u8", settings)
    finally:
        gimp.Gimp = Gimp
    left = [int(found[1]) * (60 if found[2] == "min" else 1) for found in (
        re.search(r"cloak step \d+ .*about (\d+) (s|min) left", text) for text in said)
        if found]
    assert len(left) > 2 and left[-1] < left[0], said
    return said[-1]


@check("export glazed writes the chosen files and leaves the image alone")
def export():
    """PNG and JPEG into $GLAZE_GIMP_OUT, where the test reads their records."""
    image, source = new_image("u8")
    before = snapshot(image)
    folder = os.environ["GLAZE_GIMP_OUT"]
    for name in ("glazed.png", "glazed.jpg"):
        path = os.path.join(folder, name)
        status, error = run("plug-in-glaze-export", image, [source], file=path)
        assert status == Gimp.PDBStatusType.SUCCESS, (status, error)
        loaded = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, _gfile(path))
        assert (loaded.get_width(), loaded.get_height()) == (W, H)
        loaded.delete()
    assert snapshot(image) == before and len(Gimp.get_images()) == 1
    assert sorted(os.listdir(folder)) == ["glazed.jpg", "glazed.png"], os.listdir(folder)
    image.delete()


@check("show what a model sees opens the daemon's sheet as a new image")
def show_preview():
    image, source = new_image("u8")
    before = len(Gimp.get_images())
    status, error = run("plug-in-glaze", image, [source], **{"show-preview": True,
                                                             "defend-sdxl": False})
    assert status == Gimp.PDBStatusType.SUCCESS, (status, error)
    opened = [each for each in Gimp.get_images() if each != image]
    assert len(Gimp.get_images()) == before + 1 and len(opened) == 1, Gimp.get_images()
    sheet = opened[0]  # (GIMP 3.0's batch mode names a loaded PNG "[Untitled]")
    assert sheet.get_width() == 12 + 3 * (256 + 12), sheet.get_width()
    assert sheet.get_height() > 4 * 256 * H / W  # a row for each of the four families
    sheet.delete()
    image.delete()
    return sheet.get_name()


@check("a preset outside the list and a custom number out of range send no job")
def refused_settings():
    """GIMP keeps a choice argument to its list (the value is refused where it is set); an
    out-of-range custom number is refused by the plug-in before it connects."""
    import contextlib
    import warnings

    procedure = Gimp.get_pdb().lookup_procedure("plug-in-glaze")
    config = procedure.create_config()
    with warnings.catch_warnings(), contextlib.suppress(TypeError, ValueError):
        warnings.simplefilter("ignore")
        config.set_property("quality", "bogus")
    assert config.get_property("quality") != "bogus", "GIMP took a preset not in its list"
    image, source = new_image("u8")
    before = snapshot(image)
    status, error = run("plug-in-glaze", image, [source], intensity="custom",
                        **{"intensity-custom": 0.0})
    assert status == Gimp.PDBStatusType.CALLING_ERROR, (status, error)
    assert "custom intensity must be above 0 up to 0.5" in error, error
    assert snapshot(image) == before
    image.delete()
    return error


def harbour(folder):
    """An image saved as harbour.xcf in `folder` and opened from there: Export Glazed
    proposes a name beside it."""
    image, _ = new_image("u8")
    xcf = os.path.join(folder, "harbour.xcf")
    assert Gimp.file_save(Gimp.RunMode.NONINTERACTIVE, image, _gfile(xcf), None)
    image.delete()
    return Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, _gfile(xcf))


@check("Export Glazed proposes NAME.glazed.png beside the image in GIMP's file chooser")
def export_proposal():
    """The dialog as the plug-in builds it, with a display (Xvfb) for GTK."""
    import tempfile

    gimp = plugin_module(ui=True)
    folder = tempfile.mkdtemp()
    image = harbour(folder)
    procedure = Gimp.get_pdb().lookup_procedure("plug-in-glaze-export")
    config = procedure.create_config()
    gimp.propose_export_file(image, config)
    proposed = os.path.join(folder, "harbour.glazed.png")
    assert gimp.chosen_path(config) == proposed, gimp.chosen_path(config)
    dialog, _ = gimp.build_dialog(procedure, config, "Export Glazed")
    chooser = dialog.get_widget(gimp.EXPORT_FILE, GObject.TYPE_NONE)
    assert type(chooser).__name__ == "FileChooser", type(chooser).__name__  # GimpUi's
    assert chooser.get_file().get_path() == proposed
    number = dialog.get_widget("quality-custom", GObject.TYPE_NONE)  # only for "custom"
    assert not number.get_sensitive()
    config.set_property("quality", gimp.CUSTOM)
    assert number.get_sensitive()
    dialog.destroy()
    config.set_property(gimp.EXPORT_FILE, _gfile(os.path.join(folder, "other.glazed.jpg")))
    gimp.propose_export_file(image, config)  # the format last chosen is proposed again
    assert gimp.chosen_path(config) == os.path.join(folder, "harbour.glazed.jpg")
    image.delete()
    asked = []  # replacing a file is asked first: a person's answer, each way
    for response, replaced in (("_Replace", True), ("_Cancel", False)):
        answer_question(response, asked)
        assert gimp.ask_to_replace(os.path.join(folder, "harbour.xcf")) is replaced, response
    assert asked == ["A file named \u201charbour.xcf\u201d already exists. Do you want to "
                     "replace it?"] * 2, asked
    untitled, _ = new_image("u8")  # never saved: in the home folder, as GIMP names it
    gimp.propose_export_file(untitled, config)
    assert gimp.chosen_path(config) == os.path.join(os.environ["HOME"], "Untitled.glazed.jpg")
    untitled.delete()
    return proposed


def answer_question(button, asked):
    """Once GTK shows a question, note it and click its `button` (as labelled)."""
    gi.require_version("Gtk", "3.0")
    from gi.repository import GLib, Gtk

    def click():
        for window in Gtk.Window.list_toplevels():
            if isinstance(window, Gtk.MessageDialog) and window.get_visible():
                asked.append(window.props.text)
                for response in (Gtk.ResponseType.ACCEPT, Gtk.ResponseType.CANCEL):
                    widget = window.get_widget_for_response(response)
                    if widget is not None and widget.get_label() == button:
                        widget.clicked()
                return False
        return True  # not shown yet

    GLib.timeout_add(100, click)


@check("the dialog follows a daemon that is loading its models")
def dialog_while_loading():
    """$GLAZE_TEST_LOADING_STATE: the state folder of a daemon held in its loading."""
    gimp = plugin_module(ui=True)
    procedure = Gimp.get_pdb().lookup_procedure("plug-in-glaze")
    os.environ["GLAZE_STATE_DIR"] = os.environ["GLAZE_TEST_LOADING_STATE"]
    dialog, line = gimp.build_dialog(procedure, procedure.create_config(), "Glaze")
    said = line.get_text()
    assert "loading models, 33% (the demo feature extractors)" in said, said
    assert "built-in presets" in said, said
    dialog.destroy()
    return said


def _gfile(path):
    from gi.repository import Gio

    return Gio.File.new_for_path(path)


@check("an unreachable daemon is an error and changes nothing")
def unreachable():
    image, source = new_image("u8")
    before = snapshot(image)
    status, error = run("plug-in-glaze", image, [source])
    assert status == Gimp.PDBStatusType.EXECUTION_ERROR, (status, error)
    assert "could not start the Glaze daemon" in error, error
    assert snapshot(image) == before
    image.delete()
    return error


@check("a long job (killed from outside)")
def long_job():
    image, source = new_image("u8")
    status, error = run("plug-in-glaze", image, [source], **{"quality-custom": 100000})
    return f"{status}: {error}"


@check("the Glaze dialog on screen (GUI GIMP; left open)")
def dialog_on_screen():
    """Shows an image, then the dialog of $GLAZE_GIMP_SHOT_PROCEDURE (interactive, as from
    the menu; Export Glazed's for an image saved as harbour.xcf); a helper process saves the
    screen $GLAZE_GIMP_WAIT seconds later as $GLAZE_GIMP_SHOT. The test ends GIMP."""
    import subprocess
    import sys
    import tempfile

    name = os.environ["GLAZE_GIMP_SHOT_PROCEDURE"]
    image = harbour(tempfile.mkdtemp()) if name == "plug-in-glaze-export" \
        else new_image("u8")[0]
    Gimp.Display.new(image)
    Gimp.displays_flush()
    grab = ("import os, sys, time, gi; gi.require_version('Gdk', '3.0'); "
            "from gi.repository import Gdk; Gdk.init([]); time.sleep(float(sys.argv[2])); "
            "root = Gdk.get_default_root_window(); shot = Gdk.pixbuf_get_from_window("
            "root, 0, 0, root.get_width(), root.get_height()); "
            "shot.savev(sys.argv[1] + '.part', 'png', [], []); "
            "os.replace(sys.argv[1] + '.part', sys.argv[1])")
    subprocess.Popen([sys.executable, "-c", grab, os.environ["GLAZE_GIMP_SHOT"],
                      os.environ["GLAZE_GIMP_WAIT"]])
    procedure = Gimp.get_pdb().lookup_procedure(name)
    config = procedure.create_config()
    config.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
    config.set_property("image", image)
    config.set_core_object_array("drawables", image.get_layers())
    procedure.run(config)


def main():
    for name in os.environ["GLAZE_GIMP_CHECKS"].split(","):
        try:
            detail = CHECKS[name]()
            results.append({"name": name, "ok": True, "detail": str(detail or "")})
        except Exception:
            results.append({"name": name, "ok": False, "detail": traceback.format_exc()})
        with open(os.environ["GLAZE_GIMP_RESULT"], "w") as out:
            json.dump(results, out, indent=2)


main()
