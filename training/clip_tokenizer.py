"""Builds the demo text encoder's tokenizer: OpenAI's CLIP BPE vocabulary, as transformers files.

The vocabulary (`bpe_simple_vocab_16e6.txt.gz`, MIT) is taken from the `openai-clip` source
package on PyPI, the only registry these machines reach, and turned into the `vocab.json`
and `merges.txt` that `transformers.CLIPTokenizer` reads. The result ships beside the text
encoder in models/, so at run time nothing is fetched. A real CLIP tokenizer means the demo
model goes through exactly the tokenizer path real FLUX checkpoints use, and accepts any text.
"""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
import tarfile
from pathlib import Path

CLIP_PACKAGE = "openai-clip==1.0.1"
BPE_MEMBER_SUFFIX = "clip/bpe_simple_vocab_16e6.txt.gz"
MERGE_COUNT = 49152 - 256 - 2  # the merges CLIP uses: its vocabulary is 49,408 entries in all
START_TOKEN, END_TOKEN = "<|startoftext|>", "<|endoftext|>"
MAX_LENGTH = 77


def fetch_bpe_vocabulary(cache_dir: Path) -> Path:
    """Download the `openai-clip` source package (1.4 MB) and extract its BPE file; cached."""
    target = cache_dir / "bpe_simple_vocab_16e6.txt.gz"
    if target.is_file():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary=:all:",
                    "--dest", str(cache_dir), CLIP_PACKAGE], check=True)
    archive = next(cache_dir.glob("openai-clip-*.tar.gz"))
    with tarfile.open(archive) as tar:
        member = next(item for item in tar.getmembers() if item.name.endswith(BPE_MEMBER_SUFFIX))
        source = tar.extractfile(member)
        assert source is not None
        target.write_bytes(source.read())
    return target


def byte_alphabet() -> list[str]:
    """CLIP's byte-to-character table, in vocabulary order.

    Printable bytes stand for themselves; the others are shifted past 255 so every byte has a
    visible character and BPE never has to handle whitespace or control bytes.
    """
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    characters = [chr(byte) for byte in printable]
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            characters.append(chr(256 + shifted))
            shifted += 1
    return characters


def read_merges(bpe_gz: Path) -> list[tuple[str, str]]:
    lines = gzip.decompress(bpe_gz.read_bytes()).decode("utf-8").split("\n")
    return [tuple(line.split()) for line in lines[1:MERGE_COUNT + 1]]  # the first line is a header


def vocabulary(merges: list[tuple[str, str]]) -> dict[str, int]:
    """Token -> id: bytes, bytes ending a word, every merge, then the two special tokens."""
    alphabet = byte_alphabet()
    tokens = [*alphabet, *(character + "</w>" for character in alphabet), *("".join(pair) for pair in merges),
              START_TOKEN, END_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def write_tokenizer_files(bpe_gz: Path, out_dir: Path, max_length: int = MAX_LENGTH) -> None:
    """vocab.json + merges.txt, then the transformers files saved from the loaded tokenizer.

    `max_length` is the padded prompt window; OpenAI's CLIP uses 77, the demo model a shorter one.
    """
    from transformers import CLIPTokenizer

    merges = read_merges(bpe_gz)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps(vocabulary(merges), ensure_ascii=False))
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(" ".join(pair) for pair in merges) + "\n")
    tokenizer = CLIPTokenizer.from_pretrained(str(out_dir), model_max_length=max_length)
    tokenizer.save_pretrained(str(out_dir))
