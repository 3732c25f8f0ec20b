"""Models placed where the Hugging Face cache keeps downloads: the real loading path, offline."""

import json
from pathlib import Path

from glaze.engine.models import BUNDLE_FILE
from glaze.engine.sources import DEFAULT_HUB_ID, EXTRACTOR_SOURCES

DEAD_ENDPOINT = "http://127.0.0.1:9"  # the discard port: connections are refused at once


def cache_as_hub(model, hub: Path, repo_id: str, subfolder: str | None = None) -> Path:
    """Save a bundle or a model (into `subfolder`) where the Hugging Face cache keeps a
    downloaded `repo_id`; the snapshot's folder."""
    snapshot = "0123456789abcdef0123456789abcdef01234567"
    repo = hub / f"models--{repo_id.replace('/', '--')}"
    folder = repo / "snapshots" / snapshot
    if hasattr(model, "save"):
        model.save(folder)
    else:
        model.save_pretrained(folder / (subfolder or ""))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(snapshot)
    return folder


def cache_default_models(bundle, hub: Path) -> None:
    """The demo's models where the default bundle and its extractors' hub ids would be."""
    folder = cache_as_hub(bundle, hub, DEFAULT_HUB_ID)
    meta = json.loads((folder / BUNDLE_FILE).read_text())
    del meta["extractors"]  # extractors from their own hub ids, as for the real default
    (folder / BUNDLE_FILE).write_text(json.dumps(meta))
    for name, source in EXTRACTOR_SOURCES.items():
        if name != "sd":
            cache_as_hub(bundle.extractors[name].model, hub, source.location, source.subfolder)
