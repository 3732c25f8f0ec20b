"""Model bundles: the feature extractors Phi, the style-transfer model Omega and LPIPS.

A bundle is a diffusers Stable Diffusion folder (a hub id or a local path; hub downloads are
cached where huggingface_hub caches) plus an optional `glaze_bundle.json` that says how to
run it. The demo bundle is saved and loaded through exactly the same path.

Phi is a set of extractors, one image encoder per model family a mimic may fine-tune (SD 1/2,
SDXL, FLUX.1, FLUX.2, Qwen-Image: sources.EXTRACTOR_SOURCES), each an extractors.Extractor
part. The bundle's own VAE is the SD one; the others are loaded from their own hub ids or
folders, or from the bundle's folder when its bundle file declares them, and keep only
their encoders.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path
from typing import TypeVar

import lpips
import torch
from diffusers import (
    DPMSolverMultistepScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionPipeline,
)
from huggingface_hub import constants, hf_hub_download, model_info
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)
from safetensors.torch import load_model, save_model
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.checkpoint import checkpoint

from glaze.options import DEFEND

from .demo import demo_extractors, demo_pipeline
from .extractors import PARTS, Extractor, KLExtractor, config_dict
from .geometry import resize
from .sources import (
    BUNDLE_FILE,
    DEFAULT,
    DEFAULT_HUB_ID,
    DEMO,
    EXTRACTOR_SOURCES,
    OWN,
    ExtractorSource,
    ModelLoadError,
    alternatives,
    bundle_meta,
    declared_extractors,
    model_source,
    retired_note,
)

LPIPS_FILE = "lpips/alex.safetensors"
NO_PROTECTION = ("DEMO bundle (tiny random models): this output gives NO protection against "
                 "style mimicry")

T = TypeVar("T")
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# AlexNet's strides and pools leave nothing of a picture under about 32 px a side (a small
# image's upload view is its own size): LPIPS compares such views enlarged to this.
LPIPS_MIN_SIDE = 64
# A view is encoded without recomputing its blocks where its activations take at most this
# share of the free memory (ModelBundle.needs_checkpointing).
MEMORY_SHARE = 0.5


@dataclass(frozen=True)
class GenerationSettings:
    """How Omega is run for style transfer and for target-style centroids."""

    steps: int = 30  # diffusion steps (img2img runs strength * steps of them)
    guidance: float = 7.5
    # Candidate centroids (a new profile's first run: 131 styles): 2 images at 15 multistep
    # DPM-Solver++ steps each, a quarter of the UNet steps of 4 images at 30 steps
    # (benchmarks/target_centroids.py measures what the band keeps).
    centroid_images: int = 2  # images generated per candidate style
    centroid_steps: int = 15
    centroid_size: int = 512  # their side in pixels

    def centroid_unet_steps(self, styles: int) -> int:
        """UNet steps to generate the centroids of `styles` candidates."""
        return styles * self.centroid_images * self.centroid_steps


DEMO_GENERATION = GenerationSettings(steps=4, guidance=2.0, centroid_images=2, centroid_steps=4,
                                     centroid_size=64)
OWN_VAE = ExtractorSource(OWN, "vae")  # the extractor that is the bundle's own VAE
EXTRACTORS_FOLDER = "extractors"  # where a saved bundle keeps its other extractors


def extractor_part(name: str, model: torch.nn.Module, source: str) -> Extractor:
    """The extractor part of DEFEND choice `name` (its declared kind) around `model`."""
    return PARTS[EXTRACTOR_SOURCES[name].kind](name, model, source)


@dataclass
class ModelBundle:
    """Phi, Omega and LPIPS, resident on one device."""

    name: str
    pipeline: StableDiffusionImg2ImgPipeline
    perceptual: lpips.LPIPS
    device: torch.device
    precision: torch.dtype  # compute type of the encoders; float32 means no autocast
    extractors: dict[str, Extractor] = field(default_factory=dict)  # by DEFEND choice
    demo: bool = False
    generation: GenerationSettings = field(default_factory=GenerationSettings)
    source: str = DEMO  # where it was loaded from (sources.model_source): outputs record it
    caveat: str | None = None  # what its outputs must say besides the demo label, if anything

    def __post_init__(self) -> None:
        """Make the models resident on the device, frozen, in evaluation mode."""
        self.pipeline.set_progress_bar_config(disable=True)
        self.pipeline.to(self.device)
        self.extractors = self.extractors or {
            "sd": KLExtractor("sd", self.pipeline.vae, self.source)}
        encoders = [phi.model for phi in self.extractors.values()]
        for model in (self.pipeline.vae, self.pipeline.unet, self.pipeline.text_encoder,
                      *encoders):
            model.to(self.device).requires_grad_(False).eval()
        self.perceptual.to(self.device)
        if self.demo and self.device.type == "cpu":
            # Tiny models gain nothing from threads and lose much when the machine is busy:
            # 40 demo cloak steps at 720x512 took 21 s with 1 thread, 122 s with 2 beside a
            # busy core (13 s with 2 on an idle machine).
            torch.set_num_threads(1)
        if self.channels_last:
            for phi in self.extractors.values():
                if phi.channels_last:
                    phi.model.to(memory_format=torch.channels_last)

    @property
    def channels_last(self) -> bool:
        """Full-size convolutions on the CPU use channels-last, oneDNN's preferred layout
        (not measured separately here: benchmarks/cloak_step.py times the result)."""
        return self.device.type == "cpu" and not self.demo

    def extractor(self, name: str) -> Extractor:
        """The extractor for a DEFEND choice; a clear error when this bundle lacks it."""
        try:
            return self.extractors[name]
        except KeyError:
            raise ValueError(f"the model bundle {self.name} has no {name!r} feature extractor "
                             f"(it has {', '.join(self.extractors)}): defend against those, "
                             "or load it with that extractor") from None

    def size_multiple(self, names: Sequence[str] | None = None) -> int:
        """What the sides of an image the extractors `names` (None: all) see must be
        multiples of."""
        chosen = self.extractors if names is None else names
        return math.lcm(*(self.extractor(name).size_multiple for name in chosen))

    @property
    def protection_note(self) -> str | None:
        """What every output of this bundle must say about itself, if anything."""
        return self.caveat or (NO_PROTECTION if self.demo else None)

    @cached_property
    def identity(self) -> str:
        """A key for caches made with this bundle's models."""
        configs = {key: config_dict(getattr(self.pipeline, key))
                   for key in ("vae", "unet", "text_encoder")}
        text = json.dumps([self.name, configs], sort_keys=True, default=str)
        slug = "".join(c if c.isalnum() else "-" for c in self.name)[-40:]
        return f"{slug}-{hashlib.sha256(text.encode()).hexdigest()[:12]}"

    @cached_property
    def text_to_image(self) -> StableDiffusionPipeline:
        """Omega used text-to-image (for target-style centroids), sharing every model, with
        the multistep DPM-Solver++ scheduler (good images in half of DDIM's steps)."""
        parts = {**self.pipeline.components, "scheduler": DPMSolverMultistepScheduler.from_config(
            self.pipeline.scheduler.config)}
        pipe = StableDiffusionPipeline(**parts, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)
        return pipe

    def needs_checkpointing(self, names: Sequence[str], pixels: Sequence[int]) -> list[bool]:
        """For views of `pixels` each, whether encoding them through `names`' encoders (one
        at a time) should recompute blocks in the backward: where keeping the activations
        would take more than MEMORY_SHARE of the memory free now. Recomputing cost the SD
        encoder a sixth more time on the typical upload's view (benchmarks/cloak_step.py
        --memory)."""
        widest = max(self.extractor(name).activation_bytes for name in names)
        room = MEMORY_SHARE * available_memory(self.device)
        scale = torch.finfo(self.precision).bits / 16
        return [widest * scale * count > room for count in pixels]

    def attention(self) -> contextlib.AbstractContextManager:
        """The attention-kernel context for encoder passes."""
        if self.device.type == "cpu":
            # The default SDPA kernel's backward is slow on CPU; the math kernel is faster.
            return sdpa_kernel(SDPBackend.MATH)
        return contextlib.nullcontext()

    def compute(self) -> contextlib.ExitStack:
        """The autocast and attention-kernel context for encoder passes."""
        stack = contextlib.ExitStack()
        stack.enter_context(self.attention())
        if self.precision != torch.float32:
            stack.enter_context(torch.autocast(self.device.type, dtype=self.precision))
        return stack

    def _recomputed(self, block: Callable[..., torch.Tensor], *args) -> torch.Tensor:
        """`block` run under gradient checkpointing: its activations are recomputed in the
        backward, under the forward's attention kernel (checkpoint restores autocast itself,
        and a recomputation with another kernel would not match the forward)."""
        return checkpoint(block, *args, use_reentrant=False,
                          context_fn=lambda: (contextlib.nullcontext(), self.attention()))

    def encode(self, images: torch.Tensor, extractor: str = "sd",
               checkpointed: bool = False) -> torch.Tensor:
        """Phi: the latent of N x 3 x H x W images in [0, 1] as `extractor`'s diffusion model
        sees it (extractors.Extractor.normalized; differentiable). `checkpointed` keeps
        only each encoder block's input for the backward and recomputes the rest there:
        less memory for large views, for one more forward pass."""
        phi = self.extractor(extractor)
        phi.bound_memory(checkpointed, self._recomputed)
        x = (images.to(self.device) * 2 - 1).to(phi.dtype)
        if self.channels_last and phi.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.compute():
            latent = phi.latent(x)
        return phi.normalized(latent.float())

    def perceptual_distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS between N x 3 x H x W images in [0, 1], one value per image; images whose
        short side is under LPIPS_MIN_SIDE are compared enlarged to it, both alike."""
        short = min(a.shape[-2:])
        if short < LPIPS_MIN_SIDE:
            size = tuple(math.ceil(side * LPIPS_MIN_SIDE / short) for side in a.shape[-2:])
            a, b = resize(a, size), resize(b, size)
        return self.perceptual(a.float(), b.float(), normalize=True).flatten()

    def save(self, folder: str | Path) -> Path:
        """Write the bundle as a diffusers folder that `load_bundle` reads back."""
        folder = Path(folder)
        self.pipeline.save_pretrained(folder)
        (folder / LPIPS_FILE).parent.mkdir(exist_ok=True)
        save_model(self.perceptual, str(folder / LPIPS_FILE))
        extractors = {}
        for name, phi in self.extractors.items():
            where = OWN_VAE
            if phi.model is not self.pipeline.vae:
                where = ExtractorSource(OWN, f"{EXTRACTORS_FOLDER}/{name}", phi.kind)
                phi.save(folder / where.subfolder)
            extractors[name] = asdict(where)
        meta = {"format": 1, "name": self.name, "demo": self.demo,
                "generation": asdict(self.generation), "extractors": extractors}
        (folder / BUNDLE_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder


def available_memory(device: torch.device) -> int:
    """Bytes free for new tensors on `device`: CUDA's free memory, the system's available
    memory on Linux; 0 where it cannot be known (then every large view is checkpointed)."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def pick_device(requested: str | None = None) -> torch.device:
    """The requested device, else CUDA, then Apple's MPS, then the CPU."""
    if requested:
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _cpu_has_fast_bf16() -> bool:
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def pick_precision(device: torch.device, requested: str | None = None,
                   demo: bool = False) -> torch.dtype:
    """The requested precision, else the fastest one the device handles well."""
    if requested:
        try:
            return PRECISIONS[requested]
        except KeyError:
            raise ValueError(f"unknown precision {requested!r}: choose "
                             f"{', '.join(PRECISIONS)}") from None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "mps":
        return torch.float16
    # Tiny demo convolutions gain nothing from autocast; full-size ones run ~2x faster in
    # bf16 on CPUs with bf16 instructions.
    return torch.bfloat16 if not demo and _cpu_has_fast_bf16() else torch.float32


