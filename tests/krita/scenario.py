"""Checks run inside real Krita by the test driver (Krita's own Python: no pytest here).

Each check records {"name", "ok", "detail"}. A check is a function, or a generator that
yields a number of seconds to go back to Krita's own event loop for (Krita finishes setting
up a new document's view there, not inside a callback). start() runs the checks one by one
from the event loop, writes the results as JSON and calls done(exit code).

Qt comes in the binding this Krita runs (PyQt5 or PyQt6), chosen by the plug-in's qt module.
"""

import contextlib
import gc
import importlib.util
import json
import os
import re
import struct
import tempfile
import time
import traceback

from glaze_krita.qt import QtCore, QtGui, QtWidgets
from krita import Krita

QEventLoop, QTimer = QtCore.QEventLoop, QtCore.QTimer
QImage, QApplication = QtGui.QImage, QtWidgets.QApplication

FAST = {"quality": 2, "work_size": 64, "target": "Baroque painting by Caravaggio"}
STEPS_TO_WATCH = 400  # a cloak long enough to watch its time left fall, then finish it
W, H = 64, 48
FORMATS = {"U8": ("BGRA", "<B", 255), "U16": ("BGRA", "<H", 65535), "F16": ("RGBA", "<e", 1.0),
           "F32": ("RGBA", "<f", 1.0)}
results = []


