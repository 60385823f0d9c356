"""The policy: a small Llama built from scratch for a task, or any local Llama-family checkpoint.

``build_default_policy`` makes a fresh, seeded ``LlamaForCausalLM`` with a character-level
tokenizer over the task's alphabet; ``load_policy`` loads the shipped default checkpoint (or
any local ``transformers`` checkpoint directory) without touching the network.
"""

from __future__ import annotations

import dataclasses
import importlib.resources
import json
import os
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    PreTrainedTokenizerFast,
)

from o1search.policy.tokenizer import DEFAULT_ALPHABET, build_char_tokenizer

__all__ = [
    "PolicyConfig",
    "SUPPORTED_MODEL_TYPES",
    "build_default_policy",
    "default_policy_path",
    "encode_prompt",
    "format_prompt",
    "load_policy",
]

#: Architectures the o1search engine runs natively; others load too, and run through the
#: engine's generic ``transformers`` fallback.
SUPPORTED_MODEL_TYPES = ("llama", "qwen2", "mistral")

_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclasses.dataclass(frozen=True)
class PolicyConfig:
    """Size and initialization of the default policy (a Llama decoder).

    The defaults (hidden 64, 2 layers, 4 heads, MLP 256, tied embeddings) give about 133k
    parameters with a Countdown-sized character vocabulary.
    """

    hidden_size: int = dataclasses.field(default=64, metadata={"help": "model width"})
    num_layers: int = dataclasses.field(default=2, metadata={"help": "decoder layers"})
    num_heads: int = dataclasses.field(default=4, metadata={"help": "attention (query) heads"})
    num_kv_heads: int | None = dataclasses.field(
        default=None, metadata={"help": "key/value heads for GQA; None = num_heads (MHA)"}
    )
    intermediate_size: int = dataclasses.field(default=256, metadata={"help": "SwiGLU width"})
    max_position_embeddings: int = dataclasses.field(
        default=256, metadata={"help": "longest prompt + completion, in tokens"}
    )
    rope_theta: float = dataclasses.field(default=10000.0, metadata={"help": "RoPE base"})
    tie_word_embeddings: bool = dataclasses.field(
        default=True, metadata={"help": "share the input embedding and the output head"}
    )
    initializer_range: float = dataclasses.field(
        default=0.02, metadata={"help": "std of the normal weight initialization"}
    )
    seed: int = dataclasses.field(default=0, metadata={"help": "initialization seed"})

    def __post_init__(self) -> None:
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size",
                     "max_position_embeddings"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size={self.hidden_size} is not a multiple of num_heads="
                f"{self.num_heads}; pick num_heads dividing hidden_size"
            )
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError(
                f"head_dim={self.hidden_size // self.num_heads} is odd; RoPE needs an even "
                "head_dim (change hidden_size or num_heads)"
            )
        kv = self.num_kv_heads if self.num_kv_heads is not None else self.num_heads
        if kv < 1 or self.num_heads % kv:
            raise ValueError(
                f"num_kv_heads={self.num_kv_heads} must divide num_heads={self.num_heads}"
            )
        if self.rope_theta <= 0 or self.initializer_range <= 0:
            raise ValueError("rope_theta and initializer_range must be > 0")

    def llama_config(self, tokenizer: PreTrainedTokenizerBase) -> LlamaConfig:
        """The ``LlamaConfig`` for this size and ``tokenizer``'s vocabulary and special ids."""
        return LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads or self.num_heads,
            max_position_embeddings=self.max_position_embeddings,
            rope_theta=self.rope_theta,
            tie_word_embeddings=self.tie_word_embeddings,
            initializer_range=self.initializer_range,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )


def build_default_policy(
    task: Any = None, config: PolicyConfig | None = None
) -> tuple[LlamaForCausalLM, PreTrainedTokenizerBase]:
    """A fresh (untrained), seeded default policy and its character tokenizer.

    Parameters:
        task: an :class:`o1search.tasks.Task` (its ``alphabet()`` becomes the vocabulary), or
            None / a task with an empty alphabet for printable ASCII.
        config: model size and seed (default :class:`PolicyConfig()`).

    Returns:
        ``(model, tokenizer)``: a float32 ``LlamaForCausalLM`` on CPU in eval mode, and a
        character-level ``PreTrainedTokenizerFast``. Equal task alphabets and configs give
        equal weights; the global torch RNG is left untouched.

    Raises:
        TypeError: ``config`` is not a PolicyConfig, or ``task`` has no ``alphabet()``.
    """
    config = PolicyConfig() if config is None else config
    if not isinstance(config, PolicyConfig):
        raise TypeError(f"config must be a PolicyConfig, got {type(config).__name__}")
    if task is None:
        alphabet = DEFAULT_ALPHABET
    else:
        if not callable(getattr(task, "alphabet", None)):
            raise TypeError(f"task must be an o1search Task, got {type(task).__name__}")
        alphabet = task.alphabet() or DEFAULT_ALPHABET
    tokenizer = build_char_tokenizer(alphabet, model_max_length=config.max_position_embeddings)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        model = LlamaForCausalLM(config.llama_config(tokenizer))
    _sync_generation_config(model, tokenizer)
    return model.eval(), tokenizer