def perceptual_model(random_backbone: bool = False, seed: int = 0,
                      weights: Path | None = None) -> lpips.LPIPS:
    """LPIPS (AlexNet): saved `weights`, else a seeded random backbone, else torchvision's."""
    if weights is not None or random_backbone:
        # lpips ships only its linear heads; the backbone is random until weights load.
        with torch.random.fork_rng(), warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # torchvision's `pretrained` notice
            torch.manual_seed(seed)
            model = lpips.LPIPS(net="alex", pnet_rand=True, verbose=False)
        if weights is not None:
            load_model(model, str(weights))
    else:
        try:
            model = lpips.LPIPS(net="alex", verbose=False)
        except Exception as error:  # torchvision downloads AlexNet's weights on first use
            raise ModelLoadError(
                "LPIPS needs torchvision's ImageNet AlexNet weights and could not get them "
                f"({error}). Connect once to the internet, or run `glaze install --models "
                "default`, which fetches them into torch's cache.") from error
    return model.eval().requires_grad_(False)


# How far loading a bundle has come (0 to 1) and what loads now: for a daemon's dialogs.
LoadProgress = Callable[[float, str], None]


def _quiet(fraction: float, message: str) -> None:
    pass


def demo_bundle(device: str | None = None, precision: str | None = None,
                seed: int = 0, progress: LoadProgress | None = None) -> ModelBundle:
    """The tiny random bundle (no download, NO protection)."""
    say = progress or _quiet
    dev = pick_device(device)
    say(0.0, "the demo pipeline")
    pipeline = demo_pipeline(seed)
    say(1 / 3, "the demo feature extractors")
    extractors = {"sd": KLExtractor("sd", pipeline.vae, DEMO)}
    extractors |= {name: extractor_part(name, model, DEMO)
                   for name, model in demo_extractors(seed).items()}
    say(2 / 3, "the perceptual model (LPIPS)")
    return ModelBundle(
        name=f"demo-seed{seed}", pipeline=pipeline,
        perceptual=perceptual_model(random_backbone=True, seed=seed), device=dev,
        precision=pick_precision(dev, precision, demo=True), extractors=extractors,
        demo=True, generation=DEMO_GENERATION)


