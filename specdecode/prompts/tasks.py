"""The benchmark's prompt set, written for this project in the spirit of Spec-Bench's categories.

Seven categories, ten prompts each, stored in the package (nothing is downloaded). A prompt is
a list of chat messages; multi-turn prompts carry earlier turns.
"""

from __future__ import annotations

_PARA = [
    "The river town of Alden held its spring fair on Saturday. Farmers sold early strawberries, the school band played "
    "on the bridge, and the fire brigade showed children how a hose works. Rain came at four, but most people stayed.",
    "Solar panels on the new sports hall will produce about forty percent of its electricity. The rest comes from the "
    "grid. The hall opens in September and will host basketball, volleyball and a climbing wall.",
    "A study of 2,000 commuters found that people who cycled to work took fewer sick days. The effect was strongest in "
    "winter. The authors say safe bike lanes matter more than distance.",
    "The museum's new wing shows tools from the bronze age: axes, sickles and a bronze mirror. Each object has a short "
    "text in three languages and a drawing of how it was used.",
    "The bakery on Main Street changed its opening hours. It now opens at six instead of seven, closes at two on "
    "weekdays and stays closed on Mondays. Bread can be ordered a day ahead.",
    "Our team moved the weekly meeting from Tuesday to Thursday. The agenda stays the same: status updates, blockers, "
    "and one short demo. Notes will be shared in the usual folder after the meeting.",
    "The library now lends tools: drills, ladders and sewing machines. A tool can be borrowed for one week with a "
    "library card. Late returns cost one dollar per day.",
    "A storm closed the coastal road for two days. Crews removed fallen trees and repaired a washed-out culvert. The "
    "road reopened on Friday with a lower speed limit near the bay.",
    "The city will plant 500 trees this year, mostly oaks and lindens. Residents can ask for a tree in front of their "
    "house through the city website. Planting starts in October.",
    "The hospital opened a night clinic for minor injuries. It runs from six in the evening to midnight and does not "
    "need an appointment. Serious cases still go to the emergency room.",
]

_CODE = [
    "def area(w, h):\n    return w * h\n\nprint(area(3, 4))",
    "def greet(name):\n    print('Hello ' + name)\n\ngreet('Ada')\ngreet('Linus')",
    "items = [3, 1, 2]\nitems.sort()\nfor i in items:\n    print(i)",
    "def total(prices):\n    s = 0\n    for p in prices:\n        s = s + p\n    return s",
    "class Counter:\n    def __init__(self):\n        self.n = 0\n\n    def add(self):\n        self.n += 1",
    "def is_even(x):\n    if x % 2 == 0:\n        return True\n    return False",
    "names = ['a', 'b']\nfor n in names:\n    print(n.upper())",
    "def mean(xs):\n    return sum(xs) / len(xs)\n\nprint(mean([1, 2, 3]))",
    "import os\n\ndef list_files(path):\n    return os.listdir(path)",
    "def square(v):\n    return v * v\n\nvalues = [square(i) for i in range(5)]",
]

_EDITS = [
    "Rename the function to snake_case with a clearer name",
    "Add type hints",
    "Add a docstring to every function",
    "Rename the variables to clearer names",
    "Replace print with logging",
    "Add a comment above each line",
    "Rename the loop variable",
    "Add a main guard",
    "Add error handling for empty input",
    "Use f-strings",
]

_QA = [
    ("When does the bakery open on weekdays?", 4),
    ("How long can a tool be borrowed?", 6),
    ("What will produce forty percent of the hall's electricity?", 1),
    ("Which trees will the city plant?", 8),
    ("What time does the night clinic close?", 9),
    ("Why was the coastal road closed?", 7),
    ("What did the study find about cyclists?", 2),
    ("What objects are in the museum's new wing?", 3),
    ("What happened at four o'clock at the fair?", 0),
    ("On which day is the team meeting now?", 5),
]

_MATH = [
    "A shop sells pencils at 3 for 45 cents. How much do 12 pencils cost? Think step by step.",
    "Tom has 24 apples and gives a third to Ana and a quarter of the rest to Ben. How many are left? Show your steps.",
    "A train travels 180 km in 2 hours. At the same speed, how far does it go in 5 hours? Explain.",
    "What is 15% of 240? Show the calculation.",
    "A rectangle has a perimeter of 30 cm and a width of 5 cm. What is its area? Step by step.",
    "If 4 workers build a wall in 6 days, how long do 3 workers need? Explain your reasoning.",
    "Sara reads 12 pages a day. How many days does she need for a 300-page book? Show the steps.",
    "The sum of two numbers is 50 and their difference is 12. What are the numbers? Explain.",
    "A coat costs 80 dollars and is discounted by 25%. What is the new price? Step by step.",
    "How many minutes are there in 3.5 hours? Show the calculation.",
]