def default_policy_path() -> Path:
    """The directory of the shipped default policy checkpoint (``o1search/policy/default``)."""
    return Path(str(importlib.resources.files("o1search.policy").joinpath("default")))


def load_policy(
    path: str | os.PathLike[str] | None = None,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """Load a policy and its tokenizer from a local checkpoint directory.

    Never touches the network (``local_files_only=True``): a hub name that is not a local
    directory is an error, not a download.

    Parameters:
        path: a directory written by ``save_pretrained`` (Llama, Qwen2, Mistral or another
            causal LM, with its tokenizer), or None for the shipped default policy.
        device: where to put the model.
        dtype: floating dtype of the weights (e.g. ``torch.float32``, ``torch.bfloat16``).

    Returns:
        ``(model, tokenizer)``; the model in eval mode. A tokenizer without a pad token gets
        its EOS token as pad (for batching), and the model's generation config gets the
        tokenizer's EOS/pad ids when it lacks them.

    Raises:
        FileNotFoundError: ``path`` does not exist, or lacks ``config.json``, the weights or
            the tokenizer files (the message names what is missing).
        NotADirectoryError: ``path`` is a file.
        TypeError: ``dtype`` is not a floating torch dtype.
        ValueError: the checkpoint is not a causal language model.
    """
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating torch.dtype, got {dtype!r}")
    if path is None:
        root = default_policy_path()
        if not (root / "config.json").is_file():
            raise FileNotFoundError(
                f"the shipped default policy is missing from {root}; regenerate it with "
                "`python tools/train_default_policy.py`"
            )
    else:
        from o1search.outputs import resolve_latest  # a train run: its latest round

        root = resolve_latest(path)
        _check_checkpoint_dir(root)
    check_checkpoint_files(root)
    config = AutoConfig.from_pretrained(root, local_files_only=True)
    try:
        model = AutoModelForCausalLM.from_pretrained(root, local_files_only=True, dtype=dtype)
    except (OSError, RuntimeError) as exc:  # damage the checks above cannot see
        raise ValueError(f"the checkpoint at {str(root)!r} cannot be loaded: "
                         f"{' '.join(str(exc).split())[:300]}") from None
    except ValueError as exc:  # an architecture with no causal-LM head
        raise ValueError(
            f"{root} holds a {config.model_type!r} model, which is not a causal language "
            f"model o1search can run ({exc})"
        ) from exc
    tokenizer = _load_tokenizer(root)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        tokenizer.pad_token = tokenizer.eos_token
    _sync_generation_config(model, tokenizer)
    return model.to(device).eval(), tokenizer


_GENERIC_TOKENIZER_CLASSES = ("TokenizersBackend", "PreTrainedTokenizerFast")


def _load_tokenizer(root: Path) -> PreTrainedTokenizerBase:
    """The checkpoint's tokenizer, exactly as saved.

    ``AutoTokenizer`` picks the class from the model type for some architectures (Qwen2 in
    transformers 5), and those classes rebuild their own pre-tokenizer: a character tokenizer
    saved beside a Qwen2 model would come back byte-level and drop spaces. A checkpoint whose
    ``tokenizer_config.json`` declares the generic class is therefore loaded with that class
    straight from its ``tokenizer.json``; everything else goes through ``AutoTokenizer``.
    """
    cfg_file = root / "tokenizer_config.json"
    declared = None
    if cfg_file.is_file():
        try:
            declared = json.loads(cfg_file.read_text(encoding="utf-8")).get("tokenizer_class")
        except (ValueError, AttributeError):
            declared = None  # let AutoTokenizer report the malformed file
    if declared in _GENERIC_TOKENIZER_CLASSES and (root / "tokenizer.json").is_file():
        return PreTrainedTokenizerFast.from_pretrained(root, local_files_only=True)
    return AutoTokenizer.from_pretrained(root, local_files_only=True)


def check_json_file(path: Path) -> None:
    """Raise ValueError naming ``path`` when it exists but is not valid JSON."""
    if not path.is_file():
        return
    try:
        json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{str(path)!r} is damaged: not valid JSON ({exc}); restore it or "
                         "save the checkpoint again") from None


def check_safetensors_file(path: Path) -> None:
    """Raise ValueError naming ``path`` when it is not a complete safetensors file (a torn
    or truncated write): its header must parse and its tensors must fit the file."""
    size = path.stat().st_size
    damaged = f"{str(path)!r} is damaged (a truncated or torn write?)"
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{damaged}: {size} bytes, shorter than a safetensors header")
        n = int.from_bytes(head, "little")
        if n > size - 8:
            raise ValueError(f"{damaged}: its header claims {n} bytes, the file has {size}")
        try:
            header = json.loads(f.read(n))
            end = max((int(v["data_offsets"][1]) for k, v in header.items()
                       if k != "__metadata__"), default=0)
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            raise ValueError(f"{damaged}: its header is not valid safetensors JSON") from None
    if 8 + n + end > size:
        raise ValueError(f"{damaged}: its tensors need {8 + n + end} bytes, the file has {size}")


