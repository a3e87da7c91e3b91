"""What scrub needs to know about a model's architecture, and every TransformerLens hook name it uses.

This is the one module that speaks TransformerLens: the executor, the oracle and the graph ask
an :class:`Architecture` for hook names, weights and norms, and never touch bridge internals.

Supported (each checked against the model's own forward in the test matrix, see
:func:`supported_architectures`):

- **absolute or rotary positions.** With rotary embeddings there is no ``pos`` node: position
  enters inside each head's query and key rotation, which the model applies itself after the
  (patched) ``hook_q`` / ``hook_k``.
- **no biases.** A missing ``b_Q``, ``b_K``, ``b_V``, ``b_O`` or ``b_U`` counts as zero.
- **grouped- and multi-query attention.** ``hook_k`` and ``hook_v`` hold one row per *kv group*,
  which several query heads share. A claim on ``aL.h`` at ``k`` or ``v`` is about head ``h`` alone.
  The executor writes head ``h``'s patched keys and values into its group's row of the batch rows
  that compute ``h``; the other heads of that group also see them there, but nothing reads their
  outputs from those rows, and the heads of one instance share their claims, so every head read
  from a row wants the same keys. The result equals that of a twin model with every kv head
  repeated (tested), and the oracle does not use this indexing at all: it overwrites the
  projections' inputs and lets the model compute every group itself.
- **parallel attention and MLP blocks** (GPT-NeoX/Pythia, GPT-J, Phi): the MLP of layer ``L``
  reads the residual *before* layer ``L``'s heads, so the graph has no same-layer head -> MLP
  edges. Where the MLP input hook holds the already-normalised residual (GPT-J, Phi share ``ln1``
  between attention and MLP), the patched residual is normalised with ``ln1`` before it is written.

- **post-sublayer norms and logit soft-capping** (Gemma 2): each attention layer's output is
  normalised as a whole before it joins the residual, ``resid += norm(sum_h head_h + b_O)``, so a
  single head's contribution is not a term of the residual sum and per-head claims are refused.
  The attention layer is one node ``a{L}`` whose output is the normalised sum (read after the
  norm), and ``m{L}``'s output is its normalised MLP output: the residual is then again exactly
  the sum of its components' outputs. Logits are soft-capped as the model does.

Refused with :class:`~scrub.UnsupportedModelError`, naming the feature: positional embeddings
other than absolute and rotary
(shortformer, ALiBi...), encoder-decoder and mixture-of-experts models, native configs that
declare parallel blocks (``boot_native`` computes them sequentially), and any architecture not in
the tested list. Every architecture is also checked on one forward pass before it is scored: the
final residual must equal the sum of the components' outputs and each MLP input must be what the
graph says it reads, else the model is refused.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from scrub.errors import ExecutionError, UnsupportedModelError

__all__ = ["Architecture", "supported_architectures", "from_hf"]

# -- hook names (TransformerLens 4 TransformerBridge aliases) --------------------------------
HOOK_EMBED = "hook_embed"
HOOK_POS = "hook_pos_embed"
HOOK_FINAL = "ln_final.hook_in"


def hook_resid_pre(layer: int) -> str:
    return f"blocks.{layer}.hook_resid_pre"


def hook_qkv(layer: int, port: str) -> str:
    """Per-head (q) or per-kv-group (k, v) projections ``[B, T, rows, d_head]``, before any rotary."""
    return f"blocks.{layer}.attn.hook_{port}"


def hook_proj_in(layer: int, port: str) -> str:
    """The input of the q/k/v projection: the normalised residual ``[B, T, d_model]``."""
    return f"blocks.{layer}.attn.{port}.hook_in"


def hook_z(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def hook_mlp_out(layer: int) -> str:
    return f"blocks.{layer}.hook_mlp_out"


def hook_mlp_post(layer: int) -> str:
    """The MLP's hidden activations ``[B, T, d_mlp]``, the input of ``W_out`` (gated MLPs: ``act(gate) * up``)."""
    return f"blocks.{layer}.mlp.hook_post"


