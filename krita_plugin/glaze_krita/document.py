"""Where pixels leave and enter Krita: reading a layer or the projection, writing a new
layer, exporting a file. Nothing here modifies the source layer or the document's file."""

from krita import InfoObject, Krita

from .client import layout_for, options, published

# Krita's pixelData: integer depths are B,G,R,A; float depths R,G,B,A.
ORDERS = {"U8": "BGRA", "U16": "BGRA", "F16": "RGBA", "F32": "RGBA"}
SAMPLES = {"U8": "u8", "U16": "u16", "F16": "f16", "F32": "f32"}


class UnsupportedLayer(Exception):
    """The layer or document is in a colour model Glaze does not handle."""


def layer_format(model: str, depth: str) -> tuple:
    """(order, sample) for a Krita colour model and depth, or UnsupportedLayer."""
    if model != "RGBA":
        raise UnsupportedLayer(
            f"Glaze works on RGB images; this one is {model}. Convert it with "
            "Image > Convert Image Color Space (RGB/Alpha), or glaze a copy.")
    if depth not in ORDERS:
        raise UnsupportedLayer(f"Glaze does not handle {depth} colour depth.")
    return ORDERS[depth], SAMPLES[depth]


class Pixels:
    """A rectangle of pixels in Krita's own layout, ready for the client."""

    def __init__(self, data, x: int, y: int, width: int, height: int, order: str,
                 sample: str) -> None:
        self.data, self.x, self.y, self.width, self.height = data, x, y, width, height
        self.order, self.sample = order, sample

    @property
    def layout(self) -> dict:
        return layout_for(self.width, self.height, self.order, self.sample)


def read_layer(node) -> Pixels:
    """The paint layer's pixels over its bounds."""
    if node is None or node.type() != "paintlayer":
        raise UnsupportedLayer("Select a paint layer to glaze.")
    order, sample = layer_format(node.colorModel(), node.colorDepth())
    bounds = node.bounds()
    if bounds.width() <= 0 or bounds.height() <= 0:
        raise UnsupportedLayer("The layer is empty.")
    data = node.pixelData(bounds.x(), bounds.y(), bounds.width(), bounds.height())
    return Pixels(bytes(data), bounds.x(), bounds.y(), bounds.width(), bounds.height(),
                  order, sample)


def read_projection(document) -> Pixels:
    """The document's visible image (all layers merged)."""
    order, sample = layer_format(document.colorModel(), document.colorDepth())
    width, height = document.width(), document.height()
    data = document.pixelData(0, 0, width, height)
    return Pixels(bytes(data), 0, 0, width, height, order, sample)


def add_glazed_layer(document, source, pixels: Pixels, data) -> object:
    """A new layer named "<source> (glazed)" directly above `source`, holding `data`."""
    layer = document.createNode(f"{source.name()} (glazed)", "paintlayer")
    if (layer.colorModel(), layer.colorDepth()) != (source.colorModel(), source.colorDepth()):
        layer.setColorSpace(source.colorModel(), source.colorDepth(), source.colorProfile())
    layer.setPixelData(bytes(data), pixels.x, pixels.y, pixels.width, pixels.height)
    source.parentNode().addChildNode(layer, source)
    document.refreshProjection()
    return layer


def suggested_export_path(document) -> str:
    """Where Export Glazed proposes to write: beside the document's file, named after it."""
    return options.export_proposal(document.fileName(), document.name())


def export_pixels(document, pixels: Pixels, data, path: str, record: dict | None,
                  quality: int = 95) -> None:
    """Write the glazed image to `path` through a temporary Krita document, carrying
    `record` (what made it) as `glaze cloak`'s outputs do; the open document is not
    touched. Written beside `path`, then renamed over it."""
    app = Krita.instance()
    copy = app.createDocument(pixels.width, pixels.height, "glazed export",
                              document.colorModel(), document.colorDepth(),
                              document.colorProfile(), document.resolution())
    try:
        copy.setBatchmode(True)
        layer = copy.createNode("glazed", "paintlayer")
        layer.setPixelData(bytes(data), 0, 0, pixels.width, pixels.height)
        root = copy.rootNode()
        for child in root.childNodes():
            root.removeChildNode(child)
        root.addChildNode(layer, None)
        copy.refreshProjection()
        settings = InfoObject()
        settings.setProperty("quality", quality)
        settings.setProperty("alpha", True)
        with published(path, record) as temporary:
            if not copy.exportImage(str(temporary), settings) or not temporary.exists():
                raise OSError(f"Krita could not write {path}")
    finally:
        copy.close()
