"""The style metric (paper section 6.2): CLIP zero-shot genre classification.

The genre shift rate is the share of mimicked images whose top-3 CLIP genres exclude the
artist's own genre: a mimicry that still looks like the artist's genre did not shift. The
CLIP similarity of the mimicked images to the artist's held-out works is reported beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import torch
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
)

from ..demo import demo_tokenizer
from ..models import ModelLoadError, pick_device

DEFAULT_CLIP = "openai/clip-vit-large-patch14"
PROMPT = "an artwork in the style of {genre}"
TOP_K = 3
DEMO_SIZE = 32  # the demo CLIP's input side, pixels


def genres() -> list[str]:
    """The shipped label set: the 27 WikiArt genres and 13 digital-art genres."""
    text = resources.files(__package__).joinpath("data/genres.txt").read_text("utf-8")
    return [line.strip() for line in text.splitlines()
            if line.strip() and not line.startswith("#")]


@dataclass
class Clip:
    """A CLIP model and its processor, resident on one device."""

    name: str
    model: CLIPModel
    processor: CLIPProcessor
    device: torch.device
    demo: bool = False
    # Text embeddings by text: every cell classifies over the same genre prompts.
    texts: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.model.to(self.device).eval().requires_grad_(False)


def demo_clip(seed: int = 0, device: str | None = None) -> Clip:
    """A tiny random CLIP built in code (no download). Its genres mean nothing."""
    tokenizer = demo_tokenizer()
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CLIPModel(CLIPConfig(
            text_config=dict(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                             num_hidden_layers=2, num_attention_heads=4,
                             max_position_embeddings=77, bos_token_id=tokenizer.bos_token_id,
                             eos_token_id=tokenizer.eos_token_id,
                             pad_token_id=tokenizer.pad_token_id),
            vision_config=dict(image_size=DEMO_SIZE, patch_size=8, hidden_size=32,
                               intermediate_size=64, num_hidden_layers=2, num_attention_heads=4),
            projection_dim=32))
    images = CLIPImageProcessor(size={"shortest_edge": DEMO_SIZE},
                                crop_size={"height": DEMO_SIZE, "width": DEMO_SIZE})
    processor = CLIPProcessor(image_processor=images, tokenizer=tokenizer)
    return Clip(f"demo-clip-seed{seed}", model, processor, pick_device(device), demo=True)


def load_clip(source: str = "demo", device: str | None = None) -> Clip:
    """CLIP from "demo", a local folder or a hub id (as the other models are loaded)."""
    if source == "demo":
        return demo_clip(device=device)
    try:
        model = CLIPModel.from_pretrained(source)
        processor = CLIPProcessor.from_pretrained(source)
    except Exception as error:
        raise ModelLoadError(f"could not load CLIP {source!r}: {error}. A hub id needs a "
                             "network connection the first time; a folder must hold a "
                             "transformers CLIP model and processor.") from error
    return Clip(source, model, processor, pick_device(device))


def _features(output) -> torch.Tensor:
    # transformers returns a tensor, or (newer versions) an output with the pooled projection.
    tensor = output if isinstance(output, torch.Tensor) else output.pooler_output
    return torch.nn.functional.normalize(tensor.float(), dim=-1)


@torch.no_grad()
def image_embeddings(clip: Clip, images: Sequence[np.ndarray]) -> torch.Tensor:
    """Unit-length CLIP embeddings of H x W x 3 uint8 images, N x D."""
    inputs = clip.processor(images=list(images), return_tensors="pt").to(clip.device)
    return _features(clip.model.get_image_features(pixel_values=inputs["pixel_values"]))


@torch.no_grad()
def text_embeddings(clip: Clip, texts: Sequence[str]) -> torch.Tensor:
    """Unit-length CLIP embeddings of texts, N x D (each text embedded once per Clip)."""
    missing = list(dict.fromkeys(text for text in texts if text not in clip.texts))
    if missing:
        inputs = clip.processor(text=missing, padding=True, return_tensors="pt").to(clip.device)
        found = _features(clip.model.get_text_features(input_ids=inputs["input_ids"],
                                                       attention_mask=inputs["attention_mask"]))
        clip.texts.update(zip(missing, found, strict=True))
    return torch.stack([clip.texts[text] for text in texts])


def genre_probabilities(clip: Clip, images: Sequence[np.ndarray],
                        labels: Sequence[str]) -> np.ndarray:
    """N x G zero-shot probabilities of each image over the genre labels."""
    texts = text_embeddings(clip, [PROMPT.format(genre=genre) for genre in labels])
    scale = clip.model.logit_scale.exp().float()
    logits = scale * image_embeddings(clip, images) @ texts.T
    return logits.softmax(dim=-1).cpu().numpy()


def top_genres(probabilities: np.ndarray, labels: Sequence[str], k: int = TOP_K) -> list[list]:
    """The k most likely genres of each image, most likely first."""
    order = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
    return [[labels[i] for i in row] for row in order]


def shift_rate(probabilities: np.ndarray, labels: Sequence[str], artist_genre: str,
               k: int = TOP_K) -> float:
    """Share of images whose top-k genres exclude the artist's genre (paper section 6.2)."""
    if len(probabilities) == 0:
        raise ValueError("the genre shift rate needs at least one image")
    shifted = [artist_genre not in row for row in top_genres(probabilities, labels, k)]
    return float(np.mean(shifted))


def artist_genre(probabilities: np.ndarray, labels: Sequence[str]) -> str:
    """The artist's genre as CLIP sees their own works: the highest mean probability."""
    return labels[int(np.argmax(probabilities.mean(axis=0)))]


def centroid(clip: Clip, references: Sequence[np.ndarray]) -> torch.Tensor:
    """Unit-length mean of the references' embeddings (the artist's held-out works)."""
    return torch.nn.functional.normalize(image_embeddings(clip, references).mean(0), dim=0)


def similarity(clip: Clip, images: Sequence[np.ndarray], reference: torch.Tensor) -> float:
    """Mean cosine similarity of the images to a `centroid`."""
    return float((image_embeddings(clip, images) @ reference).mean())
