"""Structured output through the server with the official openai client: ``response_format`` json_schema (strict)
and json_object, the ``regex`` extension, streaming and not, greedy output equal to constrained plain decoding in
the engine, invalid schemas and regexes refused with HTTP 400 naming the field. A byte-level tiny Llama with 257
tokens (every byte, and 256: the end of sequence)."""

import json
import re

import httpx
import pytest
import torch

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")

from serving import run_app  # noqa: E402  (tests/serving.py)

from specdecode.core.sampling import SamplingConfig  # noqa: E402
from specdecode.engine import CausalLM, Constraint, GenerationConfig, SpeculativeGenerator, SuffixDrafter  # noqa: E402
from specdecode.models import tiny_llama  # noqa: E402
from specdecode.models.tokenizers import ByteTokenizer, encode_chat  # noqa: E402
from specdecode.serve import Server  # noqa: E402

MODEL = "tiny-bytes"
SCHEMA = {
    "type": "object",
    "properties": {"color": {"enum": ["red", "green", "blue"]}, "ok": {"type": "boolean"}},
    "required": ["color", "ok"],
    "additionalProperties": False,
}
EOS = 256


@pytest.fixture(scope="module")
def served():
    target, tok = CausalLM(tiny_llama(1, vocab_size=257), name=MODEL), ByteTokenizer(257)
    server = Server(
        SpeculativeGenerator(target, SuffixDrafter(), tok),
        tok,
        lambda prompt, chat=True: encode_chat(tok, prompt, chat),
        MODEL,
        (EOS,),
        max_batch=4,
        k=4,
        adaptive=True,
        max_tokens=64,
        drafter="suffix",
    )
    uv, thread, url = run_app(server.app())
    yield url, target, tok
    uv.should_exit = True
    thread.join(timeout=10)


def client(url):
    return openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=60)


FORMAT = {"type": "json_schema", "json_schema": {"name": "paint", "schema": SCHEMA, "strict": True}}


@pytest.mark.parametrize("temperature", [0.0, 1.0])
def test_json_schema_through_the_openai_client(served, temperature):
    url, _, _ = served
    for seed in range(3):
        r = client(url).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "paint"}],
            response_format=FORMAT,
            temperature=temperature,
            seed=seed,
        )
        doc = json.loads(r.choices[0].message.content)
        assert doc["color"] in ("red", "green", "blue") and isinstance(doc["ok"], bool)
        assert r.choices[0].finish_reason == "stop"


def test_greedy_json_equals_constrained_plain_decoding(served):
    url, target, tok = served
    r = client(url).chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "paint it"}], response_format=FORMAT, temperature=0
    )
    plain = SpeculativeGenerator(target, None, tok).generate(
        [encode_chat(tok, "paint it")],
        GenerationConfig(
            max_new_tokens=64, k=0, sampling=SamplingConfig(0.0), eos_token_ids=(EOS,), constraint=_schema()
        ),
        torch.Generator(),
    )
    assert r.choices[0].message.content == tok.decode([t for t in plain.tokens[0] if t != EOS])


def _schema():
    return Constraint.json_schema(SCHEMA)


def test_streamed_regex_and_json_object(served):
    url, _, _ = served
    parts = [
        c.choices[0].delta.content or ""
        for c in client(url).chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "answer"}],
            stream=True,
            temperature=1.0,
            extra_body={"regex": "(yes|no|maybe)!{1,3}"},
        )
    ]
    assert re.fullmatch("(yes|no|maybe)!{1,3}", "".join(parts)), parts
    r = client(url).completions.create(
        model=MODEL, prompt="{", max_tokens=64, temperature=0, extra_body={"response_format": {"type": "json_object"}}
    )
    text = r.choices[0].text
    assert text.startswith("{") and (r.choices[0].finish_reason == "length" or isinstance(json.loads(text), dict))


@pytest.mark.parametrize(
    "extra,param",
    [
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {"type": "objectx"}}}},
            "response_format",
        ),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema", "json_schema": {"schema": [1]}}}, "response_format"),
        ({"regex": "a(b"}, "regex"),
        ({"regex": 7}, "regex"),
        ({"regex": "a", "response_format": {"type": "json_object"}}, "regex"),
    ],
)
def test_invalid_schemas_and_regexes_are_refused(served, extra, param):
    url, _, _ = served
    r = httpx.post(
        url + "/v1/chat/completions", json={"model": MODEL, "messages": [{"role": "user", "content": "x"}], **extra}
    )
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["type"] == "invalid_request_error" and err["message"]
    with pytest.raises(openai.BadRequestError):
        client(url).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x"}], extra_body=extra)
    assert httpx.get(url + "/health").status_code == 200