def _hub_problem(location: str, bundle: str | None = None) -> str | None:
    """Why `location` cannot be fetched now (offline, unreachable, not on the hub), or None;
    `bundle`: the bundle it belongs to, which `glaze install --models` fetches with it.
    Asked once, without retries: huggingface_hub retries a dead network for about 20 s."""
    where = f"it is not in the Hugging Face cache ({constants.HF_HUB_CACHE})"
    if constants.HF_HUB_OFFLINE:
        choice = DEFAULT if bundle == DEFAULT_HUB_ID else bundle or location
        return (f"{where} and HF_HUB_OFFLINE is set: fetch it on a connected machine with "
                f"`glaze install --models {choice}`, or give a local folder")
    try:
        model_info(location, timeout=10)
    except GatedRepoError:
        return (f"{location} is gated on the hub: accept its terms on its page "
                f"({constants.ENDPOINT}/{location}), run `hf auth login` with that account, "
                "then `glaze install --models ...` again; or give a local folder")
    except RepositoryNotFoundError as error:
        gone = retired_note(location) or f"use {alternatives()}"
        return f"the hub has no public model {location!r} ({type(error).__name__}): {gone}"
    except Exception as error:  # the network layer raises its own types
        return (f"{where} and the hub cannot be reached ({error}): connect once and run "
                "`glaze install --models ...`, set HF_HUB_OFFLINE=1 to use only the cache, "
                "or give a local folder in diffusers format")
    return None


