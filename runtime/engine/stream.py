"""StreamEngine: the stream-batch denoiser with live parameters and no warm-up frames.

State between calls is kept as *clean-latent estimates* of the in-flight frames (``_x0``)
plus their RCFG reference latents (``_ref``), not as noisy latents. The noisy batch is rebuilt
each call as ``a * x0 + b * noise`` (one fused multiply-add), which is exactly the original's
buffer update and makes every live change a pure recomputation:

* prompt, prompt_blend, negative_prompt: new embeddings; in-flight frames keep their latents and
  take their remaining steps with the new conditioning, so the very next output has had its last
  step under the new prompt.
* guidance_scale, delta: read at each call; same as above.
* seed, seed_blend: new noise; in-flight frames keep their clean estimates and are re-noised
  with the new noise at their next step (the next output sees it).
* strength, steps, t_index_list: new step constants; in-flight estimates are re-noised to the
  new timesteps. If the depth n changes, the newest n'-1 in-flight frames are kept (the oldest
  repeated if n grows); if there were no in-flight frames (n was 1) the last output's clean
  latent fills the new slots. No change ever costs an extra UNet call.
* similarity_*: applies from the next frame; the reference frame is kept.
* latent_feedback: read at each call; the next frame's latent is blended with the last output's
  clean latent (no feedback before a first output, after :meth:`reset` or in txt2img).
* controlnet_*: per-row residual scales, read at each call (no rebuild, no extra UNet call); the
  control images travel with their frames' slots (see :mod:`controlnet_slots`).

Start-up *primes* the buffer: the first frame runs its first n-1 steps sequentially, so the
first output is that frame fully denoised and output k equals the sequential result for frame
max(0, k-(n-1)).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dreamwire.control.kinds import ControlError
from dreamwire.control.params import Params
from dreamwire.control.schema import MAX_STEPS
from dreamwire.engine.api import Backend, EngineConfig, Sources, StepResult
from dreamwire.engine.background import Background
from dreamwire.engine.conditioning import Conditioning
from dreamwire.engine.controlnet import ControlNetSetup
from dreamwire.engine.controlnet_slots import ControlNetSlots, controlled_unet
from dreamwire.engine.guidance import Embeddings, GuidanceInputs, make_guidance
from dreamwire.engine.noise import NoiseBank
from dreamwire.engine.prompts import PromptEncoder
from dreamwire.engine.schedule import (
    StepConstants,
    add_noise,
    feedback_latent,
    lcm_denoise,
    step_constants,
    t_index_for,
)
from dreamwire.engine.similarity import SimilarityFilter
from dreamwire.engine.spec import ModelSpec

PROMPT_KEYS = frozenset({"prompt", "prompt_blend", "negative_prompt"})


class StreamEngine:
    def __init__(self, backend: Backend, prompts: PromptEncoder, model: ModelSpec,
                 config: EngineConfig | None = None, params: Params | None = None,
                 background: Background | None = None, controlnets: Sequence[ControlNetSetup] = ()) -> None:
        """``background``: encode prompt changes on that worker instead of inside :meth:`update` (the live
        loop's choice, so a blend never stops frames); without it a change lands on the next step."""
        self.controlnets = tuple(controlnets)
        self.backend = backend
        self.background = background
        self.prompts = prompts
        self.model = model
        self.config = config or EngineConfig()
        self.device = backend.device
        self.dtype = backend.dtype
        self.guidance = make_guidance(self.config.guidance)
        self.filter = SimilarityFilter(seed=self.config.filter_seed)
        s = model.vae_scale_factor
        frame_shape = (self.config.frames, 3, self.config.height, self.config.width)
        self._ctrl = ControlNetSlots(self.controlnets, frame_shape, self.device, self.dtype)
        self.latent_size = (self.config.height // s, self.config.width // s)
        self._noise = NoiseBank((MAX_STEPS * self.config.frames, model.latent_channels, *self.latent_size),
                                self.device, self.dtype)
        self._params: Params | None = None
        self._negative_prompt: str | None = None
        self._x0: torch.Tensor | None = None
        self._ref: torch.Tensor | None = None
        self._tags: list[Sources] = []  # the input tags of each in-flight step slot, newest first
        self._last: torch.Tensor | None = None
        self._last_tags: Sources = ()
        self._last_latent: torch.Tensor | None = None  # clean latent of the last output, one row per frame slot
        self._last_ref: torch.Tensor | None = None
        self.update(params or Params())

    # --- live parameters ---------------------------------------------------------------------

    @property
    def params(self) -> Params:
        assert self._params is not None
        return self._params

    @property
    def steps(self) -> int:
        return self.consts.steps

    @property
    def delay(self) -> int:
        """Frames of latency the batching adds: n-1 for stream batch, 0 for sequential."""
        return self.steps - 1 if self.config.batching == "stream" else 0

    def check(self, params: Params) -> None:
        """Raise ControlError for values this engine cannot run (the schema cannot know the model's grid)."""
        grid = self.model.original_steps
        bad = [i for i in params.t_index_list if i >= grid]
        if bad:
            raise ControlError(f"t_index_list: index {bad[0]} is outside this model's 0..{grid - 1} step grid "
                               f"(its scheduler has original_inference_steps={grid})")
        if problem := self._ctrl.check(params):
            raise ControlError(problem)

    def swap_backend(self, backend: Backend) -> None:
        """Run on ``backend`` from the next step (the failsafe's fallback); in-flight frames start over."""
        if (backend.device, backend.dtype) != (self.device, self.dtype):
            raise ValueError(f"backend {backend.name} runs on {backend.device}/{backend.dtype}, the engine on "
                             f"{self.device}/{self.dtype}")
        self.backend = backend
        self.reset()

    def reset(self) -> None:
        """Forget the in-flight frames, so the next output is made from current input only.

        For when the input jumps (bypass or pause ends, the source or its size changes): the
        frames in flight belong to the old picture, and finishing them would show it seconds late.
        """
        self._x0 = self._ref = self._last_latent = self._last_ref = None
        self._tags = []
        self._ctrl.reset()
        self.filter.reset()

    def update(self, params: Params) -> set[str]:
        """Apply a new parameter snapshot between calls; returns the names that changed."""
        self.check(params)
        old = self._params
        changed = params.changed(old) if old is not None else set(params.as_dict())
        self._params = params
        if changed & PROMPT_KEYS:
            key = tuple(getattr(params, k) for k in sorted(PROMPT_KEYS))
            if self.background is None or old is None:
                self._set_embeddings(*self._conditioning(params))
            else:  # encoded off this thread; the current conditioning stays until the new one is ready
                self.background.submit(key, lambda p=params: self._conditioning(p))
        if changed & {"seed", "seed_blend"}:
            self.noise = self._noise.get(params.seed_blend or ((params.seed, 1.0),))
        t_index = t_index_for(params.strength, params.steps, params.t_index_list, self.model.original_steps)
        if old is None or t_index != self.consts.t_index:
            self._set_schedule(t_index)
        self.filter.threshold = params.similarity_threshold
        self.filter.max_skip = params.similarity_max_skip
        if "similarity_filter" in changed and not params.similarity_filter:
            self.filter.reset()
        return changed

    def _conditioning(self, params: Params) -> tuple[Embeddings, str]:
        cond = (self.prompts.encode_blend(params.prompt_blend) if params.prompt_blend
                else self.prompts.encode(params.prompt))
        return Embeddings(cond=cond, negative=self.prompts.encode(params.negative_prompt)), params.negative_prompt

    def _set_embeddings(self, embeddings: Embeddings, negative_prompt: str) -> None:
        """Swap conditioning in, telling the guidance strategy when the negative prompt changed."""
        if self._negative_prompt is not None and negative_prompt != self._negative_prompt:
            self.guidance.negative_changed()
        self.embeddings = embeddings
        self._negative_prompt = negative_prompt

    def _set_schedule(self, t_index: tuple[int, ...]) -> None:
        f = self.config.frames
        m = self.model
        old_n = self.consts.steps if self._x0 is not None else None
        self.consts: StepConstants = step_constants(
            m.alphas_cumprod, t_index, f, num_train_timesteps=m.num_train_timesteps, original_steps=m.original_steps,
            timestep_scaling=m.timestep_scaling, device=self.device, dtype=self.dtype,
        )
        if old_n is None or old_n == len(t_index):
            return
        k = len(t_index) - 1
        if old_n == 1:
            # Nothing in flight, but the last output is a clean estimate of the latest frame:
            # seed every new slot with it (re-noised next call) instead of re-priming, so growing n
            # costs no extra UNet calls and the next output is that frame taken one step further.
            self._x0 = self._last_latent.repeat(k, 1, 1, 1)
            self._ref = self._last_ref.repeat(k, 1, 1, 1) if self._last_ref is not None else None
            self._tags = [self._last_tags] * k
            self._ctrl.refill(k)
            return
        # Keep frames by age: new slot j takes old slot min(j, old_n - 2), newest first.
        keep = [min(j, old_n - 2) for j in range(k)]
        rows = (torch.tensor(keep, dtype=torch.long)[:, None] * f + torch.arange(f)).reshape(-1).to(self.device)
        self._x0 = self._x0.index_select(0, rows)
        if self._ref is not None:
            self._ref = self._ref.index_select(0, rows)
        self._tags = [self._tags[j] for j in keep]
        self._ctrl.select(rows)

    # --- frames ------------------------------------------------------------------------------

    @torch.inference_mode()
    def step(self, images: torch.Tensor | None = None, sources: Sequence[Any] | None = None,
             controlnet_images: Sequence[torch.Tensor | None] | None = None) -> StepResult:
        """Advance the stream by one call.

        ``images`` is (f,3,H,W) in [-1, 1] on the engine's device for img2img, ``None`` for txt2img.
        ``sources`` are f opaque tags for the new frames (the loop passes its input frames); the result
        names the ones its images came from. ``controlnet_images``: per ControlNet, (f,3,H,W) control images in
        [0, 1] for the new frames, or ``None`` to preprocess ``images``.
        """
        if self.background is not None and (done := self.background.take()) is not None:
            self._set_embeddings(*done[1])
        f = self.config.frames
        tags: Sources = tuple(sources) if sources is not None else (None,) * f
        if len(tags) != f:
            raise ValueError(f"expected {f} source tags, got {len(tags)}")
        img2img = self.config.mode == "img2img"
        if img2img:
            if images is None or images.shape != self._ctrl.shape:
                got = None if images is None else tuple(images.shape)
                raise ValueError(f"expected images of shape {self._ctrl.shape}, got {got}")
            # The filter never skips before a first output exists: it has no reference frame yet.
            if self.params.similarity_filter and self.filter.should_skip(images):
                return StepResult(self._last, skipped=True, delay=self.delay, sources=self._last_tags)
        ctrl = self._ctrl.new(images, controlnet_images)
        z = self._feedback(self.backend.encode(images.to(self.dtype))) if img2img else None
        c = self.consts
        x_new = add_noise(z, self.noise[:f], c.a[:f], c.b[:f]) if img2img else self.noise[:f]
        if self.config.batching == "sequential":
            latent = self._sequential(x_new, z, c.steps, ctrl)[0]
            self._last_latent = latent
            out_tags = tags
        else:
            if self._x0 is None:
                _, self._x0, self._ref = self._sequential(x_new, z, c.steps - 1, ctrl)
                self._tags = [tags] * (c.steps - 1)
                self._ctrl.prime(ctrl, c.steps - 1)
            latent = self._stream(x_new, z, ctrl)
            self._tags.insert(0, tags)
            out_tags = self._tags.pop()
        self._last = self.backend.decode(latent)
        self._last_tags = out_tags
        return StepResult(self._last, skipped=False, delay=self.delay, sources=out_tags)

    def _feedback(self, z: torch.Tensor) -> torch.Tensor:
        """The frame's latent as the engine uses it (noised, and RCFG self's reference): with latent_feedback
        above 0 and a last output to pull toward, blended with that output's clean latent; else ``z`` itself,
        untouched, so feedback off costs nothing and changes no bit."""
        alpha = self.params.latent_feedback
        if alpha == 0.0 or self._last_latent is None:
            return z
        return feedback_latent(z, self._last_latent, alpha)

    def _guided_denoise(self, x: torch.Tensor, rows: slice, new_rows: int, z: torch.Tensor | None,
                        ref_inflight: torch.Tensor | None, ctrl: Sequence[torch.Tensor] = ()
                        ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One UNet evaluation with guidance and the consistency step, for batch rows ``rows``.

        ``ctrl``: per ControlNet, the control image of each latent row of this call.
        """
        c = self.consts
        g = GuidanceInputs(
            x=x, timesteps=c.timesteps[rows], a=c.a[rows], b=c.b[rows], new_rows=new_rows, z_new=z,
            ref_inflight=ref_inflight, scale=self.params.guidance_scale, delta=self.params.delta,
            prediction_type=self.model.prediction_type,
        )
        unet = (controlled_unet(self.backend, self.controlnets, self.params, ctrl, rows, c.frames, c.steps)
                if self.controlnets else self._unet)
        out, ref = self.guidance(unet, self.embeddings, g)
        den = lcm_denoise(x, out, g.a, g.b, c.c_skip[rows], c.c_out[rows], self.model.prediction_type)
        return den, ref

    def _unet(self, x: torch.Tensor, t: torch.Tensor, cond: Conditioning, rows: torch.Tensor) -> torch.Tensor:
        """The strategies' UNet call: conditioning unpacked for the backend (SDXL's added kwargs only when set)."""
        extra = {"added": cond.added} if cond.added else {}
        return self.backend.unet(x, t, cond.hidden, **extra)

    def _sequential(self, x: torch.Tensor, z: torch.Tensor | None, steps: int, ctrl: Sequence[torch.Tensor] = ()
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Run the first ``steps`` steps on the new frames one UNet call per step.

        Returns the last clean estimate, every step's clean estimate (the in-flight buffer layout)
        and the RCFG references to go with them.
        """
        c = self.consts
        f = c.frames
        den, ref = x, None
        estimates, refs = [], []
        for i in range(steps):
            if i:
                x = add_noise(den, self.noise[c.slot(i)], c.a[c.slot(i)], c.b[c.slot(i)])
            den, r = self._guided_denoise(x, c.slot(i), f if i == 0 else 0, z, ref, ctrl)
            ref = r if r is not None else ref
            estimates.append(den)
            if ref is not None:
                refs.append(ref)
        empty = x[:0]
        return (den, torch.cat(estimates) if estimates else empty,
                torch.cat(refs) if refs else (empty if self.guidance.needs_input_latent else None))

    def _stream(self, x_new: torch.Tensor, z: torch.Tensor | None, ctrl: Sequence[torch.Tensor] = ()) -> torch.Tensor:
        """One batched UNet call: every in-flight frame advances one step; returns the oldest."""
        c = self.consts
        f, n = c.frames, c.steps
        assert self._x0 is not None
        inflight = add_noise(self._x0, self.noise[f:n * f], c.a[f:], c.b[f:])
        x = torch.cat([x_new, inflight])
        den, ref = self._guided_denoise(x, slice(0, n * f), f, z, self._ref, self._ctrl.batch(ctrl, f))
        self._x0 = den[:-f]
        self._ref = ref[:-f] if ref is not None else None
        self._last_latent = den[-f:]
        self._last_ref = ref[-f:] if ref is not None else None
        return den[-f:]