def _timing():
    """tests/timing.py, loaded by path: Krita's Python does not have tests/ on sys.path."""
    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                        "timing.py")
    spec = importlib.util.spec_from_file_location("glaze_test_timing", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


timing = _timing()


def milliseconds(seconds):
    """A Qt timer's interval for a deadline of `seconds`, scaled like every test deadline."""
    return int(timing.scaled(seconds) * 1000)


def check(name, when=lambda: True):
    """Register a check; `when` says whether this run makes it."""
    def register(function):
        check.all.append((name, function, when))
        return function
    return register


check.all = []


@contextlib.contextmanager
def environment(**values):
    """Set environment variables for the block, then put back what was there."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            os.environ.pop(key, None) if value is None else os.environ.update({key: value})


def extension():
    """The Glaze extension. The list from extensions() is kept for the whole run: Krita 5.3
    and 6 crash once it is dropped while an extension in it has no other Python holder."""
    if not kept:
        kept.extend(Krita.instance().extensions())
    for candidate in kept:
        if type(candidate).__name__ == "GlazeExtension":
            return candidate
    raise AssertionError("the Glaze extension is not loaded")


kept = []


def wait(run, on_progress=None, timeout_s=240):
    """Block (with Krita's event loop running) until the run finishes."""
    loop, outcome = QEventLoop(), {}

    def finished(status, message):
        outcome.update(status=status, message=message)
        loop.quit()

    run.finished.connect(finished)
    if on_progress:
        run.progressed.connect(on_progress)
    QTimer.singleShot(milliseconds(timeout_s), loop.quit)
    loop.exec()
    return outcome.get("status", "timeout"), outcome.get("message", "")


def painting(depth):
    """Known pixels with a transparent strip (x < 8) and a half-transparent one."""
    order, code, top = FORMATS[depth]
    out = bytearray()
    for y in range(H):
        for x in range(W):
            rgb = [((x * 4) % 256) / 255, ((y * 5) % 256) / 255, ((x + y) % 256) / 255]
            alpha = 0.0 if x < 8 else 0.5 if x < 16 else 1.0
            channels = [rgb[2], rgb[1], rgb[0], alpha] if order == "BGRA" else rgb + [alpha]
            for value in channels:
                scaled = value * top
                out += struct.pack(code, scaled if code in ("<e", "<f") else round(scaled))
    return bytes(out)


def document(depth="U8", model="RGBA"):
    doc = Krita.instance().createDocument(W, H, f"glaze test {depth}", model, depth, "", 72.0)
    layer = doc.createNode("art", "paintlayer")
    doc.rootNode().addChildNode(layer, None)
    if model == "RGBA":
        layer.setPixelData(painting(depth), 0, 0, W, H)
    doc.refreshProjection()
    settle(doc)
    return doc, layer


def settle(doc):
    """Let Krita finish its asynchronous updates (they mark the document modified)."""
    doc.waitForDone()
    for _ in range(5):
        QApplication.processEvents()


def samples(data, depth):
    _, code, _ = FORMATS[depth]
    size = struct.calcsize(code)
    return [struct.unpack_from(code, data, i)[0] for i in range(0, len(data), size)]


def snapshot(doc):
    return [(n.name(), bytes(n.pixelData(0, 0, W, H))) for n in doc.rootNode().childNodes()]


def glaze_checks(depth):
    doc, source = document(depth)
    before = bytes(source.pixelData(0, 0, W, H))
    status, message = wait(extension().glaze_layer(doc, source, FAST, interactive=False))
    assert status == "done", (status, message)
    nodes = doc.rootNode().childNodes()
    names = [n.name() for n in nodes]
    assert names[-2:] == ["art", "art (glazed)"], names  # directly above the source
    glazed = nodes[-1]
    assert glazed.colorDepth() == depth and glazed.colorModel() == "RGBA"
    assert glazed.bounds() == source.bounds(), (glazed.bounds(), source.bounds())
    assert bytes(source.pixelData(0, 0, W, H)) == before, "the source layer changed"
    old, new = samples(before, depth), samples(bytes(glazed.pixelData(0, 0, W, H)), depth)
    assert old[3::4] == new[3::4], "alpha changed"
    colour = [i for i in range(len(old)) if i % 4 != 3]
    assert any(old[i] != new[i] for i in colour), "RGB did not change"
    assert "NO protection" in message
    doc.close()
    return message


@check("the plug-in imports its own copy of the client and pyzmq")
def vendored_client():
    import glaze_client.client
    import msgpack
    import zmq
    from glaze_krita.client import VENDOR

    for module in (glaze_client.client, zmq, msgpack):
        assert module.__file__.startswith(VENDOR + os.sep), (module.__name__, module.__file__)
    return f"zmq {zmq.__version__} from {zmq.__file__}"


for _depth, _label in (("U8", "an 8-bit"), ("U16", "a 16-bit"), ("F16", "a 16-bit float"),
                      ("F32", "a 32-bit float")):
    check(f"glaze {_label} layer")(lambda depth=_depth: glaze_checks(depth))


@check("export glazed leaves the document untouched and the files carry their record")
def export():
    """PNG and JPEG, into $GLAZE_KRITA_OUT, where the test reads their records."""
    doc, _ = document("U8")
    doc.setModified(False)
    before = snapshot(doc)
    folder = os.environ["GLAZE_KRITA_OUT"]
    said = []
    for name in ("glazed.png", "glazed.jpg"):
        path = os.path.join(folder, name)
        status, message = wait(extension().export_glazed(doc, path, FAST, interactive=False))
        assert status == "done", (status, message)
        image = QImage(path)
        assert not image.isNull() and (image.width(), image.height()) == (W, H)
        said.append(message)
    settle(doc)
    assert not doc.modified(), "the document reports itself modified"
    assert snapshot(doc) == before, "the document's layers changed"
    assert sorted(os.listdir(folder)) == ["glazed.jpg", "glazed.png"], os.listdir(folder)
    doc.close()
    return "\n".join(said)


@check("the dialog follows a daemon that is loading its models",
       when=lambda: bool(os.environ.get("GLAZE_TEST_LOADING_STATE")))
def dialog_while_loading():
    """A daemon held in its loading (its state folder is $GLAZE_TEST_LOADING_STATE)."""
    from glaze_krita.dialog import GlazeDialog

    with environment(GLAZE_STATE_DIR=os.environ["GLAZE_TEST_LOADING_STATE"]):
        dialog = GlazeDialog("Glaze")
        said = dialog.daemon_line.text()
        assert "loading models, 33% (the demo feature extractors)" in said, said
        assert "built-in presets" in said and dialog.watch.isActive(), said
        dialog.follow_daemon()  # what its timer does: still loading, still said
        assert dialog.daemon_line.text() == said and dialog.watch.isActive()
    dialog.deleteLater()
    return said


@check("an unreachable daemon is reported and changes nothing")
def unreachable():
    doc, _ = document("U8")
    before = snapshot(doc)
    # No daemon in a fresh state folder, and starting one fails.
    with environment(GLAZE_STATE_DIR=tempfile.mkdtemp(), GLAZE_DAEMON_COMMAND="false"):
        status, message = wait(extension().glaze_layer(doc, doc.rootNode().childNodes()[-1],
                                                       FAST, interactive=False))
    assert status == "failed" and "could not start the Glaze daemon" in message, message
    assert snapshot(doc) == before
    doc.close()
    return message


@check("a daemon that is not running is started on first use",
       when=lambda: bool(os.environ.get("GLAZE_TEST_START_COMMAND")))
def autostart():
    doc, source = document("U8")
    # No daemon there yet; beside the results, where the test run looks for leftover daemons.
    state = tempfile.mkdtemp(dir=os.path.dirname(os.environ["GLAZE_KRITA_RESULT"]))
    with environment(GLAZE_STATE_DIR=state,
                     GLAZE_DAEMON_COMMAND=os.environ["GLAZE_TEST_START_COMMAND"]):
        status, message = wait(extension().glaze_layer(doc, source, FAST, interactive=False))
        assert status == "done", (status, message)
        from glaze_client.client import Client  # the plug-in's vendored copy

        with Client.connect() as client:  # the daemon the plug-in started: stop it
            pid = client.info.pid
            client.stop_daemon()
    assert [n.name() for n in doc.rootNode().childNodes()][-1] == "art (glazed)"
    doc.close()
    return f"started daemon pid {pid}"


@check("cancel mid-job leaves the document as it was")
def cancel():
    doc, source = document("U8")
    before = snapshot(doc)
    run = extension().glaze_layer(doc, source, {**FAST, "quality": 100000}, interactive=False)
    seen, asked = [], []

    def progressed(fraction, message):
        seen.append(message)
        if message.startswith("cloak step") and not asked:
            asked.append(time.monotonic())
            run.cancel()

    status, message = wait(run, progressed)
    confirmed = time.monotonic() - asked[0] if asked else None
    assert status == "cancelled", (status, message)
    # the daemon's confirmation ends the run: within 2 s (only the slack is scaled)
    assert confirmed < 1.0 + timing.scaled(1.0), f"confirmed after {confirmed:.2f} s"
    assert snapshot(doc) == before
    doc.close()
    return f"confirmed {confirmed:.2f} s after Cancel; {len(seen)} progress messages"


@check("a CMYK document gets a clear message and nothing changes")
def cmyk():
    doc, layer = document("U8", model="CMYKA")
    before = snapshot(doc)
    try:
        extension().glaze_layer(doc, layer, FAST, interactive=False)
    except Exception as error:
        assert type(error).__name__ == "UnsupportedLayer" and "RGB" in str(error), error
        message = str(error)
    else:
        raise AssertionError("a CMYK layer was accepted")
    assert snapshot(doc) == before
    doc.close()
    return message


@check("the dialog is built from the declared settings and lists the daemon's presets")
def dialog_from_declarations():
    from glaze_krita.client import DaemonState, daemon_state, options
    from glaze_krita.dialog import GlazeDialog
    from glaze_krita.qt import QComboBox

    def presets(dialog, name):
        combo = dialog.fields[name]
        assert isinstance(combo, QComboBox), (name, type(combo).__name__)
        return [combo.itemData(i) for i in range(combo.count())]

    state = daemon_state()  # the test's daemon: it advertises the declared presets
    offered = state.options
    assert offered == options.advertised(), offered
    dialog = GlazeDialog("Glaze", state=state)
    # The daemon's state heads the dialog: the demo models are named as no protection.
    said = dialog.daemon_line.text()
    assert "ready, serving demo-seed0" in said and "NO protection" in said, said
    assert not dialog.watch.isActive()
    assert list(dialog.fields) == [setting.name for setting in options.SETTINGS]
    values = dialog.values()
    for setting in options.SETTINGS:  # nothing remembered yet: the declared defaults
        plain = setting.kind is int and not setting.presets
        assert values[setting.name] == (setting.default if plain else setting.text_default()), \
            (setting.name, values[setting.name])
    assert presets(dialog, "intensity") == list(options.INTENSITY.presets)
    assert presets(dialog, "quality") == list(options.QUALITY.presets)
    assert options.wire_settings(values) == {
        s.name: s.default for s in options.SETTINGS if s.default is not None}
    # Defend against: one checkbox per model family, all checked; OK needs one at least.
    boxes = dialog.fields["defend"].boxes
    assert list(boxes) == ["sd", "sdxl", "flux", "flux2", "qwen"]  # the five families
    assert all(b.isChecked() for b in boxes.values())
    assert [b.text() for b in boxes.values()] == list(options.DEFEND.choices.values())
    boxes["sdxl"].setChecked(False)
    assert dialog.values()["defend"] == "sd,flux,flux2,qwen" and dialog.ok.isEnabled()
    for name in ("sd", "flux", "flux2", "qwen"):
        boxes[name].setChecked(False)
    assert not dialog.ok.isEnabled()  # nothing to defend against: no OK
    # Target style: a text field that lists the candidate styles.
    target = dialog.fields["target"]
    listed = [target.itemText(i) for i in range(target.count())]
    assert listed == ["", *options.candidate_styles()] and len(listed) > 100, listed[:3]
    assert target.lineEdit().placeholderText() == options.TARGET.placeholder
    target.setCurrentIndex(5)
    assert dialog.values()["target"] == listed[5]
    target.setEditText("Cubism painting by someone of my own")
    assert dialog.values()["target"] == "Cubism painting by someone of my own"
    dialog.deleteLater()
    only_sd = GlazeDialog("Glaze", state=DaemonState("", {"defend": ["sd"]}))  # SD's alone
    assert list(only_sd.fields["defend"].boxes) == ["sd"]
    assert only_sd.values()["defend"] == "sd"
    only_sd.deleteLater()
    # a newer daemon's extra preset is listed; an unusable table falls back to the declared
    newer = GlazeDialog("Glaze", state=DaemonState("", {
        "intensity": {"gentle": 0.01, "default": 0.05}, "quality": "not a table"}))
    assert presets(newer, "intensity") == ["gentle", "default"]
    assert newer.values()["intensity"] == "default"
    assert presets(newer, "quality") == list(options.QUALITY.presets)
    newer.deleteLater()
    export = GlazeDialog("Export Glazed", export=True)
    assert export.values()["jpeg_quality"] == options.JPEG_QUALITY.default
    export.deleteLater()
    return said


SHOW_PREVIEW = "Show what a model sees"


def answer_modal_windows(seen, loop):
    """What a person does: OK in Glaze's dialog (after a screenshot, when asked for one),
    note the file dialog's proposal and cancel it, OK in a message box (which ends `loop`),
    or with seen["show"], "Show what a model sees" in the result's message box, then "Open
    as a new document" in the dialog that shows the sheet (which ends `loop`)."""
    for window in QApplication.topLevelWidgets():  # what the progress dialog says
        if type(window).__name__ == "ProgressDialog" and window.isVisible():
            said = seen.setdefault("progress", [])
            if not said or said[-1] != window.label.text():
                said.append(window.label.text())
            if seen.get("finish") and falling(said):  # enough watched: Finish now
                seen["finish"], seen["fell"] = False, falling(said)
                window.finish_button.click()
    widget = QApplication.activeModalWidget()
    if widget is None or type(widget).__name__ == "ProgressDialog":
        return
    kind = type(widget).__name__
    if kind == "GlazeDialog":
        seen["dialogs"].append(widget.values())
        screenshot(widget)
        widget.accept()
    elif kind == "QFileDialog":
        seen["files"].append((widget.directory().absolutePath(), widget.selectedFiles()))
        widget.reject()
        loop.quit()
    elif kind == "PreviewDialog":  # what a model sees: keep it as a document
        pixmap = widget.findChild(QtWidgets.QLabel).pixmap()
        seen["sheets"].append((pixmap.width(), pixmap.height()))
        widget.open_button.click()
        loop.quit()
    elif kind == "QMessageBox":
        seen["messages"].append(widget.text())
        show = [button for button in widget.buttons()  # Krita adds &-accelerators
                if button.text().replace("&", "") == SHOW_PREVIEW]
        if show and seen.get("show"):  # ask for the preview; its own message ends the loop
            seen["show"] = False
            show[0].click()
            return
        widget.accept()
        loop.quit()


def falling(labels):
    """The times left the progress labels gave, in seconds, when they have fallen."""
    left = [int(found[1]) * (60 if found[2] == "min" else 1) for found in (
        re.search(r"cloak step \d+ .*about (\d+) (s|min) left", label)
        for label in labels) if found]
    return left if len(left) > 2 and left[-1] < left[0] else []


def screenshot(dialog):
    """The screen with the Glaze dialog open, as $GLAZE_HOST_SCREENSHOTS/krita-VERSION.png."""
    folder = os.environ.get("GLAZE_HOST_SCREENSHOTS")
    if not folder or screenshot.taken:
        return
    screenshot.taken = True
    for _ in range(20):  # let the dialog paint
        QApplication.processEvents()
    screen = dialog.screen() if hasattr(dialog, "screen") else QApplication.primaryScreen()
    path = os.path.join(folder, f"krita-{Krita.instance().version()}.png")
    if not screen.grabWindow(0).save(path):
        raise OSError(f"could not save {path}")


screenshot.taken = False


def trigger(action_id, seen):
    """Trigger Krita's action from the event loop and answer its windows as a person would;
    returns when a message box or file dialog was answered (or after 300 s, scaled)."""
    loop = QEventLoop()
    clicker = QTimer()
    clicker.timeout.connect(lambda: answer_modal_windows(seen, loop))
    clicker.start(100)
    QTimer.singleShot(milliseconds(300), loop.quit)
    QTimer.singleShot(0, Krita.instance().action(action_id).trigger)
    loop.exec()
    clicker.stop()


def open_in_window(doc, node):
    """Show `doc` in Krita's window with `node` active."""
    window = Krita.instance().activeWindow()
    window.addView(doc)
    doc.setActiveNode(node)
    settle(doc)


@check("Filter > Glaze through the real action, dialog and progress, after a script's "
       "extensions() call")
def action():
    app = Krita.instance()
    doc, source = document("U8")
    open_in_window(doc, source)
    yield 1.0  # Krita sets up the new view in its own event loop
    names = [type(item).__name__ for item in app.extensions()]  # a user's script: the list
    gc.collect()  # is dropped at once; Glaze's extension must stay alive
    assert "GlazeExtension" in names, names
    # Enough steps for the progress dialog's time left to be seen falling.
    app.writeSetting("glaze", "quality", str(STEPS_TO_WATCH))
    app.writeSetting("glaze", "work_size", str(FAST["work_size"]))
    app.writeSetting("glaze", "target", FAST["target"])
    app.writeSetting("glaze", "defend", "flux,sd")
    # Once the time left is seen falling, Finish now: what the steps made is applied.
    seen = {"dialogs": [], "messages": [], "files": [], "finish": True}
    trigger("glaze_layer", seen)
    app.writeSetting("glaze", "defend", "")
    names = [n.name() for n in doc.rootNode().childNodes()]
    assert seen["dialogs"] and seen["dialogs"][0]["quality"] == str(STEPS_TO_WATCH), seen
    # The time left showed and fell; then Finish now was clicked.
    assert seen.get("fell") and seen["finish"] is False, seen.get("progress")
    assert "was finished early on request" in seen["messages"][0], seen
    steps = int(re.search(r"in (\d+) steps", seen["messages"][0])[1])
    assert 0 < steps < STEPS_TO_WATCH, seen["messages"][0]
    assert seen["dialogs"][0]["defend"] == "sd,flux", seen
    assert seen["messages"] and "NO protection" in seen["messages"][0], seen
    message = seen["messages"][0]  # each defended family's shift, and only theirs
    assert "SD " in message and "FLUX " in message and "SDXL" not in message, message
    assert names[-2:] == ["art", "art (glazed)"], names
    doc.setModified(False)  # close without a "save changes?" question
    doc.close()
    return seen["messages"][0]


@check("Show what a model sees shows the daemon's sheet and adds it as a document")
def show_what_a_model_sees():
    app = Krita.instance()
    doc, source = document("U8")
    open_in_window(doc, source)
    yield 1.0
    app.writeSetting("glaze", "quality", str(FAST["quality"]))
    app.writeSetting("glaze", "work_size", str(FAST["work_size"]))
    app.writeSetting("glaze", "target", FAST["target"])
    app.writeSetting("glaze", "defend", "sd,flux")
    before = {id(each) for each in app.documents()}
    seen = {"dialogs": [], "messages": [], "files": [], "show": True, "sheets": []}
    trigger("glaze_layer", seen)
    app.writeSetting("glaze", "defend", "")
    assert seen["show"] is False, f"no {SHOW_PREVIEW!r} button: {seen['messages']}"
    assert len(seen["messages"]) == 1 and len(seen["sheets"]) == 1, seen  # the dialog
    opened = [each for each in app.documents() if each.fileName().endswith(
        "art.preview.png")]
    assert len(opened) == 1, [each.fileName() for each in app.documents()]
    sheet = opened[0]
    assert sheet.width() == 12 + 3 * (256 + 12) and sheet.height() > 2 * 256 * H / W, \
        (sheet.width(), sheet.height())
    assert len(app.documents()) == len(before) + 1
    assert seen["sheets"][0] == (sheet.width(), sheet.height())  # the dialog showed it
    sheet.close()
    doc.setModified(False)
    doc.close()
    return str(seen["sheets"])


@check("Export Glazed proposes the document's folder and name with .glazed")
def export_proposal():
    doc, source = document("U8")
    folder = tempfile.mkdtemp()
    doc.setBatchmode(True)
    assert doc.saveAs(os.path.join(folder, "harbour.kra")), "could not save the test document"
    doc.setBatchmode(False)
    open_in_window(doc, source)
    yield 1.0
    seen = {"dialogs": [], "messages": [], "files": []}
    trigger("glaze_export", seen)
    assert seen["dialogs"], seen
    assert seen["files"], f"no file dialog (messages: {seen['messages']})"
    directory, selected = seen["files"][0]
    assert os.path.realpath(directory) == os.path.realpath(folder), (directory, folder)
    assert [os.path.basename(path) for path in selected] == ["harbour.glazed.png"], selected
    assert sorted(os.listdir(folder)) == ["harbour.kra"], os.listdir(folder)
    doc.close()
    return f"{directory}: {selected}"


@check("the actions are in the Filter and File menus")
def menus():
    window = Krita.instance().activeWindow()
    found = {}
    for top in window.qwindow().menuBar().actions():
        menu = top.menu()
        for action in (menu.actions() if menu else []):
            if action.objectName() in ("glaze_layer", "glaze_export"):
                found[action.objectName()] = top.text().replace("&", "")
    assert found.get("glaze_layer") == "Filter", found
    assert found.get("glaze_export") == "File", found
    return str(found)


@check("Krita read the actions' categories file (its tooltips are on the actions)")
def action_file():
    """Krita gives an action the properties its .action file lists (the tooltip among them)
    and files it under that file's category; createAction sets only the text."""
    import xml.etree.ElementTree as ElementTree

    path = os.path.join(os.environ["HOME"], ".local/share/krita/actions/glaze_krita.action")
    filed = {action.get("name"): action.findtext("toolTip")
             for action in ElementTree.parse(path).getroot().iter("Action")}
    shown = {name: Krita.instance().action(name).toolTip() for name in filed}
    assert shown == filed, shown
    return str(shown)


def start(result_path, done):
    """Run every check from Krita's event loop, write the results, then done(exit code)."""
    pending = [(name, function) for name, function, when in check.all if when()]

    def record(name, ok, detail):
        results.append({"name": name, "ok": ok, "detail": detail})

    def step(name, steps):
        try:
            pause = next(steps)
        except StopIteration as finished:
            record(name, True, str(finished.value or ""))
        except Exception:
            record(name, False, traceback.format_exc())
        else:
            QTimer.singleShot(int(pause * 1000), lambda: step(name, steps))
            return
        QTimer.singleShot(0, run_next)

    def run_next():
        if not pending:
            with open(result_path, "w") as out:
                json.dump(results, out, indent=2)
            done(0 if results and all(r["ok"] for r in results) else 1)
            return
        with open(result_path + ".partial", "w") as out:  # what a crash leaves to read
            json.dump(results + [{"name": "running when Krita stopped: " + pending[0][0],
                                  "ok": False, "detail": ""}], out)
        name, function = pending.pop(0)
        try:
            outcome = function()
        except Exception:
            record(name, False, traceback.format_exc())
        else:
            if hasattr(outcome, "__next__"):
                return step(name, outcome)
            record(name, True, str(outcome or ""))
        QTimer.singleShot(0, run_next)

    QTimer.singleShot(0, run_next)
