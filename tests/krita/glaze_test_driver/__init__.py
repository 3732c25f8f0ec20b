"""Runs the scenario file named by $GLAZE_KRITA_SCENARIO inside real Krita, writes its
results to $GLAZE_KRITA_RESULT and exits Krita with os._exit (Krita itself exits 0 whatever
happens)."""

import os
import traceback

from krita import Extension, Krita
from PyQt5.QtCore import QTimer


class Driver(Extension):
    started = False

    def setup(self) -> None:
        pass

    def createActions(self, window) -> None:
        if not Driver.started:
            Driver.started = True
            QTimer.singleShot(2000, self.run)

    def run(self) -> None:
        code = 3
        try:
            path = os.environ["GLAZE_KRITA_SCENARIO"]
            namespace = {"__name__": "scenario", "__file__": path}
            with open(path) as source:
                exec(compile(source.read(), path, "exec"), namespace)
            code = namespace["main"](os.environ["GLAZE_KRITA_RESULT"])
        except BaseException:
            with open(os.environ["GLAZE_KRITA_RESULT"] + ".crash", "w") as out:
                out.write(traceback.format_exc())
        finally:
            os._exit(code)


Krita.instance().addExtension(Driver(Krita.instance()))
