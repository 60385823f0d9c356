"""A character-level tokenizer built offline with the ``tokenizers`` library.

Every character of the alphabet is one token; four special tokens come first
(``<pad>`` 0, ``<bos>`` 1, ``<eos>`` 2, ``<unk>`` 3). Encoding a text with special tokens
prepends ``<bos>`` (as Llama tokenizers do), so ``tokenizer(prompt).input_ids`` is exactly
what the policy was trained to continue. Decoding joins characters with nothing in between,
so ``decode(encode(text), skip_special_tokens=True) == text`` for any text over the alphabet.

The result is a :class:`transformers.PreTrainedTokenizerFast`, so ``save_pretrained`` and
``AutoTokenizer.from_pretrained(path)`` work with no network and no custom code.
"""

from __future__ import annotations

import string
from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

__all__ = ["PAD", "BOS", "EOS", "UNK", "SPECIAL_TOKENS", "DEFAULT_ALPHABET", "build_char_tokenizer"]

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIAL_TOKENS = (PAD, BOS, EOS, UNK)

#: Printable ASCII without the rarely useful vertical whitespace; used when a task's
#: alphabet is unbounded (user data).
DEFAULT_ALPHABET = "".join(sorted(set(string.printable) - set("\r\x0b\x0c")))


def build_char_tokenizer(
    alphabet: Iterable[str], *, model_max_length: int = 512
) -> PreTrainedTokenizerFast:
    """A character-level tokenizer over ``alphabet``.

    Parameters:
        alphabet: the characters (a string or an iterable of one-character strings);
            duplicates are ignored and ids follow sorted order, so equal alphabets give
            equal tokenizers.
        model_max_length: the longest sequence the model takes (recorded in the tokenizer).

    Returns:
        A ``PreTrainedTokenizerFast`` with ``bos``/``eos``/``pad``/``unk`` tokens; vocabulary
        size ``4 + len(set(alphabet))``. Characters outside the alphabet encode to ``<unk>``.

    Raises:
        TypeError: an element of ``alphabet`` is not a string.
        ValueError: an element is not exactly one character, or the alphabet is empty.
    """
    chars: set[str] = set()
    for ch in alphabet:
        if not isinstance(ch, str):
            raise TypeError(f"alphabet elements must be str, got {type(ch).__name__}")
        if len(ch) != 1:
            raise ValueError(f"alphabet elements must be single characters, got {ch!r}")
        chars.add(ch)
    if not chars:
        raise ValueError("the alphabet is empty; pass the characters the texts use")
    if model_max_length < 1:
        raise ValueError(f"model_max_length must be >= 1, got {model_max_length}")
    vocab = {tok: i for i, tok in enumerate([*SPECIAL_TOKENS, *sorted(chars)])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    # An empty pattern splits between every pair of characters (code points), so each
    # character is one "word" and WordLevel maps it to its id.
    tok.pre_tokenizer = pre_tokenizers.Split(pattern="", behavior="isolated")
    # Fuse concatenates the pieces: the default WordLevel decoding would join with spaces.
    tok.decoder = decoders.Fuse()
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A $B", special_tokens=[(BOS, vocab[BOS])]
    )
    tok.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        # The default clean-up removes spaces before punctuation: it would break round trips.
        clean_up_tokenization_spaces=False,
        padding_side="right",
    )