_REWRITE = [
    "Rewrite in formal English: hey guys, the meeting is moved to thursday, pls bring ur laptops.",
    "Rewrite in simple English for a child: Photosynthesis converts light energy into chemical energy stored in "
    "glucose.",
    "Rewrite as a polite email: Send me the report now, it is late.",
    "Rewrite in the past tense: The cat jumps on the table and knocks over the glass.",
    "Rewrite without jargon: We need to leverage synergies to optimize our go-to-market pipeline.",
    "Rewrite in the passive voice: The committee approved the new budget on Monday.",
    "Rewrite as a bulleted list: Bring water, a hat, sunscreen and a map.",
    "Rewrite more concisely: In the event that it rains, the picnic will be moved to a location that is indoors.",
    "Rewrite in a friendly tone: Your subscription has expired. Renew it to continue.",
    "Rewrite in the first person: She walked to the station and bought a ticket to the coast.",
]

_STORY = [
    "Write a short story about a robot who learns to paint.",
    "Write a story about a lighthouse keeper and a lost whale.",
    "Tell a story about a girl who finds a map in her grandmother's attic.",
    "Write a fable about a fox and a crow.",
    "Write a short story set on a space station where the coffee machine breaks.",
    "Tell a bedtime story about a sleepy dragon.",
    "Write a story about two friends who build a raft.",
    "Write a story about a baker who bakes bread that makes people honest.",
    "Tell a story about a lost umbrella that travels the world.",
    "Write a short mystery set in a small library.",
]

_CHAT = [
    [
        ("user", "I want to start running. Any tips?"),
        ("assistant", "Start slowly: run-walk intervals three times a week."),
        ("user", "How long should each session be?"),
    ],
    [
        ("user", "What is a good name for a cat?"),
        ("assistant", "How about Miso, Pepper or Luna?"),
        ("user", "Something longer?"),
    ],
    [
        ("user", "Can you help me plan a picnic?"),
        ("assistant", "Sure. How many people are coming?"),
        ("user", "Six people, two are kids."),
    ],
    [
        ("user", "I need a gift for my dad."),
        ("assistant", "What does he enjoy?"),
        ("user", "He likes gardening and jazz."),
    ],
    [
        ("user", "What should I cook tonight?"),
        ("assistant", "Do you have pasta and tomatoes?"),
        ("user", "Yes, and some garlic."),
    ],
    [
        ("user", "How do I learn Spanish?"),
        ("assistant", "Practice a little every day with an app and short podcasts."),
        ("user", "Which podcasts would you suggest for beginners?"),
    ],
    [("user", "My plant leaves are yellow."), ("assistant", "Are you watering it often?"), ("user", "Every day.")],
    [("user", "I can't sleep well."), ("assistant", "Do you use screens before bed?"), ("user", "Yes, my phone.")],
    [
        ("user", "Plan a weekend in the mountains."),
        ("assistant", "Do you prefer hiking or relaxing?"),
        ("user", "Hiking, but easy trails."),
    ],
    [
        ("user", "Explain what a budget is."),
        ("assistant", "A plan for how you spend and save money."),
        ("user", "How do I make one?"),
    ],
]


def _msgs(*turns):
    return [{"role": r, "content": c} for r, c in turns]


TASKS: dict[str, list[list[dict]]] = {
    "chat": [_msgs(*t) for t in _CHAT],
    "summarisation": [
        _msgs(("user", f"Summarize this text in two sentences, reusing its words:\n\n{p}")) for p in _PARA
    ],
    "qa": [_msgs(("user", f"Answer from the text, quoting it.\n\nText: {_PARA[i]}\n\nQuestion: {q}")) for q, i in _QA],
    "code-edit": [_msgs(("user", f"{e}. Return the full code.\n\n```python\n{c}\n```")) for c, e in zip(_CODE, _EDITS)],
    "math": [_msgs(("user", m)) for m in _MATH],
    "rewrite": [_msgs(("user", r)) for r in _REWRITE],
    "story": [_msgs(("user", s)) for s in _STORY],
}
CATEGORIES = tuple(TASKS)
