"""Tiny random-weight image-to-video pipelines, built from small configs and saved with `save_pretrained`.

For tests, benchmarks and an operator's smoke test of a worker (`docs/GENERATE.md`): the folders have the
exact layout of a real model (model_index.json + one folder per component), a few MB of weights, and run
a step in well under a second on a CPU. The pictures they make are noise; what they prove is the plumbing
(loading, offload choice, progress, cancel, seeds, frame counts, encoding). Nothing is downloaded: the
LTX and Wan text sides are 1-layer T5 / umT5 encoders with a word-level tokenizer built here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reelforge.models.generate_pipe import import_torch


def save_tiny_svd(folder: Path, seed: int = 0) -> Path:
    """Stable Video Diffusion: spatio-temporal UNet (2 levels), temporal-decoder VAE (4), small CLIP image encoder."""
    torch = import_torch()
    from diffusers import (
        AutoencoderKLTemporalDecoder,
        EulerDiscreteScheduler,
        StableVideoDiffusionPipeline,
        UNetSpatioTemporalConditionModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    embed = 16
    unet = UNetSpatioTemporalConditionModel(
        sample_size=8, in_channels=8, out_channels=4, layers_per_block=1, block_out_channels=(32, 32),
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=embed, num_attention_heads=(2, 2),
        addition_time_embed_dim=8, projection_class_embeddings_input_dim=3 * 8)  # fps, motion, noise-aug ids
    # four levels: latents are 1/8 of the frame, as in the real model (two would run the UNet at 1/2: slow)
    vae = AutoencoderKLTemporalDecoder(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1,
                                       block_out_channels=(32, 32, 32, 32),
                                       down_block_types=("DownEncoderBlock2D",) * 4)
    # the pipeline resizes the conditioning image to 224 for CLIP; 32-pixel patches keep that to 49 tokens
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=embed, projection_dim=embed, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        image_size=224, patch_size=32))
    features = CLIPImageProcessor(size=224, crop_size=224)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", prediction_type="v_prediction",
        interpolation_type="linear", use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0,
        timestep_spacing="leading", timestep_type="continuous", steps_offset=1)
    pipe = StableVideoDiffusionPipeline(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                                        feature_extractor=features)
    pipe.save_pretrained(str(folder))
    return folder


def save_tiny_ltx(folder: Path, seed: int = 0) -> Path:
    """LTX-Video image-to-video: 1-block transformer, 4-level causal video VAE, 1-layer T5 + word tokenizer."""
    torch = import_torch()
    from diffusers import (
        AutoencoderKLLTXVideo,
        FlowMatchEulerDiscreteScheduler,
        LTXImageToVideoPipeline,
        LTXVideoTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _word_tokenizer()
    text = 16
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=text, d_kv=8, d_ff=32, num_layers=1,
                                      num_heads=2, relative_attention_num_buckets=8))
    transformer = LTXVideoTransformer3DModel(in_channels=8, out_channels=8, num_attention_heads=2,
                                             attention_head_dim=8, cross_attention_dim=16, num_layers=1,
                                             caption_channels=text)
    four = (8, 8, 8, 8)
    vae = AutoencoderKLLTXVideo(
        in_channels=3, out_channels=3, latent_channels=8, block_out_channels=four, decoder_block_out_channels=four,
        layers_per_block=(1, 1, 1, 1, 1), decoder_layers_per_block=(1, 1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, False, False), decoder_spatio_temporal_scaling=(True, True, False, False),
        decoder_inject_noise=(False,) * 5, upsample_residual=(False,) * 4, upsample_factor=(1,) * 4,
        timestep_conditioning=False, patch_size=1, patch_size_t=1, encoder_causal=True, decoder_causal=False)
    pipe = LTXImageToVideoPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=vae, text_encoder=encoder,
                                   tokenizer=tokenizer, transformer=transformer)
    pipe.save_pretrained(str(folder))
    return folder


def _word_tokenizer() -> Any:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["a", "an", "the", "cat", "dog", "bird", "sea", "sky", "city", "road", "runs", "walks", "flies", "red",
             "blue", "green", "slowly", "camera", "pans"]
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   model_max_length=32)


def save_tiny_wan(folder: Path, seed: int = 0) -> Path:
    """Wan 2.1 image-to-video: 1-block transformer with image cross-attention, 4-level causal 3D VAE (4 latent
    channels), 1-layer umT5 + word tokenizer, small CLIP vision encoder."""
    torch = import_torch()
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanImageToVideoPipeline,
        WanTransformer3DModel,
    )
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _word_tokenizer()
    text, z = 16, 4
    encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(tokenizer), d_model=text, d_kv=8, d_ff=32, num_layers=1,
                                          num_heads=2, relative_attention_num_buckets=8))
    vae = AutoencoderKLWan(base_dim=8, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                           temperal_downsample=[False, True, True], latents_mean=[0.0] * z, latents_std=[1.0] * z)
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                                     intermediate_size=32, image_size=32, patch_size=8))
    # the transformer sees noise latents + the image's latents + a 4-channel first-frame mask
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=8,
                                        in_channels=2 * z + 4, out_channels=z, text_dim=text, freq_dim=16, ffn_dim=32,
                                        num_layers=1, image_dim=16, rope_max_seq_len=32)
    pipe = WanImageToVideoPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=vae,
                                   scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
                                   image_processor=CLIPImageProcessor(size=32, crop_size=32),
                                   image_encoder=image_encoder, transformer=transformer)
    pipe.save_pretrained(str(folder))
    return folder


def save_tiny_cogvideox(folder: Path, seed: int = 0) -> Path:
    """CogVideoX image-to-video (1.0 layout): 1-block transformer with 3D rotary embeddings (head dim 16: the
    rotary split over time/height/width needs even parts), 4-level CogVideoX VAE, 1-layer T5 + word tokenizer."""
    torch = import_torch()
    from diffusers import (
        AutoencoderKLCogVideoX,
        CogVideoXDDIMScheduler,
        CogVideoXImageToVideoPipeline,
        CogVideoXTransformer3DModel,
    )
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = _word_tokenizer()
    encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=16, d_kv=8, d_ff=32, num_layers=1,
                                      num_heads=2, relative_attention_num_buckets=8))
    vae = AutoencoderKLCogVideoX(down_block_types=("CogVideoXDownBlock3D",) * 4,
                                 up_block_types=("CogVideoXUpBlock3D",) * 4, block_out_channels=(8, 8, 8, 8),
                                 latent_channels=4, layers_per_block=1, norm_num_groups=2,
                                 temporal_compression_ratio=4, sample_height=64, sample_width=64)
    # image-to-video: the transformer sees the noise latents and the image's latents side by side (2 x 4)
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=8, out_channels=4, time_embed_dim=8,
        text_embed_dim=16, num_layers=1, sample_width=8, sample_height=8, sample_frames=9, patch_size=2,
        temporal_compression_ratio=4, max_text_seq_length=16, use_rotary_positional_embeddings=True)
    pipe = CogVideoXImageToVideoPipeline(tokenizer=tokenizer, text_encoder=encoder, vae=vae, transformer=transformer,
                                         scheduler=CogVideoXDDIMScheduler())
    pipe.save_pretrained(str(folder))
    return folder


TINY = {"svd": save_tiny_svd, "ltx": save_tiny_ltx, "wan": save_tiny_wan, "cogvideox": save_tiny_cogvideox}
