"""Tiny llama-architecture models with random weights, written with the `gguf` package at run time.

Why random weights: the rig measures a load balancer, not a language model. What matters is that
llama.cpp runs its real code path (tokenizer, slots, batching, KV cache, /metrics) at a known cost per
token; a model's size sets that cost. Nothing is downloaded and nothing generated is committed.

The vocabulary is SentencePiece-style with the 256 byte tokens (`<0x00>`...) plus `<unk>`, `<s>`, `</s>`,
so any prompt tokenizes (byte fallback); the rig sends prompts as token ids anyway, so a request's
prompt length is exact.
"""

from __future__ import annotations

import dataclasses
import pathlib

#: the first token id a prompt may use (0-2 are <unk>, <s>, </s>)
FIRST_BYTE_TOKEN = 3
VOCAB_SIZE = 259


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """A model's shape; its cost per token grows with width² × layers."""

    name: str
    width: int  # embedding length
    layers: int
    heads: int = 4
    context: int = 4096
    seed: int = 0

    @property
    def ffn(self) -> int:
        return self.width * 4 if self.width < 256 else self.width * 8 // 3 // 32 * 32

    @property
    def filename(self) -> str:
        return f"rand-llama-{self.width}w{self.layers}l-s{self.seed}.gguf"


def write_model(spec: ModelSpec, directory: pathlib.Path) -> pathlib.Path:
    """Write `spec` as a GGUF file under `directory` (kept when already there: the file is a pure
    function of the spec) and return its path."""
    import numpy as np  # the `gguf` package brings numpy
    from gguf import GGUFWriter, TokenType

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / spec.filename
    if path.exists() and path.stat().st_size > 0:
        return path
    tmp = path.with_suffix(".tmp")
    rng = np.random.default_rng(spec.seed)
    w = GGUFWriter(str(tmp), "llama")
    w.add_name(f"random llama {spec.width}x{spec.layers}")
    w.add_context_length(spec.context)
    w.add_embedding_length(spec.width)
    w.add_block_count(spec.layers)
    w.add_feed_forward_length(spec.ffn)
    w.add_head_count(spec.heads)
    w.add_head_count_kv(spec.heads)
    w.add_rope_dimension_count(spec.width // spec.heads)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_file_type(0)  # all F32
    tokens = [b"<unk>", b"<s>", b"</s>"] + [f"<0x{i:02X}>".encode() for i in range(256)]
    w.add_tokenizer_model("llama")
    w.add_token_list(tokens)
    w.add_token_scores([0.0] * len(tokens))
    w.add_token_types([TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(2)
    w.add_add_bos_token(True)

    def rand(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    d, f = spec.width, spec.ffn
    w.add_tensor("token_embd.weight", rand(VOCAB_SIZE, d))
    w.add_tensor("output_norm.weight", np.ones(d, dtype=np.float32))
    w.add_tensor("output.weight", rand(VOCAB_SIZE, d))
    for i in range(spec.layers):
        b = f"blk.{i}."
        w.add_tensor(b + "attn_norm.weight", np.ones(d, dtype=np.float32))
        for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
            w.add_tensor(b + name + ".weight", rand(d, d))
        w.add_tensor(b + "ffn_norm.weight", np.ones(d, dtype=np.float32))
        w.add_tensor(b + "ffn_gate.weight", rand(f, d))
        w.add_tensor(b + "ffn_up.weight", rand(f, d))
        w.add_tensor(b + "ffn_down.weight", rand(d, f))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    tmp.replace(path)
    return path