# The architectures in the test matrix: HuggingFace class name -> (family, positions, parallel).
# Anything else is refused until it has been checked the same way.
_TESTED: dict[str, tuple[str, str, bool]] = {
    "TransformerLensNative": ("TransformerLens native", "absolute or rotary", False),
    "GPT2LMHeadModel": ("GPT-2", "absolute", False),
    "OPTForCausalLM": ("OPT", "absolute", False),
    "GPTNeoXForCausalLM": ("GPT-NeoX / Pythia", "rotary", True),
    "LlamaForCausalLM": ("Llama", "rotary", False),
    "MistralForCausalLM": ("Mistral", "rotary", False),
    "Qwen2ForCausalLM": ("Qwen2", "rotary", False),
    "GemmaForCausalLM": ("Gemma", "rotary", False),
    "Gemma2ForCausalLM": ("Gemma 2", "rotary", False),
    "GPTJForCausalLM": ("GPT-J", "rotary", True),
    "PhiForCausalLM": ("Phi", "rotary", True),
}

# Refused on purpose, with the reason (the refusal tests build these).
_REFUSED: dict[str, str] = {
    "Gemma3ForCausalLM": (
        "Gemma 3 normalises queries and keys per head (q/k norms) and mixes sliding and global rotary "
        "bases per layer; it has not been checked against its own forward pass"
    ),
}


#: Architectures whose blocks cannot take a narrower MLP input than residual (see Architecture.narrow_last_mlp).
_NO_NARROW_MLP = frozenset({"OPTForCausalLM"})


def _cfg(model: Any, key: str, default: Any = None) -> Any:
    return getattr(getattr(model, "cfg", None), key, default)