def cached_or_fetched(location: str, load: Callable[..., T], bundle: str | None = None) -> T:
    """`load(local_files_only=...)` from a local folder, else from the Hugging Face cache,
    else from the hub once it is known to be reachable; a ModelLoadError that says what to
    do when neither works."""
    if Path(location).is_dir():
        return load(local_files_only=True)
    try:  # a complete copy in the cache needs no network at all
        return load(local_files_only=True)
    except (OSError, ValueError):
        pass
    problem = _hub_problem(location, bundle)
    if problem:
        raise ModelLoadError(f"cannot load {location}: {problem}")
    try:
        return load(local_files_only=False)
    except (OSError, ValueError, HfHubHTTPError) as error:
        raise ModelLoadError(f"could not fetch {location}: {error}") from error


def fetch_hub(location: str) -> Path:
    """A hub id's pipeline folder in the Hugging Face cache, downloaded (resumably, with
    progress) if it is not complete there yet; the bundle's optional files come with it."""
    def load(local_files_only: bool) -> Path:
        folder = Path(StableDiffusionImg2ImgPipeline.download(
            location, local_files_only=local_files_only, safety_checker=None))
        if not local_files_only:
            for name in (BUNDLE_FILE, LPIPS_FILE):
                with contextlib.suppress(EntryNotFoundError):
                    hf_hub_download(location, name)
        return folder
    return cached_or_fetched(location, load)


def load_extractor(name: str, source: ExtractorSource, bundle_location: str,
                   dtype: torch.dtype = torch.float32) -> Extractor:
    """One extractor's encoder, from a folder or a hub id (cached, else fetched), through
    the part its source's kind names; OWN means the bundle's own folder or hub repo."""
    location = bundle_location if source.location == OWN else source.location
    where = ExtractorSource(location, source.subfolder, source.kind)
    part = PARTS.get(source.kind)
    if part is None:
        raise ModelLoadError(f"the {DEFEND.choices[name]} feature extractor "
                             f"({where.describe()}) is declared of an unknown kind "
                             f"{source.kind!r}: this version knows {', '.join(PARTS)}")

    def load(local_files_only: bool, decoder: bool = False) -> torch.nn.Module:
        return part.load(location, source.subfolder, dtype, local_files_only, decoder)
    try:
        model = cached_or_fetched(location, load, bundle_location)
    except (ModelLoadError, OSError, ValueError) as error:
        others = ",".join(other for other in DEFEND.choices if other != name)
        fetch = "" if isinstance(error, ModelLoadError) else \
            "; run `glaze install --models default` to fetch it"
        raise ModelLoadError(
            f"the {DEFEND.choices[name]} feature extractor ({where.describe()}) could not be "
            f"loaded: {error}{fetch}; or defend without it (--defend {others})") from error
    found = part(name, model, where.describe())
    found.whole = lambda: cached_or_fetched(  # for a preview: the same VAE with its decoder
        location, functools.partial(load, decoder=True), bundle_location)
    return found


