"""TextStream decodes only a window after the settled text: its pieces must join to the whole decode."""

import random

from specdecode.models.tokenizers import ByteTokenizer
from specdecode.serve.openai_api import TextStream


def _pieces(tok, ids, stops, seed):
    rnd, ts, out, i = random.Random(seed), TextStream(tok, stops), [], 0
    while i < len(ids):
        n = rnd.randint(1, 5)
        out.append(ts.feed(ids[i : i + n]))
        i += n
    out.append(ts.feed([], final=True))
    return out


def test_pieces_join_to_the_whole_decode_with_split_characters():
    tok = ByteTokenizer(256)
    ids = list("Héllo wörld — 漢字 🙂\n".encode() * 4) + [0xE6, 0xBC]  # ends inside a character
    for seed in range(5):
        pieces = _pieces(tok, ids, (), seed)
        assert "".join(pieces) == tok.decode(ids)
        assert all("\ufffd" not in p for p in pieces[:-1])  # half characters are held back until complete


def test_text_is_cut_before_a_stop_string_across_pieces():
    tok = ByteTokenizer(256)
    ids = list("abc 漢字 STOP tail".encode())
    for seed in range(5):
        assert "".join(_pieces(tok, ids, ("STOP",), seed)) == "abc 漢字 "
