"""Forward pass of Llama-family decoders over a paged KV cache.

:class:`ModelRunner` runs Llama, Qwen2 and Mistral checkpoints loaded with ``transformers``:
it calls the model's own modules (embedding, RMSNorms, q/k/v/o projections, MLP, final norm,
LM head), so it holds no second copy of the weights and follows whatever ``load_state_dict``
puts into the model. Only attention is replaced: keys and values go to a :class:`KVPool`
through page tables and are read back by an :class:`AttentionBackend`. RoPE frequencies come
from ``transformers``' own ``ROPE_INIT_FUNCTIONS`` (default, linear, llama3, yarn, ...), so
scaled-RoPE configs give the model's numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from o1search.engine.attention import AttentionBackend, TorchAttentionBackend
from o1search.engine.kv_pool import KVPool

__all__ = ["ForwardBatch", "ModelRunner", "paged_runner_unsupported_reason"]

_PAGED_MODEL_TYPES = frozenset({"llama", "mistral", "qwen2"})
# RoPE types whose frequencies do not depend on the sequence length; "dynamic" and "longrope"
# switch frequencies with the batch's longest sequence, which a shared prefix cache cannot
# honour, so those models use the generic runner.
_STATIC_ROPE_TYPES = frozenset({"default", "linear", "llama3", "yarn"})


def _rope_parameters(config) -> dict:
    params = getattr(config, "rope_parameters", None)
    if params is None:  # older configs
        params = dict(getattr(config, "rope_scaling", None) or {})
        params.setdefault("rope_theta", getattr(config, "rope_theta", 10000.0))
    params = dict(params)
    params.setdefault("rope_type", params.get("type", "default"))
    return params


def paged_runner_unsupported_reason(model: torch.nn.Module) -> str | None:
    """Why ``model`` cannot run on :class:`ModelRunner` (``None`` when it can).

    Parameters
    ----------
    model : torch.nn.Module
        A ``transformers`` causal LM.

    Returns
    -------
    str or None
    """
    config = getattr(model, "config", None)
    if config is None:
        return "model has no .config"
    model_type = getattr(config, "model_type", None)
    if model_type not in _PAGED_MODEL_TYPES:
        return f"model_type {model_type!r} is not one of {sorted(_PAGED_MODEL_TYPES)}"
    params = _rope_parameters(config)
    if "full_attention" in params or "sliding_attention" in params:
        return "per-layer-type RoPE parameters are not supported"
    if params["rope_type"] not in _STATIC_ROPE_TYPES:
        return f"rope_type {params['rope_type']!r} depends on the sequence length"
    inner = getattr(model, "model", None)
    if inner is None or not hasattr(inner, "layers") or not hasattr(model, "lm_head"):
        return "model does not have the model.layers / lm_head layout"
    for layer in inner.layers:
        attn = getattr(layer, "self_attn", None)
        if attn is None or not all(hasattr(attn, n) for n in ("q_proj", "k_proj", "v_proj",
                                                               "o_proj")):
            return "attention without q/k/v/o projections"
        if not all(hasattr(layer, n) for n in ("input_layernorm", "post_attention_layernorm",
                                                "mlp")):
            return "decoder layer without the pre-norm/MLP layout"
    return None


@dataclass
class ForwardBatch:
    """One packed forward call: ``B`` sequences, ``T`` new tokens in total.

    Attributes
    ----------
    input_ids : torch.Tensor
        ``[T]`` int64 new tokens, sequence after sequence.
    positions : torch.Tensor
        ``[T]`` int64 position of each new token in its sequence.
    slot_mapping : torch.Tensor
        ``[T]`` int64 KV slot (``page * page_size + offset``) of each new token.
    block_table : torch.Tensor
        ``[B, max_pages]`` int32 pages of each sequence (0-padded).
    prefix_lens, extend_lens : torch.Tensor
        ``[B]`` int32 tokens already cached / new in this call.
    max_seq_len : int
        ``max(prefix_lens + extend_lens)``.
    is_decode : bool
        Every sequence has exactly one new token (uses the backend's ``decode``).
    """

    input_ids: torch.Tensor
    positions: torch.Tensor
    slot_mapping: torch.Tensor
    block_table: torch.Tensor
    prefix_lens: torch.Tensor
    extend_lens: torch.Tensor
    max_seq_len: int
    is_decode: bool

    @property
    def last_rows(self) -> torch.Tensor:
        """``[B]`` int64 row of each sequence's last new token in the packed batch."""
        return torch.cumsum(self.extend_lens.long(), 0) - 1


class ModelRunner:
    """Paged-KV forward pass of a Llama/Qwen2/Mistral ``transformers`` model.

    Parameters
    ----------
    model : torch.nn.Module
        ``LlamaForCausalLM``, ``Qwen2ForCausalLM`` or ``MistralForCausalLM`` (its modules are
        called directly; weights are referenced, not copied).
    pool : KVPool
        KV storage whose geometry matches the model.
    backend : AttentionBackend, optional
        Defaults to :class:`TorchAttentionBackend`.

    Raises
    ------
    ValueError
        The model is not a supported architecture (see
        :func:`paged_runner_unsupported_reason`) or the pool does not match it.
    """

    def __init__(self, model: torch.nn.Module, pool: KVPool,
                 backend: AttentionBackend | None = None) -> None:
        reason = paged_runner_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"ModelRunner cannot run this model: {reason}")
        config = model.config
        self.model = model
        self.config = config
        self.pool = pool
        self.backend = backend or TorchAttentionBackend()
        self._torch_backend = TorchAttentionBackend()
        self.num_heads = config.num_attention_heads
        self.num_kv_heads = getattr(config, "num_key_value_heads", None) or self.num_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.num_heads
        self.num_layers = config.num_hidden_layers
        self.vocab_size = config.vocab_size
        self.max_positions = config.max_position_embeddings
        if (pool.num_layers, pool.kv_heads, pool.head_dim) != (self.num_layers,
                                                               self.num_kv_heads,
                                                               self.head_dim):
            raise ValueError(
                f"KVPool geometry (layers={pool.num_layers}, kv_heads={pool.kv_heads}, "
                f"head_dim={pool.head_dim}) does not match the model (layers={self.num_layers}, "
                f"kv_heads={self.num_kv_heads}, head_dim={self.head_dim})")
        self.layers = list(model.model.layers[: self.num_layers])
        self.scales = [float(getattr(layer.self_attn, "scaling", self.head_dim ** -0.5))
                       for layer in self.layers]
        self.windows = [self._layer_window(i, layer) for i, layer in enumerate(self.layers)]
        self._init_rope()

    @classmethod
    def for_model(cls, model: torch.nn.Module, *, num_pages: int, page_size: int,
                  backend: AttentionBackend | None = None) -> ModelRunner:
        """Build a runner and a :class:`KVPool` sized for ``model``.

        Parameters
        ----------
        model : torch.nn.Module
            Supported ``transformers`` model; the pool uses its dtype and device.
        num_pages, page_size : int
            Pool geometry.
        backend : AttentionBackend, optional

        Returns
        -------
        ModelRunner
        """
        reason = paged_runner_unsupported_reason(model)
        if reason is not None:
            raise ValueError(f"ModelRunner cannot run this model: {reason}")
        cfg = model.config
        heads = cfg.num_attention_heads
        param = next(model.parameters())
        pool = KVPool(cfg.num_hidden_layers, num_pages, page_size,
                      getattr(cfg, "num_key_value_heads", None) or heads,
                      getattr(cfg, "head_dim", None) or cfg.hidden_size // heads,
                      dtype=param.dtype, device=param.device)
        return cls(model, pool, backend)

    # ------------------------------------------------------------------ set-up
    def _layer_window(self, index: int, layer: torch.nn.Module) -> int | None:
        attn = layer.self_attn
        if hasattr(attn, "sliding_window"):  # Qwen2: per layer type
            window = attn.sliding_window
        elif self.config.model_type == "mistral":  # Mistral: every layer, from the config
            window = getattr(self.config, "sliding_window", None)
        else:
            window = None
        return int(window) if window else None

    def _init_rope(self) -> None:
        from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

        params = _rope_parameters(self.config)
        rope_type = params["rope_type"]
        device = next(self.model.parameters()).device
        if rope_type == "default":
            # Same formula as the models' compute_default_rope_parameters.
            base = float(params.get("rope_theta", 10000.0))
            dim = self.head_dim
            inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64)
                                       .to(device=device, dtype=torch.float) / dim))
            scaling = 1.0
        else:
            inv_freq, scaling = ROPE_INIT_FUNCTIONS[rope_type](self.config, device)
        self.inv_freq = inv_freq.to(device=device, dtype=torch.float32)
        self.rope_scaling = float(scaling)

    def rope(self, positions: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor,
                                                                          torch.Tensor]:
        """``cos, sin`` of shape ``[T, 1, D]`` for ``positions [T]`` (transformers' recipe)."""
        freqs = positions[:, None].float() * self.inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos = (emb.cos() * self.rope_scaling).to(dtype)
        sin = (emb.sin() * self.rope_scaling).to(dtype)
        return cos[:, None, :], sin[:, None, :]

    # ------------------------------------------------------------------ batches
    def make_batch(self, seqs: list[tuple[list[int], int, list[int]]]) -> ForwardBatch:
        """Pack sequences into a :class:`ForwardBatch`.

        Parameters
        ----------
        seqs : list of (new_tokens, prefix_len, pages)
            ``new_tokens`` (non-empty) continue a sequence whose first ``prefix_len`` tokens
            are cached; ``pages`` lists the page ids of the whole sequence
            (``ceil((prefix_len + len(new_tokens)) / page_size)`` of them at least).

        Returns
        -------
        ForwardBatch

        Raises
        ------
        ValueError
            Empty batch or new tokens, too few pages, a token id outside the vocabulary, or a
            sequence longer than the model's maximum positions.
        """
        if not seqs:
            raise ValueError("make_batch: no sequences")
        ps = self.pool.page_size
        device = self.pool.device
        ids: list[int] = []
        pos: list[int] = []
        slots: list[int] = []
        prefix_lens: list[int] = []
        extend_lens: list[int] = []
        max_pages = 0
        for new_tokens, prefix_len, pages in seqs:
            n = len(new_tokens)
            if n == 0:
                raise ValueError("make_batch: a sequence has no new tokens")
            total = prefix_len + n
            if total > self.max_positions:
                raise ValueError(f"sequence of {total} tokens exceeds the model's "
                                 f"max_position_embeddings ({self.max_positions})")
            need = (total + ps - 1) // ps
            if len(pages) < need:
                raise ValueError(f"make_batch: {total} tokens need {need} pages, got "
                                 f"{len(pages)}")
            ids.extend(new_tokens)
            pos.extend(range(prefix_len, total))
            slots.extend(pages[p // ps] * ps + p % ps for p in range(prefix_len, total))
            prefix_lens.append(prefix_len)
            extend_lens.append(n)
            max_pages = max(max_pages, need)
        table = torch.zeros((len(seqs), max_pages), dtype=torch.int32)
        for b, (new_tokens, prefix_len, pages) in enumerate(seqs):
            need = (prefix_len + len(new_tokens) + ps - 1) // ps
            table[b, :need] = torch.as_tensor(pages[:need], dtype=torch.int32)
        input_ids = torch.as_tensor(ids, dtype=torch.int64)
        if int(input_ids.min()) < 0 or int(input_ids.max()) >= self.vocab_size:
            raise ValueError(f"token ids must be in [0, vocab_size={self.vocab_size}), got "
                             f"[{int(input_ids.min())}, {int(input_ids.max())}]")
        return ForwardBatch(
            input_ids=input_ids.to(device),
            positions=torch.as_tensor(pos, dtype=torch.int64).to(device),
            slot_mapping=torch.as_tensor(slots, dtype=torch.int64).to(device),
            block_table=table.to(device),
            prefix_lens=torch.as_tensor(prefix_lens, dtype=torch.int32).to(device),
            extend_lens=torch.as_tensor(extend_lens, dtype=torch.int32).to(device),
            max_seq_len=max(p + e for p, e in zip(prefix_lens, extend_lens, strict=True)),
            is_decode=all(e == 1 for e in extend_lens),
        )

    # ------------------------------------------------------------------ forward
    @torch.inference_mode()
    def forward(self, batch: ForwardBatch, *, rows: torch.Tensor | None = None,
                compute_logits: bool = True) -> tuple[torch.Tensor | None, torch.Tensor]:
        """Run the model on a packed batch, writing the new tokens' KV into the pool.

        Parameters
        ----------
        batch : ForwardBatch
        rows : torch.Tensor, optional
            ``[R]`` packed rows to return outputs for; defaults to ``batch.last_rows`` (the
            last new token of every sequence).
        compute_logits : bool
            Apply the LM head (else logits are ``None``).

        Returns
        -------
        (logits, hidden)
            ``logits [R, V]`` (float32) or ``None``, and ``hidden [R, H]``: the final hidden
            states after the model's last norm (``output_hidden_states[-1]`` in
            ``transformers``).
        """
        model = self.model.model
        pool = self.pool
        t = batch.input_ids.shape[0]
        hidden = model.embed_tokens(batch.input_ids)  # [T, H]
        dtype = hidden.dtype
        cos, sin = self.rope(batch.positions, dtype)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            residual = hidden
            x = layer.input_layernorm(hidden)
            q = attn.q_proj(x).view(t, self.num_heads, self.head_dim)
            k = attn.k_proj(x).view(t, self.num_kv_heads, self.head_dim)
            v = attn.v_proj(x).view(t, self.num_kv_heads, self.head_dim)
            q = q * cos + _rotate_half(q) * sin
            k = k * cos + _rotate_half(k) * sin
            backend = self.backend
            window = self.windows[i]
            if window is not None and batch.max_seq_len <= window:
                window = None  # the window cuts nothing in this batch
            if window is not None and not backend.supports_sliding_window:
                backend = self._torch_backend
            backend.store_kv(pool.k[i], pool.v[i], k, v, batch.slot_mapping)
            kwargs = {"sliding_window": window} if window is not None else {}
            if batch.is_decode:
                seq_lens = batch.prefix_lens + batch.extend_lens
                o = backend.decode(q, pool.k[i], pool.v[i], batch.block_table, seq_lens,
                                   self.scales[i], **kwargs)
            else:
                o = backend.extend(q, pool.k[i], pool.v[i], batch.block_table,
                                   batch.prefix_lens, batch.extend_lens, self.scales[i], **kwargs)
            hidden = residual + attn.o_proj(o.reshape(t, self.num_heads * self.head_dim))
            residual = hidden
            hidden = residual + layer.mlp(layer.post_attention_layernorm(hidden))
        if rows is None:
            rows = batch.last_rows
        out = model.norm(hidden.index_select(0, rows.to(hidden.device)))
        logits = self.model.lm_head(out).float() if compute_logits else None
        return logits, out


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)