def _optional_file(folder: Path, name: str) -> Path | None:
    return folder / name if (folder / name).is_file() else None


def fetch_bundle(location: str, defend: str | Sequence[str] | None = None) -> None:
    """Make a bundle (a hub id or a folder) loadable offline: a hub bundle's pipeline files
    and the feature extractors `defend` names (None: every one it uses), into the Hugging
    Face cache (with progress; resumed if interrupted)."""
    folder = Path(location) if Path(location).is_dir() else fetch_hub(location)
    declared = declared_extractors(bundle_meta(folder))
    for name in _wanted(defend, list(declared), location):
        if declared[name] != OWN_VAE:
            load_extractor(name, declared[name], location)


def _wanted(defend: str | Sequence[str] | None, available: Sequence[str], bundle: str) -> list[str]:
    wanted = list(DEFEND.choices if defend is None else DEFEND.selection(defend))
    missing = [name for name in wanted if name not in available]
    if missing and defend is not None:
        raise ModelLoadError(f"the model bundle {bundle} declares no {', '.join(missing)} "
                             f"feature extractor (it has {', '.join(available)})")
    return [name for name in wanted if name in available]


def load_bundle(source: str | Path = "demo", device: str | None = None,
                precision: str | None = None,
                defend: str | Sequence[str] | None = None,
                progress: LoadProgress | None = None) -> ModelBundle:
    """Load a bundle: "demo", "default" (the standard hub model), a local folder or a hub id,
    with the feature extractors `defend` names (None: every one the bundle has).
    `progress(fraction, what)` hears of each part as it starts loading."""
    say = progress or _quiet
    location = model_source(source)
    if location == DEMO:
        bundle = demo_bundle(device, precision, progress=say)
        keep = _wanted(defend, list(bundle.extractors), bundle.name)
        bundle.extractors = {name: bundle.extractors[name] for name in keep}
        return bundle
    folder = Path(location) if Path(location).is_dir() else fetch_hub(location)
    meta = bundle_meta(folder)
    demo = bool(meta.get("demo", False))
    dev = pick_device(device)
    compute = pick_precision(dev, precision, demo=demo)
    # Weights stay float32 on the CPU (autocast computes in bf16); GPUs hold them halved.
    weights = compute if dev.type in ("cuda", "mps") else torch.float32
    name = meta.get("name", str(source) if Path(location).is_dir() else location)
    declared = declared_extractors(meta)
    wanted = _wanted(defend, list(declared), name)
    parts = 2 + len(wanted)  # the pipeline, each extractor, LPIPS
    say(0.0, "the Stable Diffusion pipeline")
    try:
        pipeline = StableDiffusionImg2ImgPipeline.from_pretrained(
            folder, dtype=weights, safety_checker=None, requires_safety_checker=False)
    except Exception as error:
        raise ModelLoadError(
            f"could not load the model bundle {source!r}: {error}. A folder must be in "
            "diffusers format (model_index.json, vae/, unet/, text_encoder/, tokenizer/, "
            "scheduler/).") from error
    extractors = {}
    for index, family in enumerate(wanted, start=1):
        where = declared[family]
        say(index / parts, f"the {DEFEND.choices[family]} feature extractor")
        extractors[family] = (KLExtractor(family, pipeline.vae, location) if where == OWN_VAE
                              else load_extractor(family, where, location, weights))
    say((parts - 1) / parts, "the perceptual model (LPIPS)")
    return ModelBundle(
        name=name, pipeline=pipeline,
        perceptual=perceptual_model(weights=_optional_file(folder, LPIPS_FILE)),
        device=dev, precision=compute, extractors=extractors, demo=demo,
        generation=GenerationSettings(**meta.get("generation", {})), source=location)
