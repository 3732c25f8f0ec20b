"""Runs the scenario file named by $GLAZE_KRITA_SCENARIO inside real Krita once its window
is up, writes the results to $GLAZE_KRITA_RESULT and exits Krita with os._exit (Krita itself
exits 0 whatever happens)."""

import os
import traceback

from glaze_krita.qt import QTimer
from krita import Extension, Krita


def crashed():
    with open(os.environ["GLAZE_KRITA_RESULT"] + ".crash", "w") as out:
        out.write(traceback.format_exc())
    os._exit(3)


class Driver(Extension):
    started = False

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        if not Driver.started:
            Driver.started = True
            QTimer.singleShot(2000, self.run)

    def run(self) -> None:
        try:
            path = os.environ["GLAZE_KRITA_SCENARIO"]
            namespace = {"__name__": "scenario", "__file__": path}
            with open(path) as source:
                exec(compile(source.read(), path, "exec"), namespace)
            namespace["start"](os.environ["GLAZE_KRITA_RESULT"], os._exit)
        except BaseException:
            crashed()


DRIVER = Driver(Krita.instance())  # held for Krita's lifetime
Krita.instance().addExtension(DRIVER)
