"""Train the built-in ``demo`` model: ``python -m dreamwire.models.train_demo --out DIR``.

The random-weight ``tiny`` model proves the plumbing but shows a newcomer nothing. The demo model is
small enough to ship in the package and to retrain on a 2-core CPU in minutes, and does one visible
thing: it keeps the input picture and washes it toward the colour named in the prompt ("red",
"a blue circle"); prompts without a colour word keep the picture's own colours.

What the engine computes decides the objective. At the default strength the stream runs two LCM
steps at timesteps ~399 and ~199, and at those timesteps the LCM boundary conditions make each
step's output the scheduler's x0 estimate ``(x_t - b * eps) / a``. So the UNet is trained so that
the x0 implied by its epsilon, from the noised latent of an image, is the latent of that image
recoloured toward the prompt's colour: the loss is taken on that x0, at the timesteps the
strength range reaches. The VAE (an ``AutoencoderTiny``, 4x downsampling to 16 channels) is
trained first, to reconstruct, and then frozen; its ``scaling_factor`` is set so the latents are
large against the unit noise, which is what lets a small UNet give back a sharp picture rather
than a plausible new one.

Everything is procedural (gradients, sine colour fields, stripes, checkers, circles, squares,
triangles), generated from fixed seeds, so two runs on the same torch give the same weights up to
floating-point reduction order. The saved folder is a diffusers pipeline folder (fp16 safetensors)
that loads through the same ``from_pretrained`` path as every other model.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from dreamwire.models.demo import COLOURS
from dreamwire.models.tiny import write_bpe_tokenizer, write_pipeline_files

SHAPES = ("circle", "circles", "square", "squares", "triangle", "triangles", "stripes", "gradient", "pattern")
FILLER = ("a", "an", "the", "of", "and", "with", "on", "in", "at", "painting", "photo", "city", "night",
          "oil", "vivid", "colors", "colours", "light", "dark", "bright", "picture", "shape", "shapes")
WASH = 0.16  # how far one x0 estimate moves toward the prompt's colour (the stream applies ~2.5x this)
LATENT_CHANNELS = 16  # at 4x downsampling: SD's 4 channels at 8x stay blurry in a VAE trained for minutes
LATENT_STD = 3.0  # latent spread the UNet sees, against unit noise (SNR ~2.6 at t=399)
TIMESTEPS = tuple(999 - 20 * i for i in range(20, 50))  # the LCM grid points strength <= 0.6 reaches
FOCUS = (399, 199)  # the default strength's timesteps, drawn more often


# ---------------------------------------------------------------------------------------------- text


def vocabulary() -> list[str]:
    """Every whole word the tokenizer knows as one token; anything else falls back to bytes."""
    return sorted({*COLOURS, *SHAPES, *FILLER})


def _bpe(pieces: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """CLIP's BPE on one word: merge the best-ranked adjacent pair until none is known."""
    while len(pieces) > 1:
        pairs = [(ranks.get(p, len(ranks)), i) for i, p in enumerate(itertools.pairwise(pieces))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        pieces = [*pieces[:i], pieces[i] + pieces[i + 1], *pieces[i + 2:]]
    return pieces


def _word_merges(words: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges under which each word becomes one ``word</w>`` token.

    Each word is first split by the merges already made (as the tokenizer will), then its leftmost
    pieces are joined until one is left, so earlier words' merges never break later ones.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for w in words:
        pieces = _bpe([*w[:-1], w[-1] + "</w>"], ranks)
        while len(pieces) > 1:
            ranks[(pieces[0], pieces[1])] = len(merges)
            merges.append((pieces[0], pieces[1]))
            pieces = _bpe(pieces, ranks)
    return merges


def write_tokenizer(folder: Path) -> int:
    """A CLIP BPE tokenizer built in code (no download) whose merges spell the demo words; returns its size."""
    return write_bpe_tokenizer(folder, _word_merges(vocabulary()))


def random_prompt(g: torch.Generator) -> tuple[str, str | None]:
    """A prompt and the colour it names (``None``: keep the picture's colours).

    Neutral prompts include unknown words spelt letter by letter, so text the demo never saw (the
    default prompt, say) leaves the picture alone instead of picking an arbitrary colour.
    """
    def pick(seq: Sequence[str]) -> str:
        return seq[int(torch.randint(len(seq), (1,), generator=g))]

    words = [pick(FILLER + SHAPES) for _ in range(int(torch.randint(0, 5, (1,), generator=g)))]
    if float(torch.rand(1, generator=g)) < 0.25:
        n = int(torch.randint(2, 9, (1,), generator=g))
        words.insert(int(torch.randint(len(words) + 1, (1,), generator=g)),
                     "".join(chr(97 + int(c)) for c in torch.randint(26, (n,), generator=g)))
    colour = None
    if float(torch.rand(1, generator=g)) < 0.7:
        colour = pick(list(COLOURS))
        words.insert(int(torch.randint(len(words) + 1, (1,), generator=g)), colour)
    return " ".join(words), colour


# -------------------------------------------------------------------------------------------- images


def _grid(size: int) -> tuple[torch.Tensor, torch.Tensor]:
    c = torch.arange(size, dtype=torch.float32)
    return c[None, :].expand(size, size), c[:, None].expand(size, size)


def _colour(g: torch.Generator) -> torch.Tensor:
    return torch.rand(3, 1, 1, generator=g)


def _background(size: int, g: torch.Generator) -> torch.Tensor:
    """(3, S, S) in [0, 1]: one of sine colour fields with stripes, gradient, solid, stripes, checker."""
    x, y = _grid(size)
    kind = int(torch.randint(5, (1,), generator=g))
    u = lambda: float(torch.rand(1, generator=g))  # noqa: E731 - a one-line draw
    if kind == 0:  # smooth sine colour fields plus hard diagonal stripes on one channel
        chans = [0.5 + 0.5 * torch.sin(2 * math.pi * ((x if u() < 0.5 else y) / (size * (0.5 + 2 * u())) + u()))
                 for _ in range(3)]
        period = float(torch.randint(6, 40, (1,), generator=g))
        stripes = (((x + y * (1 if u() < 0.7 else -1)) // period) % 2)
        chans[int(torch.randint(3, (1,), generator=g))] = 0.2 * u() + 0.3 + 0.5 * stripes
        return torch.stack(chans)
    if kind == 1:  # linear gradient between two colours
        ang = 2 * math.pi * u()
        t = ((x * math.cos(ang) + y * math.sin(ang)) / size + 1.5) % 1.0
        return _colour(g) * (1 - t) + _colour(g) * t
    if kind == 2:
        return _colour(g).expand(3, size, size).clone()
    a, b = _colour(g), _colour(g)
    period = float(torch.randint(4, 48, (1,), generator=g))
    if kind == 3:  # stripes at an angle
        ang = math.pi * u()
        m = (((x * math.cos(ang) + y * math.sin(ang)) // period) % 2)[None]
    else:  # checker
        m = (((x // period) + (y // period)) % 2)[None]
    return a * (1 - m) + b * m


def _shape_mask(size: int, g: torch.Generator) -> torch.Tensor:
    x, y = _grid(size)
    r = float(size * (0.06 + 0.25 * torch.rand(1, generator=g)))
    cx, cy = (float(size * torch.rand(1, generator=g)) for _ in range(2))
    kind = int(torch.randint(3, (1,), generator=g))
    if kind == 0:
        return (((x - cx) ** 2 + (y - cy) ** 2) <= r * r).float()
    if kind == 1:
        return (((x - cx).abs() <= r) & ((y - cy).abs() <= r)).float()
    dy = y - (cy - r)  # an upright triangle: apex at the top, base 2r wide at the bottom
    return ((dy >= 0) & (dy <= 2 * r) & ((x - cx).abs() <= dy / 2)).float()


def procedural_image(size: int, g: torch.Generator) -> torch.Tensor:
    """(3, S, S) in [0, 1]: a background with up to three flat shapes (white ones often, as in the pattern)."""
    img = _background(size, g)
    for _ in range(int(torch.randint(0, 4, (1,), generator=g))):
        colour = torch.ones(3, 1, 1) if float(torch.rand(1, generator=g)) < 0.3 else _colour(g)
        m = _shape_mask(size, g)[None]
        img = img * (1 - m) + colour * m
    return img


def images(batch: int, size: int, g: torch.Generator) -> torch.Tensor:
    return torch.stack([procedural_image(size, g) for _ in range(batch)])


def luminance(img: torch.Tensor) -> torch.Tensor:
    """Rec. 601 luma of (..., 3, H, W) RGB in [0, 1], keeping the channel axis."""
    w = torch.tensor([0.299, 0.587, 0.114], dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(dim=-3, keepdim=True)


def recolour(img: torch.Tensor, colours: Sequence[str | None], amount: float = WASH) -> torch.Tensor:
    """Each image washed ``amount`` of the way toward its colour: its own luma plus the colour's chroma.

    Keeping the luma keeps every edge and shape of the input; ``None`` leaves the image as it is.
    """
    out = img.clone()
    for i, name in enumerate(colours):
        if name is None:
            continue
        c = torch.tensor(COLOURS[name]).view(3, 1, 1)
        washed = (luminance(img[i]) + (c - luminance(c))).clamp(0, 1)
        out[i] = img[i] + amount * (washed - img[i])
    return out


# ------------------------------------------------------------------------------------------- modules


def demo_modules(vocab_size: int, seed: int = 0) -> dict[str, Any]:
    """The demo's UNet, CLIP text encoder and AutoencoderTiny, freshly initialised from ``seed``.

    Small enough to train in minutes and to run a few frames a second at 256x256 on a CPU.
    """
    from diffusers import AutoencoderTiny, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=32, in_channels=LATENT_CHANNELS,
        out_channels=LATENT_CHANNELS, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        only_cross_attention=True,  # a recolouring needs the prompt, not self-attention's cost per pixel pair
    )
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=77, projection_dim=32,
        bos_token_id=vocab_size - 2, eos_token_id=vocab_size - 1, pad_token_id=vocab_size - 1,
    ))
    vae = AutoencoderTiny(  # few full-resolution convolutions: they are most of a VAE's cost on a CPU
        encoder_block_out_channels=(24, 24, 24), decoder_block_out_channels=(24, 24, 24),
        num_encoder_blocks=(0, 1, 2), num_decoder_blocks=(2, 1, 0), latent_channels=LATENT_CHANNELS,
    )
    _start_as_resampler(vae)
    return {"unet": unet, "text_encoder": text_encoder, "vae": vae}


def _start_as_resampler(vae: Any, jitter: float = 0.1) -> None:
    """Start the VAE as box-average downsampling and nearest upsampling of RGB, plus small random weights.

    From scratch, an AutoencoderTiny needs far more steps than a CPU has minutes to get past a blurry
    average; starting from a resampler (every plain conv an identity on the first channels, each
    stride-2 conv a 2x2 average, each residual branch nearly zero so its block passes values
    through) it only has to learn the detail. ``jitter`` keeps the other channels trainable.
    """
    from diffusers.models.autoencoders.vae import AutoencoderTinyBlock

    with torch.no_grad():
        for block in (m for m in vae.modules() if isinstance(m, AutoencoderTinyBlock)):
            for conv in (c for c in block.conv if isinstance(c, torch.nn.Conv2d)):
                conv.weight.mul_(jitter)
            block.conv[-1].weight.mul_(jitter)
        for conv in (c for seq in (vae.encoder.layers, vae.decoder.layers) for c in seq
                     if isinstance(c, torch.nn.Conv2d)):
            conv.weight.mul_(jitter)
            for i in range(min(conv.weight.shape[:2])):
                if conv.stride[0] == 2:
                    conv.weight[i, i, 1:3, 1:3] += 0.25
                else:
                    conv.weight[i, i, 1, 1] += 1.0
            if conv.bias is not None:
                conv.bias.zero_()


# ------------------------------------------------------------------------------------------ training


def _log(msg: str, start: float) -> None:
    print(f"[{time.perf_counter() - start:6.1f}s] {msg}", flush=True)


def train_vae(vae: Any, steps: int, batch: int, size: int, g: torch.Generator, start: float) -> float:
    """Reconstruction training; returns the ``scaling_factor`` that gives latents a spread of LATENT_STD."""
    opt = torch.optim.AdamW(vae.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    vae.train()
    for step in range(steps):
        x = images(batch, size, g)
        if float(torch.rand(1, generator=g)) < 0.5:  # washed images are what the UNet will ask it to draw
            x = recolour(x, [list(COLOURS)[int(i)] for i in torch.randint(len(COLOURS), (batch,), generator=g)],
                         amount=float(torch.rand(1, generator=g)))
        x = x * 2 - 1
        y = vae.decode(vae.encode(x).latents).sample
        loss = F.l1_loss(y, x) + F.mse_loss(y, x)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            _log(f"vae {step}/{steps} loss {loss.item():.4f}", start)
    vae.eval().requires_grad_(False)
    with torch.no_grad():
        std = vae.encode(images(64, size, g) * 2 - 1).latents.std().item()
    return LATENT_STD / std


def _tokens(tokenizer: Any, prompts: Sequence[str]) -> torch.Tensor:
    return tokenizer(list(prompts), padding="max_length", max_length=tokenizer.model_max_length,
                     truncation=True, return_tensors="pt").input_ids


def latent_bank(vae: Any, scale: float, count: int, size: int, g: torch.Generator, chunk: int = 64
                ) -> torch.Tensor:
    """(count, 1 + colours, C, h, w): each image's scaled latent, then its latent washed toward each colour.

    Encoding once and reusing the latents (with flips) is what keeps the UNet phase within minutes on
    a CPU: encoding every batch afresh cost as much as the UNet step itself.
    """
    out = []
    for i in range(0, count, chunk):
        img = images(min(chunk, count - i), size, g)
        variants = [img] + [recolour(img, [name] * len(img)) for name in COLOURS]
        with torch.no_grad():
            lat = vae.encode(torch.cat(variants) * 2 - 1).latents * scale
        out.append(lat.view(len(variants), len(img), *lat.shape[1:]).transpose(0, 1))
    return torch.cat(out)


def _flip(x: torch.Tensor, k: int) -> torch.Tensor:
    """One of the 8 symmetries of the square (``k`` in 0..7), the same one for input and target."""
    x = torch.rot90(x, k % 4, dims=(-2, -1))
    return x.flip(-1) if k >= 4 else x


def train_unet(mods: dict[str, Any], tokenizer: Any, bank: torch.Tensor, alphas_cumprod: torch.Tensor, steps: int,
               batch: int, g: torch.Generator, start: float) -> None:
    """UNet and text encoder together, the loss on the x0 the engine's LCM step takes from epsilon."""
    unet, text_encoder = mods["unet"], mods["text_encoder"]
    params = [*unet.parameters(), *text_encoder.parameters()]
    opt = torch.optim.AdamW(params, lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=steps, pct_start=0.1)
    unet.train()
    text_encoder.train()
    grid = torch.tensor(TIMESTEPS)
    names = list(COLOURS)
    for step in range(steps):
        drawn = [random_prompt(g) for _ in range(batch)]
        rows = torch.randint(len(bank), (batch,), generator=g)
        variant = torch.tensor([0 if c is None else 1 + names.index(c) for _, c in drawn])
        k = int(torch.randint(8, (1,), generator=g))
        z, z_target = _flip(bank[rows, 0], k), _flip(bank[rows, variant], k)
        focus = torch.rand(batch, generator=g) < 0.5
        t = torch.where(focus, torch.tensor(FOCUS)[torch.randint(len(FOCUS), (batch,), generator=g)],
                        grid[torch.randint(len(grid), (batch,), generator=g)])
        ac = alphas_cumprod[t].view(-1, 1, 1, 1)
        a, b = ac.sqrt(), (1 - ac).sqrt()
        noise = torch.randn(z.shape, generator=g)
        x_t = a * z + b * noise
        cond = text_encoder(_tokens(tokenizer, [p for p, _ in drawn])).last_hidden_state
        eps = unet(x_t, t, cond).sample
        x0 = (x_t - b * eps) / a
        # min-SNR weighting: the noisiest timesteps cannot be matched exactly and must not dominate
        weight = (a / b).square().clamp(max=1.0)
        loss = (weight * (x0 - z_target).square()).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == steps - 1:
            _log(f"unet {step}/{steps} loss {loss.item():.4f}", start)
    unet.eval().requires_grad_(False)
    text_encoder.eval().requires_grad_(False)


def save(folder: Path, mods: dict[str, Any], scale: float) -> None:
    """A diffusers pipeline folder in fp16 safetensors, read back by ``dreamwire.models.load``."""
    vae = mods["vae"]
    vae.register_to_config(scaling_factor=scale)  # what the engine multiplies encoder latents by
    for name, module in (("unet", mods["unet"]), ("text_encoder", mods["text_encoder"]), ("vae", vae)):
        module.to(torch.float16).save_pretrained(folder / name, safe_serialization=True)
    write_pipeline_files(folder)


def train(out: Path, *, seed: int = 0, vae_steps: int = 800, unet_steps: int = 800, vae_batch: int = 16,
          vae_size: int = 32, batch: int = 32, size: int = 32, bank_size: int = 1024, threads: int = 1) -> Path:
    """Train all three parts from ``seed`` and write the pipeline folder ``out``."""
    from diffusers import LCMScheduler
    from transformers import CLIPTokenizer

    start = time.perf_counter()
    torch.set_num_threads(threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    vocab_size = write_tokenizer(out / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(out / "tokenizer")
    mods = demo_modules(vocab_size, seed)
    g = torch.Generator().manual_seed(seed)
    scale = train_vae(mods["vae"], vae_steps, vae_batch, vae_size, g, start)
    _log(f"vae scaling_factor {scale:.3f}", start)
    ac = LCMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear").alphas_cumprod
    bank = latent_bank(mods["vae"], scale, bank_size, size, g)
    _log(f"latent bank {tuple(bank.shape)}", start)
    train_unet(mods, tokenizer, bank, ac, unet_steps, batch, g, start)
    save(out, mods, scale)
    _log(f"wrote {out}", start)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m dreamwire.models.train_demo", description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="folder to write the diffusers pipeline into")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--vae-steps", type=int, default=800)
    p.add_argument("--unet-steps", type=int, default=800)
    p.add_argument("--vae-batch", type=int, default=16)
    p.add_argument("--vae-size", type=int, default=32, help="VAE training image side in pixels (multiple of 8)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--size", type=int, default=32, help="UNet training image side in pixels (multiple of 8)")
    p.add_argument("--bank", type=int, default=1024, help="images whose latents the UNet phase reuses")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (one is fastest on a shared CPU; the weights depend on it)")
    a = p.parse_args(argv)
    train(a.out, seed=a.seed, vae_steps=a.vae_steps, unet_steps=a.unet_steps, vae_batch=a.vae_batch,
          vae_size=a.vae_size, batch=a.batch, size=a.size, bank_size=a.bank, threads=a.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
