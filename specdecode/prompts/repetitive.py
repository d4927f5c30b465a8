"""The repetitive workload set: sequences of requests whose work repeats itself across requests and turns, as in
agents, form filling and batch jobs (what suffix drafting across requests exploits).

Each workload is a list of chat requests run one after another on the same generator or server: records to JSON
in one schema, rewrites of one email, multi-turn edits of an earlier answer, code edits, answers quoting a passage.
Written for this project; nothing is downloaded.

Not here: running them (``bench.backends``, ``bench.serve``).
"""

from __future__ import annotations

_RECORDS = [
    "Maria Lopez, 34, works as a nurse in Valencia.",
    "Tom Becker is a 52-year-old carpenter from Bremen.",
    "Aiko Tanaka (29) teaches music in Osaka.",
    "Samuel Okoro, aged 41, is an engineer living in Lagos.",
]
RECORD_SCHEMA = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "age": {"type": "integer"},
        "city": {"type": "string"},
        "job": {"type": "string"},
    },
    "required": ["name", "age", "city", "job"],
    "additionalProperties": False,
}  # what the records-json requests ask for (``bench-structured`` constrains them to it)
_SCHEMA = 'Return only JSON with the keys "name", "age", "city" and "job", e.g. {"name": "...", "age": 0, ...}.'

_EMAIL = (
    "Hi team, the quarterly review moves from Monday to Wednesday at 10am in room B. Please bring your project "
    "numbers and one slide with the main risks. Lunch will be provided after the meeting. Thanks, Dana"
)

_CODE = (
    "def load(path):\n    f = open(path)\n    data = f.read()\n    f.close()\n    return data\n\n\n"
    "def count_lines(path):\n    data = load(path)\n    return len(data.splitlines())\n"
)

_PASSAGE = (
    "The harbour bridge was built in 1932 and is 503 metres long. It carries eight lanes of traffic, two railway "
    "tracks and a footpath. About 160,000 vehicles cross it every day. The bridge is painted every ten years, a job "
    "that takes 30,000 litres of paint."
)

_TURN1 = "Write a packing list for a two-day hiking trip as a numbered list of eight items."
_ANSWER1 = (
    "1. Backpack\n2. Water bottles\n3. Rain jacket\n4. Warm layer\n5. Map and compass\n6. First aid kit\n"
    "7. Snacks and lunch\n8. Headlamp"
)


def _user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


WORKLOADS: dict[str, list[list[dict]]] = {
    "records-json": [_user(f"{_SCHEMA}\n\nRecord: {r}") for r in _RECORDS],
    "email-rewrites": [
        _user(f"Rewrite this email {how}, keeping every fact:\n\n{_EMAIL}")
        for how in ("more formally", "for a customer", "as a short reminder", "in a friendlier tone")
    ],
    "multi-turn-edit": [
        _user(_TURN1),
        [*_user(_TURN1), {"role": "assistant", "content": _ANSWER1}, *_user("Add sunscreen as item 9; repeat it all.")],
        [
            *_user(_TURN1),
            {"role": "assistant", "content": _ANSWER1},
            *_user("Replace the headlamp with a torch and repeat the whole list."),
        ],
        [
            *_user(_TURN1),
            {"role": "assistant", "content": _ANSWER1},
            *_user("Put the list in alphabetical order and repeat it."),
        ],
    ],
    "code-edits": [
        _user(f"{how} Return the full code.\n\n```python\n{_CODE}```")
        for how in (
            "Rename `data` to `text`.",
            "Use a `with` statement in `load`.",
            "Add a docstring to each function.",
            "Rename `load` to `read_file` everywhere.",
        )
    ],
    "quote": [
        _user(f"{_PASSAGE}\n\nAnswer by quoting the sentence of the text that says it: {q}")
        for q in (
            "How long is the bridge?",
            "What does the bridge carry?",
            "How many vehicles cross it?",
            "How often is it painted?",
        )
    ],
}
