"""The CLIP tokenizer builder, without the network: byte table, vocabulary layout, file format."""

from __future__ import annotations

import gzip
from pathlib import Path

from training.clip_tokenizer import (
    END_TOKEN,
    START_TOKEN,
    byte_alphabet,
    read_merges,
    vocabulary,
    write_tokenizer_files,
)


def test_byte_alphabet_gives_every_byte_a_distinct_visible_character() -> None:
    alphabet = byte_alphabet()
    assert len(alphabet) == len(set(alphabet)) == 256
    assert alphabet[:3] == ["!", '"', "#"] and " " not in alphabet and "\n" not in alphabet


def _fake_bpe(path: Path, merges: list[str]) -> Path:
    path.write_bytes(gzip.compress(("#version: test\n" + "\n".join(merges)).encode()))
    return path


def test_vocabulary_layout_matches_clip(tmp_path: Path) -> None:
    merges = read_merges(_fake_bpe(tmp_path / "bpe.gz", ["c a", "ca t</w>", "t h"]))
    vocab = vocabulary(merges)
    assert vocab["!"] == 0 and vocab["!</w>"] == 256 and vocab["ca"] == 512 and vocab["cat</w>"] == 513
    assert (vocab[START_TOKEN], vocab[END_TOKEN]) == (515, 516) and len(vocab) == 517


def test_written_files_load_as_a_clip_tokenizer(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    write_tokenizer_files(_fake_bpe(tmp_path / "bpe.gz", ["c a", "ca t</w>"]), tmp_path / "tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(str(tmp_path / "tokenizer"))
    ids = tokenizer("cat")["input_ids"]
    assert ids == [514, 513, 515] and tokenizer.model_max_length == 77  # start, "cat</w>", end