@dataclass(frozen=True)
class Architecture:
    """The shape and wiring of a supported model, as scrub's graph, executor and oracle need it.

    Build it with :meth:`of`, which refuses what scrub cannot score exactly.
    """

    name: str  # the HuggingFace class name, or "TransformerLensNative"
    n_layers: int
    n_heads: int
    n_kv_heads: int
    d_model: int
    attn_only: bool
    positional: str  # "absolute" or "rotary"
    parallel: bool  # the MLP of layer L reads the residual before layer L's heads
    mlp_in_normalized: bool  # the MLP input hook holds ln1(resid_pre), not a residual
    post_norms: bool = False  # each sublayer's output is normalised before joining the residual (Gemma 2)
    logit_soft_cap: float = 0.0  # logits = cap * tanh(logits / cap) when > 0

    # -- construction ------------------------------------------------------------------
    @classmethod
    def of(cls, model: Any, *, verify: bool = True) -> Architecture:
        """The architecture of a TransformerLens model, or :class:`~scrub.UnsupportedModelError`.

        With ``verify`` (the default) one short forward pass checks the residual decomposition
        the graph relies on; the answer is cached per model object.
        """
        cached = _CACHE.get(model) if _weakrefable(model) else None
        if cached is not None:
            return cached
        arch = cls._describe(model)
        if verify:
            arch._verify(model)
            if _weakrefable(model):
                _CACHE[model] = arch
        return arch

    @classmethod
    def _describe(cls, model: Any) -> Architecture:
        cfg = getattr(model, "cfg", None)
        if cfg is None or not all(hasattr(cfg, k) for k in ("n_layers", "n_heads", "d_model")) or not hasattr(model, "blocks"):
            raise UnsupportedModelError(
                f"{type(model).__name__} is not a supported TransformerLens model: it needs a `cfg` with n_layers, "
                "n_heads and d_model, and `blocks` (build one with scrub.build_model, or wrap a HuggingFace model "
                "with scrub.from_hf)"
            )
        name = str(getattr(cfg, "architecture", None) or "TransformerLensNative")
        _check_listed(name, cfg)
        pet = getattr(cfg, "positional_embedding_type", "standard")
        if pet not in ("standard", "rotary"):
            raise UnsupportedModelError(
                f"positional_embedding_type={pet!r} is not supported: only absolute ('standard') and rotary "
                "positions are modelled exactly"
            )
        blk = model.blocks[0]
        post = hasattr(blk, "ln1_post") or hasattr(blk, "ln2_post")
        if post and not (hasattr(blk, "ln1_post") and (bool(getattr(cfg, "attn_only", False)) or hasattr(blk, "ln2_post"))):
            raise UnsupportedModelError(f"architecture {name} has a post-norm on only some of its sublayers")
        if getattr(cfg, "use_normalization_before_and_after", False) and not post:
            raise UnsupportedModelError(
                f"architecture {name} declares norms before and after each sublayer but the bridge exposes no "
                "post-norm modules (ln1_post / ln2_post) to read the components' outputs from"
            )
        soft = getattr(cfg, "output_logits_soft_cap", -1.0)
        parallel = bool(getattr(cfg, "parallel_attn_mlp", False))
        if name == "TransformerLensNative" and parallel:
            raise UnsupportedModelError(
                "this native TransformerLens config declares parallel_attn_mlp=True, but TransformerBridge.boot_native "
                "computes its blocks sequentially: the config does not describe the model. Build it without "
                "parallel_attn_mlp, or use a HuggingFace parallel architecture (GPT-NeoX, GPT-J, Phi) through scrub.from_hf"
            )
        attn_only = bool(getattr(cfg, "attn_only", False))
        n_heads = int(cfg.n_heads)
        n_kv = int(getattr(cfg, "n_key_value_heads", None) or n_heads)
        if n_heads % n_kv:
            raise UnsupportedModelError(f"{n_heads} query heads do not divide into {n_kv} key/value groups")
        normalized = not attn_only and not hasattr(blk, "ln2") and parallel
        return cls(
            name=name,
            n_layers=int(cfg.n_layers),
            n_heads=n_heads,
            n_kv_heads=n_kv,
            d_model=int(cfg.d_model),
            attn_only=attn_only,
            positional="rotary" if pet == "rotary" else "absolute",
            parallel=parallel and not attn_only,
            mlp_in_normalized=normalized,
            post_norms=post,
            logit_soft_cap=float(soft) if soft is not None and soft > 0 else 0.0,
        )

    # -- graph facts -------------------------------------------------------------------
    @property
    def inputs(self) -> tuple[str, ...]:
        """The graph's input nodes: ``embed``, and ``pos`` where positions are a learned embedding."""
        return ("embed", "pos") if self.positional == "absolute" else ("embed",)

    @property
    def group_size(self) -> int:
        return self.n_heads // self.n_kv_heads

    def kv_row(self, head: int) -> int:
        """The row of ``hook_k`` / ``hook_v`` (the kv group) that query head ``head`` reads."""
        return head // self.group_size

    def rows(self, port: str, heads: list[int]) -> list[int]:
        """The rows of ``hook_{port}`` that ``heads`` read."""
        return list(heads) if port == "q" else [self.kv_row(h) for h in heads]

    # -- hooks ---------------------------------------------------------------------------
    @property
    def uses_hook_mlp_in(self) -> bool:
        return not self.attn_only and not self.mlp_in_normalized

    def hook_resid(self, layer: int) -> str:
        """The residual stream entering layer ``layer`` (``layer == n_layers``: the final residual, before
        ``ln_final``): where residual site ``r{layer}`` is read and where DAS intervenes."""
        if not 0 <= layer <= self.n_layers:
            raise ValueError(f"layer must be in 0..{self.n_layers}, got {layer}")
        return hook_resid_pre(layer) if layer < self.n_layers else HOOK_FINAL

    def hook_mlp_in(self, layer: int) -> str:
        """Where the MLP's input is overwritten: the residual it reads, or (GPT-J, Phi) its normalised form."""
        return f"blocks.{layer}.mlp.hook_in" if self.mlp_in_normalized else f"blocks.{layer}.hook_mlp_in"

    def hook_attn_out(self, layer: int) -> str:
        """Where a whole attention layer's output is read on post-norm models: after its post-norm."""
        return f"blocks.{layer}.ln1_post.hook_out"

    def hook_mlp_out(self, layer: int) -> str:
        """Where an MLP's output (its contribution to the residual) is read."""
        return f"blocks.{layer}.ln2_post.hook_out" if self.post_norms else hook_mlp_out(layer)

    def hook_mlp_post(self, layer: int) -> str:
        """Where an MLP's neuron activations are read (see :meth:`W_out`)."""
        return hook_mlp_post(layer)

    # -- neurons -------------------------------------------------------------------------
    def d_mlp(self, model: Any) -> int | None:
        """The number of neurons of each MLP (None for attention-only models)."""
        w = None if self.attn_only else getattr(getattr(model.blocks[0], "mlp", None), "W_out", None)
        return None if w is None else int(w.shape[0])

    def W_out(self, model: Any, layer: int) -> torch.Tensor:
        """``[d_mlp, d_model]``: neuron ``i`` of MLP ``layer`` adds ``act_i * W_out[i]`` to the residual."""
        self.check_neurons(model)
        return model.blocks[layer].mlp.W_out

    def check_neurons(self, model: Any) -> None:
        """Refuse (:class:`~scrub.UnsupportedModelError`) unless every MLP's output is exactly
        ``hook_post @ W_out + b_out``, so that a neuron's contribution to the residual is defined.

        Checked once per model on one short forward pass (post-norm models are refused outright:
        the norm after the MLP mixes the neurons' contributions).
        """
        if self.post_norms:
            raise UnsupportedModelError(
                f"architecture {self.name}: each MLP's output is normalised as a whole before it joins the residual "
                "(a post-MLP norm), so a neuron's contribution is not defined; claim the whole MLP m<layer> instead"
            )
        if self.attn_only:
            raise UnsupportedModelError("the model is attention-only: it has no MLP neurons")
        if _NEURONS_OK.get(model, False) if _weakrefable(model) else False:
            return
        t = min(int(getattr(model.cfg, "n_ctx", 4)), 5)
        tokens = (torch.arange(2 * t).reshape(2, t) * 7919 + 5) % int(model.cfg.d_vocab)
        tokens = tokens.to(next(iter(model.parameters()), torch.empty(0)).device)
        seen: dict[str, torch.Tensor] = {}

        def grab(name: str):
            def fn(x, hook=None):
                seen[name] = x.detach().clone()

            return fn

        names = [n for layer in range(self.n_layers) for n in (hook_mlp_post(layer), self.hook_mlp_out(layer))]
        try:
            with torch.no_grad(), model.hooks(fwd_hooks=[(n, grab(n)) for n in names]):
                model(tokens)
        except Exception as exc:
            raise UnsupportedModelError(
                f"architecture {self.name}: the MLP activation hooks (mlp.hook_post) could not be read "
                f"({type(exc).__name__}: {exc}), so neuron claims are not supported"
            ) from exc
        for layer in range(self.n_layers):
            mlp = model.blocks[layer].mlp
            w, b = getattr(mlp, "W_out", None), getattr(mlp, "b_out", None)
            post, out = seen.get(hook_mlp_post(layer)), seen.get(self.hook_mlp_out(layer))
            if w is None or post is None or out is None or post.shape[-1] != w.shape[0]:
                raise UnsupportedModelError(
                    f"architecture {self.name}: layer {layer}'s MLP exposes no neuron activations matching W_out, "
                    "so neuron claims are not supported; claim the whole MLP instead"
                )
            with torch.no_grad():
                rebuilt = post @ w + (0 if b is None else b)
            err = float((rebuilt - out).abs().max())
            if err > 1e-4 * (float(out.abs().max()) + 1.0):
                raise UnsupportedModelError(
                    f"architecture {self.name}: layer {layer}'s MLP output is not hook_post @ W_out + b_out "
                    f"(off by {err:.3g}), so a neuron's contribution is not defined; claim the whole MLP instead"
                )
        if _weakrefable(model):
            _NEURONS_OK[model] = True

    def enable_hooks(self, model: Any) -> Callable[[], None]:
        """Turn on the optional hooks scrub needs; returns a function restoring the model as it was."""
        if not self.uses_hook_mlp_in:
            return lambda: None
        before = bool(getattr(model.cfg, "use_hook_mlp_in", False))
        model.set_use_hook_mlp_in(True)
        return lambda: model.set_use_hook_mlp_in(before)

    @property
    def narrow_last_mlp(self) -> bool:
        """Whether the last MLP may be given its input at one position per row, ``[batch, 1, d]``, its
        output broadcasting onto the residual (true where the block adds it without reshaping; OPT's
        decoder layer flattens the MLP's input and cannot)."""
        return self.name not in _NO_NARROW_MLP

    @property
    def per_layer_masks(self) -> bool:
        """Whether one layer's heads can be given another padding mask than the rest of the pass.

        True for TransformerLens-native models: each block's attention receives the caller's 2-d
        ``[batch, seq]`` mask as a keyword argument, and positions do not depend on it. HuggingFace
        models build their own 4-d masks and position embeddings, so they are left alone.
        """
        return self.name == "TransformerLensNative"

    def override_attention_mask(self, model: Any, layer: int, fn: Callable[[torch.Tensor], torch.Tensor]) -> Any:
        """Give layer ``layer``'s attention ``fn(mask)`` instead of the caller's ``[batch, seq]`` mask.

        Returns the hook handle (``.remove()`` it). Only for :attr:`per_layer_masks` models; the hook
        raises :class:`~scrub.ExecutionError` rather than run with a mask it does not understand.
        """
        if not self.per_layer_masks:
            raise ExecutionError(f"architecture {self.name} does not take a per-layer attention mask")

        def pre(module, args, kwargs):
            mask = kwargs.get("attention_mask")
            if mask is None or mask.dim() != 2:
                raise ExecutionError(
                    f"layer {layer}'s attention received no [batch, seq] attention_mask keyword "
                    f"({None if mask is None else tuple(mask.shape)}); cannot give it another example's mask"
                )
            return args, {**kwargs, "attention_mask": fn(mask)}

        return model.blocks[layer].attn.register_forward_pre_hook(pre, with_kwargs=True)

    # -- weights -------------------------------------------------------------------------
    def qkv(self, model: Any, layer: int, port: str) -> tuple[torch.Tensor, torch.Tensor]:
        """``W [rows, d_model, d_head]`` and ``b [rows, d_head]`` of a projection (zeros for no bias)."""
        attn = model.blocks[layer].attn
        w = getattr(attn, f"W_{port.upper()}")
        b = getattr(attn, f"b_{port.upper()}", None)
        return w, (torch.zeros(w.shape[0], w.shape[2], dtype=w.dtype, device=w.device) if b is None else b)

    def W_O(self, model: Any, layer: int) -> torch.Tensor:
        return model.blocks[layer].attn.W_O

    def residual_bias(self, model: Any, layer: int) -> torch.Tensor:
        """What layer ``layer``'s attention adds to the residual besides its heads' outputs: ``b_O``
        (zero on post-norm models, where ``b_O`` is inside the whole-layer node's output)."""
        b = self.b_O(model, layer)
        return torch.zeros_like(b) if self.post_norms else b

    def b_O(self, model: Any, layer: int) -> torch.Tensor:
        b = getattr(model.blocks[layer].attn, "b_O", None)
        return torch.zeros(self.d_model, device=self.W_O(model, layer).device) if b is None else b

    def ln1(self, model: Any, layer: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The norm in front of layer ``layer``'s attention (identity where there is none)."""
        ln = getattr(model.blocks[layer], "ln1", None)
        return (lambda x: x) if ln is None else ln.original_component

    def mlp_in_value(self, model: Any, layer: int, resid: torch.Tensor) -> torch.Tensor:
        """What to write into :meth:`hook_mlp_in` for an MLP whose input residual is ``resid``."""
        return self.ln1(model, layer)(resid) if self.mlp_in_normalized else resid

    def embed(self, model: Any, tokens: torch.Tensor) -> torch.Tensor:
        """``hook_embed`` for ``tokens`` without a forward pass."""
        return model.embed(tokens)

    def pos(self, model: Any, seq_len: int) -> torch.Tensor:
        """``hook_pos_embed`` for one sequence, ``[T, d_model]``."""
        return model.W_pos[:seq_len]

    def logits(self, model: Any, final_resid: torch.Tensor) -> torch.Tensor:
        """Logits from the final residual (``[..., d_model]``), as the model computes them."""
        x = model.ln_final.original_component(final_resid)
        logits = x @ model.W_U
        b_u = getattr(model, "b_U", None)
        logits = logits if b_u is None else logits + b_u
        if self.logit_soft_cap > 0:
            logits = self.logit_soft_cap * torch.tanh(logits / self.logit_soft_cap)
        return logits

    # -- the self-check ------------------------------------------------------------------
    def _verify(self, model: Any) -> None:
        """One forward pass: the residual must be the sum the graph assumes, and each MLP read what it says."""
        t = min(int(getattr(model.cfg, "n_ctx", 4)), 5)
        vocab = int(model.cfg.d_vocab)
        tokens = (torch.arange(2 * t).reshape(2, t) * 7919 + 3) % vocab
        device = next(iter(model.parameters()), torch.empty(0)).device
        tokens = tokens.to(device)
        seen: dict[str, torch.Tensor] = {}

        def grab(name: str):
            def fn(x, hook=None):
                seen[name] = x.detach().clone()

            return fn

        names = [HOOK_EMBED, HOOK_FINAL] + ([HOOK_POS] if self.positional == "absolute" else [])
        for layer in range(self.n_layers):
            names += [hook_resid_pre(layer), hook_z(layer)] + ([self.hook_attn_out(layer)] if self.post_norms else [])
            if not self.attn_only:
                names += [self.hook_mlp_in(layer), self.hook_mlp_out(layer)]
        restore = self.enable_hooks(model)
        try:
            with torch.no_grad(), model.hooks(fwd_hooks=[(n, grab(n)) for n in names]):
                seen["logits"] = model(tokens).detach()
        except UnsupportedModelError:
            raise
        except Exception as exc:
            raise UnsupportedModelError(
                f"architecture {self.name}: the TransformerLens hooks scrub needs could not be attached or did not "
                f"run ({type(exc).__name__}: {exc})"
            ) from exc
        finally:
            restore()
        missing = [n for n in names if n not in seen]
        if missing:
            raise UnsupportedModelError(f"architecture {self.name}: these hooks never fired: {missing}")
        with torch.no_grad():
            self._check_sums(model, seen)

    def _check_sums(self, model: Any, seen: dict[str, torch.Tensor]) -> None:
        total = seen[HOOK_EMBED] + (seen[HOOK_POS] if self.positional == "absolute" else 0)
        scale = float(seen[HOOK_FINAL].abs().max()) + 1.0
        for layer in range(self.n_layers):
            if not self.attn_only:
                expect = total if self.parallel else total + self._attn_out(model, layer, seen)
                got = seen[self.hook_mlp_in(layer)]
                expect = self.mlp_in_value(model, layer, expect)
                err = float((got - expect).abs().max())
                if err > 1e-4 * (float(expect.abs().max()) + 1.0):
                    raise UnsupportedModelError(
                        f"architecture {self.name}: layer {layer}'s MLP does not read the residual the graph assumes "
                        f"({'parallel' if self.parallel else 'sequential'} block; off by {err:.3g})"
                    )
            total = total + self._attn_out(model, layer, seen)
            if not self.attn_only:
                total = total + seen[self.hook_mlp_out(layer)]
        err = float((seen[HOOK_FINAL] - total).abs().max())
        if err > 1e-4 * scale:
            raise UnsupportedModelError(
                f"architecture {self.name}: the final residual is not the sum of the components' outputs "
                f"(off by {err:.3g}), so per-component claims would not mean what they say"
            )
        logits = self.logits(model, seen[HOOK_FINAL])
        err = float((logits - seen["logits"]).abs().max())
        if err > 1e-4 * (float(seen["logits"].abs().max()) + 1.0):
            raise UnsupportedModelError(
                f"architecture {self.name}: the logits are not the unembedded final residual (off by {err:.3g})"
            )

    def _attn_out(self, model: Any, layer: int, seen: dict[str, torch.Tensor]) -> torch.Tensor:
        if self.post_norms:
            return seen[self.hook_attn_out(layer)]
        z = seen[hook_z(layer)]
        return torch.einsum("bthd,hdm->btm", z, self.W_O(model, layer)) + self.b_O(model, layer)


def _check_listed(name: str, config: Any) -> None:
    """Refuse a mixture-of-experts config, an architecture refused on purpose, or one not in the test matrix."""
    if getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(f"{name} is an encoder-decoder model: scrub scores decoder-only causal LMs")
    if any(getattr(config, k, 0) for k in ("num_experts", "num_local_experts", "n_routed_experts")):
        raise UnsupportedModelError(f"{name} is a mixture-of-experts model: the graph has one MLP node per layer")
    if name in _REFUSED:
        raise UnsupportedModelError(f"architecture {name} is not supported: {_REFUSED[name]}")
    if name not in _TESTED:
        raise UnsupportedModelError(
            f"architecture {name} is not supported yet: scrub scores only architectures it has checked against "
            f"their own forward pass ({', '.join(sorted(_TESTED))}); a silently wrong score is worse than none"
        )


def _weakrefable(obj: Any) -> bool:
    try:
        weakref.ref(obj)
    except TypeError:
        return False
    return True


_CACHE: weakref.WeakKeyDictionary[Any, Architecture] = weakref.WeakKeyDictionary()
_NEURONS_OK: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def supported_architectures():
    """The architecture table: one row per HuggingFace class (or native), exact or refused, and why.

    Returns a :class:`pandas.DataFrame` with columns ``architecture``, ``family``, ``status``,
    ``positions``, ``parallel`` and ``notes``. Every row is a case of the test matrix.
    """
    import pandas as pd

    rows = [
        {"architecture": k, "family": fam, "status": "exact", "positions": pos, "parallel": par,
         "notes": _NOTES.get(k, "")}
        for k, (fam, pos, par) in _TESTED.items()
    ]
    rows += [
        {"architecture": k, "family": k.replace("ForCausalLM", ""), "status": "refused", "positions": "rotary",
         "parallel": False, "notes": why}
        for k, why in _REFUSED.items()
    ]
    return pd.DataFrame(rows)


_NOTES = {
    "TransformerLensNative": "boot_native configs; grouped-query via n_key_value_heads; parallel_attn_mlp refused (ignored by boot_native)",
    "GPT2LMHeadModel": "joint q/k/v projection",
    "GPTNeoXForCausalLM": "parallel blocks: no same-layer head -> MLP edges",
    "LlamaForCausalLM": "grouped-query, no biases, RMSNorm, gated MLP",
    "MistralForCausalLM": "grouped-query, no biases",
    "Qwen2ForCausalLM": "grouped-query; q/k/v biases but no output bias",
    "GemmaForCausalLM": "multi-query; embeddings scaled by sqrt(d_model) inside hook_embed",
    "Gemma2ForCausalLM": "post-attention and post-MLP norms: attention nodes are whole layers a{L} (per-head claims "
    "refused, their contribution is undefined); logit soft-capping",
    "GPTJForCausalLM": "parallel blocks; MLP input is ln1(resid_pre) at mlp.hook_in; no biases in attention",
    "PhiForCausalLM": "parallel blocks; MLP input is ln1(resid_pre) at mlp.hook_in",
}


def from_hf(hf_model: Any, tokenizer: Any = None, *, device: str | torch.device | None = None):
    """A HuggingFace causal LM wrapped as a TransformerLens ``TransformerBridge`` ready for scrub, offline.

    Args:
        hf_model: a ``transformers`` model object (e.g. ``LlamaForCausalLM(LlamaConfig(...))``), with
            random or loaded weights. Nothing is downloaded: no tokenizer is needed.
        tokenizer: optional tokenizer to attach to the bridge (scrub itself never uses one).
        device: move the bridge there (default: where the model is).

    Returns:
        the bridge, in eval mode, after :meth:`Architecture.of` accepted it.

    Raises:
        UnsupportedModelError: for an architecture scrub does not model exactly (the message says why).
    """
    import contextlib
    import io

    from torch import nn

    if not isinstance(hf_model, nn.Module) or not hasattr(hf_model, "config"):
        raise UnsupportedModelError(
            f"from_hf needs a HuggingFace transformers model object (with .config), got {type(hf_model).__name__}"
        )
    config = hf_model.config
    arch = type(hf_model).__name__
    _check_listed(arch, config)
    from transformer_lens.model_bridge.sources import build_bridge_from_module

    hf_model.eval()
    with contextlib.redirect_stdout(io.StringIO()):
        try:
            bridge = build_bridge_from_module(hf_model, arch, hf_config=config, tokenizer=tokenizer)
        except Exception as exc:
            raise UnsupportedModelError(f"TransformerLens could not bridge {arch}: {type(exc).__name__}: {exc}") from exc
        if device is not None:
            bridge = bridge.to(device)
    bridge.eval()
    Architecture.of(bridge)
    return bridge