def check_checkpoint_files(root: Path) -> None:
    """Check the JSON and safetensors files of a checkpoint directory before loading, so a
    damaged file is named in one line instead of failing deep inside a loader.

    Raises:
        ValueError: a file is damaged; the message names it.
    """
    for name in ("config.json", "generation_config.json", "tokenizer.json",
                 "tokenizer_config.json", "special_tokens_map.json",
                 "model.safetensors.index.json"):
        check_json_file(root / name)
    for weights in sorted(root.glob("*.safetensors")):
        check_safetensors_file(weights)


def _check_checkpoint_dir(root: Path) -> None:
    if not root.exists():
        raise FileNotFoundError(
            f"no policy checkpoint at {str(root)!r} (load_policy reads local directories "
            "only and never downloads)"
        )
    if not root.is_dir():
        raise NotADirectoryError(
            f"{str(root)!r} is a file; load_policy wants a directory written by save_pretrained"
        )
    if not (root / "config.json").is_file():
        raise FileNotFoundError(
            f"{str(root)!r} has no config.json; it is not a transformers checkpoint "
            "(write one with model.save_pretrained(path))"
        )
    if not any((root / f).is_file() for f in _WEIGHT_FILES):
        raise FileNotFoundError(
            f"{str(root)!r} has a config.json but no weights (expected one of "
            f"{', '.join(_WEIGHT_FILES)})"
        )
    if not any((root / f).is_file() for f in _TOKENIZER_FILES):
        raise FileNotFoundError(
            f"{str(root)!r} has no tokenizer (expected tokenizer.json or tokenizer_config.json;"
            " write one with tokenizer.save_pretrained(path))"
        )


def _sync_generation_config(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Give the model's generation config the tokenizer's special ids where it lacks them,
    so ``generate`` and the engine stop at EOS and pad correctly."""
    gen = getattr(model, "generation_config", None)
    if gen is None:
        return
    for name in ("bos_token_id", "eos_token_id", "pad_token_id"):
        if getattr(gen, name, None) is None and getattr(tokenizer, name, None) is not None:
            setattr(gen, name, getattr(tokenizer, name))


def format_prompt(tokenizer: PreTrainedTokenizerBase, text: str, *,
                  system_prompt: str | None = None) -> str:
    """The text to feed the policy for a task prompt.

    Parameters:
        tokenizer: the policy's tokenizer.
        text: the task prompt (e.g. ``task.prompt(problem)``).
        system_prompt: the chat template's system turn (None: the template's default).

    Returns:
        ``text`` as one user turn in the tokenizer's chat template, with the generation
        prompt appended, when the tokenizer has a chat template; else ``text`` unchanged
        (the default character-level policy has none).

    Raises:
        TypeError: ``text`` is not a string.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if system_prompt is not None and not isinstance(system_prompt, str):
        raise TypeError(f"system_prompt must be a str, got {type(system_prompt).__name__}")
    if getattr(tokenizer, "chat_template", None):
        turns = [{"role": "user", "content": text}]
        if system_prompt is not None:
            turns.insert(0, {"role": "system", "content": system_prompt})
        return tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
    return text


def unrepresentable_chars(tokenizer: PreTrainedTokenizerBase, texts: Any) -> list[str]:
    """The characters of ``texts`` that ``tokenizer`` can only write as its unknown token
    (e.g. the shipped character policy meeting English, Greek or emoji), sorted.

    Parameters:
        tokenizer: a tokenizer; one without an unknown token represents everything.
        texts: an iterable of strings.

    Returns:
        The characters that encode to ``unk_token_id`` (empty when all are representable).
    """
    unk = getattr(tokenizer, "unk_token_id", None)
    if unk is None:
        return []
    chars = {c for t in texts for c in t if not c.isspace()}
    return sorted(c for c in chars
                  if unk in tokenizer(c, add_special_tokens=False)["input_ids"])


def encode_prompt(tokenizer: PreTrainedTokenizerBase, text: str, *,
                  system_prompt: str | None = None) -> list[int]:
    """The token ids the policy continues for a task prompt: :func:`format_prompt`, then
    encoded once (ids, not text, travel from here on).

    Special tokens are added by the tokenizer (e.g. the default policy's ``<bos>``) unless a
    chat template was applied: templates already write their own start-of-text markers.

    Parameters:
        tokenizer: the policy's tokenizer.
        text: the task prompt.
        system_prompt: as in :func:`format_prompt`.

    Returns:
        A list of token ids ``[T]``.

    Raises:
        TypeError: ``text`` is not a string.
    """
    formatted = format_prompt(tokenizer, text, system_prompt=system_prompt)
    templated = bool(getattr(tokenizer, "chat_template", None))
    return list(tokenizer(formatted, add_special_tokens=not templated)["input_ids"])
