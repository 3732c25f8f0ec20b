"""The demo bundle: Stable Diffusion's own classes with tiny configs and random weights.

It is built in code with a fixed seed and needs no download, so tests and the offline demo
run anywhere. Its models know nothing about art: a cloak made with it gives NO protection.
"""

from __future__ import annotations

import torch
from diffusers import (
    AutoencoderKL,
    AutoencoderKLFlux2,
    AutoencoderKLQwenImage,
    DDIMScheduler,
    EulerDiscreteScheduler,
    StableDiffusionImg2ImgPipeline,
    StableDiffusionXLPipeline,
    UNet2DConditionModel,
)
from tokenizers import pre_tokenizers
from transformers import (
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTokenizer,
)

START, END = "<|startoftext|>", "<|endoftext|>"


def demo_tokenizer() -> CLIPTokenizer:
    """A byte-level CLIP tokenizer whose vocabulary is the 256 byte symbols (no merges)."""
    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens = symbols + [s + "</w>" for s in symbols] + [START, END]
    vocab = {token: i for i, token in enumerate(tokens)}
    # END has the highest id: CLIP pools the text embedding at the argmax of the ids.
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


TINY_ENCODER = dict(block_out_channels=(16, 32, 32, 32), layers_per_block=1,
                    down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, norm_num_groups=8,
                    sample_size=64, mid_block_add_attention=False)


def demo_vae(latent_channels: int = 4, **config) -> AutoencoderKL:
    """A tiny kl-f8 VAE (random weights): 8x downsampling like SD's, no mid-block attention,
    so it is cheap at any working size."""
    return AutoencoderKL(latent_channels=latent_channels, **TINY_ENCODER, **config).eval()


def demo_flux2_vae() -> AutoencoderKLFlux2:
    """A tiny FLUX.2-shaped VAE: 32 latent channels, quant convs, and BatchNorm running
    statistics that are not the identity, so that the normalization the Flux2 pipeline
    applies is seen to be applied."""
    vae = AutoencoderKLFlux2(latent_channels=32, **TINY_ENCODER)
    vae.bn.running_mean.normal_(0.0, 0.5)
    vae.bn.running_var.uniform_(0.5, 2.0)
    return vae.eval()


def demo_qwen_vae() -> AutoencoderKLQwenImage:
    """A tiny Qwen-Image-shaped VAE: causal 3-D convolutions, 16 channels, 8x downsampling,
    Qwen-Image's per-channel latent statistics (its config's defaults)."""
    return AutoencoderKLQwenImage(base_dim=8, z_dim=16, dim_mult=[1, 2, 2, 2],
                                  num_res_blocks=1).eval()


def demo_extractors(seed: int = 0) -> dict[str, torch.nn.Module]:
    """Tiny random stand-ins for the other families' VAEs: SDXL (4 channels, SDXL's scaling
    factor), FLUX.1 (16 channels, no quant convs, FLUX's scaling and shift), FLUX.2 and
    Qwen-Image; the demo pipeline's own VAE stands for SD's."""
    torch.manual_seed(seed + 1)
    sdxl = demo_vae(4, scaling_factor=0.13025)
    flux = demo_vae(16, use_quant_conv=False, use_post_quant_conv=False,
                    scaling_factor=0.3611, shift_factor=0.1159)
    return {"sdxl": sdxl, "flux": flux, "flux2": demo_flux2_vae(), "qwen": demo_qwen_vae()}


def demo_text_config(tokenizer: CLIPTokenizer) -> CLIPTextConfig:
    """A tiny CLIP text encoder's configuration (32 wide, 2 layers)."""
    return CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id)


def demo_pipeline(seed: int = 0) -> StableDiffusionImg2ImgPipeline:
    """An img2img pipeline of tiny random models, the same for the same seed."""
    torch.manual_seed(seed)
    tokenizer = demo_tokenizer()
    text_encoder = CLIPTextModel(demo_text_config(tokenizer))
    vae = demo_vae(4)
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, cross_attention_dim=32,
        attention_head_dim=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False, steps_offset=1)
    for model in (text_encoder, vae, unet):
        model.eval()
    return StableDiffusionImg2ImgPipeline(
        vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
        scheduler=scheduler, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False,
    )


def demo_sdxl_pipeline(seed: int = 0) -> StableDiffusionXLPipeline:
    """A text-to-image SDXL pipeline of tiny random models (two text encoders, a UNet
    conditioned on pooled text and size/crop ids) whose VAE is the demo's SDXL-shaped
    extractor: a demo SDXL mimic trains on the latents the demo cloak defends."""
    vae = demo_extractors(seed)["sdxl"]
    torch.manual_seed(seed + 2)
    tokenizer = demo_tokenizer()
    text_encoder = CLIPTextModel(demo_text_config(tokenizer))
    text_encoder_2 = CLIPTextModelWithProjection(demo_text_config(tokenizer))
    unet = UNet2DConditionModel(
        sample_size=8, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), norm_num_groups=8, attention_head_dim=(2, 4),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), use_linear_projection=True,
        transformer_layers_per_block=(1, 2), cross_attention_dim=64,  # both encoders' width
        addition_embed_type="text_time", addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=6 * 8 + 32,  # six size/crop ids + pooled text
    )
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012,
                                       beta_schedule="scaled_linear", steps_offset=1,
                                       timestep_spacing="leading")
    for model in (text_encoder, text_encoder_2, unet):
        model.eval()
    return StableDiffusionXLPipeline(
        vae=vae, text_encoder=text_encoder, text_encoder_2=text_encoder_2, tokenizer=tokenizer,
        tokenizer_2=demo_tokenizer(), unet=unet, scheduler=scheduler)
